package fleet

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

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/exporter"
	"github.com/sonde-project/sonde/internal/api"
	"github.com/sonde-project/sonde/internal/pcapio"
	"github.com/sonde-project/sonde/internal/report"
	"github.com/sonde-project/sonde/internal/ring"
)

const (
	memberToken = "member-token-0123456789abcdef"
	fleetToken  = "fleet-token-0123456789abcdef"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()

type fakeHealth struct{}

func (fakeHealth) Interfaces() []capture.InterfaceStatus {
	return []capture.InterfaceStatus{{Name: "eth0", State: capture.StateCapturing, Workers: 1, LinkType: capture.LinkTypeEthernet}}
}
func (fakeHealth) Stats() exporter.RingStats           { return exporter.RingStats{} }
func (fakeHealth) StreamStats() []exporter.StreamStats { return nil }
func (fakeHealth) Writable() error                     { return nil }

// sensor is one real sensor API over a ring of its own: n UDP packets on
// each of its interfaces (all Ethernet but a raw-IP "tun0"), spaced 1 ms
// and offset by k µs so the members interleave.
type sensor struct {
	node string
	srv  *httptest.Server
	pkts int // packets in the ring
}

func newSensor(t *testing.T, node string, k, n int, ifaces []string, tc *tls.Config) *sensor {
	t.Helper()
	dir := t.TempDir()
	for _, iface := range ifaces {
		lt := capture.LinkTypeEthernet
		if iface == "tun0" {
			lt = capture.LinkTypeRaw
		}
		buf := pcapio.AppendFileHeader(nil, pcapio.FormatPcap, lt, 65535, "")
		for i := range n {
			d := make([]byte, 60+i%100)
			binary.BigEndian.PutUint16(d[12:], 0x0800)
			if lt == capture.LinkTypeRaw {
				d = d[14:]
			}
			copy(d[len(d)-len(node)-4:], node)
			binary.BigEndian.PutUint32(d[len(d)-4:], uint32(i))
			buf = pcapio.AppendRecord(buf, pcapio.FormatPcap, t0+int64(i)*int64(time.Millisecond)+int64(k)*int64(time.Microsecond), uint32(len(d)), d)
		}
		name := fmt.Sprintf("%s_%s_%s_0.pcap", time.Unix(0, t0).UTC().Format("20060102T150405.000000000Z"), node, iface)
		if err := os.WriteFile(filepath.Join(dir, name), buf, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	r, err := ring.Open(ring.Config{Dir: dir, FileMaxDuration: time.Minute, MaxBytes: 1 << 30}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	s := api.New(api.Options{Store: r, DataDir: dir, Tokens: []string{memberToken}, Node: node, TLS: tc}, zap.NewNop(), prometheus.NewRegistry(), fakeHealth{})
	t.Cleanup(func() { s.Close() })
	srv := httptest.NewUnstartedServer(s.Handler())
	if tc != nil {
		srv.TLS = tc
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return &sensor{node: node, srv: srv, pkts: n * len(ifaces)}
}

func (s *sensor) addr() string { return s.srv.Listener.Addr().String() }

// newFleet serves a fleet of members over httptest, with reports.
func newFleet(t *testing.T, members []string, client *Client) *httptest.Server {
	t.Helper()
	if client == nil {
		client = &Client{HTTP: NewHTTPClient(nil), Scheme: "http", Token: memberToken, Timeout: 2 * time.Second, IdleTimeout: 2 * time.Second}
	}
	q, err := report.New(report.Config{Dir: t.TempDir()}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go q.Run(ctx)
	t.Cleanup(cancel)
	s, err := New(Config{Discovery: Static(members), Client: client, Tokens: []string{fleetToken}, Reports: q}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path, token string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return res, b
}

var window = "/api/v1/pcap?from=" + fmt.Sprint(t0/1e9) + "&to=" + fmt.Sprint(t0/1e9+10)

// TestFleetPcap: three real sensor APIs (one with a raw-IP interface too)
// behind a fleet: the window holds every packet each member serves for
// it, byte for byte, in time order, each on its node's interface; with one
// member gone the answer names it (header, section comment) and still has
// the others' packets.
func TestFleetPcap(t *testing.T) {
	a := newSensor(t, "node-a", 0, 300, []string{"eth0"}, nil)
	b := newSensor(t, "node-b", 1, 200, []string{"eth0", "tun0"}, nil)
	c := newSensor(t, "node-c", 2, 500, []string{"eth0"}, nil)
	fl := newFleet(t, []string{a.addr(), b.addr(), c.addr()}, nil)

	// What each member serves alone.
	want := map[string][]pkt{}
	for _, s := range []*sensor{a, b, c} {
		res, body := get(t, s.srv, window+"&format=pcapng", memberToken)
		if res.StatusCode != 200 {
			t.Fatalf("member %s: %d %s", s.node, res.StatusCode, body)
		}
		got, _ := readMerged(t, rename(t, body, s.node))
		if len(got) != s.pkts {
			t.Fatalf("member %s serves %d packets, want %d", s.node, len(got), s.pkts)
		}
		want[s.node] = got
	}

	res, body := get(t, fl, window, fleetToken)
	if res.StatusCode != 200 {
		t.Fatalf("fleet: %d %s", res.StatusCode, body)
	}
	if m := res.Header.Values(MissingHeader); len(m) != 0 {
		t.Fatalf("missing members %q with all up", m)
	}
	all := slices.Concat(want["node-a"], want["node-b"], want["node-c"])
	sortPkts(all)
	got, _ := readMerged(t, body)
	samePkts(t, got, all)
	if p := res.Trailer.Get("Sonde-Packets"); p != fmt.Sprint(len(all)) {
		t.Fatalf("Sonde-Packets %q, want %d", p, len(all))
	}
	wantPer := fmt.Sprintf("%s=300, %s=400, %s=500", a.addr(), b.addr(), c.addr())
	if p := res.Trailer.Get(MemberPacketsTrailer); p != wantPer {
		t.Fatalf("%s %q, want %q", MemberPacketsTrailer, p, wantPer)
	}
	tsharkCheck(t, body, len(all))

	// One member stops.
	b.srv.Close()
	res, body = get(t, fl, window, fleetToken)
	if res.StatusCode != 200 {
		t.Fatalf("fleet with b down: %d %s", res.StatusCode, body)
	}
	missing := res.Header.Values(MissingHeader)
	if len(missing) != 1 || !strings.HasPrefix(missing[0], b.addr()+`; reason="`) {
		t.Fatalf("%s %q, want %s with a reason", MissingHeader, missing, b.addr())
	}
	rest := slices.Concat(want["node-a"], want["node-c"])
	sortPkts(rest)
	got, _ = readMerged(t, body)
	samePkts(t, got, rest)
	if !bytes.Contains(body[:200], []byte("MISSING "+b.addr())) {
		t.Fatalf("section comment does not name the missing member: %q", body[:200])
	}

	// Every member gone: 502 naming each.
	a.srv.Close()
	c.srv.Close()
	res, body = get(t, fl, window, fleetToken)
	if res.StatusCode != http.StatusBadGateway || len(res.Header.Values(MissingHeader)) != 3 || !bytes.Contains(body, []byte(`"status":"missing"`)) {
		t.Fatalf("all down: %d %q %s", res.StatusCode, res.Header.Values(MissingHeader), body)
	}
}

// rename passes a member's own stream through Merge so its interfaces
// carry the NODE/IFACE names a fleet gives them.
func rename(t *testing.T, b []byte, node string) []byte {
	t.Helper()
	var out bytes.Buffer
	if _, err := Merge(context.Background(), &out, []Input{{Member: node, Node: node, R: bytes.NewReader(b)}}, MergeOptions{}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestFleetTimeouts: a member that never answers is missing after the
// header timeout; one that stalls midway is in the trailer after the idle
// timeout, with its packets up to the stall; the others are whole.
func TestFleetTimeouts(t *testing.T) {
	a := newSensor(t, "node-a", 0, 100, []string{"eth0"}, nil)
	release := make(chan struct{})
	defer close(release)
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer silent.Close()
	stream, _ := memberStream("node-s", []string{"eth0"}, 50, t0, 1000, func(int) int { return 100 }, false)
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Sonde-Node", "node-s")
		w.Write(stream[:len(stream)/2])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer stall.Close()
	client := &Client{HTTP: NewHTTPClient(nil), Scheme: "http", Token: memberToken, Timeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}
	fl := newFleet(t, []string{a.addr(), silent.Listener.Addr().String(), stall.Listener.Addr().String()}, client)
	start := time.Now()
	res, body := get(t, fl, window, fleetToken)
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s with timeouts of 300ms", d)
	}
	missing := res.Header.Values(MissingHeader)
	if len(missing) != 1 || !strings.Contains(missing[0], silent.Listener.Addr().String()) || !strings.Contains(missing[0], "no response headers within 300ms") {
		t.Fatalf("%s %q", MissingHeader, missing)
	}
	failed := res.Trailer.Values(FailedTrailer)
	if len(failed) != 1 || !strings.Contains(failed[0], stall.Listener.Addr().String()) || !strings.Contains(failed[0], "no data within 300ms") {
		t.Fatalf("%s %q", FailedTrailer, failed)
	}
	got, _ := readMerged(t, body)
	perNode := map[string]int{}
	for _, p := range got {
		perNode[p.iface]++
	}
	// Half the stalling stream is 24 whole packets and part of the 25th.
	if perNode["node-a/eth0"] != 100 || perNode["node-s/eth0"] != 24 {
		t.Fatalf("packets per interface %v, want node-a/eth0 100 and node-s/eth0 24", perNode)
	}
}

// TestFleetAuth: the fleet takes its own tokens only; members get the
// member token, and a member refusing it is missing with its 401.
func TestFleetAuth(t *testing.T) {
	a := newSensor(t, "node-a", 0, 10, []string{"eth0"}, nil)
	fl := newFleet(t, []string{a.addr()}, nil)
	for _, tok := range []string{"", memberToken} {
		if res, body := get(t, fl, window, tok); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("token %q: %d %s", tok, res.StatusCode, body)
		}
	}
	if res, _ := get(t, fl, "/api/health", ""); res.StatusCode != 200 {
		t.Fatalf("health: %d", res.StatusCode)
	}
	wrong := &Client{HTTP: NewHTTPClient(nil), Scheme: "http", Token: fleetToken, Timeout: time.Second}
	fl2 := newFleet(t, []string{a.addr()}, wrong)
	res, body := get(t, fl2, window, fleetToken)
	if res.StatusCode != http.StatusBadGateway || !strings.Contains(res.Header.Get(MissingHeader), "HTTP 401") {
		t.Fatalf("member refusing the token: %d %q %s", res.StatusCode, res.Header.Get(MissingHeader), body)
	}
	// A filter every member refuses is the members' 400, not a 502.
	res, body = get(t, fl, window+"&filter=tcp+and+foo", fleetToken)
	if res.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("foo")) {
		t.Fatalf("bad filter: %d %s", res.StatusCode, body)
	}
}

// TestFleetMutualTLS: members that require client certificates are
// reached with the fleet's certificate, and refuse a fleet without one.
func TestFleetMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
	sc, sk := leaf(t, ca, caKey, "sensor", x509.ExtKeyUsageServerAuth)
	cc, ck := leaf(t, ca, caKey, "fleet", x509.ExtKeyUsageClientAuth)
	serverTLS, err := api.TLSConfig(write("s.pem", sc), write("s.key", sk), caFile)
	if err != nil {
		t.Fatal(err)
	}
	a := newSensor(t, "node-a", 0, 10, []string{"eth0"}, serverTLS)
	for _, withCert := range []bool{true, false} {
		var tc *tls.Config
		if withCert {
			tc, err = ClientTLS(caFile, write("c.pem", cc), write("c.key", ck))
		} else {
			tc, err = ClientTLS(caFile, "", "")
		}
		if err != nil {
			t.Fatal(err)
		}
		fl := newFleet(t, []string{a.addr()}, &Client{HTTP: NewHTTPClient(tc), Scheme: "https", Timeout: 2 * time.Second})
		res, body := get(t, fl, window, fleetToken)
		if withCert && (res.StatusCode != 200 || res.Trailer.Get("Sonde-Packets") != "10") {
			t.Fatalf("with a client certificate: %d %q %s", res.StatusCode, res.Trailer.Get("Sonde-Packets"), body)
		}
		if !withCert && (res.StatusCode != http.StatusBadGateway || res.Header.Get(MissingHeader) == "") {
			t.Fatalf("without a client certificate: %d %q", res.StatusCode, res.Header.Get(MissingHeader))
		}
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// TestFleetCapturesMembersReports: the JSON endpoints name every member
// and its status; a report covers every node's packets.
func TestFleetCapturesMembersReports(t *testing.T) {
	a := newSensor(t, "node-a", 0, 30, []string{"eth0"}, nil)
	b := newSensor(t, "node-b", 1, 20, []string{"eth0", "tun0"}, nil)
	fl := newFleet(t, []string{a.addr(), b.addr(), "127.0.0.1:1"}, nil)

	res, body := get(t, fl, "/api/v1/captures", fleetToken)
	var caps struct {
		Captures []FleetCapture `json:"captures"`
		Members  []MemberStatus `json:"members"`
	}
	if err := json.Unmarshal(body, &caps); err != nil || res.StatusCode != 200 {
		t.Fatalf("captures: %d %v %s", res.StatusCode, err, body)
	}
	byMember := map[string]int{}
	for _, c := range caps.Captures {
		byMember[c.Member+" "+c.Node]++
	}
	if len(caps.Captures) != 3 || byMember[a.addr()+" node-a"] != 1 || byMember[b.addr()+" node-b"] != 2 {
		t.Fatalf("captures %+v", caps.Captures)
	}
	if len(caps.Members) != 3 || caps.Members[2].Status != "missing" || caps.Members[2].Error == "" || caps.Members[0].Node != "node-a" {
		t.Fatalf("members %+v", caps.Members)
	}

	res, body = get(t, fl, "/api/v1/members", fleetToken)
	if res.StatusCode != 200 || bytes.Count(body, []byte(`"status":"ok"`)) != 2 || bytes.Count(body, []byte(`"status":"missing"`)) != 1 {
		t.Fatalf("members: %d %s", res.StatusCode, body)
	}

	req, _ := http.NewRequest(http.MethodPost, fl.URL+"/api/v1/reports", strings.NewReader(fmt.Sprintf(`{"from": "%d", "to": "%d"}`, t0/1e9, t0/1e9+10)))
	req.Header.Set("Authorization", "Bearer "+fleetToken)
	pres, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(pres.Body)
	pres.Body.Close()
	var acc ReportAccepted
	if err := json.Unmarshal(body, &acc); err != nil || pres.StatusCode != http.StatusAccepted {
		t.Fatalf("report: %d %v %s", pres.StatusCode, err, body)
	}
	if len(acc.Members) != 3 || acc.Members[2].Status != "missing" || !strings.Contains(pres.Header.Get(MissingHeader), "127.0.0.1:1") {
		t.Fatalf("report members %+v", acc.Members)
	}
	var st report.Status
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, body = get(t, fl, "/api/v1/reports/"+acc.ID, fleetToken)
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if st.State == report.StateDone || st.State == report.StateFailed {
			break
		}
	}
	if st.State != report.StateDone || st.Packets != 30+40 {
		t.Fatalf("report %+v: want done over 70 packets", st)
	}
	res, body = get(t, fl, "/api/v1/reports/"+acc.ID+".json", fleetToken)
	if res.StatusCode != 200 || !json.Valid(body) {
		t.Fatalf("report document: %d %.200s", res.StatusCode, body)
	}
}

// TestFleetCaptureDownload: GET /api/v1/captures/{member}/{name} streams
// the member's own answer byte for byte, whole or a range, passes its 404
// and 416 on, names an unknown member, and makes a down member or one that
// breaks off midway a failure the client sees (502, or a broken transfer),
// never a short file that looks whole.
func TestFleetCaptureDownload(t *testing.T) {
	a := newSensor(t, "node-a", 0, 30, []string{"eth0"}, nil)
	b := newSensor(t, "node-b", 1, 20, []string{"eth0", "tun0"}, nil)
	release := make(chan struct{})
	defer close(release)
	// No Content-Length (chunked): only an abort tells the client it is short.
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 100))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer stall.Close()
	client := &Client{HTTP: NewHTTPClient(nil), Scheme: "http", Token: memberToken, Timeout: 2 * time.Second, IdleTimeout: 300 * time.Millisecond}
	fl := newFleet(t, []string{a.addr(), b.addr(), "127.0.0.1:1", stall.Listener.Addr().String()}, client)

	_, body := get(t, fl, "/api/v1/captures", fleetToken)
	var caps struct {
		Captures []FleetCapture `json:"captures"`
	}
	if err := json.Unmarshal(body, &caps); err != nil || len(caps.Captures) != 3 {
		t.Fatalf("captures: %v %s", err, body)
	}
	// fetch GETs url with token and hdr; direct asks a member itself,
	// viaFleet the fleet.
	fetch := func(url, token string, hdr map[string]string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res, b, err
	}
	direct := func(member, name string, hdr map[string]string) (*http.Response, []byte) {
		res, b, err := fetch("http://"+member+"/api/v1/captures/"+name, memberToken, hdr)
		if err != nil {
			t.Fatal(err)
		}
		return res, b
	}
	viaFleet := func(path string, hdr map[string]string) (*http.Response, []byte, error) {
		return fetch(fl.URL+path, fleetToken, hdr)
	}
	for _, c := range caps.Captures {
		path := "/api/v1/captures/" + c.Member + "/" + c.Name
		for _, hdr := range []map[string]string{nil, {"Range": "bytes=24-123"}, {"Range": "bytes=-10"}} {
			want, wantBody := direct(c.Member, c.Name, hdr)
			got, gotBody, err := viaFleet(path, hdr)
			if err != nil {
				t.Fatalf("%s %v: %v", path, hdr, err)
			}
			if got.StatusCode != want.StatusCode || !bytes.Equal(gotBody, wantBody) || len(gotBody) == 0 {
				t.Errorf("%s %v: %d, %d bytes; the member answers %d, %d bytes", path, hdr, got.StatusCode, len(gotBody), want.StatusCode, len(wantBody))
			}
			for _, k := range []string{"Content-Range", "Content-Length", "Content-Type", "Content-Disposition", api.NodeHeader} {
				if got.Header.Get(k) != want.Header.Get(k) {
					t.Errorf("%s %v: %s %q, the member's %q", path, hdr, k, got.Header.Get(k), want.Header.Get(k))
				}
			}
		}
		if res, _, _ := viaFleet(path, map[string]string{"Range": "bytes=24-123"}); res.StatusCode != http.StatusPartialContent {
			t.Errorf("%s: a range answered %d, want 206", path, res.StatusCode)
		}
	}
	// HEAD: the member's headers, no body.
	first := caps.Captures[0]
	req, _ := http.NewRequest(http.MethodHead, fl.URL+"/api/v1/captures/"+first.Member+"/"+first.Name, nil)
	req.Header.Set("Authorization", "Bearer "+fleetToken)
	if res, err := fl.Client().Do(req); err != nil || res.StatusCode != 200 || res.ContentLength != first.Bytes {
		t.Errorf("HEAD: %v %+v, want 200 with Content-Length %d", err, res, first.Bytes)
	}

	for _, c := range []struct {
		path, hdr string
		code      int
		says      string
	}{
		{"/api/v1/captures/" + a.addr() + "/20260101T000000.000000000Z_x_eth0_0.pcap", "", 404, "no capture"},
		{"/api/v1/captures/" + first.Member + "/" + first.Name, "bytes=999999-", 416, ""},
		{"/api/v1/captures/198.18.0.99:9750/" + first.Name, "", 404, `no member \"198.18.0.99:9750\"`}, // as JSON writes it
		{"/api/v1/captures/127.0.0.1:1/" + first.Name, "", 502, "member 127.0.0.1:1: "},
	} {
		hdr := map[string]string{}
		if c.hdr != "" {
			hdr["Range"] = c.hdr
		}
		res, body, err := viaFleet(c.path, hdr)
		if err != nil || res.StatusCode != c.code || !strings.Contains(string(body), c.says) {
			t.Errorf("%s %s: %v %d %s, want %d saying %q", c.path, c.hdr, err, res.StatusCode, body, c.code, c.says)
		}
	}
	// A member that stops after 100 bytes and goes quiet: the client's transfer breaks.
	res, body, err := viaFleet("/api/v1/captures/"+stall.Listener.Addr().String()+"/x.pcap", nil)
	if err == nil {
		t.Errorf("a member breaking off midway gave a clean %d answer of %d bytes", res.StatusCode, len(body))
	}
}
