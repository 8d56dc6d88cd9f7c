package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/exporter"
)

type fakeHealth struct {
	ifaces   []capture.InterfaceStatus
	stats    exporter.RingStats
	streams  []exporter.StreamStats
	writable error
}

func (f *fakeHealth) Interfaces() []capture.InterfaceStatus { return f.ifaces }
func (f *fakeHealth) Stats() exporter.RingStats             { return f.stats }
func (f *fakeHealth) StreamStats() []exporter.StreamStats   { return f.streams }
func (f *fakeHealth) Writable() error                       { return f.writable }

func healthy() *fakeHealth {
	return &fakeHealth{
		ifaces: []capture.InterfaceStatus{
			{Name: "eth1", State: capture.StateCapturing, Workers: 2, LinkType: capture.LinkTypeRaw},
			{Name: "eth0", State: capture.StateCapturing, Workers: 4, LinkType: capture.LinkTypeEthernet,
				Stats: capture.Stats{Packets: 100, Bytes: 15000, KernelDrops: 3}},
		},
		stats: exporter.RingStats{Files: 2, Bytes: 4096, OldestPacket: 1_700_000_000_500_000_000, NewestPacket: 1_700_000_060_000_000_000,
			FreeBytes: 40, TotalBytes: 100},
		streams: []exporter.StreamStats{
			{Interface: "eth0", Worker: 0, DropsQueueFull: 1},
			{Interface: "eth0", Worker: 1, DropsQueueFull: 2, DropsWriteError: 4},
		},
	}
}

func newServer(t *testing.T, h HealthSource) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := exporter.Register(reg, exporter.BuildInfo{Version: "1.0.0", Revision: "r", GoVersion: "go"}, h, h); err != nil {
		t.Fatal(err)
	}
	return New(Options{Version: "1.0.0", DataDir: "/data", MinFreePercent: 10}, zap.NewNop(), reg, h), reg
}

func do(t *testing.T, s *Server, method, path string) (*http.Response, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return res, body
}

func decode[T any](t *testing.T, res *http.Response, body []byte) T {
	t.Helper()
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

func TestHealthOK(t *testing.T) {
	s, _ := newServer(t, healthy())
	res, body := do(t, s, http.MethodGet, "/api/health")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	h := decode[Health](t, res, body)
	if h.Status != StatusOK || h.Version != "1.0.0" || h.UptimeSeconds < 0 {
		t.Errorf("health = %+v", h)
	}
	if len(h.Interfaces) != 2 || h.Interfaces[0].Name != "eth0" {
		t.Fatalf("interfaces = %+v, want eth0 then eth1", h.Interfaces)
	}
	want := InterfaceHealth{Name: "eth0", State: "capturing", Workers: 4, LinkType: "ethernet", Packets: 100, Bytes: 15000, KernelDrops: 3, UserDrops: 7}
	if h.Interfaces[0] != want {
		t.Errorf("eth0 = %+v, want %+v", h.Interfaces[0], want)
	}
	if h.Interfaces[1].LinkType != "raw" {
		t.Errorf("eth1 link type = %q", h.Interfaces[1].LinkType)
	}
	if h.Disk != (DiskHealth{Path: "/data", FreeBytes: 40, TotalBytes: 100, FreePercent: 40}) {
		t.Errorf("disk = %+v", h.Disk)
	}
	if h.Ring.Files != 2 || h.Ring.Bytes != 4096 || h.Ring.OldestPacket == nil || *h.Ring.OldestPacket != "2023-11-14T22:13:20.5Z" {
		t.Errorf("ring = %+v", h.Ring)
	}
	// Every documented key is present, even when empty.
	for _, key := range []string{`"status"`, `"uptime_seconds"`, `"error":""`, `"free_percent"`, `"newest_packet"`, `"user_drops"`} {
		if !strings.Contains(string(body), key) {
			t.Errorf("body lacks %s: %s", key, body)
		}
	}
}

func TestHealthDegraded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*fakeHealth)
	}{
		{"interface failed", func(f *fakeHealth) { f.ifaces[1].State, f.ifaces[1].Err = capture.StateFailed, "no such device" }},
		{"interface starting", func(f *fakeHealth) { f.ifaces[0].State = capture.StateStarting }},
		{"disk below floor", func(f *fakeHealth) { f.stats.FreeBytes = 9 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := healthy()
			tc.change(f)
			s, _ := newServer(t, f)
			res, body := do(t, s, http.MethodGet, "/api/health")
			if res.StatusCode != http.StatusOK {
				t.Errorf("liveness status %d, want 200 while serving", res.StatusCode)
			}
			if h := decode[Health](t, res, body); h.Status != StatusDegraded {
				t.Errorf("status = %q, want degraded", h.Status)
			}
		})
	}
}

func TestHealthEmptyRing(t *testing.T) {
	f := &fakeHealth{}
	s, _ := newServer(t, f)
	res, body := do(t, s, http.MethodGet, "/api/health")
	h := decode[Health](t, res, body)
	if h.Ring.OldestPacket != nil || h.Ring.NewestPacket != nil || h.Interfaces == nil || h.Disk.FreePercent != 0 {
		t.Errorf("empty health = %+v", h)
	}
	if !strings.Contains(string(body), `"oldest_packet":null`) || !strings.Contains(string(body), `"interfaces":[]`) {
		t.Errorf("body = %s", body)
	}
}

func TestReady(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*fakeHealth)
		status  int
		reasons []string
	}{
		{"ready", func(*fakeHealth) {}, http.StatusOK, nil},
		{"disk below floor is still ready", func(f *fakeHealth) { f.stats.FreeBytes = 1 }, http.StatusOK, nil},
		{"failed interface", func(f *fakeHealth) { f.ifaces[1].State, f.ifaces[1].Err = capture.StateFailed, "no such device" },
			http.StatusServiceUnavailable, []string{"interface eth0 is failed: no such device"}},
		{"not writable and starting", func(f *fakeHealth) {
			f.ifaces[0].State = capture.StateStarting
			f.writable = errors.New("read-only file system")
		}, http.StatusServiceUnavailable, []string{"interface eth1 is starting", "data directory /data is not writable: read-only file system"}},
		{"no interfaces", func(f *fakeHealth) { f.ifaces = nil }, http.StatusServiceUnavailable, []string{"no interface configured"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := healthy()
			tc.change(f)
			s, _ := newServer(t, f)
			res, body := do(t, s, http.MethodGet, "/api/ready")
			if res.StatusCode != tc.status {
				t.Errorf("status %d, want %d", res.StatusCode, tc.status)
			}
			r := decode[Ready](t, res, body)
			if r.Ready != (tc.status == http.StatusOK) || strings.Join(r.Reasons, "|") != strings.Join(tc.reasons, "|") {
				t.Errorf("ready = %+v, want reasons %q", r, tc.reasons)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	s, _ := newServer(t, healthy())
	res, body := do(t, s, http.MethodGet, "/metrics")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	for _, want := range []string{`sonde_capture_packets_total{interface="eth0"} 100`, "sonde_build_info{", "go_goroutines", "promhttp_metric_handler_requests_total"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	s.Handler().ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("OpenMetrics not negotiated: Content-Type %q", ct)
	}
	if !strings.HasSuffix(rec.Body.String(), "# EOF\n") {
		t.Error("OpenMetrics body lacks # EOF")
	}
}

func TestErrors(t *testing.T) {
	s, _ := newServer(t, healthy())
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{http.MethodGet, "/", http.StatusNotFound, "not_found"},
		{http.MethodGet, "/api/healthz", http.StatusNotFound, "not_found"},
		{http.MethodGet, "/metrics/", http.StatusNotFound, "not_found"},
		{http.MethodPost, "/api/health", http.StatusMethodNotAllowed, "method_not_allowed"},
		{http.MethodDelete, "/api/ready", http.StatusMethodNotAllowed, "method_not_allowed"},
		{http.MethodPut, "/metrics", http.StatusMethodNotAllowed, "method_not_allowed"},
	} {
		res, body := do(t, s, tc.method, tc.path)
		if res.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, res.StatusCode, tc.status)
		}
		e := decode[errorBody](t, res, body)
		if e.Code != tc.code || e.Error == "" {
			t.Errorf("%s %s: body %s", tc.method, tc.path, body)
		}
		if tc.status == http.StatusMethodNotAllowed && res.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow = %q", tc.method, tc.path, res.Header.Get("Allow"))
		}
	}
	if res, _ := do(t, s, http.MethodHead, "/api/health"); res.StatusCode != http.StatusOK {
		t.Errorf("HEAD /api/health: %d", res.StatusCode)
	}
}

func TestRunServesAndShutsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := New(Options{Listener: ln, DataDir: t.TempDir()}, zap.NewNop(), reg, healthy())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	res, err := http.Get("http://" + ln.Addr().String() + "/api/ready")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("ready over TCP: %d", res.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("Run did not return within the shutdown timeout")
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/api/health"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

// TestRunShutdownTimeout checks that a stuck request cannot hold shutdown
// beyond ShutdownTimeout.
func TestRunShutdownTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Listener: ln, ShutdownTimeout: 200 * time.Millisecond}, zap.NewNop(), prometheus.NewRegistry(), healthy())
	entered := make(chan struct{})
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		time.Sleep(3 * time.Second)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	go http.Get("http://" + ln.Addr().String() + "/slow")
	<-entered
	start := time.Now()
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "shutdown") {
		t.Errorf("Run = %v, want a shutdown error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %v", d)
	}
}

func TestRunListenError(t *testing.T) {
	s := New(Options{Listen: "256.0.0.1:bad"}, zap.NewNop(), prometheus.NewRegistry(), healthy())
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "api: listen on 256.0.0.1:bad") {
		t.Errorf("Run = %v", err)
	}
}

func TestProbeWritable(t *testing.T) {
	dir := t.TempDir()
	if err := ProbeWritable(dir); err != nil {
		t.Fatalf("ProbeWritable: %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("probe left %v", left)
	}
	if err := ProbeWritable(filepath.Join(dir, "missing")); err == nil {
		t.Error("ProbeWritable on a missing directory succeeded")
	}
}
