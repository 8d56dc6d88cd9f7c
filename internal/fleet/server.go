package fleet

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/sonde-project/sonde/internal/api"
	"github.com/sonde-project/sonde/internal/report"
)

// Headers and trailers of the fleet's answers.
const (
	// MembersHeader lists every member asked, comma-separated.
	MembersHeader = "Sonde-Members"
	// MissingHeader names, once per member, a member whose data is not in
	// the answer at all: `NAME; reason="..."`.
	MissingHeader = "Sonde-Missing-Members"
	// FailedTrailer names, like MissingHeader, a member that broke off
	// while its window streamed: its packets up to then are in the answer.
	FailedTrailer = "Sonde-Failed-Members"
	// MemberPacketsTrailer is `NAME=PACKETS, ...`: each member's packets in
	// the merged window.
	MemberPacketsTrailer = "Sonde-Member-Packets"
)

// Config configures a Server.
type Config struct {
	Discovery Discovery
	Client    *Client
	// Listen is the host:port to listen on when Listener is nil.
	Listen   string
	Listener net.Listener
	// Tokens are the fleet's own bearer tokens; AuthDisabled lets anyone in.
	Tokens       []string
	AuthDisabled bool
	// AuthOps requires a token on /metrics, /api/health and /api/ready
	// too, as the sensor's --api-auth-ops.
	AuthOps bool
	// PollInterval is how often Run polls every member's /api/health for
	// sonde_fleet_member_up and the fleet's health (default 15s).
	PollInterval time.Duration
	// Registry takes the fleet's metrics, served on /metrics; nil is a
	// private registry with the Go and process collectors.
	Registry *prometheus.Registry
	// TLS, if set, is served instead of plain HTTP (api.TLSConfig).
	TLS *tls.Config
	// MaxWindow bounds a window (default api.DefaultMaxWindow); MaxBytes
	// the merged pcapng (default api.DefaultMaxBytes).
	MaxWindow time.Duration
	MaxBytes  int64
	// Reports queues the reports over merged windows; nil answers 503.
	Reports *report.Queue
	Version string
	// WriteTimeout bounds each write of an answer (default 30s).
	WriteTimeout time.Duration
}

// Server is the fleet's HTTP API.
type Server struct {
	cfg     Config
	log     *zap.Logger
	audit   *zap.Logger
	auth    *api.Authenticator
	handler http.Handler
	metrics *metrics
	polls   pollState
}

// New returns a fleet server; it does not listen until Run.
func New(cfg Config, log *zap.Logger) (*Server, error) {
	if cfg.Discovery == nil || cfg.Client == nil {
		return nil, errors.New("fleet: no member discovery or client")
	}
	if cfg.MaxWindow <= 0 {
		cfg.MaxWindow = api.DefaultMaxWindow
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = api.DefaultMaxBytes
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("fleet: registering metrics: %w", err)
	}
	s := &Server{cfg: cfg, log: log, audit: log.Named("audit"), auth: api.NewAuthenticator(cfg.Tokens, cfg.AuthDisabled), metrics: m}
	switch {
	case cfg.AuthDisabled:
		log.Warn("FLEET API AUTHENTICATION IS DISABLED (--api-auth=false): anyone who reaches the listener can download every sensor's packets")
	case len(cfg.Tokens) == 0 && cfg.TLS == nil:
		log.Warn("no fleet API token configured (--api-token-file): every /api/v1 request is refused with 401")
	}
	mux := http.NewServeMux()
	// Every route is counted and timed under its pattern's path, refusals
	// included: the route label is a fixed set.
	route := func(pattern string, h http.Handler) {
		_, path, _ := strings.Cut(pattern, " ")
		mux.Handle(pattern, m.instrument(path, h))
	}
	v1 := func(pattern string, h http.HandlerFunc) { route(pattern, s.authenticated(h)) }
	v1("GET /api/v1/pcap", s.pcap)
	v1("GET /api/v1/captures", s.captures)
	v1("GET /api/v1/captures/{member}/{name}", s.capture)
	v1("GET /api/v1/members", s.members)
	v1("POST /api/v1/reports", s.postReport)
	v1("GET /api/v1/reports/{id}", s.getReport)
	v1("DELETE /api/v1/reports/{id}", s.deleteReport)
	// The operational endpoints are open, as on a sensor, unless AuthOps.
	ops := func(pattern string, h http.Handler) {
		if cfg.AuthOps {
			h = s.authenticated(h.ServeHTTP)
		}
		route(pattern, h)
	}
	ops("GET /api/health", http.HandlerFunc(s.health))
	ops("GET /api/ready", http.HandlerFunc(s.ready))
	// /metrics is not counted in sonde_fleet_requests_total: promhttp
	// counts its own scrapes.
	metricsHandler := promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          zap.NewStdLog(log.Named("metrics")),
		ErrorHandling:     promhttp.ContinueOnError, // a failing collector must not hide the others
		EnableOpenMetrics: true,
		Registry:          m.reg,
	}))
	if cfg.AuthOps {
		metricsHandler = s.authenticated(metricsHandler.ServeHTTP)
	}
	mux.Handle("GET /metrics", metricsHandler)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		api.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no such endpoint %s %q on sonde fleet; it serves GET /api/v1/pcap, /api/v1/captures, /api/v1/captures/{member}/{name}, /api/v1/members, POST /api/v1/reports, GET and DELETE /api/v1/reports/{id}, /api/health, /api/ready, /metrics", r.Method, r.URL.Path))
	})
	s.handler = mux
	return s, nil
}

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler { return s.handler }

type whoKey struct{}

func (s *Server) authenticated(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.auth.Who(r)
		if !ok {
			api.Unauthorized(w, r)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), whoKey{}, who)))
	})
}

// Run serves until ctx is done, then shuts down, giving requests in flight
// 5 s. It polls the members' health every PollInterval meanwhile.
func (s *Server) Run(ctx context.Context) error {
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Listen); err != nil {
			return fmt.Errorf("fleet: listen on %s: %w", s.cfg.Listen, err)
		}
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	scheme := "http"
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
		scheme = "https"
	}
	s.log.Info("fleet listening", zap.String("addr", ln.Addr().String()), zap.String("scheme", scheme), zap.Stringer("members", s.cfg.Discovery))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	pctx, stopPoll := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() { defer close(polled); s.pollLoop(pctx) }()
	defer func() { stopPoll(); <-polled }()
	select {
	case err := <-errc:
		return fmt.Errorf("fleet: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("fleet: serve: %w", err)
	}
	return nil
}

// MemberStatus is how a member fared in one request, in every JSON answer.
type MemberStatus struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// Node is the sensor's name (its Sonde-Node), or the Kubernetes node.
	Node string `json:"node,omitempty"`
	// Status is "ok", or "missing" (no data from it) or "failed" (it broke
	// off midway; what it sent before is in).
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// discover lists the members, answering 503 itself when it cannot.
func (s *Server) discover(w http.ResponseWriter, r *http.Request) ([]Member, bool) {
	members, err := s.cfg.Discovery.Members(r.Context())
	s.metrics.discovered(r.Context(), members, err)
	if err != nil {
		s.log.Warn("member discovery failed", zap.Error(err))
		api.WriteError(w, http.StatusServiceUnavailable, "discovery_failed", fmt.Sprintf("listing the members (%s): %v", s.cfg.Discovery, err))
		return nil, false
	}
	if len(members) == 0 {
		api.WriteError(w, http.StatusServiceUnavailable, "no_members", fmt.Sprintf("no members found (%s)", s.cfg.Discovery))
		return nil, false
	}
	return members, true
}

// split separates the members that answered from those that did not,
// setting the Sonde-Members and Sonde-Missing-Members headers.
func split(h http.Header, replies []*reply) (ok []*reply, status []MemberStatus) {
	var names []string
	for _, rp := range replies {
		names = append(names, rp.member.Name)
		st := MemberStatus{Name: rp.member.Name, Address: rp.member.Addr, Node: rp.member.Node, Status: "ok"}
		if rp.err != nil {
			st.Status, st.Error = "missing", rp.err.Error()
			h.Add(MissingHeader, memberReason(rp.member.Name, rp.err))
		} else {
			st.Node = rp.node
			ok = append(ok, rp)
		}
		status = append(status, st)
	}
	h.Set(MembersHeader, strings.Join(names, ", "))
	return ok, status
}

// memberReason is one value of Sonde-Missing-Members or Sonde-Failed-Members.
func memberReason(name string, err error) string {
	// A quoted-string: quotes and backslashes escaped, no line breaks.
	reason := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", " ", "\n", " ").Replace(err.Error())
	return fmt.Sprintf(`%s; reason="%s"`, name, reason)
}

// noneAnswered answers a request no member could serve: the members'
// own error when they all refused the request alike (a bad filter, say),
// 502 otherwise; the JSON names every member's error.
func noneAnswered(w http.ResponseWriter, replies []*reply, status []MemberStatus) {
	code, msg := http.StatusBadGateway, "no member answered"
	var first *StatusError
	same := true
	for _, rp := range replies {
		var se *StatusError
		if !errors.As(rp.err, &se) || first != nil && (se.Status != first.Status || se.Code != first.Code) {
			same = false
			break
		}
		if first == nil {
			first = se
		}
	}
	if same && first != nil && first.Status >= 400 && first.Status < 500 && first.Status != http.StatusUnauthorized && first.Status != http.StatusForbidden {
		code, msg = first.Status, "every member refused the request: "+first.Msg
	}
	c := "members_failed"
	if first != nil && code == first.Status {
		c = first.Code
	}
	api.WriteJSON(w, code, struct {
		api.ErrorBody
		Members []MemberStatus `json:"members"`
	}{api.ErrorBody{Error: msg, Code: c}, status})
}

// pcapParams are the /api/v1/pcap parameters passed on to members.
var pcapParams = []string{"from", "to", "filter", "flow", "interface"}

// window checks a request's window against MaxWindow and returns the query
// members are asked with: the request's parameters and format=pcapng.
func (s *Server) window(w http.ResponseWriter, get func(string) string, extra url.Values) (url.Values, time.Time, time.Time, bool) {
	from, to, ok := api.ParseWindow(get, w)
	if !ok {
		return nil, from, to, false
	}
	if d := to.Sub(from); d > s.cfg.MaxWindow {
		api.WriteError(w, http.StatusBadRequest, "window_too_long", fmt.Sprintf("to: the window of %s is longer than the limit of %s (--api-max-window)", d, s.cfg.MaxWindow))
		return nil, from, to, false
	}
	q := url.Values{}
	for k, v := range extra {
		q[k] = v
	}
	q.Set("format", "pcapng")
	return q, from, to, true
}

// pcap merges the members' windows into one pcapng, streamed as it is
// read. Members missing from the start are in the header, members that
// broke off in the trailer, and both in the section's comment.
func (s *Server) pcap(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	for k := range q {
		if !slices.Contains(pcapParams, k) && k != "format" {
			api.WriteError(w, http.StatusBadRequest, "bad_parameter", fmt.Sprintf("%s: unknown parameter: use from, to, filter, flow, interface, format", k))
			return
		}
	}
	if f := q.Get("format"); f != "" && f != "pcapng" {
		api.WriteError(w, http.StatusBadRequest, "bad_parameter", fmt.Sprintf("format: %q: the fleet serves pcapng only (an interface per node and interface)", f))
		return
	}
	fwd := url.Values{}
	for _, k := range pcapParams {
		if v, ok := q[k]; ok {
			fwd[k] = v
		}
	}
	mq, from, to, ok := s.window(w, q.Get, fwd)
	if !ok {
		return
	}
	members, ok := s.discover(w, r)
	if !ok {
		return
	}
	replies := s.cfg.Client.fanout(r.Context(), members, http.MethodGet, "/api/v1/pcap?"+mq.Encode())
	defer func() {
		for _, rp := range replies {
			rp.close()
		}
	}()
	s.countFailures(r.Context(), replies)
	h := w.Header()
	live, status := split(h, replies)
	audit := []zap.Field{zap.String("from", q.Get("from")), zap.String("to", q.Get("to")), zap.String("filter", q.Get("filter")),
		zap.Int("members", len(members)), zap.Int("missing", len(members)-len(live))}
	if len(live) == 0 {
		noneAnswered(w, replies, status)
		s.auditLog(r, "/api/v1/pcap", http.StatusBadGateway, start, audit...)
		return
	}
	var comment strings.Builder
	fmt.Fprintf(&comment, "sonde fleet: window %s to %s from %d members", from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano), len(members))
	in := make([]Input, len(live))
	for i, rp := range live {
		in[i] = Input{Member: rp.member.Name, Node: rp.node, R: rp.body}
	}
	for _, st := range status {
		if st.Status != "ok" {
			fmt.Fprintf(&comment, "; MISSING %s: %s", st.Name, st.Error)
		}
	}
	h.Set("Content-Type", "application/x-pcapng")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="sonde-fleet_%s_%s.pcapng"`, from.UTC().Format("20060102T150405.000000000Z"), to.UTC().Format("20060102T150405.000000000Z")))
	h.Set("Cache-Control", "no-store")
	h.Set("Trailer", strings.Join([]string{"Sonde-Packets", "Sonde-Truncated", "Sonde-Missing-Files", FailedTrailer, MemberPacketsTrailer}, ", "))
	w.WriteHeader(http.StatusOK)
	dw := &countingWriter{w: &deadlineWriter{w: w, rc: http.NewResponseController(w), d: s.cfg.WriteTimeout}}
	res, err := Merge(r.Context(), dw, in, MergeOptions{MaxBytes: s.cfg.MaxBytes, Comment: comment.String()})
	s.merged(r.Context(), live, res, dw.n)
	audit = append(audit, zap.Uint64("packets", res.Packets), zap.Int64("bytes", res.Bytes), zap.Bool("truncated", res.Truncated))
	if err != nil {
		s.auditLog(r, "/api/v1/pcap", http.StatusOK, start, append(audit, zap.NamedError("stream_error", err))...)
		panic(http.ErrAbortHandler) // a broken transfer, never a short file that looks whole
	}
	truncated := res.Truncated
	var missingFiles int
	var perMember []string
	for i, rp := range live {
		ir := res.Inputs[i]
		perMember = append(perMember, fmt.Sprintf("%s=%d", rp.member.Name, ir.Packets))
		if ir.Err != nil {
			h.Add(FailedTrailer, memberReason(rp.member.Name, ir.Err))
			audit = append(audit, zap.String("failed_member", rp.member.Name), zap.NamedError("member_error", ir.Err))
			continue
		}
		// A member's trailers are there once its body was read to the end.
		if rp.res.Trailer.Get("Sonde-Truncated") == "true" {
			truncated = true
		}
		n, _ := strconv.Atoi(rp.res.Trailer.Get("Sonde-Missing-Files"))
		missingFiles += n
	}
	h.Set("Sonde-Packets", strconv.FormatUint(res.Packets, 10))
	h.Set("Sonde-Truncated", strconv.FormatBool(truncated))
	h.Set("Sonde-Missing-Files", strconv.Itoa(missingFiles))
	h.Set(MemberPacketsTrailer, strings.Join(perMember, ", "))
	s.auditLog(r, "/api/v1/pcap", http.StatusOK, start, audit...)
}

// countFailures counts the members whose request failed.
func (s *Server) countFailures(ctx context.Context, replies []*reply) {
	for _, rp := range replies {
		s.metrics.failed(ctx, rp.member.Name, rp.err)
	}
}

// merged counts a merge's output (n bytes written) and the members that
// broke off while it read them.
func (s *Server) merged(ctx context.Context, live []*reply, res MergeResult, n int64) {
	s.metrics.mergedBytes.Add(float64(n))
	s.metrics.mergedPackets.Add(float64(res.Packets))
	for i, rp := range live {
		if i < len(res.Inputs) && res.Inputs[i].Err != nil {
			s.metrics.failed(ctx, rp.member.Name, &streamError{res.Inputs[i].Err})
		}
	}
}

// deadlineWriter pushes the write deadline forward before every write, so
// a long download is bounded per write rather than as a whole.
type deadlineWriter struct {
	w  io.Writer
	rc *http.ResponseController
	d  time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.d))
	return d.w.Write(p)
}

func (s *Server) auditLog(r *http.Request, route string, status int, start time.Time, fields ...zap.Field) {
	who, _ := r.Context().Value(whoKey{}).(string)
	s.audit.Info("api request", append([]zap.Field{zap.Bool("audit", true), zap.String("who", who), zap.String("remote", r.RemoteAddr),
		zap.String("method", r.Method), zap.String("route", route), zap.Int("status", status), zap.Duration("duration", time.Since(start))}, fields...)...)
}

// FleetCapture is a member's capture file in GET /api/v1/captures.
type FleetCapture struct {
	api.Capture
	Member string `json:"member"`
}

// captures is the union of the members' capture lists.
func (s *Server) captures(w http.ResponseWriter, r *http.Request) {
	members, ok := s.discover(w, r)
	if !ok {
		return
	}
	replies := s.cfg.Client.fanout(r.Context(), members, http.MethodGet, "/api/v1/captures")
	defer func() {
		for _, rp := range replies {
			rp.close()
		}
	}()
	out := []FleetCapture{}
	for _, rp := range replies {
		if rp.err != nil {
			continue
		}
		var body struct {
			Captures []api.Capture `json:"captures"`
		}
		if err := json.NewDecoder(io.LimitReader(rp.body, 256<<20)).Decode(&body); err != nil {
			rp.err = &streamError{fmt.Errorf("decoding its capture list: %w", err)}
			continue
		}
		for _, c := range body.Captures {
			out = append(out, FleetCapture{c, rp.member.Name})
		}
	}
	s.countFailures(r.Context(), replies)
	live, status := split(w.Header(), replies)
	if len(live) == 0 {
		noneAnswered(w, replies, status)
		return
	}
	slices.SortStableFunc(out, func(a, b FleetCapture) int {
		return strings.Compare(a.First+"\x00"+a.Member+"\x00"+a.Name, b.First+"\x00"+b.Member+"\x00"+b.Name)
	})
	api.WriteJSON(w, http.StatusOK, struct {
		Captures []FleetCapture `json:"captures"`
		Members  []MemberStatus `json:"members"`
	}{out, status})
}

// captureHeaders are the member's answer headers a download passes on.
var captureHeaders = []string{"Content-Type", "Content-Length", "Content-Range", "Accept-Ranges",
	"Content-Disposition", "Last-Modified", "Etag", "Cache-Control", api.NodeHeader}

// capture streams one member's capture file: the member as GET
// /api/v1/captures names it, the file as the member does, with the
// client's Range and If-Range passed on, so a range or a resumed download
// is the member's own answer. The member's 200, 206, 304, 404 and 416 go to
// the client as they are; anything else (down, too slow, refusing the
// fleet's token) is a 502 naming the member and why. A member that breaks
// off midway aborts the client's answer too, so a short file never looks
// complete.
func (s *Server) capture(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	name, file := r.PathValue("member"), r.PathValue("name")
	members, ok := s.discover(w, r)
	if !ok {
		return
	}
	var m *Member
	var names []string
	for i := range members {
		names = append(names, members[i].Name)
		if members[i].Name == name {
			m = &members[i]
		}
	}
	audit := []zap.Field{zap.String("member", name), zap.String("file", file)}
	if m == nil {
		api.WriteError(w, http.StatusNotFound, "no_member", fmt.Sprintf("no member %q: the members are %s (GET /api/v1/captures names each file's member)", name, strings.Join(names, ", ")))
		s.auditLog(r, "/api/v1/captures/{member}/{name}", http.StatusNotFound, start, audit...)
		return
	}
	hdr := http.Header{}
	for _, k := range []string{"Range", "If-Range"} {
		if v := r.Header.Values(k); len(v) > 0 {
			hdr[k] = v
		}
	}
	pass := func(code int) bool {
		switch code {
		case http.StatusOK, http.StatusPartialContent, http.StatusNotModified, http.StatusNotFound, http.StatusRequestedRangeNotSatisfiable:
			return true
		}
		return false
	}
	// HEAD (which the GET route takes too) is asked as HEAD: no body moves.
	rp := s.cfg.Client.ask(r.Context(), *m, r.Method, "/api/v1/captures/"+url.PathEscape(file), hdr, pass)
	defer rp.close()
	if rp.err != nil {
		s.metrics.failed(r.Context(), m.Name, rp.err)
		w.Header().Add(MissingHeader, memberReason(m.Name, rp.err))
		api.WriteError(w, http.StatusBadGateway, "member_failed", fmt.Sprintf("member %s: %v", m.Name, rp.err))
		s.auditLog(r, "/api/v1/captures/{member}/{name}", http.StatusBadGateway, start, append(audit, zap.Error(rp.err))...)
		return
	}
	for _, k := range captureHeaders {
		if v := rp.res.Header.Values(k); len(v) > 0 {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(rp.res.StatusCode)
	n, err := io.Copy(w, rp.body)
	if err != nil {
		err = &streamError{err}
		s.metrics.failed(r.Context(), m.Name, err)
		s.auditLog(r, "/api/v1/captures/{member}/{name}", rp.res.StatusCode, start, append(audit, zap.Int64("bytes", n), zap.NamedError("stream_error", err))...)
		// The status is sent: only breaking the connection tells the client.
		panic(http.ErrAbortHandler)
	}
	s.auditLog(r, "/api/v1/captures/{member}/{name}", rp.res.StatusCode, start, append(audit, zap.Int64("bytes", n))...)
}

// members asks every member for its health.
func (s *Server) members(w http.ResponseWriter, r *http.Request) {
	members, ok := s.discover(w, r)
	if !ok {
		return
	}
	replies := s.cfg.Client.fanout(r.Context(), members, http.MethodGet, "/api/health")
	defer func() {
		for _, rp := range replies {
			rp.close()
		}
	}()
	type memberHealth struct {
		MemberStatus
		Health  string `json:"health,omitempty"` // the sensor's own status: ok or degraded
		Version string `json:"version,omitempty"`
	}
	var out []memberHealth
	for _, rp := range replies {
		var hb struct {
			Status  string `json:"status"`
			Version string `json:"version"`
		}
		if rp.err == nil {
			if err := json.NewDecoder(io.LimitReader(rp.body, 1<<20)).Decode(&hb); err != nil {
				rp.err = &streamError{fmt.Errorf("decoding its health: %w", err)}
			}
		}
		s.countFailures(r.Context(), []*reply{rp})
		_, st := split(http.Header{}, []*reply{rp})
		if rp.err != nil {
			w.Header().Add(MissingHeader, memberReason(rp.member.Name, rp.err))
		}
		out = append(out, memberHealth{st[0], hb.Status, hb.Version})
	}
	api.WriteJSON(w, http.StatusOK, struct {
		Discovery string         `json:"discovery"`
		Members   []memberHealth `json:"members"`
	}{s.cfg.Discovery.String(), out})
}

// Health is the body of the fleet's /api/health: always 200 while it
// serves; Status is "degraded" while the last health poll found a member
// down (Down names each and why).
type Health struct {
	Status  string `json:"status"`
	Role    string `json:"role"`
	Version string `json:"version"`
	// Members and MembersUp are the members of the last poll and those up;
	// both absent before the first poll.
	Members   *int           `json:"members,omitempty"`
	MembersUp *int           `json:"members_up,omitempty"`
	Down      []MemberStatus `json:"down,omitempty"`
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	h := Health{Status: api.StatusOK, Role: "fleet", Version: s.cfg.Version}
	if down, n, polled := s.downMembers(); polled {
		up := n - len(down)
		h.Members, h.MembersUp, h.Down = &n, &up, down
		if len(down) > 0 {
			h.Status = api.StatusDegraded
		}
	}
	api.WriteJSON(w, http.StatusOK, h)
}

// ready is 200 when discovery finds members.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	members, err := s.cfg.Discovery.Members(r.Context())
	s.metrics.discovered(r.Context(), members, err)
	switch {
	case err != nil:
		api.WriteJSON(w, http.StatusServiceUnavailable, api.Ready{Reasons: []string{fmt.Sprintf("member discovery (%s): %v", s.cfg.Discovery, err)}})
	case len(members) == 0:
		api.WriteJSON(w, http.StatusServiceUnavailable, api.Ready{Reasons: []string{fmt.Sprintf("no members (%s)", s.cfg.Discovery)}})
	default:
		api.WriteJSON(w, http.StatusOK, api.Ready{Ready: true})
	}
}

// ReportAccepted is the answer to POST /api/v1/reports: the queued
// report and how each member's window went into it.
type ReportAccepted struct {
	report.Status
	Members []MemberStatus `json:"members"`
}

// postReport queues one report over the merged window of every member:
// the merge streams into the report queue as an upload, so the report is
// computed over all nodes' packets together (exact, not combined from
// per-node reports), and the answer already names every member that is
// not in it.
func (s *Server) postReport(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if s.cfg.Reports == nil {
		api.WriteError(w, http.StatusServiceUnavailable, "unavailable", "reports are not enabled on this fleet")
		return
	}
	var req api.ReportRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		api.WriteError(w, http.StatusBadRequest, "bad_body", fmt.Sprintf("request body: %v; want {\"from\": ..., \"to\": ..., \"filter\": ...}", err))
		return
	}
	fwd := url.Values{"from": {req.From}, "to": {req.To}}
	if req.Filter != "" {
		fwd.Set("filter", req.Filter)
	}
	mq, from, to, ok := s.window(w, fwd.Get, fwd)
	if !ok {
		return
	}
	members, ok := s.discover(w, r)
	if !ok {
		return
	}
	// The members stream into the queue while this request waits: the
	// report's input is fetched now, and only its analysis is queued.
	ctx := r.Context()
	replies := s.cfg.Client.fanout(ctx, members, http.MethodGet, "/api/v1/pcap?"+mq.Encode())
	defer func() {
		for _, rp := range replies {
			rp.close()
		}
	}()
	s.countFailures(ctx, replies)
	live, status := split(w.Header(), replies)
	if len(live) == 0 {
		noneAnswered(w, replies, status)
		return
	}
	name := fmt.Sprintf("fleet %s to %s, %d of %d members", from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano), len(live), len(members))
	if req.Filter != "" {
		name += ", filter " + req.Filter
	}
	for _, st := range status {
		if st.Status != "ok" {
			name += ", missing " + st.Name
		}
	}
	in := make([]Input, len(live))
	for i, rp := range live {
		in[i] = Input{Member: rp.member.Name, Node: rp.node, R: rp.body}
	}
	pr, pw := io.Pipe()
	done := make(chan MergeResult, 1)
	go func() {
		cw := &countingWriter{w: pw}
		res, err := Merge(ctx, cw, in, MergeOptions{})
		pw.CloseWithError(err)
		s.merged(ctx, live, res, cw.n)
		done <- res
	}()
	st, err := s.cfg.Reports.Upload(pr, name, "")
	pr.CloseWithError(errors.New("report queue stopped reading"))
	res := <-done
	for i, rp := range live {
		if e := res.Inputs[i].Err; e != nil {
			for j := range status {
				if status[j].Name == rp.member.Name {
					status[j].Status, status[j].Error = "failed", e.Error()
				}
			}
			w.Header().Add(FailedTrailer, memberReason(rp.member.Name, e))
		}
	}
	var tl *report.TooLargeError
	switch {
	case errors.Is(err, report.ErrQueueFull):
		w.Header().Set("Retry-After", "30")
		api.WriteError(w, http.StatusTooManyRequests, "queue_full", "the report queue is full; retry later")
	case errors.As(err, &tl):
		api.WriteError(w, http.StatusRequestEntityTooLarge, "window_too_large", fmt.Sprintf("the merged window exceeds the report input limit of %d bytes (--report-max-bytes): choose a shorter window or a filter", tl.Limit))
	case err != nil:
		api.WriteError(w, http.StatusBadGateway, "merge_failed", "the merged window could not be read: "+err.Error())
	default:
		w.Header().Set("Location", "/api/v1/reports/"+st.ID)
		api.WriteJSON(w, http.StatusAccepted, ReportAccepted{st, status})
	}
	s.auditLog(r, "/api/v1/reports", http.StatusAccepted, start, zap.String("from", req.From), zap.String("to", req.To),
		zap.String("filter", req.Filter), zap.Uint64("packets", res.Packets), zap.String("report", st.ID))
}

// getReport serves a report's status, or with a .json, .html or .csv
// suffix its document.
func (s *Server) getReport(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Reports == nil {
		api.WriteError(w, http.StatusServiceUnavailable, "unavailable", "reports are not enabled on this fleet")
		return
	}
	id := r.PathValue("id")
	types := map[string]string{"json": "application/json", "html": "text/html; charset=utf-8", "csv": "text/csv; charset=utf-8"}
	base, ext, _ := strings.Cut(id, ".")
	if ext == "" {
		st, err := s.cfg.Reports.Status(id)
		if err != nil {
			reportError(w, id, st, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, st)
		return
	}
	ct, known := types[ext]
	if !known {
		api.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no report document %q: use .json, .html or .csv", id))
		return
	}
	path, st, err := s.cfg.Reports.Result(base, ext)
	if err != nil {
		reportError(w, base, st, err)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		reportError(w, base, st, report.ErrNotFound)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		api.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

func (s *Server) deleteReport(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Reports == nil {
		api.WriteError(w, http.StatusServiceUnavailable, "unavailable", "reports are not enabled on this fleet")
		return
	}
	id := r.PathValue("id")
	if err := s.cfg.Reports.Delete(id); err != nil {
		reportError(w, id, report.Status{}, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func reportError(w http.ResponseWriter, id string, st report.Status, err error) {
	switch {
	case errors.Is(err, report.ErrNotFound):
		api.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no report %q (never made, deleted or expired)", id))
	case errors.Is(err, report.ErrNotReady):
		api.WriteError(w, http.StatusConflict, "not_ready", fmt.Sprintf("report %s is %s, not done: see /api/v1/reports/%s", id, st.State, id))
	default:
		api.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}
