package prefilter

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/netnstest"
)

type recorder struct {
	mu     *sync.Mutex
	frames *[][]byte
}

func (r recorder) HandleBlock(b *capture.Block) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range b.Packets {
		*r.frames = append(*r.frames, bytes.Clone(p.Data))
	}
}
func (r recorder) Idle(int64) {}
func (r recorder) Close()     {}

// startLive runs a capture of cfg inside ns that records every frame; stop
// ends it and returns the frames.
func startLive(t *testing.T, ns string, cfg capture.Config) (c *capture.Capture, stop func() [][]byte) {
	t.Helper()
	var (
		mu  sync.Mutex
		got [][]byte
	)
	if err := netnstest.Do(ns, func() (err error) {
		c, err = capture.New(cfg, zaptest.NewLogger(t), func(capture.Worker) []capture.Consumer {
			return []capture.Consumer{recorder{&mu, &got}}
		})
		return err
	}); err != nil {
		t.Fatalf("capture.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return c, func() [][]byte {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return got
	}
}

// TestLiveCutoff runs a real capture on a veth pair with the prefilter in
// place of the classic filter: 100 flows of 50 packets with a cutoff of 5
// must put exactly 500 packets in the rings while the counters see all 5000.
func TestLiveCutoff(t *testing.T) {
	p := netnstest.New(t)
	needBPF(t)
	pf, err := New(Config{Snaplen: 128, FlowCutoffPackets: 5, RunTimeStats: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	cfg := capture.Config{
		Interfaces: []string{p.B.Iface}, Workers: 2, Promisc: true, Snaplen: 262144,
		RingBytes: 8 << 20, BlockBytes: 1 << 20, BlockTimeout: 10 * time.Millisecond, Filter: pf,
	}
	_, stop := startLive(t, p.B.NS, cfg)

	const flows, perFlow = 100, 50
	sizes := netnstest.MixedSizes(perFlow, 7)
	var sent [][]byte
	for seq := range perFlow { // interleaved, so flows compete in the LRU
		for stream := uint32(1); stream <= flows; stream++ {
			f := p.Flow(stream)
			if stream%10 == 0 {
				f.VLAN = 0x0064 // stripped by veth offload; counted as IPv4 all the same
			}
			sent = append(sent, f.Frame(uint64(seq), sizes[seq]))
		}
	}
	s, err := netnstest.NewSender(p.A.NS, p.A.Iface)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SendPaced(sent, 256, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	got := stop()

	perStream := map[uint32][]uint64{}
	for _, f := range got {
		if stream, seq, err := netnstest.Parse(f); err == nil {
			perStream[stream] = append(perStream[stream], seq)
			if len(f) > 128 && !(stream%10 == 0 && len(f) <= 132) {
				// capture re-inserts the VLAN tag the kernel stripped: 4 bytes more
				t.Errorf("frame of %d bytes reached the ring; snaplen is 128 (132 with a VLAN tag)", len(f))
			}
		}
	}
	total := 0
	for stream := uint32(1); stream <= flows; stream++ {
		seqs := perStream[stream]
		total += len(seqs)
		if len(seqs) != 5 {
			t.Errorf("flow %d: %d packets captured (%v), want the first 5", stream, len(seqs), seqs)
			continue
		}
		for i, s := range seqs {
			if s != uint64(i) {
				t.Errorf("flow %d: captured sequence %v, want 0..4", stream, seqs)
				break
			}
		}
	}
	st := pf.Stats()
	if len(st) != 1 {
		t.Fatalf("stats for %d interfaces, want 1", len(st))
	}
	t.Logf("ring: %d of our frames; prefilter: %+v", total, st[0])
	if st[0].RunCount < 5000 || st[0].RunTime <= 0 {
		t.Errorf("run-time stats: %d runs in %v, want at least 5000 (RunTimeStats is on)", st[0].RunCount, st[0].RunTime)
	} else {
		t.Logf("kernel run-time stats: %d runs, %.1f ns per run (cutoff on)", st[0].RunCount, float64(st[0].RunTime.Nanoseconds())/float64(st[0].RunCount))
	}
	if !st[0].InPlace {
		t.Error("the program copies packets: it should read them in place on this kernel")
	}
	if total != 500 {
		t.Errorf("%d packets reached the ring, want 500", total)
	}
	if st[0].FlowsCutOff.Packets != 4500 {
		t.Errorf("%d packets cut off, want 4500", st[0].FlowsCutOff.Packets)
	}
	if st[0].Packets < 5000 || st[0].L3.IPv4.Packets < 5000 || st[0].L4.UDP.Packets < 5000 {
		t.Errorf("counted %d packets, %d IPv4, %d UDP; want at least the 5000 sent", st[0].Packets, st[0].L3.IPv4.Packets, st[0].L4.UDP.Packets)
	}
	if st[0].Interface != p.B.Iface {
		t.Errorf("stats name interface %q, want %q", st[0].Interface, p.B.Iface)
	}
}

// TestLiveLoopbackOnce: on a namespace's loopback, where the tap sees each
// packet going out and coming back in, the prefilter keeps and counts one
// copy: the ring, the kernel's tp_packets and the prefilter's class counters
// all show exactly the datagrams sent.
func TestLiveLoopbackOnce(t *testing.T) {
	netnstest.Root(t)
	needBPF(t)
	ns := netnstest.Namespace(t, "snplo")
	pf, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	cfg := capture.Config{
		Interfaces: []string{"lo"}, Workers: 2, Snaplen: 262144,
		RingBytes: 4 << 20, BlockBytes: 1 << 20, BlockTimeout: 10 * time.Millisecond, Filter: pf,
	}
	c, stop := startLive(t, ns, cfg)
	for deadline := time.Now().Add(5 * time.Second); len(pf.Stats()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the prefilter was not attached within 5s")
		}
	}

	payload := []byte("sonde-prefilter-loopback")
	const n = 50
	if err := netnstest.LoopbackDatagrams(ns, payload, n); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	captured := 0
	for _, f := range stop() {
		if bytes.HasSuffix(f, payload) {
			captured++
		}
	}
	ifaces := c.Interfaces()
	st := pf.Stats()
	if captured != n || len(ifaces) != 1 || ifaces[0].Stats.KernelPackets != n {
		t.Errorf("captured %d of %d datagrams, the kernel offered %+v; want %d each", captured, n, ifaces, n)
	}
	if len(st) != 1 || st[0].Packets != n || st[0].L4.UDP.Packets != n {
		t.Errorf("prefilter counted %+v, want %d UDP packets", st, n)
	}
}
