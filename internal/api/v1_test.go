package api

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
	"github.com/sonde-project/sonde/internal/ring"
)

const testToken = "0123456789abcdef-test-token"

// v1Ring writes files of 100 UDP packets each, one millisecond apart, for
// two workers of eth0 (and, with tun, one file of a raw-IP interface), and
// opens a ring on them.
func v1Ring(t *testing.T, files int, tun bool) (*ring.Ring, string, int64) {
	t.Helper()
	dir := t.TempDir()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	write := func(iface string, worker int, lt capture.LinkType, start int64, n int) {
		buf := pcapio.AppendFileHeader(nil, pcapio.FormatPcap, lt, 65535, "")
		for i := range n {
			d := make([]byte, 60+i%50)
			if lt == capture.LinkTypeEthernet {
				binary.BigEndian.PutUint16(d[12:], 0x0800)
				d[14], d[23] = 0x45, 17 // IPv4, UDP
				binary.BigEndian.PutUint16(d[36:], uint16(53+i%2))
			} else {
				d[0], d[9] = 0x45, 17
			}
			binary.BigEndian.PutUint32(d[len(d)-4:], uint32(i))
			buf = pcapio.AppendRecord(buf, pcapio.FormatPcap, start+int64(i)*int64(time.Millisecond), uint32(len(d)), d)
		}
		name := fmt.Sprintf("%s_node1_%s_%d.pcap", time.Unix(0, start).UTC().Format("20060102T150405.000000000Z"), iface, worker)
		if err := os.WriteFile(filepath.Join(dir, name), buf, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	for f := range files {
		for w := range 2 {
			write("eth0", w, capture.LinkTypeEthernet, t0+int64(f)*100*int64(time.Millisecond)+int64(w)*int64(time.Microsecond), 100)
		}
	}
	if tun {
		write("tun0", 0, capture.LinkTypeRaw, t0, 10)
	}
	r, err := ring.Open(ring.Config{Dir: dir, FileMaxDuration: time.Minute, MaxBytes: 1 << 30}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return r, dir, t0
}

func v1Server(t *testing.T, store Store, dir string, opts Options) (*Server, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	opts.Store, opts.DataDir = store, dir
	if opts.Tokens == nil {
		opts.Tokens = []string{"another-token-0123456789", testToken}
	}
	s := New(opts, zap.New(core), prometheus.NewRegistry(), healthy())
	t.Cleanup(func() { s.Close() })
	return s, logs
}

type req struct {
	method, target string
	body           string
	header         map[string]string
	noAuth         bool
}

func call(t *testing.T, s *Server, q req) (*http.Response, []byte) {
	t.Helper()
	var body io.Reader
	if q.body != "" {
		body = strings.NewReader(q.body)
	}
	r := httptest.NewRequest(q.method, "http://sonde"+q.target, body)
	if !q.noAuth {
		r.Header.Set("Authorization", "Bearer "+testToken)
	}
	for k, v := range q.header {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, r)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func wantError(t *testing.T, res *http.Response, body []byte, status int, code string, contains ...string) {
	t.Helper()
	if res.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", res.StatusCode, status, body)
	}
	e := decode[errorBody](t, res, body)
	if e.Code != code || e.Error == "" {
		t.Fatalf("error %+v, want code %q", e, code)
	}
	for _, c := range contains {
		if !strings.Contains(e.Error, c) {
			t.Fatalf("error %q does not mention %q", e.Error, c)
		}
	}
}

func TestV1Auth(t *testing.T) {
	r, dir, _ := v1Ring(t, 1, false)
	s, _ := v1Server(t, r, dir, Options{})
	for _, path := range []string{"/api/v1/captures", "/api/v1/openapi.json", "/api/v1/pcap?from=0&to=1", "/api/v1/nothing", "/api/v1/captures/../../etc/passwd"} {
		res, body := call(t, s, req{method: "GET", target: path, noAuth: true})
		wantError(t, res, body, 401, "unauthorized")
		if h := res.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
			t.Fatalf("%s: WWW-Authenticate %q", path, h)
		}
		for _, bad := range []string{"Bearer wrong-token-0123456789", "Basic " + testToken, "Bearer", "Bearer " + testToken + "x", "bearer " + testToken[:10]} {
			res, body := call(t, s, req{method: "GET", target: path, noAuth: true, header: map[string]string{"Authorization": bad}})
			wantError(t, res, body, 401, "unauthorized")
		}
	}
	// Both tokens of the file work, and the scheme is case-insensitive.
	for _, h := range []string{"Bearer " + testToken, "bearer another-token-0123456789"} {
		res, body := call(t, s, req{method: "GET", target: "/api/v1/captures", noAuth: true, header: map[string]string{"Authorization": h}})
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d %s", h, res.StatusCode, body)
		}
	}
	// Operational endpoints stay open by default.
	for _, path := range []string{"/metrics", "/api/health", "/api/ready"} {
		if res, _ := call(t, s, req{method: "GET", target: path, noAuth: true}); res.StatusCode == 401 {
			t.Fatalf("%s needs a token by default", path)
		}
	}

	// --api-auth-ops closes them too.
	ops, _ := v1Server(t, r, dir, Options{AuthOps: true})
	for _, path := range []string{"/metrics", "/api/health", "/api/ready"} {
		res, body := call(t, ops, req{method: "GET", target: path, noAuth: true})
		wantError(t, res, body, 401, "unauthorized")
		if res, _ := call(t, ops, req{method: "GET", target: path}); res.StatusCode == 401 {
			t.Fatalf("%s refuses the token", path)
		}
	}

	// No token configured: closed. --api-auth=false: open, with a warning.
	closed, _ := v1Server(t, r, dir, Options{Tokens: []string{}})
	res, body := call(t, closed, req{method: "GET", target: "/api/v1/captures"})
	wantError(t, res, body, 401, "unauthorized")
	open, logs := v1Server(t, r, dir, Options{AuthDisabled: true, Tokens: []string{}})
	if res, _ := call(t, open, req{method: "GET", target: "/api/v1/captures", noAuth: true}); res.StatusCode != 200 {
		t.Fatalf("auth off: %d", res.StatusCode)
	}
	if logs.FilterMessageSnippet("AUTHENTICATION IS DISABLED").Len() != 1 {
		t.Fatal("no loud warning with authentication off")
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tokens")
	os.WriteFile(p, []byte("# ops team\n"+testToken+"\n\n  second-token-0123456789  \n"), 0o600)
	toks, err := ReadTokenFile(p)
	if err != nil || !slices.Equal(toks, []string{testToken, "second-token-0123456789"}) {
		t.Fatalf("%v %v", toks, err)
	}
	for name, content := range map[string]string{"empty": "# nothing\n\n", "short": "abc\n"} {
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := ReadTokenFile(p); err == nil {
			t.Errorf("%s token file accepted", name)
		}
	}
	if _, err := ReadTokenFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing token file accepted")
	}
	if fp := Fingerprint("secret"); len(fp) != 8 || fp != "2bb80d53" {
		t.Errorf("fingerprint %q", fp)
	}
}

func TestV1Captures(t *testing.T) {
	r, dir, t0 := v1Ring(t, 3, false)
	s, logs := v1Server(t, r, dir, Options{})
	if _, err := r.Pin(time.Unix(0, t0), time.Unix(0, t0+1), 0, "x"); err != nil {
		t.Fatal(err)
	}
	res, body := call(t, s, req{method: "GET", target: "/api/v1/captures"})
	list := decode[struct{ Captures []Capture }](t, res, body).Captures
	files := r.Files()
	if len(list) != len(files) || len(list) != 6 {
		t.Fatalf("%d captures, want %d", len(list), len(files))
	}
	for i, c := range list {
		f := files[i]
		if c.Name != f.Name || c.Interface != "eth0" || c.Node != "node1" || c.Packets != 100 || c.Bytes != f.Bytes ||
			c.First != time.Unix(0, f.First).UTC().Format(time.RFC3339Nano) || c.Last != time.Unix(0, f.Last).UTC().Format(time.RFC3339Nano) {
			t.Fatalf("capture %d: %+v for %+v", i, c, f)
		}
		if c.Pinned != (f.First <= t0) {
			t.Fatalf("capture %s pinned=%v", c.Name, c.Pinned)
		}
	}

	// Download: byte for byte, typed, ranged, audited.
	name := files[1].Name
	want, _ := os.ReadFile(filepath.Join(dir, name))
	res, body = call(t, s, req{method: "GET", target: "/api/v1/captures/" + name})
	if res.StatusCode != 200 || !bytes.Equal(body, want) || res.Header.Get("Content-Type") != "application/vnd.tcpdump.pcap" {
		t.Fatalf("download: %d, %d bytes of %d, %q", res.StatusCode, len(body), len(want), res.Header.Get("Content-Type"))
	}
	res, body = call(t, s, req{method: "GET", target: "/api/v1/captures/" + name, header: map[string]string{"Range": "bytes=24-99"}})
	if res.StatusCode != 206 || !bytes.Equal(body, want[24:100]) {
		t.Fatalf("range: %d, %d bytes", res.StatusCode, len(body))
	}
	res, body = call(t, s, req{method: "HEAD", target: "/api/v1/captures/" + name})
	if res.StatusCode != 200 || len(body) != 0 || res.ContentLength != int64(len(want)) {
		t.Fatalf("HEAD: %d, %d body bytes, length %d", res.StatusCode, len(body), res.ContentLength)
	}
	audits := logs.FilterField(zap.Bool("audit", true)).FilterField(zap.String("file", name)).All()
	if len(audits) != 3 {
		t.Fatalf("%d audit lines for 3 downloads", len(audits))
	}
	f := audits[0].ContextMap()
	if f["who"] != "token:"+Fingerprint(testToken) || f["status"] != int64(200) || f["bytes"] != int64(len(want)) || f["route"] != "/api/v1/captures/{name}" || f["remote"] == "" {
		t.Fatalf("audit line %v", f)
	}
}

// TestV1CaptureNames: only names of the index are served, whatever else a
// name holds, and nothing outside the data directory ever is.
func TestV1CaptureNames(t *testing.T) {
	r, dir, _ := v1Ring(t, 1, false)
	outside := filepath.Join(filepath.Dir(dir), "secret.pcap")
	os.WriteFile(outside, []byte("secret"), 0o600)
	t.Cleanup(func() { os.Remove(outside) })
	os.WriteFile(filepath.Join(dir, "stray.pcap"), []byte("not indexed"), 0o600)
	os.Symlink(outside, filepath.Join(dir, "link.pcap"))
	s, _ := v1Server(t, r, dir, Options{})
	name := r.Files()[0].Name
	for _, target := range []string{
		"..", "../secret.pcap", "%2e%2e%2fsecret.pcap", "..%2fsecret.pcap", "%2e%2e", "index.jsonl", "pins.json",
		"stray.pcap", "link.pcap", "%00", name + "%00", "%00" + name, name + "/", name + "%2f", "%2f" + name, "." + name + ".part",
		"./" + name, ".%2f" + name, "%252e%252e%252fsecret.pcap", "..%5csecret.pcap", "%2fetc%2fpasswd", "%2Fetc%2Fpasswd",
		strings.ToUpper(name), name + "%20", "%c0%ae%c0%ae%2fsecret.pcap", "..;/secret.pcap",
	} {
		res, body := call(t, s, req{method: "GET", target: "/api/v1/captures/" + target})
		if res.StatusCode != 404 || bytes.Contains(body, []byte("secret")) && !bytes.Contains(body, []byte(`"error"`)) {
			t.Fatalf("%q: %d %s", target, res.StatusCode, body)
		}
		wantError(t, res, body, 404, "not_found")
	}

	// Evicted between the index lookup and the open: 404, not 500.
	gone := &evictingStore{Ring: r, name: name, dir: dir}
	s2, _ := v1Server(t, gone, dir, Options{})
	res, body := call(t, s2, req{method: "GET", target: "/api/v1/captures/" + name})
	wantError(t, res, body, 404, "not_found", "evicted")
}

// evictingStore deletes a file right after looking it up, as retention
// could between the lookup and the open.
type evictingStore struct {
	*ring.Ring
	name, dir string
}

func (e *evictingStore) Lookup(name string) (ring.FileInfo, bool) {
	fi, ok := e.Ring.Lookup(name)
	if name == e.name {
		os.Remove(filepath.Join(e.dir, name))
	}
	return fi, ok
}

func TestV1Routing(t *testing.T) {
	r, dir, _ := v1Ring(t, 1, false)
	s, _ := v1Server(t, r, dir, Options{})
	res, body := call(t, s, req{method: "PUT", target: "/api/v1/captures"})
	wantError(t, res, body, 405, "method_not_allowed")
	if res.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("Allow %q", res.Header.Get("Allow"))
	}
	res, body = call(t, s, req{method: "GET", target: "/api/v1/snapshots/abc"})
	wantError(t, res, body, 405, "method_not_allowed")
	for _, p := range []string{"/api/v1", "/api/v1/", "/api/v1/nope", "/api/v1/captures/", "/api/v1/captures/a/b", "/api/v2/captures"} {
		res, body := call(t, s, req{method: "GET", target: p})
		wantError(t, res, body, 404, "not_found")
	}
	res, body = call(t, s, req{method: "GET", target: "/api/v1/openapi.json"})
	if res.StatusCode != 200 || !bytes.Equal(body, openAPIDoc) {
		t.Fatalf("openapi: %d", res.StatusCode)
	}
}

// TestOpenAPIMatchesRoutes walks the server's routes and the document's
// paths: each must have the other.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	inDoc := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			inDoc[strings.ToUpper(m)+" "+p] = true
		}
	}
	r, dir, _ := v1Ring(t, 1, false)
	s, _ := v1Server(t, r, dir, Options{})
	inServer := map[string]bool{}
	for _, rt := range s.routes {
		inServer[rt.method+" "+rt.pattern] = true
	}
	for p := range s.handler.(*mux).ops {
		inServer["GET "+p] = true
	}
	for k := range inServer {
		if !inDoc[k] {
			t.Errorf("route %s is not in openapi.json", k)
		}
	}
	for k := range inDoc {
		if !inServer[k] {
			t.Errorf("openapi.json documents %s, which the server does not have", k)
		}
	}
	// Every route the document names answers something other than 404/405.
	for k := range inDoc {
		method, path, _ := strings.Cut(k, " ")
		path = strings.NewReplacer("{name}", r.Files()[0].Name, "{id}", "x").Replace(path)
		res, body := call(t, s, req{method: method, target: path})
		if res.StatusCode == 405 || res.StatusCode == 404 && !bytes.Contains(body, []byte("snapshot")) && method != "DELETE" {
			t.Errorf("%s %s: %d %s", method, path, res.StatusCode, body)
		}
	}
}

func readPcap(t *testing.T, b []byte) (capture.LinkType, []pcapio.Record) {
	t.Helper()
	rd, err := pcapio.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("output is no pcap: %v", err)
	}
	var out []pcapio.Record
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			return rd.LinkType(), out
		}
		if err != nil {
			t.Fatal(err)
		}
		rec.Data = slices.Clone(rec.Data)
		out = append(out, rec)
	}
}

func TestV1Pcap(t *testing.T) {
	r, dir, t0 := v1Ring(t, 4, true)
	s, logs := v1Server(t, r, dir, Options{MaxWindow: time.Minute})
	ms := int64(time.Millisecond)
	from, to := t0+150*ms, t0+250*ms
	q := fmt.Sprintf("/api/v1/pcap?from=%s&to=%d.%09d&interface=eth0", time.Unix(0, from).UTC().Format(time.RFC3339Nano), to/1e9, to%1e9)
	res, body := call(t, s, req{method: "GET", target: q})
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/vnd.tcpdump.pcap" {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	lt, recs := readPcap(t, body)
	// Two workers, one packet a millisecond each, 100 ms: 200 packets.
	if lt != capture.LinkTypeEthernet || len(recs) != 200 {
		t.Fatalf("link type %d, %d packets", lt, len(recs))
	}
	for i, rec := range recs {
		if rec.Timestamp < from || rec.Timestamp >= to || i > 0 && rec.Timestamp < recs[i-1].Timestamp {
			t.Fatalf("packet %d at %d outside [%d,%d) or out of order", i, rec.Timestamp, from, to)
		}
	}
	if res.Trailer.Get("Sonde-Truncated") != "false" || res.Trailer.Get("Sonde-Packets") != "200" {
		t.Fatalf("trailers %v", res.Trailer)
	}
	a := logs.FilterField(zap.String("route", "/api/v1/pcap")).All()
	if len(a) != 1 || a[0].ContextMap()["bytes"] != int64(len(body)) || a[0].ContextMap()["packets"] != uint64(200) {
		t.Fatalf("audit %v", a)
	}

	// Filtered: dst port 53 is every other packet.
	res, body = call(t, s, req{method: "GET", target: fmt.Sprintf("/api/v1/pcap?from=%d&to=%d&interface=eth0&filter=udp+dst+port+53", from/1e9, from/1e9+1)})
	if _, recs := readPcap(t, body); res.StatusCode != 200 || len(recs) != 400 {
		t.Fatalf("filtered: %d, %d packets", res.StatusCode, len(recs))
	}

	// The byte bound ends the pcap at a record boundary and says so.
	small, _ := v1Server(t, r, dir, Options{MaxBytes: 1000})
	res, body = call(t, small, req{method: "GET", target: q})
	if _, recs := readPcap(t, body); len(body) > 1000 || len(recs) == 0 || res.Trailer.Get("Sonde-Truncated") != "true" {
		t.Fatalf("bounded: %d bytes, %d packets, trailers %v", len(body), len(recs), res.Trailer)
	}

	good := fmt.Sprintf("from=%d&to=%d", t0/1e9, t0/1e9+1)
	for _, c := range []struct{ query, code, mention string }{
		{"to=1", "bad_parameter", "from"},
		{"from=1", "bad_parameter", "to"},
		{"from=yesterday&to=1", "bad_parameter", "from"},
		{"from=1&to=2026-13-01T00:00:00Z", "bad_parameter", "to"},
		{"from=1.&to=2", "bad_parameter", "from"},
		{"from=1.1234567891&to=2", "bad_parameter", "from"},
		{"from=-1&to=2", "bad_parameter", "from"},
		{"from=5&to=4", "bad_parameter", "reversed"},
		{"from=5&to=5", "bad_parameter", "reversed"},
		{"from=0&to=61", "window_too_long", "--api-max-window"},
		{good + "&interface=eth0&filter=tcp+and+and", "bad_parameter", "position 8"},
		{good + "&interface=eth0&filter=host+foo.example", "bad_parameter", "foo.example"},
		{good + "&interface=eth0&flow=10.0.0.1:1-10.0.0.2:2", "bad_parameter", "flow"},
		{good + "&interface=eth0&flow=10.0.0.1:1-[::1]:2/tcp", "bad_parameter", "flow"},
		{good, "mixed_link_types", "interface="},
		{good + "&color=red", "bad_parameter", "color"},
	} {
		res, body := call(t, s, req{method: "GET", target: "/api/v1/pcap?" + c.query})
		wantError(t, res, body, 400, c.code, c.mention)
	}
	// The raw-IP interface alone extracts with its own link type.
	res, body = call(t, s, req{method: "GET", target: "/api/v1/pcap?" + good + "&interface=tun0&filter=udp"})
	if lt, recs := readPcap(t, body); res.StatusCode != 200 || lt != capture.LinkTypeRaw || len(recs) != 10 {
		t.Fatalf("tun0: %d, link type %d, %d packets", res.StatusCode, lt, len(recs))
	}
	// An empty window is an empty pcap, not an error.
	res, body = call(t, s, req{method: "GET", target: "/api/v1/pcap?from=100&to=101"})
	if _, recs := readPcap(t, body); res.StatusCode != 200 || len(recs) != 0 {
		t.Fatalf("empty window: %d, %d packets", res.StatusCode, len(recs))
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]int64{
		"1767366245":                     1767366245e9,
		"1767366245.5":                   1767366245e9 + 5e8,
		"1767366245.000000001":           1767366245e9 + 1,
		"2026-01-02T15:04:05Z":           time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC).UnixNano(),
		"2026-01-02T16:04:05.25+01:00":   time.Date(2026, 1, 2, 15, 4, 5, 25e7, time.UTC).UnixNano(),
		"2026-01-02T15:04:05.123456789Z": time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.UTC).UnixNano(),
	} {
		got, err := parseTime(in)
		if err != nil || got.UnixNano() != want {
			t.Errorf("parseTime(%q) = %v, %v; want %d", in, got.UnixNano(), err, want)
		}
	}
	for _, bad := range []string{"", "x", "1e9", "+5", "1.", ".5", "1.-5", "1.1234567890", "2026-01-02", "99999999999999"} {
		if _, err := parseTime(bad); err == nil {
			t.Errorf("parseTime(%q) accepted", bad)
		}
	}
}

func TestV1Snapshots(t *testing.T) {
	r, dir, t0 := v1Ring(t, 4, false)
	s, logs := v1Server(t, r, dir, Options{})
	body := fmt.Sprintf(`{"from": %q, "to": "%d.2", "reason": "incident 7", "ttl": "72h"}`, time.Unix(0, t0).UTC().Format(time.RFC3339), t0/1e9)
	res, b := call(t, s, req{method: "POST", target: "/api/v1/snapshots", body: body, header: map[string]string{"Content-Type": "application/json"}})
	if res.StatusCode != 201 {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	snap := decode[Snapshot](t, res, b)
	if len(snap.Files) != 4 || snap.Reason != "incident 7" || snap.Expires == nil || res.Header.Get("Location") != "/api/v1/snapshots/"+snap.ID {
		t.Fatalf("snapshot %+v", snap)
	}
	res, b = call(t, s, req{method: "GET", target: "/api/v1/snapshots"})
	if list := decode[struct{ Snapshots []Snapshot }](t, res, b).Snapshots; len(list) != 1 || list[0].ID != snap.ID {
		t.Fatalf("list %s", b)
	}
	if n := len(logs.FilterField(zap.String("route", "/api/v1/snapshots")).All()); n != 1 {
		t.Fatalf("%d audit lines for the pin", n)
	}

	for _, c := range []struct {
		body, ctype string
		status      int
		code        string
		mention     string
	}{
		{`{"from": "1", "to": "0"}`, "", 400, "bad_parameter", "to"},
		{`{"to": "1"}`, "", 400, "bad_parameter", "from"},
		{`{"from": "x", "to": "1"}`, "", 400, "bad_parameter", "from"},
		{`{"from": "0", "to": "1", "ttl": "forever"}`, "", 400, "bad_parameter", "ttl"},
		{`{"from": "0", "to": "1", "ttl": "-1h"}`, "", 400, "bad_parameter", "ttl"},
		{`{"from": "0", "to": "1", "colour": "red"}`, "", 400, "bad_body", "colour"},
		{`{"from": "0", "to": "1"} {}`, "", 400, "bad_body", "more than one"},
		{`[1,2]`, "", 400, "bad_body", ""},
		{`{"from": "0", "to": "1", "reason": "` + strings.Repeat("x", 2000) + `"}`, "", 400, "bad_parameter", "reason"},
		{`{"from": "0", "to": "1", "reason": "` + strings.Repeat("x", 70<<10) + `"}`, "", 413, "body_too_large", ""},
		{`{"from": "0", "to": "1"}`, "text/plain", 415, "unsupported_media_type", ""},
		{`{"from": "0", "to": "1"}`, "", 404, "no_files", ""},
	} {
		res, b := call(t, s, req{method: "POST", target: "/api/v1/snapshots", body: c.body, header: map[string]string{"Content-Type": c.ctype}})
		wantError(t, res, b, c.status, c.code, c.mention)
	}

	// The budget: a tenth of MaxBytes by default; refused with the numbers.
	tight, err := ring.Open(ring.Config{Dir: dir, FileMaxDuration: time.Minute, MaxBytes: 1 << 30, PinMaxBytes: r.Files()[0].Bytes * 5}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := v1Server(t, tight, dir, Options{})
	res, b = call(t, s2, req{method: "POST", target: "/api/v1/snapshots", body: fmt.Sprintf(`{"from": "%d", "to": "%d"}`, t0/1e9, t0/1e9+10)})
	wantError(t, res, b, 409, "pin_budget_exceeded", "--pin-max-bytes")
	var nums struct{ PinnedBytes, AddingBytes, BudgetBytes int64 }
	json.Unmarshal(b, &struct {
		P *int64 `json:"pinned_bytes"`
		A *int64 `json:"adding_bytes"`
		B *int64 `json:"budget_bytes"`
	}{&nums.PinnedBytes, &nums.AddingBytes, &nums.BudgetBytes})
	if nums.BudgetBytes != r.Files()[0].Bytes*5 || nums.AddingBytes <= nums.BudgetBytes-nums.PinnedBytes {
		t.Fatalf("409 numbers %+v", nums)
	}

	res, b = call(t, s, req{method: "DELETE", target: "/api/v1/snapshots/" + snap.ID})
	if res.StatusCode != 204 {
		t.Fatalf("delete: %d %s", res.StatusCode, b)
	}
	res, b = call(t, s, req{method: "DELETE", target: "/api/v1/snapshots/" + snap.ID})
	wantError(t, res, b, 404, "not_found")
}

// TestV1SlowClient: a download longer than WriteTimeout completes, since
// every write pushes the deadline forward.
func TestV1SlowClient(t *testing.T) {
	r, dir, _ := v1Ring(t, 1, false)
	big := filepath.Join(dir, "20260301T120000.000000000Z_node1_eth1_0.pcap")
	buf := pcapio.AppendFileHeader(nil, pcapio.FormatPcap, capture.LinkTypeEthernet, 65535, "")
	for i := 0; len(buf) < 24<<20; i++ {
		buf = pcapio.AppendRecord(buf, pcapio.FormatPcap, int64(i)*1000, 1500, make([]byte, 1500))
	}
	os.WriteFile(big, buf, 0o640)
	r2, err := ring.Open(ring.Config{Dir: dir, FileMaxDuration: time.Minute}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The write deadline moves with each chunk of at most 4 MiB: a client
	// reading 1 MiB every 100 ms takes ~400 ms a chunk (well inside 1 s, even
	// under -race on a busy machine) and ~2.4 s in all, over 2 WriteTimeouts.
	const writeTimeout = time.Second
	s, _ := v1Server(t, r2, dir, Options{Listener: ln, WriteTimeout: writeTimeout})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	_ = r

	rq, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/api/v1/captures/"+filepath.Base(big), nil)
	rq.Header.Set("Authorization", "Bearer "+testToken)
	res, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	start := time.Now()
	var got int
	chunk := make([]byte, 1<<20)
	for {
		n, err := res.Body.Read(chunk)
		got += n
		time.Sleep(100 * time.Millisecond) // at least 24 reads
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes and %s: %v", got, time.Since(start), err)
		}
	}
	if got != len(buf) || time.Since(start) < 2*writeTimeout {
		t.Fatalf("%d bytes of %d in %s", got, len(buf), time.Since(start))
	}
}

// TestV1MutualTLS: with a client CA, a connection without a certificate is
// refused in the handshake, and a verified certificate authenticates the
// request (audited by its CN) without a token.
func TestV1MutualTLS(t *testing.T) {
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(cn string, usage x509.ExtKeyUsage, name string) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		kb, _ := x509.MarshalECPrivateKey(key)
		os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
		os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	issue("sonde", x509.ExtKeyUsageServerAuth, "server")
	client := issue("analyst-1", x509.ExtKeyUsageClientAuth, "client")
	os.WriteFile(filepath.Join(dir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600)

	if _, err := TLSConfig(filepath.Join(dir, "server.crt"), filepath.Join(dir, "missing.key"), ""); err == nil {
		t.Fatal("missing key accepted")
	}
	if _, err := TLSConfig(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "server.key")); err == nil {
		t.Fatal("client CA file without a certificate accepted")
	}
	cfg, err := TLSConfig(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	r, rdir, _ := v1Ring(t, 1, false)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	s, logs := v1Server(t, r, rdir, Options{Listener: ln, TLS: cfg})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	get := func(certs []tls.Certificate) (*http.Response, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
		res, err := c.Get("https://" + ln.Addr().String() + "/api/v1/captures/" + r.Files()[0].Name)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		return res, err
	}
	if _, err := get(nil); err == nil {
		t.Fatal("connection without a client certificate accepted")
	}
	res, err := get([]tls.Certificate{client})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("with a client certificate: %v %v", res, err)
	}
	// The audit line is written when the handler returns, which can be just
	// after the client has read the whole body.
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterField(zap.String("who", "cert:analyst-1")).Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a := logs.FilterField(zap.String("who", "cert:analyst-1")).Len(); a != 1 {
		t.Fatalf("%d audit lines naming the certificate", a)
	}
}
