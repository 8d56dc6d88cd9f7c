package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/sonde-project/sonde/internal/api"
)

// mutable is a discovery whose members a test changes.
type mutable struct {
	mu      sync.Mutex
	members []string
}

func (d *mutable) set(m ...string) {
	d.mu.Lock()
	d.members = m
	d.mu.Unlock()
}

func (d *mutable) Members(ctx context.Context) ([]Member, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Static(d.members).Members(ctx)
}

func (d *mutable) String() string { return "test members" }

// runFleet runs a fleet server (Run, with its health poll) on loopback.
func runFleet(t *testing.T, disc Discovery, client *Client, mod func(*Config)) (*Server, string) {
	t.Helper()
	if client == nil {
		client = &Client{HTTP: NewHTTPClient(nil), Scheme: "http", Token: memberToken, Timeout: 2 * time.Second, IdleTimeout: 2 * time.Second}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Discovery: disc, Client: client, Tokens: []string{fleetToken}, Listener: ln, PollInterval: 50 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, "http://" + ln.Addr().String()
}

func fetch(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// series is every sample of the fleet's registry: "name{l="v",...}" to value.
func series(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func up(name string) string { return fmt.Sprintf("sonde_fleet_member_up{member=%q}", name) }
func failures(name, reason string) string {
	return fmt.Sprintf("sonde_fleet_member_failures_total{member=%q,reason=%q}", name, reason)
}

type unwritable struct{ fakeHealth }

func (unwritable) Writable() error { return errors.New("read-only file system") }

// TestFleetMemberUp: the background poll sets sonde_fleet_member_up to 1
// for healthy members and to 0 for one that stops, one that refuses the
// fleet's token on /api/health (--api-auth-ops) and one that is degraded;
// /api/health of the fleet is degraded and names them; a member that
// discovery drops loses its series.
func TestFleetMemberUp(t *testing.T) {
	a := newSensor(t, "node-a", 0, 10, []string{"eth0"}, nil)
	b := newSensor(t, "node-b", 1, 10, []string{"eth0"}, nil)
	locked := httptest.NewServer(api.New(api.Options{AuthOps: true, Tokens: []string{"another-token-0123456789abcdef"}}, zap.NewNop(), prometheus.NewRegistry(), fakeHealth{}).Handler())
	defer locked.Close()
	sick := httptest.NewServer(api.New(api.Options{}, zap.NewNop(), prometheus.NewRegistry(), unwritable{}).Handler())
	defer sick.Close()
	disc := &mutable{}
	disc.set(a.addr(), b.addr())
	s, url := runFleet(t, disc, nil, nil)
	reg := s.metrics.reg

	health := func() Health {
		code, body := fetch(t, url+"/api/health", "")
		var h Health
		if err := json.Unmarshal([]byte(body), &h); err != nil || code != 200 {
			t.Fatalf("health: %d %v %s", code, err, body)
		}
		return h
	}
	waitFor(t, "both members up", func() bool {
		m := series(t, reg)
		return m[up(a.addr())] == 1 && m[up(b.addr())] == 1 && m["sonde_fleet_members{}"] == 2
	})
	if h := health(); h.Status != "ok" || *h.Members != 2 || *h.MembersUp != 2 || len(h.Down) != 0 {
		t.Fatalf("health with all up: %+v", h)
	}
	// /metrics serves them, open without --api-auth-ops.
	if code, body := fetch(t, url+"/metrics", ""); code != 200 || !strings.Contains(body, up(a.addr())+" 1") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics: %d %.500s", code, body)
	}

	// b stops: 1 -> 0 at the next poll, and the fleet is degraded.
	b.srv.Close()
	waitFor(t, "b down", func() bool { return series(t, reg)[up(b.addr())] == 0 })
	if series(t, reg)[up(a.addr())] != 1 {
		t.Fatal("a went down with b")
	}
	if h := health(); h.Status != "degraded" || *h.MembersUp != 1 || len(h.Down) != 1 || h.Down[0].Name != b.addr() || h.Down[0].Error == "" {
		t.Fatalf("health with b down: %+v", h)
	}

	// A member refusing the fleet's token, and a degraded one, are down.
	disc.set(a.addr(), b.addr(), locked.Listener.Addr().String(), sick.Listener.Addr().String())
	waitFor(t, "four members polled", func() bool {
		m := series(t, reg)
		_, l := m[up(locked.Listener.Addr().String())]
		_, k := m[up(sick.Listener.Addr().String())]
		return l && k
	})
	m := series(t, reg)
	if m[up(locked.Listener.Addr().String())] != 0 || m[up(sick.Listener.Addr().String())] != 0 || m[up(a.addr())] != 1 {
		t.Fatalf("member_up: %v", m)
	}
	h := health()
	reasons := map[string]string{}
	for _, d := range h.Down {
		reasons[d.Name] = d.Error
	}
	if !strings.Contains(reasons[locked.Listener.Addr().String()], "HTTP 401") || !strings.Contains(reasons[sick.Listener.Addr().String()], `"degraded"`) {
		t.Fatalf("down members %+v", h.Down)
	}

	// A request fails on b: its failure series exist; then discovery drops
	// b and every series naming it goes.
	if code, body := fetch(t, url+"/api/v1/captures", fleetToken); code != 200 {
		t.Fatalf("captures: %d %s", code, body)
	}
	if series(t, reg)[failures(b.addr(), ReasonConnect)] != 1 {
		t.Fatalf("b's connect failure not counted: %v", series(t, reg))
	}
	disc.set(a.addr())
	waitFor(t, "b's series gone", func() bool {
		for k := range series(t, reg) {
			if strings.Contains(k, b.addr()) || strings.Contains(k, locked.Listener.Addr().String()) {
				return false
			}
		}
		return true
	})
	if m := series(t, reg); m[up(a.addr())] != 1 || m["sonde_fleet_members{}"] != 1 {
		t.Fatalf("after b left: %v", m)
	}
	if h := health(); h.Status != "ok" || *h.Members != 1 {
		t.Fatalf("health after the down members left: %+v", h)
	}
}

// TestFleetMemberFailures: each way a member fails a window is counted
// under its reason; sonde_fleet_merged_bytes_total is the merged pcapng's
// size and sonde_fleet_merged_packets_total its packets; requests are
// counted by route and code; the series pass the metrics linter.
func TestFleetMemberFailures(t *testing.T) {
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
	// broken sends half its window, then drops the connection.
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(stream)))
		w.WriteHeader(200)
		w.Write(stream[:len(stream)/2])
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer broken.Close()
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.WriteError(w, http.StatusServiceUnavailable, "unavailable", "the capture API is not enabled on this server")
	}))
	defer refusing.Close()
	closed := "127.0.0.1:1"

	disc := &mutable{}
	members := []string{a.addr(), silent.Listener.Addr().String(), broken.Listener.Addr().String(), refusing.Listener.Addr().String(), closed}
	disc.set(members...)
	client := &Client{HTTP: NewHTTPClient(nil), Scheme: "http", Token: memberToken, Timeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}
	// The poll is slow here: this test counts request failures alone.
	s, url := runFleet(t, disc, client, func(c *Config) { c.PollInterval = time.Hour })
	reg := s.metrics.reg

	req, _ := http.NewRequest(http.MethodGet, url+window, nil)
	req.Header.Set("Authorization", "Bearer "+fleetToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("reading the window: %v", err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("window: %d %s", res.StatusCode, body)
	}
	got, _ := readMerged(t, body)
	if failed := res.Trailer.Values(FailedTrailer); len(failed) != 1 || !strings.Contains(failed[0], broken.Listener.Addr().String()) {
		t.Fatalf("%s %q", FailedTrailer, failed)
	}

	m := series(t, reg)
	want := map[string]float64{
		failures(silent.Listener.Addr().String(), ReasonTimeout):      1,
		failures(broken.Listener.Addr().String(), ReasonStream):       1,
		failures(refusing.Listener.Addr().String(), ReasonStatus):     1,
		failures(closed, ReasonConnect):                               1,
		`sonde_fleet_requests_total{code="200",route="/api/v1/pcap"}`: 1,
		`sonde_fleet_request_seconds{route="/api/v1/pcap"}`:           1,
		"sonde_fleet_merged_bytes_total{}":                            float64(len(body)),
		"sonde_fleet_merged_packets_total{}":                          float64(len(got)),
		"sonde_fleet_members{}":                                       5,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	var total float64
	for k, v := range m {
		if strings.HasPrefix(k, "sonde_fleet_member_failures_total{") {
			total += v
		}
	}
	if total != 4 {
		t.Errorf("%v member failures in all, want 4: %v", total, m)
	}
	if p := res.Trailer.Get("Sonde-Packets"); p != fmt.Sprint(len(got)) {
		t.Errorf("Sonde-Packets %s, merged %d", p, len(got))
	}

	// A refused request is counted under its route and code.
	fetch(t, url+window, "wrong-token-0123456789abcdef")
	if n := series(t, reg)[`sonde_fleet_requests_total{code="401",route="/api/v1/pcap"}`]; n != 1 {
		t.Errorf("401s counted %v, want 1", n)
	}

	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("metrics lint: %v %+v", err, problems)
	}
}

// TestFleetAuthOps: /metrics, /api/health and /api/ready are open, unless
// AuthOps: then they take the fleet's token like /api/v1.
func TestFleetAuthOps(t *testing.T) {
	a := newSensor(t, "node-a", 0, 10, []string{"eth0"}, nil)
	for _, ops := range []bool{false, true} {
		_, url := runFleet(t, Static{a.addr()}, nil, func(c *Config) { c.AuthOps = ops })
		for _, p := range []string{"/metrics", "/api/health", "/api/ready"} {
			code, body := fetch(t, url+p, "")
			if want := map[bool]int{false: 200, true: 401}[ops]; code != want {
				t.Errorf("AuthOps %v: %s without a token: %d, want %d: %.200s", ops, p, code, want, body)
			}
			if code, _ := fetch(t, url+p, fleetToken); code != 200 {
				t.Errorf("AuthOps %v: %s with the token: %d", ops, p, code)
			}
		}
	}
}

// TestFailureReason: the reasons of errors the client returns.
func TestFailureReason(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&StatusError{Status: 401}, ReasonStatus},
		{&deadlineError{"no response headers", time.Second}, ReasonTimeout},
		{&streamError{&deadlineError{"no data", time.Second}}, ReasonTimeout},
		{&streamError{errors.New("unexpected EOF")}, ReasonStream},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, ReasonConnect},
	} {
		if got := failureReason(c.err); got != c.want {
			t.Errorf("%v: %s, want %s", c.err, got, c.want)
		}
	}
}
