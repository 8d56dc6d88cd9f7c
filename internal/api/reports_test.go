package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sonde-project/sonde/internal/pcapio"
	"github.com/sonde-project/sonde/internal/report"
)

// clock is a test clock that only moves when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// reportServer is a v1 server over a ring of files, with a report queue in
// DIR/reports; run starts the queue's workers.
func reportServer(t *testing.T, files int, cfg report.Config, run bool) (*Server, *report.Queue, string) {
	t.Helper()
	r, dir, _ := v1Ring(t, files, false)
	cfg.Dir = filepath.Join(dir, "reports")
	q, err := report.New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if run {
		runQueue(t, q)
	}
	s, _ := v1Server(t, r, dir, Options{Reports: q})
	return s, q, dir
}

func runQueue(t *testing.T, q *report.Queue) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// rcall is call with a body of any bytes and a content type.
func rcall(t *testing.T, s *Server, method, target, ctype string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	r := httptest.NewRequest(method, "http://sonde"+target, body)
	r.Header.Set("Authorization", "Bearer "+testToken)
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, r)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func accepted(t *testing.T, res *http.Response, body []byte) report.Status {
	t.Helper()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d, want 202: %s", res.StatusCode, body)
	}
	st := decode[report.Status](t, res, body)
	if st.ID == "" || st.State != report.StateQueued || res.Header.Get("Location") != "/api/v1/reports/"+st.ID {
		t.Fatalf("accepted %+v, Location %q", st, res.Header.Get("Location"))
	}
	return st
}

func submit(t *testing.T, s *Server, method, target, ctype string, body io.Reader) report.Status {
	t.Helper()
	res, b := rcall(t, s, method, target, ctype, body)
	return accepted(t, res, b)
}

func waitDone(t *testing.T, s *Server, id string) report.Status {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, body := call(t, s, req{method: "GET", target: "/api/v1/reports/" + id})
		if res.StatusCode != 200 {
			t.Fatalf("status of %s: %d %s", id, res.StatusCode, body)
		}
		st := decode[report.Status](t, res, body)
		if st.State == report.StateDone || st.State == report.StateFailed {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("report %s still %s", id, st.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// offline analyses a capture file the way `sonde analyze --format json`
// does, as generic JSON without "files".
func offline(t *testing.T, file []byte) map[string]any {
	t.Helper()
	x, err := report.NewAnalysis(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapio.NewReader(bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Replay(r, ""); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(x.Document(nil))
	if err != nil {
		t.Fatal(err)
	}
	return withoutFiles(t, b)
}

func withoutFiles(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v: %.200s", err, b)
	}
	delete(m, "files")
	return m
}

// checkResults fetches a done report's three results and checks the JSON
// against want.
func checkResults(t *testing.T, s *Server, id string, want map[string]any) {
	t.Helper()
	res, body := call(t, s, req{method: "GET", target: "/api/v1/reports/" + id + ".json"})
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf(".json: %d %q %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	got := withoutFiles(t, body)
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("report JSON differs from the offline analysis:\n got %.3000s\nwant %.3000s", g, w)
	}
	if got["packets"].(float64) == 0 {
		t.Fatal("report of no packet")
	}
	res, body = call(t, s, req{method: "GET", target: "/api/v1/reports/" + id + ".html"})
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf(".html: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, want := range []string{"<!DOCTYPE html>", "<svg", "Executive summary", "health score", "Protocol mix", "Top talkers", "TCP quality", "DNS", "Jitter", "Anomalies", "@media print", "/api/v1/pcap?from="} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf(".html lacks %q", want)
		}
	}
	res, body = call(t, s, req{method: "GET", target: "/api/v1/reports/" + id + ".csv"})
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf(".csv: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if !strings.HasPrefix(lines[0], "start,end,packets,bytes,") || len(lines)-1 != len(want["windows"].([]any)) {
		t.Fatalf(".csv: %d lines for %d windows: %.300s", len(lines), len(want["windows"].([]any)), body)
	}
}

func TestReportRing(t *testing.T) {
	s, _, _ := reportServer(t, 3, report.Config{}, true)
	const from, to = "2026-03-01T12:00:00Z", "2026-03-01T12:00:01Z"
	st := submit(t, s, "POST", "/api/v1/reports", "application/json", strings.NewReader(`{"from":"`+from+`","to":"`+to+`","filter":"udp port 53"}`))
	if st.Kind != "ring" {
		t.Fatalf("kind %q", st.Kind)
	}
	if st = waitDone(t, s, st.ID); st.State != report.StateDone || st.Percent != 100 || st.Expires == nil {
		t.Fatalf("report %+v", st)
	}
	// The same packets, as /api/v1/pcap serves them, analysed offline.
	res, pcap := call(t, s, req{method: "GET", target: "/api/v1/pcap?from=" + from + "&to=" + to + "&filter=udp+port+53"})
	if res.StatusCode != 200 {
		t.Fatalf("pcap: %d", res.StatusCode)
	}
	want := offline(t, pcap)
	if want["packets"].(float64) != 300 { // half of 3 files x 2 workers x 100
		t.Fatalf("%v packets on port 53", want["packets"])
	}
	checkResults(t, s, st.ID, want)
}

// pcapFile is a capture file of n UDP packets in Ethernet frames.
func pcapFile(n int) []byte {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	buf := pcapio.AppendFileHeader(nil, pcapio.FormatPcap, 1, 65535, "")
	for i := range n {
		buf = pcapio.AppendRecord(buf, pcapio.FormatPcap, t0+int64(i)*int64(time.Millisecond), 80, udpFrame(i))
	}
	return buf
}

func udpFrame(i int) []byte {
	d := make([]byte, 80)
	binary.BigEndian.PutUint16(d[12:], 0x0800)
	d[14], d[22], d[23] = 0x45, 64, 17
	binary.BigEndian.PutUint16(d[16:], 66)
	copy(d[26:30], []byte{10, 0, 0, byte(1 + i%3)})
	copy(d[30:34], []byte{10, 0, 1, 1})
	binary.BigEndian.PutUint16(d[34:], uint16(40000+i%7))
	binary.BigEndian.PutUint16(d[36:], 5004)
	binary.BigEndian.PutUint16(d[38:], 46)
	return d
}

func TestReportUpload(t *testing.T) {
	s, _, _ := reportServer(t, 1, report.Config{}, true)
	file := pcapFile(5000)
	want := offline(t, file)
	for _, ct := range []string{"application/vnd.tcpdump.pcap", "application/octet-stream"} {
		st := submit(t, s, "POST", "/api/v1/reports/upload", ct, bytes.NewReader(file))
		if st = waitDone(t, s, st.ID); st.State != report.StateDone || st.Packets != 5000 || st.Kind != "upload" {
			t.Fatalf("%s: %+v", ct, st)
		}
		checkResults(t, s, st.ID, want)
	}
	// Multipart, with a form field before the file.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("note", "x")
	fw, _ := mw.CreateFormFile("file", "lab.pcap")
	fw.Write(file)
	mw.Close()
	st := submit(t, s, "POST", "/api/v1/reports/upload", mw.FormDataContentType(), &mp)
	if st = waitDone(t, s, st.ID); st.State != report.StateDone || st.Source != "lab.pcap" {
		t.Fatalf("multipart: %+v", st)
	}
	checkResults(t, s, st.ID, want)
	// A filter applies to the analysis.
	st = submit(t, s, "POST", "/api/v1/reports/upload?filter=src+host+10.0.0.1", "application/octet-stream", bytes.NewReader(file))
	if st = waitDone(t, s, st.ID); st.Packets != 1667 {
		t.Fatalf("filtered: %+v", st) // packets analysed, after the filter
	}
	_, body := call(t, s, req{method: "GET", target: "/api/v1/reports/" + st.ID + ".json"})
	if got := withoutFiles(t, body)["packets"].(float64); got != 1667 {
		t.Fatalf("filtered report: %v packets, want 1667", got)
	}
}

// guardedReader serves an endless capture file and fails the test if more
// than max bytes are read from it.
type guardedReader struct {
	t    *testing.T
	max  int64
	read atomic.Int64
	src  io.Reader
}

func (g *guardedReader) Read(p []byte) (int, error) {
	n, err := g.src.Read(p)
	if read := g.read.Add(int64(n)); read > g.max {
		g.t.Errorf("the server read %d bytes of the body, more than %d", read, g.max)
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

type endless struct {
	rec []byte
	off int
}

func (e *endless) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], e.rec[e.off:])
		n += c
		e.off = (e.off + c) % len(e.rec)
	}
	return n, nil
}

func TestReportUploadTooLarge(t *testing.T) {
	const limit = 1 << 20
	s, q, dir := reportServer(t, 1, report.Config{MaxUploadBytes: limit}, false)
	file := pcapFile(1)
	hdr, rec := file[:24], file[24:]
	for _, ct := range []string{"application/vnd.tcpdump.pcap", "multipart"} {
		body := &guardedReader{t: t, max: limit + 64<<10, src: io.MultiReader(bytes.NewReader(hdr), &endless{rec: rec})}
		var r io.Reader = body
		ctype := ct
		if ct == "multipart" {
			pr, pw := io.Pipe()
			mw := multipart.NewWriter(pw)
			ctype = mw.FormDataContentType()
			go func() {
				fw, _ := mw.CreateFormFile("file", "big.pcap")
				_, err := io.Copy(fw, body)
				pw.CloseWithError(err)
			}()
			r = pr
		}
		res, b := rcall(t, s, "POST", "/api/v1/reports/upload", ctype, r)
		if pr, ok := r.(*io.PipeReader); ok {
			pr.Close()
		}
		wantError(t, res, b, http.StatusRequestEntityTooLarge, "upload_too_large", "1048576 bytes", "MAX_UPLOAD_SIZE_MB")
		if n := body.read.Load(); n < limit {
			t.Fatalf("%s: refused after %d bytes, before the limit", ct, n)
		}
	}
	// Nothing kept, and the places are free again.
	ents, _ := os.ReadDir(filepath.Join(dir, "reports"))
	if len(ents) != 0 {
		t.Fatalf("left in reports/: %v", ents)
	}
	for range q.Config().MaxQueue {
		submit(t, s, "POST", "/api/v1/reports/upload", "application/octet-stream", bytes.NewReader(file))
	}
}

func TestReportUploadBad(t *testing.T) {
	s, _, dir := reportServer(t, 1, report.Config{}, false)
	file := pcapFile(3)
	huge := bytes.Clone(file)
	binary.LittleEndian.PutUint32(huge[24+96+8:], 1<<30) // second record's captured length
	for _, c := range []struct {
		name, ctype string
		body        []byte
		status      int
		code        string
		contains    []string
		offset      int64
	}{
		{"garbage", "application/octet-stream", []byte("GET / HTTP/1.1\r\nHost: sonde\r\n\r\n"), 400, "corrupt_capture", []string{"byte offset 0", "unknown file magic"}, 0},
		{"empty", "application/octet-stream", nil, 400, "corrupt_capture", []string{"byte offset 0"}, 0},
		{"cut in a record", "application/octet-stream", file[:len(file)-10], 400, "corrupt_capture", []string{"record at byte offset 216", "unexpected EOF"}, 216},
		{"huge captured length", "application/octet-stream", huge, 400, "corrupt_capture", []string{"byte offset 120", "exceeds"}, 120},
		{"text", "text/plain", file, 415, "unsupported_media_type", []string{"application/vnd.tcpdump.pcap"}, 0},
		{"no type", "", file, 415, "unsupported_media_type", nil, 0},
		{"multipart without a file", "multipart/form-data; boundary=xx", []byte("--xx\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--xx--\r\n"), 400, "bad_body", []string{"no file part"}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, b := rcall(t, s, "POST", "/api/v1/reports/upload", c.ctype, bytes.NewReader(c.body))
			wantError(t, res, b, c.status, c.code, c.contains...)
			if c.code == "corrupt_capture" {
				var e struct{ Offset int64 }
				json.Unmarshal(b, &e)
				if e.Offset != c.offset {
					t.Fatalf("offset %d, want %d: %s", e.Offset, c.offset, b)
				}
			}
		})
	}
	res, b := rcall(t, s, "POST", "/api/v1/reports/upload?filter=port+99999", "application/octet-stream", bytes.NewReader(file))
	wantError(t, res, b, 400, "bad_parameter", "filter")
	res, b = rcall(t, s, "POST", "/api/v1/reports/upload?bogus=1", "application/octet-stream", bytes.NewReader(file))
	wantError(t, res, b, 400, "bad_parameter", "bogus")
	if ents, _ := os.ReadDir(filepath.Join(dir, "reports")); len(ents) != 0 {
		t.Fatalf("left in reports/: %v", ents)
	}
}

func TestReportRequestErrors(t *testing.T) {
	s, _, _ := reportServer(t, 1, report.Config{}, false)
	for _, c := range []struct {
		name, ctype, body string
		status            int
		code              string
		contains          []string
	}{
		{"text", "text/plain", `{}`, 415, "unsupported_media_type", nil},
		{"not json", "application/json", `{`, 400, "bad_body", nil},
		{"unknown field", "application/json", `{"from":"0","to":"1","x":1}`, 400, "bad_body", []string{"x"}},
		{"no from", "application/json", `{"to":"1"}`, 400, "bad_parameter", []string{"from"}},
		{"reversed", "application/json", `{"from":"5","to":"1"}`, 400, "bad_parameter", []string{"to"}},
		{"too long", "application/json", `{"from":"0","to":"7200"}`, 400, "window_too_long", nil},
		{"bad filter", "application/json", `{"from":"0","to":"1","filter":"tcp port"}`, 400, "bad_parameter", []string{"filter"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, b := rcall(t, s, "POST", "/api/v1/reports", c.ctype, strings.NewReader(c.body))
			wantError(t, res, b, c.status, c.code, c.contains...)
		})
	}
	// Unknown ids are 404 JSON on every route that takes one.
	for _, q := range []req{
		{method: "GET", target: "/api/v1/reports/0123456789abcdef0123456789abcdef"},
		{method: "GET", target: "/api/v1/reports/nope.json"},
		{method: "GET", target: "/api/v1/reports/nope.html"},
		{method: "GET", target: "/api/v1/reports/nope.csv"},
		{method: "GET", target: "/api/v1/reports/nope/events"},
		{method: "DELETE", target: "/api/v1/reports/nope"},
	} {
		res, b := call(t, s, q)
		wantError(t, res, b, 404, "not_found", "no report")
	}
	res, b := call(t, s, req{method: "GET", target: "/api/v1/reports/..%2f..%2fetc%2fpasswd.json"})
	wantError(t, res, b, 404, "not_found")
	// Without a token: 401, as everywhere under /api/v1.
	res, b = call(t, s, req{method: "POST", target: "/api/v1/reports", body: `{}`, noAuth: true})
	wantError(t, res, b, 401, "unauthorized")
	// Reports switched off: 503.
	r, dir, _ := v1Ring(t, 1, false)
	off, _ := v1Server(t, r, dir, Options{})
	res, b = call(t, off, req{method: "GET", target: "/api/v1/reports/x"})
	wantError(t, res, b, 503, "unavailable", "reports")
}

// TestReportQueueFull fills a queue whose workers do not run: past
// MaxQueue every submission is 429 with Retry-After, and an upload is
// refused before any of its body is read.
func TestReportQueueFull(t *testing.T) {
	s, q, _ := reportServer(t, 1, report.Config{MaxQueue: 2}, false)
	post := func() (*http.Response, []byte) {
		return rcall(t, s, "POST", "/api/v1/reports", "application/json", strings.NewReader(`{"from":"2026-03-01T12:00:00Z","to":"2026-03-01T12:00:01Z"}`))
	}
	ok := func(res *http.Response, b []byte) report.Status { t.Helper(); return accepted(t, res, b) }
	a := ok(post())
	ok(post())
	res, b := post()
	wantError(t, res, b, http.StatusTooManyRequests, "queue_full", "MAX_QUEUE_SIZE")
	if res.Header.Get("Retry-After") != "30" {
		t.Fatalf("Retry-After %q", res.Header.Get("Retry-After"))
	}
	body := &guardedReader{t: t, max: 0, src: bytes.NewReader(pcapFile(1))}
	res, b = rcall(t, s, "POST", "/api/v1/reports/upload", "application/octet-stream", body)
	wantError(t, res, b, http.StatusTooManyRequests, "queue_full")
	// Deleting a queued report frees its place; the rest run once workers start.
	if res, b := call(t, s, req{method: "DELETE", target: "/api/v1/reports/" + a.ID}); res.StatusCode != 204 {
		t.Fatalf("delete: %d %s", res.StatusCode, b)
	}
	c := ok(post())
	runQueue(t, q)
	if st := waitDone(t, s, c.ID); st.State != report.StateDone {
		t.Fatalf("%+v", st)
	}
	res, _ = call(t, s, req{method: "GET", target: "/api/v1/reports/" + a.ID})
	if res.StatusCode != 404 {
		t.Fatalf("deleted queued report: %d", res.StatusCode)
	}
}

func reportFiles(t *testing.T, dir, id string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "reports", id+"*"))
	return m
}

func TestReportTTLAndDelete(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}
	s, q, dir := reportServer(t, 1, report.Config{TTL: 24 * time.Hour, Now: clk.Now}, true)
	body := `{"from":"2026-03-01T12:00:00Z","to":"2026-03-01T12:00:01Z"}`
	a := submit(t, s, "POST", "/api/v1/reports", "application/json", strings.NewReader(body))
	b := submit(t, s, "POST", "/api/v1/reports", "application/json", strings.NewReader(body))
	for _, id := range []string{a.ID, b.ID} {
		st := waitDone(t, s, id)
		if want := clk.Now().Add(24 * time.Hour); st.State != report.StateDone || !st.Expires.Equal(want) {
			t.Fatalf("%+v, want expiry %v", st, want)
		}
		if f := reportFiles(t, dir, id); len(f) != 4 {
			t.Fatalf("files of %s: %v", id, f)
		}
	}
	// DELETE removes at once.
	if res, body := call(t, s, req{method: "DELETE", target: "/api/v1/reports/" + a.ID}); res.StatusCode != 204 {
		t.Fatalf("delete: %d %s", res.StatusCode, body)
	}
	if f := reportFiles(t, dir, a.ID); len(f) != 0 {
		t.Fatalf("left after DELETE: %v", f)
	}
	res, body2 := call(t, s, req{method: "GET", target: "/api/v1/reports/" + a.ID + ".html"})
	wantError(t, res, body2, 404, "not_found")
	// One second before its time the other is there; at its time it is gone
	// for the API at once, and for the disk at the next sweep.
	clk.Add(24*time.Hour - time.Second)
	if q.Sweep() != 0 {
		t.Fatal("swept early")
	}
	if res, _ := call(t, s, req{method: "GET", target: "/api/v1/reports/" + b.ID + ".json"}); res.StatusCode != 200 {
		t.Fatalf("before expiry: %d", res.StatusCode)
	}
	clk.Add(time.Second)
	res, body2 = call(t, s, req{method: "GET", target: "/api/v1/reports/" + b.ID})
	wantError(t, res, body2, 404, "not_found")
	if q.Sweep() != 1 {
		t.Fatal("nothing swept")
	}
	if f := reportFiles(t, dir, b.ID); len(f) != 0 {
		t.Fatalf("left after expiry: %v", f)
	}
}

// TestReportPersists checks that a finished report survives a restart (a new
// Queue on the same directory), and that an expired one and half-written
// files do not.
func TestReportPersists(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}
	s, q, dir := reportServer(t, 1, report.Config{Now: clk.Now}, true)
	st := submit(t, s, "POST", "/api/v1/reports/upload", "application/octet-stream", bytes.NewReader(pcapFile(10)))
	waitDone(t, s, st.ID)
	os.WriteFile(filepath.Join(dir, "reports", ".upload-half"), []byte("x"), 0o600)
	q2, err := report.New(report.Config{Dir: filepath.Join(dir, "reports"), Now: clk.Now}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := q2.Status(st.ID); err != nil || got.State != report.StateDone {
		t.Fatalf("after restart: %+v %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "reports", ".upload-half")); !os.IsNotExist(err) {
		t.Fatalf("half-written upload kept: %v", err)
	}
	_ = q
	clk.Add(25 * time.Hour)
	if _, err := report.New(report.Config{Dir: filepath.Join(dir, "reports"), Now: clk.Now}, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if f := reportFiles(t, dir, st.ID); len(f) != 0 {
		t.Fatalf("expired report kept over a restart: %v", f)
	}
}

type sseEvent struct {
	id, event string
	data      []byte
}

// TestReportEvents follows a report on /api/v1/reports/{id}/events from
// queued to done over a real connection: status events arrive in order
// (seq grows, the state never goes back, percent never falls), then end.
func TestReportEvents(t *testing.T) {
	s, q, _ := reportServer(t, 10, report.Config{}, false)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	st := submit(t, s, "POST", "/api/v1/reports", "application/json", strings.NewReader(`{"from":"2026-03-01T12:00:00Z","to":"2026-03-01T12:00:02Z"}`))
	r, _ := http.NewRequest("GET", srv.URL+"/api/v1/reports/"+st.ID+"/events", nil)
	r.Header.Set("Authorization", "Bearer "+testToken)
	res, err := srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	events := make(chan sseEvent)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(res.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" {
					events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = []byte(line[6:])
			}
		}
	}()
	next := func() sseEvent {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream ended early")
			}
			return ev
		case <-time.After(20 * time.Second):
			t.Fatal("no event")
		}
		return sseEvent{}
	}
	first := next()
	var fst report.Status
	json.Unmarshal(first.data, &fst)
	if first.event != "status" || fst.State != report.StateQueued || first.id != fmt.Sprint(fst.Seq) {
		t.Fatalf("first event %s %s %s", first.id, first.event, first.data)
	}
	runQueue(t, q) // now the job runs
	rank := map[report.State]int{report.StateQueued: 0, report.StateRunning: 1, report.StateDone: 2}
	prev, states := fst, []report.State{fst.State}
	for {
		ev := next()
		if ev.event == "end" {
			break
		}
		var cur report.Status
		if err := json.Unmarshal(ev.data, &cur); err != nil || ev.event != "status" {
			t.Fatalf("event %s %s: %v", ev.event, ev.data, err)
		}
		if cur.Seq <= prev.Seq || rank[cur.State] < rank[prev.State] || cur.Percent < prev.Percent {
			t.Fatalf("out of order: %+v after %+v", cur, prev)
		}
		if cur.State != prev.State {
			states = append(states, cur.State)
		}
		prev = cur
	}
	if !reflect.DeepEqual(states, []report.State{report.StateQueued, report.StateRunning, report.StateDone}) || prev.Percent != 100 {
		t.Fatalf("states %v, last %+v", states, prev)
	}
	if _, ok := <-events; ok {
		t.Fatal("events after end")
	}
}

// TestReportRoutesInOpenAPI walks the report routes with a queue behind
// them: every one the document names answers, none with the router's 404.
func TestReportRoutesInOpenAPI(t *testing.T) {
	s, _, _ := reportServer(t, 1, report.Config{}, false)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	for p, ops := range doc.Paths {
		if !strings.HasPrefix(p, "/api/v1/reports") {
			continue
		}
		for m := range ops {
			n++
			path := strings.ReplaceAll(p, "{id}", "0123456789abcdef0123456789abcdef")
			res, body := call(t, s, req{method: strings.ToUpper(m), target: path})
			if res.StatusCode == 405 || res.StatusCode == 503 || bytes.Contains(body, []byte("no such endpoint")) {
				t.Errorf("%s %s: %d %s", m, path, res.StatusCode, body)
			}
		}
	}
	if n != 8 {
		t.Fatalf("%d report operations documented, want 8", n)
	}
}

// FuzzReportRequests drives the report routes, with a queue behind them,
// with hostile paths, content types and bodies (capture files included):
// never a panic, never 5xx, every error the JSON error shape, and nothing
// of a refused upload left behind.
func FuzzReportRequests(f *testing.F) {
	file := pcapFile(3)
	for _, seed := range []struct {
		path, ctype string
		body        []byte
	}{
		{"/api/v1/reports", "application/json", []byte(`{"from":"2026-03-01T12:00:00Z","to":"2026-03-01T12:00:01Z","filter":"udp"}`)},
		{"/api/v1/reports", "application/json", []byte(`{"from":1e400,"to":[],"filter":null}`)},
		{"/api/v1/reports/upload", "application/vnd.tcpdump.pcap", file},
		{"/api/v1/reports/upload?filter=tcp[", "application/octet-stream", file[:40]},
		{"/api/v1/reports/upload", "multipart/form-data; boundary=b", []byte("--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\r\n\xd4\xc3\xb2\xa1\r\n--b--")},
		{"/api/v1/reports/abc.json", "", nil},
		{"/api/v1/reports/abc/events", "", nil},
	} {
		f.Add(seed.path, seed.ctype, seed.body)
	}
	r, dir, _ := v1Ring(&testing.T{}, 2, false)
	q, err := report.New(report.Config{Dir: filepath.Join(dir, "reports"), MaxQueue: 1 << 20, MaxUploadBytes: 64 << 10}, zap.NewNop())
	if err != nil {
		f.Fatal(err)
	}
	s, _ := v1Server(&testing.T{}, r, dir, Options{Reports: q})
	f.Fuzz(func(t *testing.T, path, ctype string, body []byte) {
		if !strings.HasPrefix(path, "/api/v1/reports") || strings.ContainsAny(path, " \t\r\n#") || strings.HasSuffix(path, "/events") {
			return // events stream until the report ends: not for a recorder
		}
		method := http.MethodGet
		if body != nil {
			method = http.MethodPost
		}
		req, err := http.NewRequest(method, "http://sonde"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.RequestURI = path
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", ctype)
		uploads := func() int {
			m, _ := filepath.Glob(filepath.Join(dir, "reports", ".upload-*"))
			return len(m)
		}
		before := uploads()
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		res := rec.Result()
		if res.StatusCode >= 500 {
			t.Fatalf("%s %s %q: %d %s", method, path, ctype, res.StatusCode, rec.Body.String())
		}
		if res.StatusCode >= 400 {
			var e errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Error == "" {
				t.Fatalf("%s %s: %d with a body that is not a JSON error: %q", method, path, res.StatusCode, rec.Body.String())
			}
			if after := uploads(); after > before {
				t.Fatalf("a refused upload (%d) left a file behind", res.StatusCode)
			}
		}
	})
}
