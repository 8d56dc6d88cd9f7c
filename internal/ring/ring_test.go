package ring

import (
	"context"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"go.uber.org/zap/zaptest"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
)

// harness runs a Ring the way main does: Run on its own goroutine, streams
// fed by the test as capture workers would, stop by cancelling.
type harness struct {
	t      *testing.T
	r      *Ring
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	r, err := Open(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- r.Run(ctx) }()
	t.Cleanup(cancel)
	return h
}

// stop cancels Run and waits for it; the streams must be closed already.
func (h *harness) stop() {
	h.t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		h.t.Fatal("Run did not return after all streams were closed")
	}
}

type pkt struct {
	ts   int64
	wire uint32
	data []byte
}

// packets makes n packets starting at t0, step apart, whose data carries
// their sequence number so order and completeness can be checked.
func packets(n int, t0 int64, step time.Duration) []pkt {
	ps := make([]pkt, n)
	for i := range ps {
		d := make([]byte, 60+(i*131)%1400)
		binary.BigEndian.PutUint32(d, uint32(i))
		ps[i] = pkt{ts: t0 + int64(i)*int64(step), wire: uint32(len(d) + 4), data: d}
	}
	return ps
}

// feed hands ps to s in blocks of 16, as a capture worker would.
func feed(s *Stream, ps []pkt) {
	b := capture.Block{Interface: "eth0", LinkType: capture.LinkTypeEthernet}
	for i := 0; i < len(ps); i += 16 {
		b.Packets = b.Packets[:0]
		for _, p := range ps[i:min(i+16, len(ps))] {
			b.Packets = append(b.Packets, capture.Packet{Timestamp: p.ts, Length: p.wire, Data: p.data})
		}
		s.HandleBlock(&b)
	}
}

// readFiles reads every indexed file with gopacket, the independent oracle,
// and checks the index entry against what the file holds.
func readFiles(t *testing.T, dir string, files []FileInfo) [][]pkt {
	t.Helper()
	var out [][]pkt
	for _, fi := range files {
		f, err := os.Open(filepath.Join(dir, fi.Name))
		if err != nil {
			t.Fatalf("opening indexed file: %v", err)
		}
		st, _ := f.Stat()
		if st.Size() != fi.Bytes {
			t.Errorf("%s: %d bytes on disk, index says %d", fi.Name, st.Size(), fi.Bytes)
		}
		var ps []pkt
		var read func() ([]byte, int64, int, error)
		if fi.Format == pcapio.FormatPcapng {
			r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
			if err != nil {
				t.Fatalf("%s: gopacket: %v", fi.Name, err)
			}
			read = func() ([]byte, int64, int, error) {
				d, ci, err := r.ReadPacketData()
				return d, ci.Timestamp.UnixNano(), ci.Length, err
			}
		} else {
			r, err := pcapgo.NewReader(f)
			if err != nil {
				t.Fatalf("%s: gopacket: %v", fi.Name, err)
			}
			read = func() ([]byte, int64, int, error) {
				d, ci, err := r.ReadPacketData()
				return d, ci.Timestamp.UnixNano(), ci.Length, err
			}
		}
		var wire uint64
		for {
			d, ts, l, err := read()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: gopacket after %d packets: %v", fi.Name, len(ps), err)
			}
			ps = append(ps, pkt{ts, uint32(l), d})
			wire += uint64(l)
		}
		f.Close()
		if uint64(len(ps)) != fi.Packets || wire != fi.WireBytes || len(ps) == 0 || ps[0].ts != fi.First || ps[len(ps)-1].ts != fi.Last {
			t.Errorf("%s: holds %d packets, %d wire bytes; index says %+v", fi.Name, len(ps), wire, fi)
		}
		out = append(out, ps)
	}
	return out
}

func flatten(files [][]pkt) []pkt {
	var all []pkt
	for _, f := range files {
		all = append(all, f...)
	}
	return all
}

func samePackets(t *testing.T, got, want []pkt) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d packets on disk, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ts != want[i].ts || got[i].wire != want[i].wire || string(got[i].data) != string(want[i].data) {
			t.Fatalf("packet %d differs: ts %d/%d wire %d/%d len %d/%d", i, got[i].ts, want[i].ts, got[i].wire, want[i].wire, len(got[i].data), len(want[i].data))
		}
	}
}

const t0 = int64(1_700_000_000_000_000_000) // 2023-11-14T22:13:20Z

func TestRotateBySize(t *testing.T) {
	for _, f := range []pcapio.Format{pcapio.FormatPcap, pcapio.FormatPcapng} {
		t.Run(string(f), func(t *testing.T) {
			dir := t.TempDir()
			const limit = 20_000
			h := start(t, Config{Dir: dir, Node: "node_1", Format: f, FileMaxBytes: limit, BufferBytes: 8 << 10, QueueBytes: 64 << 20})
			s := h.r.NewStream("eth0", 0, capture.LinkTypeEthernet, 65535, nil)
			want := packets(2000, t0, time.Millisecond)
			feed(s, want)
			s.Close()
			h.stop()
			files := h.r.Files()
			if len(files) < 50 {
				t.Fatalf("%d files, expected the 2000 packets to need more than 50", len(files))
			}
			got := readFiles(t, dir, files)
			hdr := len(pcapio.AppendFileHeader(nil, f, capture.LinkTypeEthernet, 65535, "eth0"))
			for i, fi := range files {
				if fi.Bytes > limit {
					t.Errorf("%s: %d bytes exceed the limit of %d", fi.Name, fi.Bytes, limit)
				}
				// Exact: the file is full unless the next packet would not fit.
				if i+1 < len(files) {
					next := got[i+1][0]
					if fi.Bytes+int64(pcapio.RecordLen(f, len(next.data))) <= limit {
						t.Errorf("%s rotated at %d bytes although the next record fit", fi.Name, fi.Bytes)
					}
				}
				size := int64(hdr)
				for _, p := range got[i] {
					size += int64(pcapio.RecordLen(f, len(p.data)))
				}
				if size != fi.Bytes {
					t.Errorf("%s: %d bytes, its records and header add up to %d", fi.Name, fi.Bytes, size)
				}
				if !strings.HasSuffix(fi.Name, "_node-1_eth0_0"+f.Ext()) || fi.Node != "node_1" {
					t.Errorf("file name %s, node %q", fi.Name, fi.Node)
				}
				if i > 0 && fi.Name <= files[i-1].Name {
					t.Errorf("names do not sort by time: %s after %s", fi.Name, files[i-1].Name)
				}
			}
			samePackets(t, flatten(got), want)
			st := h.r.StreamStats()[0]
			if st.Packets != 2000 || st.Files != uint64(len(files)) || st.DropsQueueFull != 0 || st.DropsWriteError != 0 {
				t.Errorf("stream stats %+v", st)
			}
		})
	}
}

func TestRotateByDuration(t *testing.T) {
	dir := t.TempDir()
	h := start(t, Config{Dir: dir, Node: "n", FileMaxDuration: time.Minute})
	s := h.r.NewStream("eth0", 3, capture.LinkTypeEthernet, 65535, nil)
	base := time.Date(2024, 5, 1, 12, 0, 30, 0, time.UTC).UnixNano()
	want := packets(600, base, time.Second) // 12:00:30 .. 12:10:29
	feed(s, want)
	s.Close()
	h.stop()
	files := h.r.Files()
	got := readFiles(t, dir, files)
	if len(files) != 11 {
		t.Fatalf("%d files, want 11 (a part minute, 9 whole minutes, a part minute)", len(files))
	}
	for i, fi := range files {
		wantFirst := time.Date(2024, 5, 1, 12, i, 0, 0, time.UTC)
		if i == 0 {
			wantFirst = wantFirst.Add(30 * time.Second)
		}
		if fi.First != wantFirst.UnixNano() || time.Unix(0, fi.Last).Truncate(time.Minute) != time.Unix(0, fi.First).Truncate(time.Minute) {
			t.Errorf("file %d spans %v..%v, want it to start at %v within one minute", i, time.Unix(0, fi.First).UTC(), time.Unix(0, fi.Last).UTC(), wantFirst)
		}
		wantName := wantFirst.Format("20060102T150405.000000000Z") + "_n_eth0_3.pcap"
		if fi.Name != wantName || fi.Worker != 3 || fi.Interface != "eth0" {
			t.Errorf("file %d named %s worker %d, want %s worker 3", i, fi.Name, fi.Worker, wantName)
		}
	}
	samePackets(t, flatten(got), want)
}

// TestDurationIdlePublish: a file whose window has passed is published by
// the writer's ticker although no further packet arrives.
func TestDurationIdlePublish(t *testing.T) {
	dir := t.TempDir()
	h := start(t, Config{Dir: dir, FileMaxDuration: time.Second, FlushInterval: 10 * time.Millisecond})
	s := h.r.NewStream("eth0", 0, capture.LinkTypeEthernet, 65535, nil)
	feed(s, packets(5, time.Now().Add(-time.Hour).UnixNano(), time.Millisecond))
	s.Idle(time.Now().UnixNano())
	deadline := time.Now().Add(5 * time.Second)
	for len(h.r.Files()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(h.r.Files()); n != 1 {
		t.Fatalf("%d files published while the stream was idle, want 1", n)
	}
	s.Close()
	h.stop()
}

// writeFiles writes n files of 10 packets each, one second apart, ending
// at end, and returns the ring stopped.
func writeFiles(t *testing.T, cfg Config, n int, end int64) *harness {
	t.Helper()
	cfg.FileMaxDuration = time.Second
	h := start(t, cfg)
	s := h.r.NewStream("eth0", 0, capture.LinkTypeEthernet, 65535, nil)
	feed(s, packets(10*n, end-int64(n)*int64(time.Second), 100*time.Millisecond))
	s.Close()
	h.stop()
	return h
}

func evictions(st Stats, reason EvictReason) Eviction {
	for _, e := range st.Evictions {
		if e.Reason == reason {
			return e
		}
	}
	return Eviction{}
}

func TestRetention(t *testing.T) {
	// Age is judged against a clock frozen at the end of the packets, so the
	// test means the same however slow the machine is.
	now := time.Now().Truncate(time.Second).UnixNano()
	frozen := func() time.Time { return time.Unix(0, now) }
	all := packets(120, now-12*int64(time.Second), 100*time.Millisecond)
	var last3 int64
	for _, p := range all[90:] {
		last3 += int64(pcapio.RecordLen(pcapio.FormatPcap, len(p.data)))
	}
	last3 += 3 * 24
	cases := []struct {
		name   string
		cfg    Config
		keep   int
		reason EvictReason
	}{
		{"max_files", Config{MaxFiles: 4}, 4, EvictMaxFiles},
		{"max_bytes", Config{MaxBytes: last3}, 3, EvictMaxBytes},
		{"max_bytes-1", Config{MaxBytes: last3 - 1}, 2, EvictMaxBytes},
		{"max_age", Config{MaxAge: 6600 * time.Millisecond, Now: frozen}, 7, EvictMaxAge},
		{"together", Config{MaxFiles: 6, MaxBytes: 1 << 30, MaxAge: time.Hour}, 6, EvictMaxFiles},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.cfg.Dir = dir
			h := writeFiles(t, c.cfg, 12, now)
			files := h.r.Files()
			if len(files) != c.keep {
				t.Fatalf("%d files kept, want %d", len(files), c.keep)
			}
			// The newest survive.
			samePackets(t, flatten(readFiles(t, dir, files)), all[120-10*c.keep:])
			ev := evictions(h.r.Stats(), c.reason)
			if ev.Files != uint64(12-c.keep) || ev.Packets != uint64(10*(12-c.keep)) {
				t.Fatalf("evictions %+v, want %d files under %s", h.r.Stats().Evictions, 12-c.keep, c.reason)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != c.keep+1 { // files and the index
				t.Fatalf("%d directory entries, want %d files and the index", len(entries), c.keep)
			}
		})
	}
}

func TestIndexRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Node: "n"}
	h := writeFiles(t, cfg, 5, t0)
	want := h.r.Files()
	reopen := func() []FileInfo {
		t.Helper()
		r, err := Open(Config{Dir: dir, Node: "n", FileMaxDuration: time.Second}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return r.Files()
	}
	same := func(got, want []FileInfo) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%d files after restart, want %d", len(got), len(want))
		}
		for i := range want {
			w := want[i]
			if got[i] != w {
				t.Fatalf("entry %d: %+v, want %+v", i, got[i], w)
			}
		}
	}
	same(reopen(), want)

	os.Remove(filepath.Join(dir, indexName))
	same(reopen(), want) // Drops are 0 here, so a rebuilt entry is identical

	f, _ := os.OpenFile(filepath.Join(dir, indexName), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("{garbage\n")
	f.Close()
	same(reopen(), want)

	os.Remove(filepath.Join(dir, want[2].Name))
	same(reopen(), append(want[:2:2], want[3:]...))
	b, _ := os.ReadFile(filepath.Join(dir, indexName))
	if strings.Contains(string(b), want[2].Name) {
		t.Fatal("index still lists the file deleted by hand")
	}
}

func TestCrashRecovery(t *testing.T) {
	for _, f := range []pcapio.Format{pcapio.FormatPcap, pcapio.FormatPcapng} {
		t.Run(string(f), func(t *testing.T) {
			dir := t.TempDir()
			name := "20231114T221320.000000000Z_n_eth0_0" + f.Ext()
			want := packets(3, t0, time.Millisecond)
			b := pcapio.AppendFileHeader(nil, f, capture.LinkTypeEthernet, 65535, "eth0")
			for _, p := range want {
				b = pcapio.AppendRecord(b, f, p.ts, p.wire, p.data)
			}
			whole := len(b)
			b = pcapio.AppendRecord(b, f, t0+5, 100, make([]byte, 100))
			cut := b[:whole+40]
			os.WriteFile(filepath.Join(dir, partName(name)), cut, 0o640)
			// One with no whole packet is removed.
			empty := "20231114T221321.000000000Z_n_eth0_1" + f.Ext()
			hdr := len(pcapio.AppendFileHeader(nil, f, capture.LinkTypeEthernet, 65535, "eth0"))
			os.WriteFile(filepath.Join(dir, partName(empty)), b[:hdr+10], 0o640)

			r, err := Open(Config{Dir: dir, FileMaxBytes: 1 << 20}, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			files := r.Files()
			if len(files) != 1 || files[0].Name != name || files[0].Bytes != int64(whole) || files[0].Worker != 0 || files[0].Interface != "eth0" {
				t.Fatalf("index after recovery: %+v", files)
			}
			samePackets(t, flatten(readFiles(t, dir, files)), want)
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.HasSuffix(e.Name(), ".part") {
					t.Errorf("%s left behind", e.Name())
				}
			}
		})
	}
}

// TestShutdownDrains: everything handed in before Close is on disk when
// Run returns, across many streams.
func TestShutdownDrains(t *testing.T) {
	dir := t.TempDir()
	h := start(t, Config{Dir: dir, FileMaxBytes: 1 << 20, Format: pcapio.FormatPcapng})
	want := packets(3000, t0, time.Microsecond)
	done := make(chan struct{})
	for w := range 4 {
		s := h.r.NewStream("eth0", w, capture.LinkTypeEthernet, 65535, nil)
		go func() {
			feed(s, want)
			s.Close()
			done <- struct{}{}
		}()
	}
	h.cancel() // Run must still wait for the streams
	for range 4 {
		<-done
	}
	h.stop()
	per := map[int][]pkt{}
	files := h.r.Files()
	got := readFiles(t, dir, files)
	for i, fi := range files {
		per[fi.Worker] = append(per[fi.Worker], got[i]...)
	}
	for w := range 4 {
		samePackets(t, per[w], want)
	}
	b, _ := os.ReadFile(filepath.Join(dir, indexName))
	if n := strings.Count(string(b), "\n"); n != len(files) {
		t.Fatalf("index has %d lines for %d files", n, len(files))
	}
}

func TestQueueFull(t *testing.T) {
	dir := t.TempDir()
	h := start(t, Config{Dir: dir, FileMaxBytes: 1 << 30, BufferBytes: 4096, QueueBytes: 4096})
	s := h.r.NewStream("eth0", 0, capture.LinkTypeEthernet, 65535, nil)
	want := packets(20000, t0, time.Microsecond)
	feed(s, want)
	s.Close()
	h.stop()
	st := s.stats()
	if st.DropsQueueFull == 0 {
		t.Fatal("no queue-full drops with a one-buffer queue and a tight feed loop")
	}
	files := h.r.Files()
	onDisk := uint64(len(flatten(readFiles(t, dir, files))))
	if onDisk+st.DropsQueueFull != uint64(len(want)) || st.Packets != onDisk {
		t.Fatalf("%d on disk + %d dropped != %d handed in (stats %+v)", onDisk, st.DropsQueueFull, len(want), st)
	}
	var fileDrops uint64
	for _, fi := range files {
		fileDrops += fi.Drops
	}
	if fileDrops > st.DropsQueueFull {
		t.Fatalf("files record %d drops, only %d happened", fileDrops, st.DropsQueueFull)
	}
}

func TestHandleBlockNoAlloc(t *testing.T) {
	h := start(t, Config{Dir: t.TempDir(), FileMaxBytes: 1 << 30})
	s := h.r.NewStream("eth0", 0, capture.LinkTypeEthernet, 65535, nil)
	b := capture.Block{Packets: make([]capture.Packet, 64)}
	for i := range b.Packets {
		b.Packets[i] = capture.Packet{Timestamp: t0, Length: 1500, Data: make([]byte, 1500)}
	}
	feed(s, packets(1, t0, 0)) // first buffer made outside the measurement
	allocs := testing.AllocsPerRun(20, func() { s.HandleBlock(&b) })
	// A buffer is made at most once per QueueBytes/BufferBytes, amortised
	// to zero per packet; with warm buffers there must be none.
	if allocs > 1 {
		t.Fatalf("HandleBlock of 64 packets allocates %.1f times", allocs)
	}
	s.Close()
	h.stop()
}

func BenchmarkStreamHandleBlock(b *testing.B) {
	for _, size := range []int{64, 1514} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			// The capture side alone: serialising records into buffers and
			// handing full ones over. The writer (disk) is measured by the
			// live benchmark; here a goroutine gives every buffer straight
			// back, so a drop would mean the capture side itself is too slow.
			const nbuf = 32
			s := &Stream{
				ring:    &Ring{cfg: Config{BufferBytes: defaultBufferBytes}},
				format:  pcapio.FormatPcap,
				snaplen: 262144,
				nbuf:    nbuf,
				flushNs: int64(defaultFlushInterval),
				full:    make(chan *buffer, nbuf),
				free:    make(chan *buffer, nbuf),
			}
			go func() {
				for buf := range s.full {
					s.free <- buf
				}
			}()
			blk := capture.Block{Packets: make([]capture.Packet, 256)}
			data := make([]byte, size)
			for i := range blk.Packets {
				blk.Packets[i] = capture.Packet{Timestamp: t0 + int64(i), Length: uint32(size), Data: data}
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(blk.Packets) * size))
			for b.Loop() {
				s.HandleBlock(&blk)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(blk.Packets)), "ns/packet")
			s.Close()
			if d := s.dropsQueue.Load(); d > 0 {
				b.Fatalf("%d packets dropped with the buffers recycled at once", d)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string // substring of the error, "" for none
	}{
		{Config{Dir: "d", FileMaxBytes: 1 << 20}, ""},
		{Config{Dir: "d", FileMaxDuration: time.Minute, Format: pcapio.FormatPcapng}, ""},
		{Config{FileMaxBytes: 1 << 20}, "Dir"},
		{Config{Dir: "d"}, "FileMaxBytes and FileMaxDuration"},
		{Config{Dir: "d", FileMaxBytes: 1 << 20, Format: "erf"}, `Format "erf"`},
		{Config{Dir: "d", FileMaxBytes: 10}, "FileMaxBytes 10"},
		{Config{Dir: "d", FileMaxDuration: time.Millisecond}, "FileMaxDuration 1ms"},
		{Config{Dir: "d", FileMaxBytes: 1 << 20, MaxBytes: -1}, "MaxBytes -1"},
		{Config{Dir: "d", FileMaxBytes: 1 << 20, MaxFiles: -1}, "MaxFiles -1"},
		{Config{Dir: "d", FileMaxBytes: 1 << 20, MaxAge: -time.Second}, "MaxAge -1s"},
		{Config{Dir: "d", FileMaxBytes: 1 << 20, MinFreePercent: 100}, "MinFreePercent 100"},
		{Config{Dir: "d", FileMaxBytes: 1 << 20, BufferBytes: 100}, "BufferBytes 100"},
		{Config{Dir: "d", FileMaxBytes: 1 << 20, BufferBytes: 1 << 20, QueueBytes: 1000}, "QueueBytes 1000"},
		{Config{Dir: "d", FileMaxBytes: 1 << 20, FlushInterval: -time.Second}, "FlushInterval -1s"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", c.cfg, err, c.want)
		}
	}
	c := Config{Dir: "d", FileMaxBytes: 1 << 20}
	c.Validate()
	if c.Format != pcapio.FormatPcap || c.BufferBytes != 1<<20 || c.QueueBytes != 32<<20 || c.FlushInterval != 200*time.Millisecond {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestWritable(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(Config{Dir: filepath.Join(dir, "sub"), FileMaxBytes: 1 << 20}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Writable(); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() != 0 {
		os.Chmod(filepath.Join(dir, "sub"), 0o500)
		if err := r.Writable(); err == nil {
			t.Fatal("Writable succeeded on a read-only directory")
		}
	}
}

// TestDiskFull fills a 2 MiB tmpfs: capture never blocks, the oldest file
// is evicted to make room (disk_full), every file left is valid, and what
// could not be written is counted.
func TestDiskFull(t *testing.T) {
	// Files smaller than the volume: evicting the oldest makes room.
	t.Run("evict", func(t *testing.T) { diskFull(t, 600<<10, true) })
	// A file larger than the volume: eviction cannot help it, so writes
	// fail, are undone, and their packets are counted as dropped.
	t.Run("drop", func(t *testing.T) { diskFull(t, 4<<20, false) })
}

func diskFull(t *testing.T, fileMax int64, evict bool) {
	dir := filepath.Join(t.TempDir(), "small")
	os.Mkdir(dir, 0o750)
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("disk-full test needs root to mount a tmpfs, and CI must run it")
		}
		t.Skip("not root: cannot mount a small tmpfs to fill")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mounting tmpfs: %v %s", err, out)
		}
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	h := start(t, Config{Dir: dir, FileMaxBytes: fileMax, BufferBytes: 64 << 10, QueueBytes: 64 << 20})
	s := h.r.NewStream("eth0", 0, capture.LinkTypeEthernet, 65535, nil)
	want := packets(8000, t0, time.Millisecond) // about 6 MiB
	feed(s, want)
	s.Close()
	h.stop()
	st, ss := h.r.Stats(), s.stats()
	if evict && evictions(st, EvictDiskFull).Files == 0 {
		t.Errorf("no disk_full evictions: %+v", st.Evictions)
	}
	if !evict && (ss.DropsWriteError == 0 || st.WriteErrors == 0) {
		t.Errorf("no write drops with a file larger than the volume: %+v %+v", st, ss)
	}
	if ss.DropsQueueFull != 0 {
		t.Errorf("queue drops %d, the queue was large enough", ss.DropsQueueFull)
	}
	files := h.r.Files()
	onDisk := uint64(len(flatten(readFiles(t, dir, files))))
	if ss.Packets+ss.DropsWriteError != uint64(len(want)) {
		t.Errorf("%d written + %d write drops != %d handed in", ss.Packets, ss.DropsWriteError, len(want))
	}
	if onDisk == 0 || onDisk > ss.Packets {
		t.Errorf("%d packets on disk, %d written", onDisk, ss.Packets)
	}
	if ss.DropsWriteError > 0 && st.WriteErrors == 0 {
		t.Errorf("write drops without write errors: %+v", st)
	}
	t.Logf("disk full: %d files kept, %+v, stream %+v", len(files), st.Evictions[4], ss)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".part") {
			t.Errorf("%s left behind", e.Name())
		}
	}
}

// TestSetRetention tightens retention on a running ring: the oldest files go
// at once; an invalid set is refused and changes nothing.
func TestSetRetention(t *testing.T) {
	now := time.Now().Truncate(time.Second).UnixNano()
	dir := t.TempDir()
	h := writeFiles(t, Config{Dir: dir}, 8, now)
	if n := len(h.r.Files()); n != 8 {
		t.Fatalf("%d files before, want 8", n)
	}
	if err := h.r.SetRetention(Retention{MaxFiles: -1}); err == nil || !strings.Contains(err.Error(), "MaxFiles -1") {
		t.Fatalf("invalid retention accepted: %v", err)
	}
	if n := len(h.r.Files()); n != 8 {
		t.Fatalf("%d files after a refused change, want 8", n)
	}
	if err := h.r.SetRetention(Retention{MaxFiles: 3}); err != nil {
		t.Fatal(err)
	}
	files := h.r.Files()
	if len(files) != 3 {
		t.Fatalf("%d files after MaxFiles 3, want 3", len(files))
	}
	if ev := evictions(h.r.Stats(), EvictMaxFiles); ev.Files != 5 {
		t.Fatalf("evictions %+v, want 5 under max_files", ev)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Fatalf("%d directory entries, want 3 files and the index", len(entries))
	}
}

// TestReconcileDropsVanishedFiles deletes published files behind the ring's
// back: the next reconcile drops them from the index and counts them.
func TestReconcileDropsVanishedFiles(t *testing.T) {
	now := time.Now().Truncate(time.Second).UnixNano()
	dir := t.TempDir()
	h := writeFiles(t, Config{Dir: dir}, 5, now)
	files := h.r.Files()
	for _, f := range files[1:3] {
		if err := os.Remove(filepath.Join(dir, f.Name)); err != nil {
			t.Fatal(err)
		}
	}
	h.r.reconcile()
	left := h.r.Files()
	if len(left) != 3 || left[0].Name != files[0].Name || left[1].Name != files[3].Name {
		t.Fatalf("index after reconcile: %v", left)
	}
	st := h.r.Stats()
	if st.Vanished != 2 || st.Files != 3 || st.Bytes != files[0].Bytes+files[3].Bytes+files[4].Bytes {
		t.Fatalf("stats after reconcile: %+v", st)
	}
	idx, err := readIndex(filepath.Join(dir, indexName))
	if err != nil || len(idx) != 3 {
		t.Fatalf("persisted index: %d entries, %v", len(idx), err)
	}
}
