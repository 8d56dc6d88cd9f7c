package report

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/extract"
	"github.com/sonde-project/sonde/internal/pcapio"
	"github.com/sonde-project/sonde/internal/ring"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()

// frame is an Ethernet/IPv4 TCP (ACK with payload) or UDP packet of flow
// f, in direction dir, with TCP sequence seq.
func frame(buf []byte, f, dir int, seq uint32, udp bool) []byte {
	const payload = 100
	n := 14 + 20 + 20 + payload
	if udp {
		n = 14 + 20 + 8 + payload
	}
	d := buf[:n]
	clear(d)
	binary.BigEndian.PutUint16(d[12:], 0x0800)
	ip := d[14:]
	ip[0], ip[8] = 0x45, 64
	binary.BigEndian.PutUint16(ip[2:], uint16(n-14))
	a := [4]byte{10, 1, byte(f >> 8), byte(f)}
	b := [4]byte{10, 2, 0, byte(1 + f%50)}
	sp, dp := uint16(20000+f%30000), uint16(443)
	if dir == 1 {
		a, b, sp, dp = b, a, dp, sp
	}
	copy(ip[12:], a[:])
	copy(ip[16:], b[:])
	l4 := ip[20:]
	binary.BigEndian.PutUint16(l4[0:], sp)
	binary.BigEndian.PutUint16(l4[2:], dp)
	if udp {
		ip[9] = 17
		binary.BigEndian.PutUint16(l4[4:], uint16(8+payload))
		return d
	}
	ip[9] = 6
	binary.BigEndian.PutUint32(l4[4:], seq)
	binary.BigEndian.PutUint32(l4[8:], 1)
	l4[12], l4[13] = 5<<4, 0x10 // ACK
	binary.BigEndian.PutUint16(l4[14:], 65535)
	return d
}

// syntheticRing writes files (each worker's files in time order) holding
// packets packets in all, 10 µs apart, over 5000 flows, a fifth of them UDP,
// and opens a ring on them.
func syntheticRing(tb testing.TB, packets, files int) (*ring.Ring, string) {
	tb.Helper()
	dir := tb.TempDir()
	per := packets / files
	seqs := make([]uint32, 2*5000)
	fb := make([]byte, 256)
	for fi := range files {
		worker := fi % 2
		buf := pcapio.AppendFileHeader(make([]byte, 0, per*170), pcapio.FormatPcap, capture.LinkTypeEthernet, 65535, "")
		start := t0 + int64(fi/2)*int64(2*per)*10_000 + int64(worker)*10_000
		for i := range per {
			k := fi/2*2*per + 2*i + worker // global packet number
			f, dir := k%5000, (k/5000)%2
			udp := f%5 == 0
			d := frame(fb, f, dir, seqs[2*f+dir], udp)
			seqs[2*f+dir] += 100
			buf = pcapio.AppendRecord(buf, pcapio.FormatPcap, start+int64(2*i)*10_000, uint32(len(d)), d)
		}
		name := fmt.Sprintf("%s_node1_eth0_%d.pcap", time.Unix(0, start).UTC().Format("20060102T150405.000000000Z"), worker)
		if err := os.WriteFile(filepath.Join(dir, name), buf, 0o640); err != nil {
			tb.Fatal(err)
		}
	}
	r, err := ring.Open(ring.Config{Dir: dir, FileMaxDuration: time.Hour, MaxBytes: 1 << 40}, zap.NewNop())
	if err != nil {
		tb.Fatal(err)
	}
	return r, dir
}

func runQueue(tb testing.TB, q *Queue) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
}

func waitFor(tb testing.TB, q *Queue, id string) Status {
	tb.Helper()
	for {
		st, ch, err := q.Watch(id)
		if err != nil {
			tb.Fatal(err)
		}
		if st.State == StateDone || st.State == StateFailed {
			return st
		}
		select {
		case <-ch:
		case <-time.After(5 * time.Minute):
			tb.Fatalf("report %s still %s", id, st.State)
		}
	}
}

// ringReport runs one report over the whole synthetic ring.
func ringReport(tb testing.TB, q *Queue, r *ring.Ring, root *os.Root) Status {
	files := r.Files()
	from, to := files[0].First, files[len(files)-1].Last+1
	for _, f := range files {
		from, to = min(from, f.First), max(to, f.Last+1)
	}
	st, err := q.Submit(RingSource(extract.Dir(root), r.Window(from, to), from, to, nil, "bench"))
	if err != nil {
		tb.Fatal(err)
	}
	return waitFor(tb, q, st.ID)
}

func TestRingReport(t *testing.T) {
	r, dir := syntheticRing(t, 20000, 4)
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	q, err := New(Config{Dir: filepath.Join(t.TempDir(), "reports")}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	runQueue(t, q)
	st := ringReport(t, q, r, root)
	if st.State != StateDone || st.Packets != 20000 || st.Percent != 100 {
		t.Fatalf("%+v", st)
	}
	path, _, err := q.Result(st.ID, "json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	for _, want := range []string{`"packets": 20000`, `"connections"`, `"windows"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("report lacks %s", want)
		}
	}
}

// TestQueueBound submits from many goroutines at once to a queue whose
// workers are not running: exactly MaxQueue are taken.
func TestQueueBound(t *testing.T) {
	q, err := New(Config{Dir: t.TempDir(), MaxQueue: 8}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	src := Source{Kind: "ring", Open: func(context.Context) (io.ReadCloser, error) { return nil, io.EOF }}
	var mu sync.Mutex
	var ok, full int
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			_, err := q.Submit(src)
			mu.Lock()
			defer mu.Unlock()
			switch err {
			case nil:
				ok++
			case ErrQueueFull:
				full++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok != 8 || full != 42 {
		t.Fatalf("%d taken, %d refused; want 8 and 42", ok, full)
	}
	// The jobs fail (their source cannot open) and give their places back.
	runQueue(t, q)
	waitUntilAccepted := time.Now().Add(10 * time.Second)
	for {
		if _, err := q.Submit(src); err == nil {
			break
		}
		if time.Now().After(waitUntilAccepted) {
			t.Fatal("places never freed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHTMLSelfContained checks that the page refers to nothing outside
// itself and escapes what the traffic put in it.
func TestHTMLSelfContained(t *testing.T) {
	d := &Document{Files: []string{"x.pcap"}, Protocols: map[string]Count{}, DNS: DNS{Rcodes: map[string]uint64{}, TopNames: []Name{{Name: `<script>alert(1)</script>.example`, Queries: 3}}},
		UDP: map[string]Hist{}, Anomalies: []Anomaly{{Kind: "port_scan", Start: time.Unix(0, t0), End: time.Unix(0, t0+1e9), Source: "10.0.0.1", Target: "10.0.0.2:80", Evidence: map[string]float64{"ports": 1000}}},
		Windows: []Window{{Start: time.Unix(0, t0), End: time.Unix(0, t0+1e9), BitsPerSecond: 1e6}, {Start: time.Unix(0, t0+1e9), End: time.Unix(0, t0+2e9), BitsPerSecond: 2e6}}}
	var b bytes.Buffer
	if err := WriteHTML(&b, d, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	if strings.Contains(html, "<script") {
		t.Fatal("unescaped script")
	}
	for _, m := range regexp.MustCompile(`(?i)(?:src|href)\s*=\s*"([^"]*)"|url\(([^)]*)\)|@import|https?://[^"\s<]*`).FindAllString(html, -1) {
		switch {
		case strings.HasPrefix(m, `href="#`), m == `href="data:,"`, strings.HasPrefix(m, `href="/api/v1/pcap?`), m == "http://www.w3.org/2000/svg":
		default:
			t.Errorf("external reference %q", m)
		}
	}
	for _, want := range []string{"port_scan", "host 10.0.0.1 and host 10.0.0.2 and port 80", "ports", "<polyline", "dns.qry.name"} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// BenchmarkRingReport times one report over a window of one million packets
// of a synthetic ring (4 files, 2 workers), read through extract as the API
// does, analysed, and written as JSON, HTML and CSV.
func BenchmarkRingReport(b *testing.B) {
	const packets = 1_000_000
	r, dir := syntheticRing(b, packets, 4)
	root, err := os.OpenRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	q, err := New(Config{Dir: filepath.Join(b.TempDir(), "reports"), MaxQueue: 1}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	runQueue(b, q)
	// Peak RSS of the reports alone: drop the generator's buffers and reset
	// the kernel's high-water mark (clear_refs 5) first.
	debug.FreeOSMemory()
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	b.ResetTimer()
	for range b.N {
		st := ringReport(b, q, r, root)
		if st.State != StateDone || st.Packets != packets {
			b.Fatalf("%+v", st)
		}
		q.Delete(st.ID)
	}
	b.ReportMetric(float64(packets)*float64(b.N)/b.Elapsed().Seconds(), "packets/s")
	if st, err := os.ReadFile("/proc/self/status"); err == nil {
		if m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(st); m != nil {
			kb, _ := strconv.Atoi(string(m[1]))
			b.ReportMetric(float64(kb)/1024, "peak-RSS-MiB")
		}
	}
}
