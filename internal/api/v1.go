package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sonde-project/sonde/bpf"
	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/extract"
	"github.com/sonde-project/sonde/internal/pcapio"
	"github.com/sonde-project/sonde/internal/ring"
)

// Store is what /api/v1 reads and pins: the capture ring. *ring.Ring is one.
type Store interface {
	Files() []ring.FileInfo
	Lookup(name string) (ring.FileInfo, bool)
	Window(from, to int64) []ring.FileInfo
	PinnedFiles() map[string]bool
	Pin(from, to time.Time, ttl time.Duration, reason string) (ring.Snapshot, error)
	Unpin(id string) error
	Snapshots() []ring.Snapshot
}

//go:embed openapi.json
var openAPIDoc []byte

// Defaults of the v1 limits.
const (
	DefaultMaxWindow = time.Hour
	DefaultMaxBytes  = 4 << 30
	maxBodyBytes     = 64 << 10
	maxReasonLen     = 1024
)

// route is one method and path of the API; a {name} segment matches one
// non-empty path segment, handed to the handler.
type route struct {
	method, pattern string
	handle          func(w http.ResponseWriter, r *http.Request, arg string)
}

func (s *Server) v1Routes() []route {
	return []route{
		{http.MethodGet, "/api/v1/captures", s.listCaptures},
		{http.MethodGet, "/api/v1/captures/{name}", s.getCapture},
		{http.MethodGet, "/api/v1/pcap", s.getPcap},
		{http.MethodGet, "/api/v1/snapshots", s.listSnapshots},
		{http.MethodPost, "/api/v1/snapshots", s.postSnapshot},
		{http.MethodDelete, "/api/v1/snapshots/{id}", s.deleteSnapshot},
		{http.MethodGet, "/api/v1/openapi.json", s.serveOpenAPI},
	}
}

// match finds the route for path and method. It reports the methods path
// allows when only the method is wrong, and nothing when the path is unknown.
func match(routes []route, method, path string) (rt *route, arg string, allowed []string) {
	segs := strings.Split(path, "/")
	for i := range routes {
		ps := strings.Split(routes[i].pattern, "/")
		if len(ps) != len(segs) {
			continue
		}
		var a string
		ok := true
		for j, p := range ps {
			if strings.HasPrefix(p, "{") {
				// {name} may carry a suffix ({id}.json): the segment
				// must end in it, and the rest is the argument.
				suffix := p[strings.IndexByte(p, '}')+1:]
				a, ok = strings.CutSuffix(segs[j], suffix)
				if !ok || a == "" {
					ok = false
					break
				}
			} else if p != segs[j] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		m := routes[i].method
		if m == method || m == http.MethodGet && method == http.MethodHead {
			return &routes[i], a, nil
		}
		allowed = append(allowed, m)
		if m == http.MethodGet {
			allowed = append(allowed, http.MethodHead)
		}
	}
	return nil, "", allowed
}

// serveV1 authenticates and dispatches a request under /api/v1.
func (s *Server) serveV1(w http.ResponseWriter, r *http.Request) {
	who, ok := s.auth.who(r)
	if !ok {
		unauthorized(w, r)
		return
	}
	rt, arg, allowed := match(s.routes, r.Method, r.URL.Path)
	if rt == nil && allowed != nil {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("method %s not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allowed, " or ")))
		return
	}
	if rt == nil {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no such endpoint %q; see /api/v1/openapi.json", r.URL.Path))
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), whoKey{}, who))
	rt.handle(w, r, arg)
}

type whoKey struct{}

func whoOf(r *http.Request) string {
	w, _ := r.Context().Value(whoKey{}).(string)
	return w
}

// Capture is one published file in GET /api/v1/captures.
type Capture struct {
	Name      string `json:"name"`
	Interface string `json:"interface"`
	Node      string `json:"node"`
	Worker    int    `json:"worker"`
	LinkType  string `json:"link_type"`
	Format    string `json:"format"`
	First     string `json:"first"`
	Last      string `json:"last"`
	Packets   uint64 `json:"packets"`
	Bytes     int64  `json:"bytes"`
	Pinned    bool   `json:"pinned"`
}

func rfc3339(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

func (s *Server) listCaptures(w http.ResponseWriter, _ *http.Request, _ string) {
	files := s.store.Files()
	pinned := s.store.PinnedFiles()
	out := make([]Capture, len(files))
	for i, f := range files {
		out[i] = Capture{
			Name: f.Name, Interface: f.Interface, Node: f.Node, Worker: f.Worker, LinkType: linkTypeName(f.LinkType),
			Format: string(f.Format), First: rfc3339(f.First), Last: rfc3339(f.Last), Packets: f.Packets, Bytes: f.Bytes,
			Pinned: pinned[f.Name],
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Captures []Capture `json:"captures"`
	}{out})
}

func contentType(f pcapio.Format) string {
	if f == pcapio.FormatPcapng {
		return "application/x-pcapng"
	}
	return "application/vnd.tcpdump.pcap"
}

// getCapture serves one file of the index. Only names the index holds are
// served, and only through s.root (an os.Root on the data directory), so no
// name, however encoded, reaches outside it.
func (s *Server) getCapture(w http.ResponseWriter, r *http.Request, name string) {
	aw := s.startAudit(w, r, "/api/v1/captures/{name}", zap.String("file", name))
	defer aw.finish()
	fi, ok := s.store.Lookup(name)
	if !ok || s.root == nil {
		writeError(aw, http.StatusNotFound, "not_found", fmt.Sprintf("no capture file %q in the index; see /api/v1/captures", name))
		return
	}
	f, err := s.root.Open(fi.Name)
	if errors.Is(err, fs.ErrNotExist) {
		// Gone from local disk: the Opener may still read it from object
		// storage (offload), else it was evicted.
		s.getRemoteCapture(aw, r, fi)
		return
	}
	if err != nil {
		s.log.Error("opening capture file failed", zap.String("file", fi.Name), zap.Error(err))
		writeError(aw, http.StatusInternalServerError, "internal", "opening the capture file failed")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		writeError(aw, http.StatusNotFound, "not_found", fmt.Sprintf("capture file %q is not a regular file", name))
		return
	}
	aw.Header().Set("Content-Type", contentType(fi.Format))
	aw.Header().Set("Content-Disposition", `attachment; filename="`+fi.Name+`"`)
	aw.Header().Set("Cache-Control", "no-store")
	http.ServeContent(aw, r, fi.Name, st.ModTime(), f)
}

// getRemoteCapture serves a file local retention has deleted through s.open,
// which reads it back from object storage (verified against the checksum
// recorded at upload, and decompressed). The stored object is not seekable
// as the file (it may be compressed), so Range is not offered
// (Accept-Ranges: none) and a Range request gets the whole file with 200.
// The last byte is held back until the read has ended cleanly, checksum
// included; a read that fails after the status is sent aborts the
// connection, so a client never sees a short or damaged file that looks
// whole.
func (s *Server) getRemoteCapture(aw *auditWriter, r *http.Request, fi ring.FileInfo) {
	evicted := func() {
		writeError(aw, http.StatusNotFound, "not_found", fmt.Sprintf("capture file %q was evicted", fi.Name))
	}
	if s.open == nil {
		evicted()
		return
	}
	rc, err := s.open.Open(r.Context(), fi)
	if errors.Is(err, fs.ErrNotExist) {
		evicted()
		return
	}
	if err != nil {
		s.log.Error("reading capture file from object storage failed", zap.String("file", fi.Name), zap.Error(err))
		writeError(aw, http.StatusBadGateway, "store_unavailable", fmt.Sprintf("capture file %q is held only in object storage, and reading it failed", fi.Name))
		return
	}
	defer rc.Close()
	h := aw.Header()
	h.Set("Content-Type", contentType(fi.Format))
	h.Set("Content-Disposition", `attachment; filename="`+fi.Name+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("Accept-Ranges", "none")
	h.Set("Content-Length", strconv.FormatInt(fi.Bytes, 10))
	aw.fields = append(aw.fields, zap.Bool("remote", true))
	aw.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	hw := &holdBack{w: aw, left: fi.Bytes - 1}
	n, err := io.Copy(hw, rc)
	if err == nil && n != fi.Bytes {
		err = fmt.Errorf("read %d bytes of %s from object storage, the index records %d", n, fi.Name, fi.Bytes)
	}
	if err == nil && hw.held {
		_, err = aw.Write([]byte{hw.last})
	}
	if err != nil {
		aw.err = err
		s.log.Error("streaming capture file from object storage failed", zap.String("file", fi.Name), zap.Error(err))
		panic(http.ErrAbortHandler)
	}
}

// holdBack passes on the first left bytes written to it and keeps the next
// one back, failing on any more: the last byte of a download goes out only
// once the whole file has been read and verified.
type holdBack struct {
	w    io.Writer
	left int64
	last byte
	held bool
}

func (h *holdBack) Write(p []byte) (int, error) {
	n := 0
	if h.left > 0 {
		k := int(min(int64(len(p)), h.left))
		m, err := h.w.Write(p[:k])
		h.left -= int64(m)
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	if len(p) == 0 {
		return n, nil
	}
	if h.held || len(p) > 1 {
		return n, errors.New("the object holds more bytes than the file")
	}
	h.last, h.held = p[0], true
	return n + 1, nil
}

// parseTime reads RFC 3339 or unix seconds with an optional fraction
// (up to nanoseconds, parsed exactly rather than through a float).
func parseTime(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	sec, frac, hasFrac := strings.Cut(v, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || n < 0 || n > 1<<33 || sec == "" || sec[0] == '+' || hasFrac && (frac == "" || len(frac) > 9) {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2026-01-02T15:04:05.5Z) nor unix seconds (1767366245.5)", v)
	}
	var ns int64
	if hasFrac {
		f, err := strconv.ParseUint(frac, 10, 32)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2026-01-02T15:04:05.5Z) nor unix seconds (1767366245.5)", v)
		}
		ns = int64(f)
		for range 9 - len(frac) {
			ns *= 10
		}
	}
	return time.Unix(n, ns), nil
}

// paramError is a 400 naming the offending parameter.
func paramError(w http.ResponseWriter, param, msg string) {
	writeError(w, http.StatusBadRequest, "bad_parameter", fmt.Sprintf("%s: %s", param, msg))
}

// window reads from and to, checked for presence, syntax and order.
func window(get func(string) string, w http.ResponseWriter) (from, to time.Time, ok bool) {
	var err error
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &from}, {"to", &to}} {
		v := get(p.name)
		if v == "" {
			paramError(w, p.name, "missing: give the window as from= and to= (RFC 3339 or unix seconds)")
			return from, to, false
		}
		if *p.t, err = parseTime(v); err != nil {
			paramError(w, p.name, err.Error())
			return from, to, false
		}
	}
	if !from.Before(to) {
		paramError(w, "to", fmt.Sprintf("the window is empty or reversed: to (%s) must be after from (%s)", to.UTC().Format(time.RFC3339Nano), from.UTC().Format(time.RFC3339Nano)))
		return from, to, false
	}
	return from, to, true
}

// getPcap streams the packets of a window as one pcap, or with
// format=pcapng as one pcapng with an interface per (node, interface), which
// holds any mix of link types and is what sonde fleet asks its members for.
// Limits are answered before the first byte; once streaming, the byte bound
// ends the output at a record boundary and the Sonde-Truncated trailer says
// so.
func (s *Server) getPcap(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	aw := s.startAudit(w, r, "/api/v1/pcap", zap.String("from", q.Get("from")), zap.String("to", q.Get("to")),
		zap.String("filter", q.Get("filter")), zap.String("flow", q.Get("flow")), zap.String("interface", q.Get("interface")),
		zap.String("format", q.Get("format")))
	defer aw.finish()
	for k := range q {
		if !slices.Contains([]string{"from", "to", "filter", "flow", "interface", "format"}, k) {
			paramError(aw, k, "unknown parameter: use from, to, filter, flow, interface, format")
			return
		}
	}
	format := pcapio.FormatPcap
	switch v := q.Get("format"); v {
	case "", "pcap":
	case "pcapng":
		format = pcapio.FormatPcapng
	default:
		paramError(aw, "format", fmt.Sprintf("%q: want pcap (one link type) or pcapng (an interface per node and interface)", v))
		return
	}
	from, to, ok := window(q.Get, aw)
	if !ok {
		return
	}
	if d := to.Sub(from); d > s.opts.MaxWindow {
		writeError(aw, http.StatusBadRequest, "window_too_long", fmt.Sprintf("to: the window of %s is longer than the limit of %s (--api-max-window)", d, s.opts.MaxWindow))
		return
	}
	var flow *extract.Flow
	if v := q.Get("flow"); v != "" {
		f, err := extract.ParseFlow(v)
		if err != nil {
			paramError(aw, "flow", err.Error())
			return
		}
		flow = &f
	}
	files := s.store.Window(from.UnixNano(), to.UnixNano())
	if ifaces := q["interface"]; len(ifaces) > 0 {
		files = slices.DeleteFunc(files, func(f ring.FileInfo) bool { return !slices.Contains(ifaces, f.Interface) })
	}
	req := extract.Request{From: from.UnixNano(), To: to.UnixNano(), MaxBytes: s.opts.MaxBytes, Format: format}
	if format == pcapio.FormatPcapng {
		if req.Matches, ok = s.selections(aw, files, q.Get("filter"), flow); !ok {
			return
		}
	} else if req.Match, ok = s.selection(aw, files, q.Get("filter"), flow); !ok {
		return
	}
	h := aw.Header()
	h.Set("Content-Type", contentType(format))
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="sonde_%s_%s%s"`, from.UTC().Format("20060102T150405.000000000Z"), to.UTC().Format("20060102T150405.000000000Z"), format.Ext()))
	h.Set("Cache-Control", "no-store")
	h.Set("Trailer", "Sonde-Truncated, Sonde-Packets, Sonde-Missing-Files")
	aw.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	res, err := extract.Extract(r.Context(), aw, s.open, files, req)
	aw.fields = append(aw.fields, zap.Uint64("packets", res.Packets), zap.Int("files", res.Files), zap.Int("missing_files", res.Missing), zap.Bool("truncated", res.Truncated))
	if err != nil {
		aw.err = err
		// The status is sent: abort the connection so the client sees a
		// broken transfer, not a short file that looks whole.
		panic(http.ErrAbortHandler)
	}
	h.Set("Sonde-Truncated", strconv.FormatBool(res.Truncated))
	h.Set("Sonde-Packets", strconv.FormatUint(res.Packets, 10))
	h.Set("Sonde-Missing-Files", strconv.Itoa(res.Missing))
}

// NodeHeader names the sensor that answered a request (every endpoint, so
// /api/health too), so a client of
// many sensors (sonde fleet) can attribute a stream to its node.
const NodeHeader = "Sonde-Node"

// node is the sensor's name: Options.Node, or else the node its ring files
// carry.
func (s *Server) node() string {
	if s.opts.Node != "" || s.store == nil {
		return s.opts.Node
	}
	for _, f := range s.store.Files() {
		return f.Node
	}
	return ""
}

// SnapshotRequest is the body of POST /api/v1/snapshots.
type SnapshotRequest struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Reason string `json:"reason"`
	TTL    string `json:"ttl"` // Go duration, such as 72h; empty: until deleted
}

// Snapshot is a pin as the API shows it.
type Snapshot struct {
	ID      string   `json:"id"`
	From    string   `json:"from"`
	To      string   `json:"to"`
	Reason  string   `json:"reason"`
	Created string   `json:"created"`
	Expires *string  `json:"expires"`
	Files   []string `json:"files"`
	Bytes   int64    `json:"bytes"`
}

func snapshotOut(s ring.Snapshot) Snapshot {
	out := Snapshot{ID: s.ID, From: s.From.UTC().Format(time.RFC3339Nano), To: s.To.UTC().Format(time.RFC3339Nano),
		Reason: s.Reason, Created: s.Created.UTC().Format(time.RFC3339Nano), Files: s.Files, Bytes: s.Bytes}
	if !s.Expires.IsZero() {
		e := s.Expires.UTC().Format(time.RFC3339Nano)
		out.Expires = &e
	}
	return out
}

func (s *Server) listSnapshots(w http.ResponseWriter, _ *http.Request, _ string) {
	snaps := s.store.Snapshots()
	out := make([]Snapshot, len(snaps))
	for i, sn := range snaps {
		out[i] = snapshotOut(sn)
	}
	writeJSON(w, http.StatusOK, struct {
		Snapshots []Snapshot `json:"snapshots"`
	}{out})
}

func (s *Server) postSnapshot(w http.ResponseWriter, r *http.Request, _ string) {
	aw := s.startAudit(w, r, "/api/v1/snapshots")
	defer aw.finish()
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(aw, http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Sprintf("Content-Type %q: send application/json", ct))
		return
	}
	var req SnapshotRequest
	dec := json.NewDecoder(http.MaxBytesReader(aw, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(aw, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("request body exceeds %d bytes", maxBodyBytes))
			return
		}
		writeError(aw, http.StatusBadRequest, "bad_body", fmt.Sprintf("request body: %v; want {\"from\": ..., \"to\": ..., \"reason\": ..., \"ttl\": \"72h\"}", err))
		return
	}
	if dec.More() {
		writeError(aw, http.StatusBadRequest, "bad_body", "request body: more than one JSON value")
		return
	}
	aw.fields = append(aw.fields, zap.String("from", req.From), zap.String("to", req.To), zap.String("reason", req.Reason), zap.String("ttl", req.TTL))
	get := func(k string) string {
		if k == "from" {
			return req.From
		}
		return req.To
	}
	from, to, ok := window(get, aw)
	if !ok {
		return
	}
	if len(req.Reason) > maxReasonLen {
		paramError(aw, "reason", fmt.Sprintf("%d bytes long: at most %d", len(req.Reason), maxReasonLen))
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		var err error
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
			paramError(aw, "ttl", fmt.Sprintf("%q: want a positive duration such as 72h, or omit it to keep the pin until deleted", req.TTL))
			return
		}
	}
	snap, err := s.store.Pin(from, to, ttl, req.Reason)
	var be *ring.PinBudgetError
	switch {
	case errors.As(err, &be):
		writeJSON(aw, http.StatusConflict, struct {
			errorBody
			PinnedBytes int64 `json:"pinned_bytes"`
			AddingBytes int64 `json:"adding_bytes"`
			BudgetBytes int64 `json:"budget_bytes"`
		}{errorBody{fmt.Sprintf("pin refused: %d bytes are pinned and this window adds %d, above the pin budget of %d bytes (--pin-max-bytes)", be.Pinned, be.Adding, be.Budget), "pin_budget_exceeded"},
			be.Pinned, be.Adding, be.Budget})
		return
	case errors.Is(err, ring.ErrNoFiles):
		writeError(aw, http.StatusNotFound, "no_files", "no published capture file overlaps the window")
		return
	case err != nil:
		s.log.Error("pinning failed", zap.Error(err))
		writeError(aw, http.StatusInternalServerError, "internal", "pinning failed: "+err.Error())
		return
	}
	aw.fields = append(aw.fields, zap.String("snapshot", snap.ID), zap.Int64("pinned_bytes", snap.Bytes))
	aw.Header().Set("Location", "/api/v1/snapshots/"+snap.ID)
	writeJSON(aw, http.StatusCreated, snapshotOut(snap))
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request, id string) {
	aw := s.startAudit(w, r, "/api/v1/snapshots/{id}", zap.String("snapshot", id))
	defer aw.finish()
	switch err := s.store.Unpin(id); {
	case errors.Is(err, ring.ErrNoSnapshot):
		writeError(aw, http.StatusNotFound, "not_found", fmt.Sprintf("no snapshot %q", id))
	case err != nil:
		writeError(aw, http.StatusInternalServerError, "internal", "unpinning failed: "+err.Error())
	default:
		aw.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(openAPIDoc)))
	w.WriteHeader(http.StatusOK)
	w.Write(openAPIDoc)
}

// auditWriter wraps the ResponseWriter of an audited request: it counts
// the bytes served, keeps the status, and pushes the write deadline forward
// before every write, so a long download is bounded by WriteTimeout per
// write rather than as a whole.
type auditWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	s       *Server
	r       *http.Request
	route   string
	fields  []zap.Field
	status  int
	bytes   int64
	start   time.Time
	err     error
}

func (s *Server) startAudit(w http.ResponseWriter, r *http.Request, route string, fields ...zap.Field) *auditWriter {
	rc := http.NewResponseController(w)
	// The request has been read: lift the read deadline, which would
	// otherwise cancel the request's context in the middle of a long reply.
	if r.Method != http.MethodPost {
		_ = rc.SetReadDeadline(time.Time{})
	}
	return &auditWriter{ResponseWriter: w, rc: rc, timeout: s.opts.WriteTimeout, s: s, r: r, route: route, fields: fields, start: time.Now()}
}

func (a *auditWriter) WriteHeader(code int) {
	if a.status == 0 {
		a.status = code
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *auditWriter) Write(p []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	_ = a.rc.SetWriteDeadline(time.Now().Add(a.timeout))
	n, err := a.ResponseWriter.Write(p)
	a.bytes += int64(n)
	return n, err
}

// ReadFrom keeps sendfile for file downloads, in chunks so the deadline
// moves with the transfer.
func (a *auditWriter) ReadFrom(src io.Reader) (int64, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	var total int64
	for {
		_ = a.rc.SetWriteDeadline(time.Now().Add(a.timeout))
		n, err := io.Copy(a.ResponseWriter, io.LimitReader(src, 4<<20))
		total += n
		a.bytes += n
		if err != nil || n < 4<<20 {
			return total, err
		}
	}
}

func (a *auditWriter) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// finish writes the audit line. It runs deferred, also when the handler
// aborts the connection.
func (a *auditWriter) finish() {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	fields := append([]zap.Field{
		zap.Bool("audit", true),
		zap.String("who", whoOf(a.r)),
		zap.String("remote", a.r.RemoteAddr),
		zap.String("method", a.r.Method),
		zap.String("route", a.route),
		zap.Int("status", a.status),
		zap.Int64("bytes", a.bytes),
		zap.Duration("duration", time.Since(a.start)),
	}, a.fields...)
	if a.err != nil {
		fields = append(fields, zap.NamedError("stream_error", a.err))
	}
	a.s.audit.Info("api request", fields...)
}

// selection is what extraction needs before it starts: the filter (and flow)
// compiled for the one link type of the window's files. It answers the
// request itself, with the JSON error, when it cannot go on.
func (s *Server) selection(w http.ResponseWriter, files []ring.FileInfo, filter string, flow *extract.Flow) (bpf.Program, bool) {
	lt, err := extract.LinkType(files)
	if err != nil {
		writeError(w, http.StatusBadRequest, "mixed_link_types", err.Error())
		return nil, false
	}
	prog, err := extract.Compile(filter, flow, lt)
	if err != nil {
		var fe *extract.FilterError
		if errors.As(err, &fe) {
			paramError(w, "filter", fe.Err.Error())
			return nil, false
		}
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return nil, false
	}
	if s.open == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "no data directory")
		return nil, false
	}
	return prog, true
}

// selections is selection for a pcapng window: the filter compiled for each
// link type of the window's files, so interfaces of different link types
// can be served together.
func (s *Server) selections(w http.ResponseWriter, files []ring.FileInfo, filter string, flow *extract.Flow) (map[capture.LinkType]bpf.Program, bool) {
	progs := map[capture.LinkType]bpf.Program{}
	for _, f := range files {
		if _, done := progs[f.LinkType]; done {
			continue
		}
		prog, ok := s.selection(w, []ring.FileInfo{f}, filter, flow)
		if !ok {
			return nil, false
		}
		progs[f.LinkType] = prog
	}
	if s.open == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "no data directory")
		return nil, false
	}
	return progs, true
}

// The pieces of /api/v1 that sonde fleet serves its own API with, so both
// authenticate, parse windows and answer errors alike.

// Authenticator checks a request's bearer token or verified client
// certificate, as /api/v1 does.
type Authenticator struct{ a *authenticator }

// NewAuthenticator accepts tokens (see ReadTokenFile), or anyone when
// disabled.
func NewAuthenticator(tokens []string, disabled bool) *Authenticator {
	return &Authenticator{newAuthenticator(tokens, disabled)}
}

// Who returns who made r, for the audit log ("token:FINGERPRINT",
// "cert:CN", "anonymous"), and whether r is allowed.
func (a *Authenticator) Who(r *http.Request) (string, bool) { return a.a.who(r) }

// Unauthorized answers 401 with the RFC 6750 challenge.
func Unauthorized(w http.ResponseWriter, r *http.Request) { unauthorized(w, r) }

// WriteError answers status with the JSON error body {"error", "code"}.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	writeError(w, status, code, msg)
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// ErrorBody is the JSON body of every error answer.
type ErrorBody = errorBody

// ParseWindow reads the from and to parameters through get, answering the
// 400 itself when they are missing, malformed or reversed.
func ParseWindow(get func(string) string, w http.ResponseWriter) (from, to time.Time, ok bool) {
	return window(get, w)
}
