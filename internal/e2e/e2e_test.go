package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/sonde-project/sonde/internal/netnstest"
)

// paced sending keeps these tests about correctness, not about how fast the
// daemon drains its ring: 200 frames every 2 ms is still ~100k frames/s.
const (
	chunk = 200
	pause = 2 * time.Millisecond
)

func sender(t *testing.T, p *netnstest.Pair) *netnstest.Sender {
	t.Helper()
	s, err := netnstest.NewSender(p.A.NS, p.A.Iface)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestEveryFrameOnceInOrder(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "2")
	s := sender(t, p)

	mixed := p.Flow(1).Frames(netnstest.MixedSizes(10000, 1))
	if err := s.SendPaced(mixed, chunk, pause); err != nil {
		t.Fatal(err)
	}
	// A burst, unpaced: 2000 frames of 1000 to 1514 bytes (no jumbo frames).
	sizes := make([]int, 2000)
	for i := range sizes {
		sizes[i] = 1000 + i%515
	}
	burst := p.Flow(2).Frames(sizes)
	if err := s.Send(burst); err != nil {
		t.Fatal(err)
	}
	m := d.waitCaptured(float64(len(mixed)+len(burst)), p.B.Iface)
	if kd := m.sum("sonde_capture_kernel_drops_total"); kd != 0 {
		t.Errorf("sonde_capture_kernel_drops_total = %v after %d frames, want 0", kd, len(mixed)+len(burst))
	}
	d.stop()

	recs := ringRecords(t, dir, p.A.MAC, false)
	var r1, r2 []capRecord
	for _, r := range recs {
		stream, _, err := netnstest.Parse(r.Data)
		if err != nil {
			t.Fatalf("record in %s: %v", r.file, err)
		}
		if stream == 1 {
			r1 = append(r1, r)
		} else {
			r2 = append(r2, r)
		}
	}
	compareFrames(t, "mixed sizes", mixed, r1)
	compareFrames(t, "burst", burst, r2)
	files := publishedFiles(t, dir)
	if n := tcpdumpCount(t, files, p.A.MAC.String()); n != len(mixed)+len(burst) {
		t.Errorf("tcpdump -r counts %d frames from the sender, sent %d", n, len(mixed)+len(burst))
	}
	checkIndexMatchesDisk(t, dir)
}

func TestVLANTagRestored(t *testing.T) {
	p := netnstest.New(t)
	// veth strips the tag on receive (into the skb, as hardware offload
	// would); ask for it explicitly where the driver lets us.
	netnstest.Run(p.B.NS, "ethtool", "-K", p.B.Iface, "rxvlan", "on")
	dir := t.TempDir()
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface)
	f := p.Flow(3)
	f.VLAN = 0xa000 | 1234 // priority 5, VLAN 1234
	sizes := netnstest.MixedSizes(1000, 3)
	for i := range sizes {
		sizes[i] = max(sizes[i], 64) // 60 bytes + tag
	}
	frames := f.Frames(sizes)
	if err := sender(t, p).SendPaced(frames, chunk, pause); err != nil {
		t.Fatal(err)
	}
	d.waitCaptured(float64(len(frames)), p.B.Iface)
	d.stop()
	compareFrames(t, "802.1Q tagged", frames, ringRecords(t, dir, p.A.MAC, false))
	out, err := netnstest.Run(p.B.NS, "tcpdump", "-n", "-e", "-c", "1", "-r", publishedFiles(t, dir)[0], "vlan 1234")
	if err != nil || !strings.Contains(string(out), "vlan 1234, p 5") {
		t.Errorf("tcpdump does not see the restored tag: %v: %s", err, out)
	}
}

func TestSnaplen(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--snaplen", "96")
	frames := p.Flow(4).Frames(netnstest.MixedSizes(2000, 4))
	if err := sender(t, p).SendPaced(frames, chunk, pause); err != nil {
		t.Fatal(err)
	}
	d.waitCaptured(float64(len(frames)), p.B.Iface)
	d.stop()
	recs := ringRecords(t, dir, p.A.MAC, false)
	if len(recs) != len(frames) {
		t.Fatalf("%d records, sent %d", len(recs), len(frames))
	}
	for i, r := range recs {
		want := frames[i][:min(96, len(frames[i]))]
		if string(r.Data) != string(want) || r.OrigLen != uint32(len(frames[i])) {
			t.Fatalf("record %d: caplen %d len %d, want caplen %d len %d (or bytes differ)",
				i, len(r.Data), r.OrigLen, len(want), len(frames[i]))
		}
	}
	for _, f := range publishedFiles(t, dir) {
		pf, err := netnstest.ReadPcap(f)
		if err != nil {
			t.Fatal(err)
		}
		if pf.Snaplen != 96 {
			t.Errorf("%s: file header snaplen %d, want 96", f, pf.Snaplen)
		}
	}
	if n := tcpdumpCount(t, publishedFiles(t, dir), p.A.MAC.String()); n != len(frames) {
		t.Errorf("tcpdump -r counts %d, want %d", n, len(frames))
	}
}

func TestTwoInterfaces(t *testing.T) {
	netnstest.Root(t)
	snd := netnstest.Namespace(t, "sndS")
	capNS := netnstest.Namespace(t, "sndC")
	l1 := netnstest.Link(t, snd, capNS)
	l2 := netnstest.Link(t, snd, capNS)
	dir := t.TempDir()
	d := startDaemon(t, capNS, dir, "--interface", l1.B.Iface, "--interface", l2.B.Iface)
	f1 := l1.Flow(5).Frames(netnstest.MixedSizes(3000, 5))
	f2 := l2.Flow(6).Frames(netnstest.MixedSizes(3000, 6))
	s1, s2 := sender(t, l1), sender(t, l2)
	errc := make(chan error, 1)
	go func() { errc <- s2.SendPaced(f2, chunk, pause) }()
	if err := s1.SendPaced(f1, chunk, pause); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	d.waitCaptured(float64(len(f1)), l1.B.Iface)
	d.waitCaptured(float64(len(f2)), l2.B.Iface)
	d.stop()
	for _, c := range []struct {
		l      *netnstest.Pair
		frames [][]byte
	}{{l1, f1}, {l2, f2}} {
		recs := ringRecords(t, dir, c.l.A.MAC, false)
		for _, r := range recs {
			if !strings.Contains(r.file, "_"+c.l.B.Iface+"_") {
				t.Fatalf("frame from %s found in %s", c.l.B.Iface, r.file)
			}
		}
		compareFrames(t, c.l.B.Iface, c.frames, recs)
	}
	for _, e := range readIndex(t, dir) {
		if e.Interface != l1.B.Iface && e.Interface != l2.B.Iface {
			t.Errorf("index entry %s names interface %q", e.Name, e.Interface)
		}
	}
	checkIndexMatchesDisk(t, dir)
}

func TestRotationAndRetention(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "1",
		"--file-max-bytes", "1MiB", "--ring-max-files", "3")
	sizes := make([]int, 7000) // ~10 MiB
	for i := range sizes {
		sizes[i] = netnstest.MaxFrame
	}
	frames := p.Flow(7).Frames(sizes)
	if err := sender(t, p).SendPaced(frames, chunk, pause); err != nil {
		t.Fatal(err)
	}
	d.waitCaptured(float64(len(frames)), p.B.Iface)
	// Capture has read everything; the writer may still be publishing (and
	// so evicting) behind it on a busy machine.
	waitUntil(t, 15*time.Second, "evictions after ~10 MiB into a 3 x 1 MiB ring", func() bool {
		return d.metrics().sum("sonde_ring_evicted_packets_total") > 0
	})
	d.stop()
	files := publishedFiles(t, dir)
	if len(files) == 0 || len(files) > 3 {
		t.Fatalf("%d published files, want 1..3: %v", len(files), files)
	}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 1<<20 {
			t.Errorf("%s is %d bytes, more than --file-max-bytes 1MiB", f, st.Size())
		}
	}
	checkIndexMatchesDisk(t, dir)
	// Newest kept: what remains is a gap-free run of sequence numbers that
	// ends with the last frame sent.
	recs := ringRecords(t, dir, p.A.MAC, false)
	if len(recs) == 0 {
		t.Fatal("no frames left in the ring")
	}
	first := len(frames) - len(recs)
	compareFrames(t, "newest frames", frames[first:], recs)
}

func TestKill9ThenRestart(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	flags := []string{"--interface", p.B.Iface, "--workers", "1", "--file-max-bytes", "256KiB"}
	d := startDaemon(t, p.B.NS, dir, flags...)
	s := sender(t, p)
	f := p.Flow(8)

	var stop atomic.Bool
	var sent atomic.Uint64
	done := make(chan error, 1)
	go func() {
		for seq := uint64(0); !stop.Load(); seq += 100 {
			batch := make([][]byte, 100)
			for i := range batch {
				batch[i] = f.Frame(seq+uint64(i), netnstest.MinFrame+int((seq+uint64(i))%1455))
			}
			if err := s.Send(batch); err != nil {
				done <- err
				return
			}
			sent.Add(100)
			time.Sleep(time.Millisecond)
		}
		done <- nil
	}()
	waitUntil(t, 20*time.Second, "3 published files", func() bool { return len(publishedFiles(t, dir)) >= 3 })
	d.kill()
	killedAt := sent.Load()
	time.Sleep(20 * time.Millisecond)
	stop.Store(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	before := map[string][32]byte{}
	for _, fn := range publishedFiles(t, dir) {
		b, err := os.ReadFile(fn)
		if err != nil {
			t.Fatal(err)
		}
		before[filepath.Base(fn)] = sha256.Sum256(b)
	}
	parts := partFiles(t, dir)
	whole := 0
	for _, fn := range parts {
		whole += wholeRecords(t, fn)
	}
	t.Logf("after kill -9 at ~%d frames sent: %d published files, .part files %v with %d whole records", killedAt, len(before), parts, whole)

	d2 := startDaemon(t, p.B.NS, dir, flags...)
	if left := partFiles(t, dir); len(left) > 0 {
		// Repair belongs to start-up, before ready.
		t.Errorf(".part files still present once the restarted daemon is ready: %v", left)
	}
	d2.stop()

	for name, sum := range before {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("file published before the kill is gone after restart: %v", err)
			continue
		}
		if sha256.Sum256(b) != sum {
			t.Errorf("%s changed across kill -9 and restart", name)
		}
	}
	var after []string
	for _, fn := range publishedFiles(t, dir) {
		capinfosPackets(t, fn) // every file, repaired ones included, must be readable
		if _, ok := before[filepath.Base(fn)]; !ok {
			after = append(after, filepath.Base(fn))
		}
	}
	// A .part file with at least one whole record must come back published;
	// one killed before its first record was complete holds no packet and
	// is rightly deleted.
	if whole > 0 && len(after) == 0 {
		t.Errorf("the .part files %v held %d whole records but nothing was published on restart", parts, whole)
	}
	checkIndexMatchesDisk(t, dir)

	// Gap-free prefix: sequence numbers 0..n-1, each once, in order.
	recs := ringRecords(t, dir, p.A.MAC, false)
	for i, r := range recs {
		_, seq, err := netnstest.Parse(r.Data)
		if err != nil {
			t.Fatalf("record %d in %s: %v", i, r.file, err)
		}
		if seq != uint64(i) {
			t.Fatalf("record %d (in %s) has sequence %d: the ring is not a gap-free prefix", i, r.file, seq)
		}
		if want := f.Frame(seq, netnstest.MinFrame+int(seq%1455)); string(want) != string(r.Data) {
			t.Fatalf("record %d differs from the frame sent", i)
		}
	}
	if uint64(len(recs)) > killedAt+200 {
		t.Errorf("%d frames on disk, but only ~%d were sent before the kill", len(recs), killedAt)
	}
	t.Logf("%d frames on disk of ~%d sent before kill -9", len(recs), killedAt)
}

func TestTinyTmpfsKeepsRunningAndAccountsDrops(t *testing.T) {
	p := netnstest.New(t)
	dir := netnstest.TmpFS(t, "4m")
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "1",
		"--min-free-percent", "0", "--ring-max-bytes", "1GiB", "--file-max-bytes", "256KiB")
	sizes := make([]int, 14000) // ~20 MiB
	for i := range sizes {
		sizes[i] = 1500
	}
	frames := p.Flow(9).Frames(sizes)
	if err := sender(t, p).SendPaced(frames, chunk, pause); err != nil {
		t.Fatal(err)
	}
	d.waitCaptured(float64(len(frames)), p.B.Iface)
	if d.exited() {
		t.Fatalf("sonde died on a full data dir: %v", d.waitErr)
	}
	code, body, err := d.get("/api/health")
	if err != nil || code != 200 {
		t.Errorf("/api/health: status %d, %v, %s", code, err, body)
	}
	// Let the writer settle (idle flush), then the counters must add up
	// with what is on disk, the file in progress included.
	var m metrics
	prev := -1.0
	waitUntil(t, 10*time.Second, "metrics to settle", func() bool {
		time.Sleep(500 * time.Millisecond)
		m = d.metrics()
		cur := m.sum("sonde_ring_evicted_packets_total") + m.sum("sonde_capture_user_drops_total") + m.sum("sonde_ring_write_errors_total")
		settled := cur == prev
		prev = cur
		return settled
	})
	captured := m.sum("sonde_capture_packets_total")
	evicted := m.sum("sonde_ring_evicted_packets_total")
	userDrops := m.sum("sonde_capture_user_drops_total")
	writeErrs := m.sum("sonde_ring_write_errors_total")
	if evicted+userDrops == 0 {
		t.Errorf("20 MiB into a 4 MiB tmpfs, yet no evictions and no user drops counted")
	}
	onDisk := 0
	for _, fn := range append(publishedFiles(t, dir), partFiles(t, dir)...) {
		pf, err := netnstest.ReadPcap(fn)
		if err != nil {
			t.Fatalf("file on the full tmpfs: %v", err)
		}
		onDisk += len(pf.Records)
	}
	t.Logf("captured %v = on disk %d + evicted %v + user drops %v? (write errors %v)", captured, onDisk, evicted, userDrops, writeErrs)
	if captured != float64(onDisk)+evicted+userDrops {
		t.Errorf("drop accounting does not add up: sonde_capture_packets_total %v != %d in files + %v evicted + %v user drops (= %v)",
			captured, onDisk, evicted, userDrops, float64(onDisk)+evicted+userDrops)
	}
	d.stop()
	checkIndexMatchesDisk(t, dir)
}

func TestSIGTERMUnderTraffic(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface)
	s := sender(t, p)
	var stop atomic.Bool
	done := make(chan error, 1)
	go func() {
		f := p.Flow(10)
		for seq := uint64(0); !stop.Load(); seq++ {
			if err := s.Send([][]byte{f.Frame(seq, 600)}); err != nil {
				done <- err
				return
			}
			if seq%100 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		done <- nil
	}()
	time.Sleep(time.Second)
	d.stop() // exit 0 within 5 s, no .part file
	stop.Store(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	files := publishedFiles(t, dir)
	if len(files) == 0 {
		t.Fatal("no file published on SIGTERM")
	}
	for _, fn := range files {
		capinfosPackets(t, fn)
	}
	checkIndexMatchesDisk(t, dir)
	recs := ringRecords(t, dir, p.A.MAC, false)
	for i, r := range recs {
		if _, seq, _ := netnstest.Parse(r.Data); seq != uint64(i) {
			t.Fatalf("record %d has sequence %d: frames missing before SIGTERM", i, seq)
		}
	}
}

// TestPcapngFiles checks --file-format pcapng: the files open in tshark and
// tcpdump as they are, hold every frame byte for byte (read back with
// gopacket's independent pcapng reader) with nanosecond timestamps, and name
// their interface.
func TestPcapngFiles(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "1", "--file-format", "pcapng")
	sent := p.Flow(11).Frames(netnstest.MixedSizes(2000, 11))
	if err := sender(t, p).SendPaced(sent, chunk, pause); err != nil {
		t.Fatal(err)
	}
	d.waitCaptured(float64(len(sent)), p.B.Iface)
	d.stop()

	files, err := filepath.Glob(filepath.Join(dir, "*.pcapng"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no published .pcapng file (%v)", err)
	}
	if n := tcpdumpCount(t, files, p.A.MAC.String()); n != len(sent) {
		t.Errorf("tcpdump -r counts %d frames from the sender, sent %d", n, len(sent))
	}
	var got []capRecord
	tsharkFrames := 0
	for _, f := range files {
		out, err := exec.Command("tshark", "-r", f, "-Y", "eth.src == "+p.A.MAC.String(),
			"-T", "fields", "-e", "frame.interface_name", "-e", "frame.time_epoch").Output()
		if err != nil {
			t.Fatalf("tshark -r %s: %v", f, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			name, ts, _ := strings.Cut(line, "\t")
			if name != p.B.Iface {
				t.Fatalf("tshark line %q: want interface %s", line, p.B.Iface)
			}
			if _, frac, _ := strings.Cut(ts, "."); len(frac) != 9 {
				t.Fatalf("timestamp %s is not in nanoseconds", ts)
			}
			tsharkFrames++
		}
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := pcapgo.NewNgReader(fh, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for {
			data, ci, err := r.ReadPacketData()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if ci.Length != len(data) {
				t.Fatalf("%s: frame of %d bytes recorded as %d on the wire", f, len(data), ci.Length)
			}
			if bytes.Equal(data[6:12], p.A.MAC) {
				got = append(got, capRecord{file: f, Record: netnstest.Record{TsNanos: ci.Timestamp.UnixNano(), OrigLen: uint32(ci.Length), Data: data}})
			}
		}
		fh.Close()
	}
	if tsharkFrames != len(sent) {
		t.Errorf("tshark reads %d frames from the sender, sent %d", tsharkFrames, len(sent))
	}
	compareFrames(t, "pcapng", sent, got)
	idx := readIndex(t, dir)
	if len(idx) != len(files) {
		t.Fatalf("index.jsonl lists %d files, disk has %d", len(idx), len(files))
	}
	for i, e := range idx {
		if e.Name != filepath.Base(files[i]) || e.Packets != uint64(capinfosPackets(t, files[i])) {
			t.Errorf("index entry %+v does not match %s", e, files[i])
		}
	}
}

// TestFilter runs the daemon with --filter 'udp port 9': every frame to port 9
// is on disk, byte for byte, and no other packet reached the ring, as
// tcpdump's own reading of the files confirms.
func TestFilter(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "2", "--filter", "udp port 9")
	keep := p.Flow(12) // to port 9
	skip := p.Flow(13)
	skip.DstPort = 10
	sizes := netnstest.MixedSizes(3000, 12)
	want := keep.Frames(sizes)
	var mixed [][]byte
	for i, f := range skip.Frames(sizes) {
		mixed = append(mixed, want[i], f)
	}
	if err := sender(t, p).SendPaced(mixed, chunk, pause); err != nil {
		t.Fatal(err)
	}
	d.waitCaptured(float64(len(want)), p.B.Iface)
	time.Sleep(200 * time.Millisecond) // a stray unfiltered packet would have arrived by now
	m := d.metrics()
	d.stop()

	if got := m.sum("sonde_capture_packets_total"); got != float64(len(want)) {
		t.Errorf("sonde read %v packets, want exactly the %d matching ones", got, len(want))
	}
	compareFrames(t, "udp port 9", want, ringRecords(t, dir, p.A.MAC, false))
	for _, f := range publishedFiles(t, dir) {
		out, err := exec.Command("tcpdump", "-n", "-r", f, "not (udp port 9)").Output()
		if err != nil {
			t.Fatalf("tcpdump -r %s: %v", f, err)
		}
		if len(out) > 0 {
			t.Errorf("%s holds packets the filter rejects:\n%s", f, out)
		}
	}
}

// wholeRecords counts the complete records of a classic pcap file that may
// end in the middle of one, walking the record headers (nanosecond or
// microsecond, little-endian as sonde writes them).
func wholeRecords(t *testing.T, fn string) int {
	t.Helper()
	b, err := os.ReadFile(fn)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for off := 24; off+16 <= len(b); n++ {
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		if off+16+incl > len(b) {
			break
		}
		off += 16 + incl
	}
	return n
}
