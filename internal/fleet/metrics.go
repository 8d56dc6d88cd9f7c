package fleet

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Reasons of sonde_fleet_member_failures_total, a closed set.
const (
	// ReasonTimeout: no response headers within --member-timeout, or a
	// pause in its stream longer than --member-idle-timeout.
	ReasonTimeout = "timeout"
	// ReasonConnect: it could not be reached (refused, no route, DNS, TLS).
	ReasonConnect = "connect"
	// ReasonStatus: it answered, with an error status (401, 400, 503, ...).
	ReasonStatus = "status"
	// ReasonStream: its answer broke off or was malformed once it had begun.
	ReasonStream = "stream"
)

var failureReasons = []string{ReasonTimeout, ReasonConnect, ReasonStatus, ReasonStream}

// metrics are the fleet's own series. The member label takes the names
// of the members discovered, and a member's series are deleted when
// discovery stops listing it, so the series count follows the member
// count.
type metrics struct {
	reg             *prometheus.Registry
	members         prometheus.Gauge
	discoveryErrors prometheus.Counter
	memberUp        *prometheus.GaugeVec
	memberFailures  *prometheus.CounterVec
	requests        *prometheus.CounterVec
	requestSeconds  *prometheus.HistogramVec
	mergedBytes     prometheus.Counter
	mergedPackets   prometheus.Counter

	mu    sync.Mutex
	known map[string]bool // member label values that may have series
}

// newMetrics registers the fleet's series on reg; a nil reg is a private
// registry with the Go and process collectors.
func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
		if err := reg.Register(collectors.NewGoCollector()); err != nil {
			return nil, err
		}
		if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, err
		}
	}
	m := &metrics{
		reg: reg,
		members: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sonde_fleet_members",
			Help: "Members the last member discovery found."}),
		discoveryErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "sonde_fleet_discovery_errors_total",
			Help: "Member discoveries that failed (by a request or by the health poll)."}),
		memberUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sonde_fleet_member_up",
			Help: "1 when the member's /api/health answered ok at the last health poll; 0 when it was unreachable, refused the fleet or was not healthy."}, []string{"member"}),
		memberFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sonde_fleet_member_failures_total",
			Help: "Requests to a member that failed, by reason: timeout, connect, status (an error answer) or stream (broke off midway)."}, []string{"member", "reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sonde_fleet_requests_total",
			Help: "Requests the fleet answered, by route and HTTP status code."}, []string{"route", "code"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sonde_fleet_request_seconds",
			Help:    "Time to answer a request in full (merged downloads included), by route.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}}, []string{"route"}),
		mergedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "sonde_fleet_merged_bytes_total",
			Help: "Bytes of merged pcapng written (downloads and report inputs)."}),
		mergedPackets: prometheus.NewCounter(prometheus.CounterOpts{Name: "sonde_fleet_merged_packets_total",
			Help: "Packets written into merged pcapng (downloads and report inputs)."}),
		known: map[string]bool{},
	}
	for _, c := range []prometheus.Collector{m.members, m.discoveryErrors, m.memberUp, m.memberFailures, m.requests, m.requestSeconds, m.mergedBytes, m.mergedPackets} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// discovered records a discovery: the member count, or an error (unless
// ctx ended: the discovery was cut short, it did not fail).
func (m *metrics) discovered(ctx context.Context, members []Member, err error) {
	if err != nil {
		if ctx.Err() == nil {
			m.discoveryErrors.Inc()
		}
		return
	}
	m.members.Set(float64(len(members)))
}

// track gives a member its failure series (each reason at 0, so the first
// failure is an increase) and keeps its name for forget.
func (m *metrics) track(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.known[name] {
		return
	}
	m.known[name] = true
	for _, r := range failureReasons {
		m.memberFailures.WithLabelValues(name, r)
	}
}

// forget deletes the series of every member not in current.
func (m *metrics) forget(current []Member) {
	keep := map[string]bool{}
	for _, c := range current {
		keep[c.Name] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.known {
		if !keep[name] {
			m.memberUp.DeletePartialMatch(prometheus.Labels{"member": name})
			m.memberFailures.DeletePartialMatch(prometheus.Labels{"member": name})
			delete(m.known, name)
		}
	}
}

// failed counts a member's failed request. Failures caused by the fleet's
// own client going away are not the member's and are not counted.
func (m *metrics) failed(ctx context.Context, member string, err error) {
	if err == nil || ctx.Err() != nil {
		return
	}
	m.track(member)
	m.memberFailures.WithLabelValues(member, failureReason(err)).Inc()
}

// streamError is a failure once a member's answer had begun: reading or
// decoding its body.
type streamError struct{ err error }

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// failureReason sorts a member's error into the reasons.
func failureReason(err error) string {
	var se *StatusError
	var de *deadlineError
	var ne net.Error
	var st *streamError
	switch {
	case errors.As(err, &se):
		return ReasonStatus
	case errors.As(err, &de), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	case errors.As(err, &st):
		return ReasonStream
	default:
		return ReasonConnect
	}
}

// instrument counts and times route's requests. The status is the one
// written (200 for a download that then broke off: the client saw a
// 200 and a cut stream).
func (m *metrics) instrument(route string, h http.Handler) http.Handler {
	hist := m.requestSeconds.WithLabelValues(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
			hist.Observe(time.Since(start).Seconds())
		}()
		h.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status written; Unwrap lets
// http.ResponseController reach the connection's deadlines.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
