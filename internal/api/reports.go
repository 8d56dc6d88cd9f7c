package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sonde-project/sonde/internal/report"
)

// retryAfter is what a client is told to wait when the report queue is full.
const retryAfter = 30 * time.Second

// sseKeepAlive is how often an idle event stream gets a comment, so proxies
// and the write deadline do not end it.
const sseKeepAlive = 15 * time.Second

func (s *Server) reportRoutes() []route {
	// The suffixed routes come first: {id} alone would match "ID.json".
	return []route{
		{http.MethodPost, "/api/v1/reports", s.postReport},
		{http.MethodPost, "/api/v1/reports/upload", s.uploadReport},
		{http.MethodGet, "/api/v1/reports/{id}.json", s.reportFile("json", "application/json")},
		{http.MethodGet, "/api/v1/reports/{id}.html", s.reportFile("html", "text/html; charset=utf-8")},
		{http.MethodGet, "/api/v1/reports/{id}.csv", s.reportFile("csv", "text/csv; charset=utf-8")},
		{http.MethodGet, "/api/v1/reports/{id}/events", s.reportEvents},
		{http.MethodGet, "/api/v1/reports/{id}", s.getReport},
		{http.MethodDelete, "/api/v1/reports/{id}", s.deleteReport},
	}
}

// ReportRequest is the body of POST /api/v1/reports.
type ReportRequest struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Filter string `json:"filter"`
}

func (s *Server) reportsOff(w http.ResponseWriter) bool {
	if s.opts.Reports == nil {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "reports are not enabled on this server")
		return true
	}
	return false
}

// accepted answers a queued report, or the queue's refusal.
func (s *Server) accepted(w http.ResponseWriter, aw *auditWriter, st report.Status, err error) {
	if errors.Is(err, report.ErrQueueFull) {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds())))
		writeError(w, http.StatusTooManyRequests, "queue_full", fmt.Sprintf("%d reports are already queued or running (MAX_QUEUE_SIZE); retry later", s.opts.Reports.Config().MaxQueue))
		return
	}
	if err != nil {
		s.log.Error("queueing a report failed", zap.Error(err))
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	aw.fields = append(aw.fields, zap.String("report", st.ID))
	w.Header().Set("Location", "/api/v1/reports/"+st.ID)
	writeJSON(w, http.StatusAccepted, st)
}

func (s *Server) postReport(w http.ResponseWriter, r *http.Request, _ string) {
	aw := s.startAudit(w, r, "/api/v1/reports")
	defer aw.finish()
	if s.reportsOff(aw) {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(aw, http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Sprintf("Content-Type %q: send application/json, or a capture file to /api/v1/reports/upload", ct))
		return
	}
	var req ReportRequest
	dec := json.NewDecoder(http.MaxBytesReader(aw, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(aw, http.StatusBadRequest, "bad_body", fmt.Sprintf("request body: %v; want {\"from\": ..., \"to\": ..., \"filter\": ...}", err))
		return
	}
	aw.fields = append(aw.fields, zap.String("from", req.From), zap.String("to", req.To), zap.String("filter", req.Filter))
	from, to, ok := window(func(k string) string {
		if k == "from" {
			return req.From
		}
		return req.To
	}, aw)
	if !ok {
		return
	}
	if d := to.Sub(from); d > s.opts.MaxWindow {
		writeError(aw, http.StatusBadRequest, "window_too_long", fmt.Sprintf("to: the window of %s is longer than the limit of %s (--api-max-window)", d, s.opts.MaxWindow))
		return
	}
	files := s.store.Window(from.UnixNano(), to.UnixNano())
	prog, ok := s.selection(aw, files, req.Filter, nil)
	if !ok {
		return
	}
	name := "ring " + from.UTC().Format(time.RFC3339Nano) + " to " + to.UTC().Format(time.RFC3339Nano)
	if req.Filter != "" {
		name += " filter " + req.Filter
	}
	st, err := s.opts.Reports.Submit(report.RingSource(s.open, files, from.UnixNano(), to.UnixNano(), prog, name))
	s.accepted(aw, aw, st, err)
}

// uploadTypes are the media types of a raw capture file upload.
var uploadTypes = []string{"application/vnd.tcpdump.pcap", "application/octet-stream", "application/x-pcapng"}

// uploadReport takes a pcap or pcapng file, raw or as the first file of a
// multipart form, and queues a report over it. The size limit and the
// file's structure are checked while it streams (report.Queue.Upload).
func (s *Server) uploadReport(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	aw := s.startAudit(w, r, "/api/v1/reports/upload", zap.String("filter", q.Get("filter")))
	defer aw.finish()
	if s.reportsOff(aw) {
		return
	}
	for k := range q {
		if k != "filter" {
			paramError(aw, k, "unknown parameter: use filter")
			return
		}
	}
	ct := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil && ct != "" {
		mt = ct
	}
	// The body streams for as long as the client sends: the read deadline
	// moves with each read instead of bounding the whole upload.
	body := io.Reader(&deadlineReader{r: r.Body, rc: aw.rc, timeout: s.opts.ReadTimeout})
	name := "upload"
	switch {
	case mt == "multipart/form-data":
		if params["boundary"] == "" {
			writeError(aw, http.StatusBadRequest, "bad_body", "multipart/form-data without a boundary")
			return
		}
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				writeError(aw, http.StatusBadRequest, "bad_body", "multipart body holds no file part (a part with a filename): "+err.Error())
				return
			}
			if p.FileName() != "" {
				name, body = p.FileName(), p
				break
			}
		}
	case contains(uploadTypes, mt):
		if fn := r.Header.Get("Content-Disposition"); fn != "" {
			if _, params, err := mime.ParseMediaType(fn); err == nil && params["filename"] != "" {
				name = params["filename"]
			}
		}
	default:
		writeError(aw, http.StatusUnsupportedMediaType, "unsupported_media_type",
			fmt.Sprintf("Content-Type %q: send a pcap or pcapng file as application/vnd.tcpdump.pcap or application/octet-stream, or as multipart/form-data", ct))
		return
	}
	aw.fields = append(aw.fields, zap.String("file", name))
	st, err := s.opts.Reports.Upload(body, name, q.Get("filter"))
	var tl *report.TooLargeError
	var ce *report.CorruptError
	var fe *report.FilterError
	switch {
	case errors.As(err, &tl):
		aw.Header().Set("Connection", "close")
		writeError(aw, http.StatusRequestEntityTooLarge, "upload_too_large", tl.Error())
	case errors.As(err, &ce):
		writeJSON(aw, http.StatusBadRequest, struct {
			errorBody
			Offset int64 `json:"offset"`
		}{errorBody{"not a readable pcap or pcapng file: " + ce.Error(), "corrupt_capture"}, ce.Offset})
	case errors.As(err, &fe):
		paramError(aw, "filter", fe.Error())
	default:
		s.accepted(aw, aw, st, err)
	}
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// deadlineReader pushes the connection's read deadline forward before each
// read, so a slow but live upload goes on and a stalled one ends.
type deadlineReader struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	_ = d.rc.SetReadDeadline(time.Now().Add(d.timeout))
	return d.r.Read(p)
}

func (s *Server) lookupError(w http.ResponseWriter, id string, st report.Status, err error) {
	switch {
	case errors.Is(err, report.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no report %q (never made, deleted or expired)", id))
	case errors.Is(err, report.ErrNotReady):
		writeJSON(w, http.StatusConflict, struct {
			errorBody
			State report.State `json:"state"`
		}{errorBody{fmt.Sprintf("report %s is %s, not done: see /api/v1/reports/%s", id, st.State, id), "not_ready"}, st.State})
	default:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

func (s *Server) getReport(w http.ResponseWriter, _ *http.Request, id string) {
	if s.reportsOff(w) {
		return
	}
	st, err := s.opts.Reports.Status(id)
	if err != nil {
		s.lookupError(w, id, st, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) reportFile(ext, ctype string) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		aw := s.startAudit(w, r, "/api/v1/reports/{id}."+ext, zap.String("report", id))
		defer aw.finish()
		if s.reportsOff(aw) {
			return
		}
		path, st, err := s.opts.Reports.Result(id, ext)
		if err != nil {
			s.lookupError(aw, id, st, err)
			return
		}
		f, err := os.Open(path)
		if err != nil {
			// Deleted between the lookup and the open.
			s.lookupError(aw, id, st, report.ErrNotFound)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			writeError(aw, http.StatusInternalServerError, "internal", err.Error())
			return
		}
		h := aw.Header()
		h.Set("Content-Type", ctype)
		h.Set("Cache-Control", "no-store")
		if ext != "html" {
			h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="sonde-report-%s.%s"`, id, ext))
		}
		// The HTML report needs nothing from anywhere: say so to the browser.
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(aw, r, "", fi.ModTime(), f)
	}
}

func (s *Server) deleteReport(w http.ResponseWriter, r *http.Request, id string) {
	aw := s.startAudit(w, r, "/api/v1/reports/{id}", zap.String("report", id))
	defer aw.finish()
	if s.reportsOff(aw) {
		return
	}
	if err := s.opts.Reports.Delete(id); err != nil {
		s.lookupError(aw, id, report.Status{}, err)
		return
	}
	aw.WriteHeader(http.StatusNoContent)
}

// reportEvents streams a report's status as server-sent events: one
// "status" event per change, in order (id is the status's seq), until the
// report is done or failed ("status" then "end"), or deleted ("deleted").
func (s *Server) reportEvents(w http.ResponseWriter, r *http.Request, id string) {
	if s.reportsOff(w) {
		return
	}
	st, changed, err := s.opts.Reports.Watch(id)
	if err != nil {
		s.lookupError(w, id, st, err)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) bool {
		b, _ := json.Marshal(v)
		_ = rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
		if event == "status" {
			fmt.Fprintf(w, "id: %d\n", st.Seq)
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	keep := time.NewTicker(sseKeepAlive)
	defer keep.Stop()
	for {
		if !send("status", st) {
			return
		}
		if st.State == report.StateDone || st.State == report.StateFailed {
			send("end", struct {
				ID    string       `json:"id"`
				State report.State `json:"state"`
			}{st.ID, st.State})
			return
		}
		for waiting := true; waiting; {
			select {
			case <-r.Context().Done():
				return
			case <-keep.C:
				_ = rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
				if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
					return
				}
			case <-changed:
				waiting = false
			}
		}
		if st, changed, err = s.opts.Reports.Watch(id); err != nil {
			send("deleted", struct {
				ID string `json:"id"`
			}{id})
			return
		}
	}
}
