package capture_test

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

// recorder keeps a copy of every packet its worker saw.
type recorder struct {
	mu     *sync.Mutex
	frames *[][]byte
	closed *int
}

func (r recorder) HandleBlock(b *capture.Block) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range b.Packets {
		*r.frames = append(*r.frames, bytes.Clone(p.Data))
	}
}
func (r recorder) Idle(int64) {}
func (r recorder) Close() {
	r.mu.Lock()
	*r.closed++
	r.mu.Unlock()
}

// startCapture opens a capture inside the pair's B namespace and runs it until
// the returned stop function is called.
func startCapture(t *testing.T, p *netnstest.Pair, cfg capture.Config) (stop func() []capture.InterfaceStatus, frames func() [][]byte, closed func() int) {
	t.Helper()
	var (
		mu   sync.Mutex
		got  [][]byte
		ncls int
	)
	var c *capture.Capture
	err := netnstest.Do(p.B.NS, func() (err error) {
		c, err = capture.New(cfg, zaptest.NewLogger(t), func(capture.Worker) []capture.Consumer {
			return []capture.Consumer{recorder{&mu, &got, &ncls}}
		})
		return err
	})
	if err != nil {
		t.Fatalf("capture.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop = func() []capture.InterfaceStatus {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("capture did not stop within 5s")
		}
		return c.Interfaces()
	}
	return stop,
		func() [][]byte { mu.Lock(); defer mu.Unlock(); return got },
		func() int { mu.Lock(); defer mu.Unlock(); return ncls }
}

func TestLiveCaptureEveryFrameByteForByte(t *testing.T) {
	p := netnstest.New(t)
	cfg := capture.Config{
		Interfaces: []string{p.B.Iface}, Workers: 2, Promisc: true, Snaplen: 262144,
		RingBytes: 8 << 20, BlockBytes: 1 << 20, BlockTimeout: 10 * time.Millisecond,
	}
	stop, frames, closed := startCapture(t, p, cfg)

	// Several flows, so the fanout spreads them over both workers, one of them
	// VLAN tagged (stripped by veth offload on receive, restored by capture).
	var sent [][]byte
	sizes := netnstest.MixedSizes(3000, 1)
	for stream := uint32(1); stream <= 4; stream++ {
		f := p.Flow(stream)
		if stream == 4 {
			f.VLAN = 0x2064
		}
		sent = append(sent, f.Frames(sizes)...)
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
	st := stop()

	if n := closed(); n != 2 {
		t.Errorf("%d consumers closed, want 2 (one per worker)", n)
	}
	// Keep only our frames (the kernel may emit its own, e.g. on link up),
	// then check each flow arrived complete, in order and byte for byte.
	perFlow := map[uint32][][]byte{}
	for _, f := range frames() {
		if stream, _, err := netnstest.Parse(f); err == nil {
			perFlow[stream] = append(perFlow[stream], f)
		}
	}
	for stream := uint32(1); stream <= 4; stream++ {
		want := sent[int(stream-1)*len(sizes) : int(stream)*len(sizes)]
		got := perFlow[stream]
		if len(got) != len(want) {
			t.Errorf("flow %d: captured %d frames, sent %d", stream, len(got), len(want))
			continue
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("flow %d frame %d differs:\n got %x\nwant %x", stream, i, got[i], want[i])
				break
			}
		}
	}
	if len(st) != 1 || st[0].State != capture.StateStopped || st[0].KernelDrops != 0 || st[0].Packets != uint64(len(frames())) {
		t.Errorf("status %+v; want stopped, 0 drops, %d packets", st, len(frames()))
	}
	if st[0].KernelPackets != st[0].Packets {
		t.Errorf("kernel offered %d packets, sonde read %d", st[0].KernelPackets, st[0].Packets)
	}
}

func TestLiveCaptureSnaplen(t *testing.T) {
	p := netnstest.New(t)
	cfg := capture.Config{
		Interfaces: []string{p.B.Iface}, Workers: 1, Snaplen: 96,
		RingBytes: 4 << 20, BlockBytes: 1 << 20, BlockTimeout: 10 * time.Millisecond,
	}
	stop, frames, _ := startCapture(t, p, cfg)
	sent := p.Flow(1).Frames([]int{60, 96, 97, 1514})
	s, err := netnstest.NewSender(p.A.NS, p.A.Iface)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Send(sent); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	stop()
	var got [][]byte
	for _, f := range frames() {
		if _, _, err := netnstest.Parse(f); err == nil {
			got = append(got, f)
		}
	}
	if len(got) != len(sent) {
		t.Fatalf("captured %d, sent %d", len(got), len(sent))
	}
	for i := range sent {
		want := sent[i][:min(96, len(sent[i]))]
		if !bytes.Equal(got[i], want) {
			t.Errorf("frame %d: got %d bytes, want the first %d", i, len(got[i]), len(want))
		}
	}
}

func TestNewRejectsMissingInterface(t *testing.T) {
	netnstest.Root(t)
	_, err := capture.New(capture.Config{
		Interfaces: []string{"nosuchif0"}, Snaplen: 100, RingBytes: 2 << 20, BlockBytes: 1 << 20, BlockTimeout: time.Millisecond,
	}, zaptest.NewLogger(t), nil)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(`"nosuchif0"`)) {
		t.Fatalf("error %v does not name the interface", err)
	}
}

// TestLiveLoopbackOnce captures on a namespace's loopback: every datagram
// appears once, not once going out and once coming in, as with tcpdump; and
// the kernel's own count (tp_packets) is the datagrams sent, not twice as
// many: the filter rejects the outgoing copies in the kernel.
func TestLiveLoopbackOnce(t *testing.T) {
	netnstest.Root(t)
	ns := netnstest.Namespace(t, "sndlo")
	p := &netnstest.Pair{B: netnstest.Endpoint{NS: ns, Iface: "lo"}}
	cfg := capture.Config{
		Interfaces: []string{"lo"}, Workers: 2, Snaplen: 262144,
		RingBytes: 4 << 20, BlockBytes: 1 << 20, BlockTimeout: 10 * time.Millisecond,
	}
	stop, frames, _ := startCapture(t, p, cfg)
	payload := []byte("sonde-loopback-once")
	const n = 50
	if err := netnstest.LoopbackDatagrams(ns, payload, n); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	ifaces := stop()
	got := 0
	for _, f := range frames() {
		if bytes.HasSuffix(f, payload) {
			got++
		}
	}
	if got != n {
		t.Fatalf("captured %d copies of %d datagrams sent over loopback, want exactly %d", got, n, n)
	}
	if len(ifaces) != 1 || ifaces[0].Stats.KernelPackets != n || ifaces[0].Stats.Packets != n {
		t.Fatalf("interface stats %+v: want %d packets offered by the kernel and %d read, the datagrams sent (nothing else crosses this loopback)", ifaces, n, n)
	}
}
