// Package api is the daemon's one HTTP listener: Prometheus metrics on
// /metrics, liveness on /api/health and readiness on /api/ready, and the
// capture API under /api/v1 (ring files, window extraction as pcap,
// snapshots, and traffic reports queued on a report.Queue), described by the
// OpenAPI document served at /api/v1/openapi.json.
//
// Requests read state through HealthSource, a view of the capture and ring
// components that main assembles, and Store, the ring itself; the package
// holds no state of its own beyond its start time. Every /api/v1 request
// needs a bearer token (or a verified client certificate), and every
// download, extraction and pin change is written to the audit log. Every
// response other than /metrics and pcap data is JSON, including errors.
package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/exporter"
	"github.com/sonde-project/sonde/internal/extract"
	"github.com/sonde-project/sonde/internal/privilege"
	"github.com/sonde-project/sonde/internal/report"
)

// HealthSource is what the health and readiness endpoints read: the capture
// interfaces, the ring, and whether the data directory accepts new files.
type HealthSource interface {
	exporter.CaptureSource
	exporter.RingSource
	// Writable returns nil if a new file can be created in the data
	// directory now. ProbeWritable is a suitable implementation.
	Writable() error
}

// Options configure a Server. Zero timeouts take the defaults below.
type Options struct {
	// Filter says which filter runs where, for /api/health.
	Filter FilterHealth
	// Listen is the host:port to listen on, used when Listener is nil.
	Listen string
	// Listener, if set, is served instead of listening on Listen (tests, or
	// a socket opened before privileges were dropped). Run closes it.
	Listener net.Listener

	// Version is reported by /api/health.
	Version string
	// Node is the sensor's name, sent as the Sonde-Node header of every
	// answer (empty: the node of the ring's files).
	Node string
	// DataDir is the capture ring directory, reported by /api/health.
	DataDir string
	// MinFreePercent is the free-space floor of the data volume; below it
	// /api/health reports "degraded".
	MinFreePercent int

	// Store is the ring /api/v1 serves; nil leaves /api/v1 answering 503.
	Store Store
	// Opener opens the files Store lists, for /api/v1/pcap and ring
	// reports; nil opens them in DataDir (extract.Dir).
	Opener extract.Opener
	// Tokens are the bearer tokens /api/v1 accepts (see ReadTokenFile).
	// With none and AuthDisabled false, every /api/v1 request gets 401.
	Tokens []string
	// AuthDisabled lets /api/v1 requests in without a token.
	AuthDisabled bool
	// AuthOps requires the token on /metrics, /api/health and /api/ready too.
	AuthOps bool
	// TLS, if set, is served instead of plain HTTP (see TLSConfig).
	TLS *tls.Config
	// MaxWindow bounds the window of /api/v1/pcap (default 1h); MaxBytes
	// the bytes one extraction serves (default 4GiB).
	MaxWindow time.Duration
	MaxBytes  int64
	// Reports queues the reports of /api/v1/reports; nil answers them 503.
	Reports *report.Queue

	ReadHeaderTimeout time.Duration // default 5s
	ReadTimeout       time.Duration // default 10s
	// WriteTimeout bounds each write of a response; downloads push the
	// deadline forward before every write, so it does not bound them whole.
	WriteTimeout    time.Duration // default 30s
	IdleTimeout     time.Duration // default 2m
	ShutdownTimeout time.Duration // default 5s
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ReadHeaderTimeout, 5*time.Second)
	def(&o.ReadTimeout, 10*time.Second)
	def(&o.WriteTimeout, 30*time.Second)
	def(&o.IdleTimeout, 2*time.Minute)
	def(&o.ShutdownTimeout, 5*time.Second)
	def(&o.MaxWindow, DefaultMaxWindow)
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
}

// Server serves the API until its context ends.
type Server struct {
	opts    Options
	log     *zap.Logger
	health  HealthSource
	start   time.Time
	handler http.Handler

	store  Store
	root   *os.Root       // the data directory, for /api/v1 downloads
	open   extract.Opener // the files of windows: opts.Opener or root
	auth   *authenticator
	routes []route
	audit  *zap.Logger
}

// New returns a server for reg's metrics and health's state. It does not
// listen until Run.
func New(opts Options, log *zap.Logger, reg *prometheus.Registry, health HealthSource) *Server {
	opts.setDefaults()
	s := &Server{opts: opts, log: log, health: health, start: time.Now(), store: opts.Store,
		auth: newAuthenticator(opts.Tokens, opts.AuthDisabled), audit: log.Named("audit")}
	s.routes = append(s.v1Routes(), s.reportRoutes()...)
	if opts.Store != nil && opts.DataDir != "" {
		root, err := os.OpenRoot(opts.DataDir)
		if err != nil {
			log.Error("cannot open the data directory for /api/v1 downloads", zap.Error(err))
		} else {
			s.root = root
		}
	}
	s.open = opts.Opener
	if s.open == nil && s.root != nil {
		s.open = extract.Dir(s.root)
	}
	switch {
	case opts.AuthDisabled:
		log.Warn("API AUTHENTICATION IS DISABLED (--api-auth=false): anyone who reaches the listener can download every packet in the ring")
	case len(opts.Tokens) == 0:
		log.Warn("no API token configured (--api-token-file): every /api/v1 request is refused with 401")
	}

	metrics := promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:          zap.NewStdLog(log.Named("metrics")),
		ErrorHandling:     promhttp.ContinueOnError, // a failing collector must not hide the others
		EnableOpenMetrics: true,
		Registry:          reg,
	}))
	s.handler = &mux{s: s, ops: router{
		"/metrics":    metrics,
		"/api/health": http.HandlerFunc(s.serveHealth),
		"/api/ready":  http.HandlerFunc(s.serveReady),
	}}
	return s
}

// mux sends /api/v1 to the v1 routes and the rest to the operational
// endpoints, which need a token only with AuthOps.
type mux struct {
	s   *Server
	ops router
}

func (m *mux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if node := m.s.node(); node != "" {
		w.Header().Set(NodeHeader, node)
	}
	if r.URL.Path == "/api/v1" || strings.HasPrefix(r.URL.Path, "/api/v1/") {
		if m.s.store == nil {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "the capture API is not enabled on this server")
			return
		}
		m.s.serveV1(w, r)
		return
	}
	if m.s.opts.AuthOps {
		if _, ok := m.s.auth.who(r); !ok {
			unauthorized(w, r)
			return
		}
	}
	m.ops.ServeHTTP(w, r)
}

// Close releases the data directory handle.
func (s *Server) Close() error {
	if s.root != nil {
		return s.root.Close()
	}
	return nil
}

// Handler returns the server's routes, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Run serves until ctx is done, then shuts down gracefully, giving requests
// in flight up to ShutdownTimeout before closing their connections.
func (s *Server) Run(ctx context.Context) error {
	ln := s.opts.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.opts.Listen); err != nil {
			return fmt.Errorf("api: listen on %s: %w", s.opts.Listen, err)
		}
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	scheme := "http"
	if s.opts.TLS != nil {
		srv.TLSConfig = s.opts.TLS
		ln = tls.NewListener(ln, s.opts.TLS)
		scheme = "https"
		if s.opts.TLS.ClientAuth == tls.RequireAndVerifyClientCert {
			scheme = "https with client certificates"
		}
	}
	s.log.Info("api listening", zap.String("addr", ln.Addr().String()), zap.String("scheme", scheme))

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		s.log.Warn("api shutdown timed out; closing connections", zap.Error(err))
		srv.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("api: serve: %w", serr)
	}
	if err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	return nil
}

// router maps exact paths to handlers that accept GET and HEAD, answering
// anything else with a JSON error.
type router map[string]http.Handler

func (rt router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, ok := rt[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no such endpoint %q; try /metrics, /api/health, /api/ready or /api/v1/openapi.json", r.URL.Path))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("method %s not allowed on %s; use GET", r.Method, r.URL.Path))
		return
	}
	h.ServeHTTP(w, r)
}

type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // only types of this package are written; cannot happen
		http.Error(w, `{"error":"encode response","code":"internal"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// Status values of /api/health.
const (
	StatusOK       = "ok"
	StatusDegraded = "degraded"
)

// Health is the body of /api/health.
type Health struct {
	Status        string            `json:"status"`
	Version       string            `json:"version"`
	UptimeSeconds float64           `json:"uptime_seconds"`
	Interfaces    []InterfaceHealth `json:"interfaces"`
	Disk          DiskHealth        `json:"disk"`
	Ring          RingHealth        `json:"ring"`
	Process       ProcessHealth     `json:"process"`
	Filter        FilterHealth      `json:"filter"`
}

// FilterHealth says where the capture filter runs: "classic" (BPF on the
// socket), "ebpf" (sonde's prefilter) or "libpcap"; Note says why the mode
// is not the one configured (eBPF not allowed here, say).
type FilterHealth struct {
	Mode       string `json:"mode"`
	Expression string `json:"expression"`
	Note       string `json:"note,omitempty"`
}

// ProcessHealth is who the daemon runs as, so operators can check the
// privilege drop: capability sets are the hex masks of /proc/self/status.
type ProcessHealth struct {
	UID                   int    `json:"uid"`
	GID                   int    `json:"gid"`
	CapabilitiesEffective string `json:"capabilities_effective"`
	CapabilitiesPermitted string `json:"capabilities_permitted"`
	NoNewPrivs            bool   `json:"no_new_privs"`
}

// InterfaceHealth describes one configured interface.
type InterfaceHealth struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	Workers     int    `json:"workers"`
	LinkType    string `json:"link_type"`
	Error       string `json:"error"`
	Packets     uint64 `json:"packets"`
	Bytes       uint64 `json:"bytes"`
	KernelDrops uint64 `json:"kernel_drops"`
	UserDrops   uint64 `json:"user_drops"`
	Reopens     uint64 `json:"reopens"`
}

// DiskHealth describes the data volume.
// recentWriteError is how long a failed write keeps /api/health degraded.
const recentWriteError = 10 * time.Second

type DiskHealth struct {
	Path        string  `json:"path"`
	FreeBytes   uint64  `json:"free_bytes"`
	TotalBytes  uint64  `json:"total_bytes"`
	FreePercent float64 `json:"free_percent"`
	// Error is why the volume is failing: the probe write fails now, or a
	// capture file write failed in the last seconds.
	Error string `json:"error,omitempty"`
}

// RingHealth summarises the capture file ring. Packet times are RFC 3339
// in UTC, null while the ring is empty.
type RingHealth struct {
	Files        int     `json:"files"`
	Bytes        int64   `json:"bytes"`
	OldestPacket *string `json:"oldest_packet"`
	NewestPacket *string `json:"newest_packet"`
}

func linkTypeName(lt capture.LinkType) string {
	switch lt {
	case capture.LinkTypeEthernet:
		return "ethernet"
	case capture.LinkTypeRaw:
		return "raw"
	}
	return "linktype_" + strconv.FormatUint(uint64(lt), 10)
}

func packetTime(ns int64) *string {
	if ns == 0 {
		return nil
	}
	s := time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
	return &s
}

func (s *Server) healthReport() Health {
	drops := make(map[string]uint64)
	for _, st := range s.health.StreamStats() {
		drops[st.Interface] += st.DropsQueueFull + st.DropsWriteError
	}
	h := Health{Status: StatusOK, Version: s.opts.Version, UptimeSeconds: time.Since(s.start).Seconds(), Interfaces: []InterfaceHealth{}}
	for _, i := range s.health.Interfaces() {
		if i.State != capture.StateCapturing {
			h.Status = StatusDegraded
		}
		h.Interfaces = append(h.Interfaces, InterfaceHealth{
			Name: i.Name, State: string(i.State), Workers: i.Workers, LinkType: linkTypeName(i.LinkType), Error: i.Err,
			Packets: i.Packets, Bytes: i.Bytes, KernelDrops: i.KernelDrops, UserDrops: drops[i.Name], Reopens: i.Reopens,
		})
	}
	sort.Slice(h.Interfaces, func(a, b int) bool { return h.Interfaces[a].Name < h.Interfaces[b].Name })

	rs := s.health.Stats()
	h.Disk = DiskHealth{Path: s.opts.DataDir, FreeBytes: rs.FreeBytes, TotalBytes: rs.TotalBytes}
	// A volume that refuses writes, now or in the last moments, makes the
	// sensor degraded, with the error an operator needs to fix it.
	if err := s.health.Writable(); err != nil {
		h.Status, h.Disk.Error = StatusDegraded, err.Error()
	} else if rs.LastWriteErrorAt != 0 && time.Since(time.Unix(0, rs.LastWriteErrorAt)) < recentWriteError {
		h.Status, h.Disk.Error = StatusDegraded, rs.LastWriteError
	}
	if rs.TotalBytes > 0 {
		h.Disk.FreePercent = float64(rs.FreeBytes) / float64(rs.TotalBytes) * 100
		if h.Disk.FreePercent < float64(s.opts.MinFreePercent) {
			h.Status = StatusDegraded
		}
	}
	h.Ring = RingHealth{Files: rs.Files, Bytes: rs.Bytes, OldestPacket: packetTime(rs.OldestPacket), NewestPacket: packetTime(rs.NewestPacket)}
	h.Filter = s.opts.Filter
	if ps, err := privilege.Self(); err == nil {
		h.Process = ProcessHealth{
			UID: ps.UID, GID: ps.GID, NoNewPrivs: ps.NoNewPrivs,
			CapabilitiesEffective: fmt.Sprintf("%016x", ps.CapEff), CapabilitiesPermitted: fmt.Sprintf("%016x", ps.CapPrm),
		}
	}
	return h
}

// serveHealth is liveness: it answers 200 whenever the process serves, and
// says in the body whether capture is degraded.
func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.healthReport())
}

// Ready is the body of /api/ready.
type Ready struct {
	Ready   bool     `json:"ready"`
	Reasons []string `json:"reasons,omitempty"`
}

// serveReady is readiness: 200 only when every configured interface is
// capturing and the data directory accepts files.
func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	var reasons []string
	ifaces := s.health.Interfaces()
	if len(ifaces) == 0 {
		reasons = append(reasons, "no interface configured")
	}
	for _, i := range ifaces {
		if i.State != capture.StateCapturing {
			r := fmt.Sprintf("interface %s is %s", i.Name, i.State)
			if i.Err != "" {
				r += ": " + i.Err
			}
			reasons = append(reasons, r)
		}
	}
	if err := s.health.Writable(); err != nil {
		reasons = append(reasons, fmt.Sprintf("data directory %s is not writable: %v", s.opts.DataDir, err))
	}
	if len(reasons) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, Ready{Ready: false, Reasons: reasons})
		return
	}
	writeJSON(w, http.StatusOK, Ready{Ready: true})
}

// ProbeWritable creates and removes a hidden file in dir, the check behind
// HealthSource.Writable. Hidden names are ignored by the ring's own scans.
func ProbeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".sonde-probe-*")
	if err != nil {
		return err
	}
	name := f.Name()
	cerr := f.Close()
	rerr := os.Remove(name)
	if cerr != nil {
		return cerr
	}
	if rerr != nil {
		return fmt.Errorf("remove %s: %w", filepath.Base(name), rerr)
	}
	return nil
}
