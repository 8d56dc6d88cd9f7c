package exporter

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sonde-project/sonde/analysis"
	"github.com/sonde-project/sonde/analysis/anomaly"
	"github.com/sonde-project/sonde/analysis/decode"
)

// AnalysisSource is the analysis engine: its latest published snapshot.
type AnalysisSource interface {
	Snapshot() *analysis.Snapshot
}

// AnomalySource counts anomaly events by kind (anomaly.Kinds order) and
// those suppressed by the per-window limit.
type AnomalySource interface {
	Counts() (byKind []uint64, suppressed uint64)
}

// MaxTopTalkerSeries is the hard limit on top-talker series, whatever
// AnalysisOptions.TopTalkers asks for.
const MaxTopTalkerSeries = 100

// AnalysisOptions are the opt-in parts of the analysis metrics.
type AnalysisOptions struct {
	// TopTalkers, when positive, exports the last window's N heaviest
	// addresses as sonde_top_talker_* series labelled by address (at most
	// MaxTopTalkerSeries; the rest count in
	// sonde_exporter_series_refused_total). Off by default: an address
	// label makes the series count follow the traffic.
	TopTalkers int
	// Window is the engine's window length, exported as
	// sonde_analysis_window_seconds.
	Window time.Duration
}

// latencyBuckets are the upper bounds, in seconds, of the latency and
// jitter histograms: 100 µs to 10 s.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// AnalysisCollector exports the analysis engine's running totals, the last
// window's rates and health, and anomaly counts. Every label set is fixed
// (protocol, reason, kind, rcode...), so the series count does not depend
// on the traffic unless top talkers are asked for.
type AnalysisCollector struct {
	src     AnalysisSource
	anom    AnomalySource
	opts    AnalysisOptions
	refused atomic.Uint64

	packets, bytes, malformed, tunnels, fragments, icmp, drops, panics           *prometheus.Desc
	flowsNew, flowsExpired, flowsUntracked, flowsActive                          *prometheus.Desc
	tcpSegments, tcpOpened, tcpEstablished, tcpClosed, tcpReset, tcpResetSegs    *prometheus.Desc
	tcpRetrans, tcpRetransKind, tcpSYNRetrans, tcpDupAcks, tcpOOO                *prometheus.Desc
	tcpZeroWin, tcpLowWin, tcpKeepAlive, tcpHandshake, tcpDataRTT                *prometheus.Desc
	dnsQueries, dnsResponses, dnsRcodes, dnsTimeouts, dnsUnsolicited, dnsLatency *prometheus.Desc
	udpJitter, health, penalty, anomalies, suppressed                            *prometheus.Desc
	windowLen, windowEnd, windowPPS, windowBPS, windowFlowRate                   *prometheus.Desc
	talkerBytes, talkerPackets, seriesRefused                                    *prometheus.Desc
}

// NewAnalysisCollector returns a collector reading src (and anom, which may
// be nil when anomaly detection is off) at scrape time.
func NewAnalysisCollector(src AnalysisSource, anom AnomalySource, opts AnalysisOptions) *AnalysisCollector {
	d := func(sub, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, sub, name), help, labels, nil)
	}
	return &AnalysisCollector{
		src: src, anom: anom, opts: opts,
		packets:        d("analysis", "packets_total", "Packets analysed, by outermost transport protocol (tcp, udp, icmp, icmp6, arp, other).", "protocol"),
		bytes:          d("analysis", "bytes_total", "Wire bytes of the packets analysed, by outermost transport protocol.", "protocol"),
		malformed:      d("analysis", "malformed_packets_total", "Frames whose decoding stopped early, by reason.", "reason"),
		tunnels:        d("analysis", "tunnel_packets_total", "Tunnelled packets decoded, by encapsulation.", "kind"),
		fragments:      d("analysis", "ip_fragments_total", "IP fragments (v4 and v6), by position: first or non_first.", "position"),
		icmp:           d("analysis", "icmp_errors_total", "ICMP and ICMPv6 errors: unreachable (all), frag_needed and packet_too_big (path MTU), time_exceeded.", "type"),
		drops:          d("analysis", "kernel_drops_total", "Packets the kernel dropped before analysis saw them."),
		panics:         d("analysis", "panics_total", "Packets whose analysis panicked: recovered, skipped, and logged once."),
		flowsNew:       d("flows", "created_total", "Flows that entered the flow tables."),
		flowsExpired:   d("flows", "expired_total", "Flows forgotten after their idle timeout."),
		flowsUntracked: d("flows", "untracked_total", "Flows not tracked because the flow table was full (their packets still count in the protocol totals)."),
		flowsActive:    d("flows", "active", "Flows in the tables when the last window closed."),
		tcpSegments:    d("tcp", "segments_total", "TCP segments analysed."),
		tcpOpened:      d("tcp", "connections_opened_total", "TCP connection attempts (first SYN of a connection)."),
		tcpEstablished: d("tcp", "connections_established_total", "TCP handshakes completed."),
		tcpClosed:      d("tcp", "connections_closed_total", "TCP connections closed by FINs in both directions."),
		tcpReset:       d("tcp", "connections_reset_total", "TCP connections ended by a RST."),
		tcpResetSegs:   d("tcp", "reset_segments_total", "TCP RST segments."),
		tcpRetrans:     d("tcp", "retransmissions_total", "TCP segments whose sequence range was sent before (Wireshark's tcp.analysis.retransmission)."),
		tcpRetransKind: d("tcp", "retransmissions_classified_total", "Retransmissions of a recognised kind: fast (after duplicate ACKs), rto (after a timeout), spurious (already acknowledged). Subsets of sonde_tcp_retransmissions_total; they may overlap.", "kind"),
		tcpSYNRetrans:  d("tcp", "syn_retransmissions_total", "Retransmitted SYNs."),
		tcpDupAcks:     d("tcp", "duplicate_acks_total", "Duplicate ACKs."),
		tcpOOO:         d("tcp", "out_of_order_total", "Segments that arrived out of order."),
		tcpZeroWin:     d("tcp", "zero_window_total", "Segments advertising a zero receive window."),
		tcpLowWin:      d("tcp", "low_window_total", "Segments advertising an open window below two segments of the peer's MSS."),
		tcpKeepAlive:   d("tcp", "keepalives_total", "TCP keep-alive segments."),
		tcpHandshake:   d("tcp", "handshake_rtt_seconds", "TCP handshake round-trip time: SYN to the first ACK."),
		tcpDataRTT:     d("tcp", "data_rtt_seconds", "TCP data round-trip time: data segment to the ACK covering it."),
		dnsQueries:     d("dns", "queries_total", "DNS queries over UDP port 53."),
		dnsResponses:   d("dns", "responses_total", "DNS responses over UDP port 53."),
		dnsRcodes:      d("dns", "responses_by_rcode_total", "DNS responses by response code name.", "rcode"),
		dnsTimeouts:    d("dns", "timeouts_total", "DNS queries unanswered after the DNS timeout."),
		dnsUnsolicited: d("dns", "unsolicited_responses_total", "DNS responses that matched no pending query."),
		dnsLatency:     d("dns", "latency_seconds", "DNS query to response latency."),
		udpJitter:      d("udp", "jitter_seconds", "RFC 3550 interarrival jitter, one observation per UDP flow direction per window."),
		health:         d("health", "score", "Network health of the last window, 0 (bad) to 100 (perfect)."),
		penalty:        d("health", "penalty", "Points the last window's health score lost, by component.", "component"),
		anomalies:      d("anomaly", "events_total", "Anomaly events detected, by kind.", "kind"),
		suppressed:     d("anomaly", "events_suppressed_total", "Anomaly events not reported because a window had too many of one kind."),
		windowLen:      d("analysis", "window_seconds", "Length of an analysis window."),
		windowEnd:      d("analysis", "last_window_end_timestamp_seconds", "End of the last published analysis window, 0 before the first."),
		windowPPS:      d("analysis", "window_packets_per_second", "Packet rate of the last window."),
		windowBPS:      d("analysis", "window_bytes_per_second", "Byte rate (wire bytes) of the last window."),
		windowFlowRate: d("analysis", "window_new_flows_per_second", "New-flow rate of the last window."),
		talkerBytes:    d("top_talker", "bytes", "Bytes sent and received by one of the last window's top talkers (opt-in: --metrics-top-talkers).", "address"),
		talkerPackets:  d("top_talker", "packets", "Packets sent and received by one of the last window's top talkers (opt-in: --metrics-top-talkers).", "address"),
		seriesRefused:  d("exporter", "series_refused_total", "Series the exporter's hard limits refused to export."),
	}
}

// Describe implements prometheus.Collector.
func (c *AnalysisCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.packets, c.bytes, c.malformed, c.tunnels, c.fragments, c.icmp, c.drops, c.panics,
		c.flowsNew, c.flowsExpired, c.flowsUntracked, c.flowsActive,
		c.tcpSegments, c.tcpOpened, c.tcpEstablished, c.tcpClosed, c.tcpReset, c.tcpResetSegs,
		c.tcpRetrans, c.tcpRetransKind, c.tcpSYNRetrans, c.tcpDupAcks, c.tcpOOO,
		c.tcpZeroWin, c.tcpLowWin, c.tcpKeepAlive, c.tcpHandshake, c.tcpDataRTT,
		c.dnsQueries, c.dnsResponses, c.dnsRcodes, c.dnsTimeouts, c.dnsUnsolicited, c.dnsLatency,
		c.udpJitter, c.health, c.penalty, c.anomalies, c.suppressed,
		c.windowLen, c.windowEnd, c.windowPPS, c.windowBPS, c.windowFlowRate,
		c.talkerBytes, c.talkerPackets, c.seriesRefused,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *AnalysisCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Snapshot()
	t := &s.Totals
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	histogram := func(d *prometheus.Desc, h *analysis.Histogram) {
		cum := h.CumulativeCounts(latencyBuckets)
		b := make(map[float64]uint64, len(latencyBuckets))
		for i, ub := range latencyBuckets {
			b[ub] = cum[i]
		}
		ch <- prometheus.MustNewConstHistogram(d, h.Count, float64(h.SumNano)/1e9, b)
	}

	for i, name := range analysis.ProtoNames() {
		counter(c.packets, t.Protos[i].Packets, name)
		counter(c.bytes, t.Protos[i].Bytes, name)
	}
	for r := decode.Reason(1); r < decode.NumReasons; r++ {
		counter(c.malformed, t.Malformed[r], r.String())
	}
	for k := decode.Tunnel(1); k < decode.NumTunnels; k++ {
		counter(c.tunnels, t.Tunnels[k], k.String())
	}
	counter(c.panics, t.AnalyzerPanics)
	counter(c.fragments, t.FragFirst, "first")
	counter(c.fragments, t.FragNonFirst, "non_first")
	counter(c.icmp, t.ICMPUnreachable, "unreachable")
	counter(c.icmp, t.ICMPFragNeeded, "frag_needed")
	counter(c.icmp, t.ICMPPacketTooBig, "packet_too_big")
	counter(c.icmp, t.ICMPTimeExceeded, "time_exceeded")
	counter(c.drops, t.Drops)

	counter(c.flowsNew, t.NewFlows)
	counter(c.flowsExpired, t.ExpiredFlows)
	counter(c.flowsUntracked, t.DroppedFlows)

	tcp := &t.TCP
	counter(c.tcpSegments, tcp.Segments)
	counter(c.tcpOpened, tcp.Opened)
	counter(c.tcpEstablished, tcp.Established)
	counter(c.tcpClosed, tcp.Closed)
	counter(c.tcpReset, tcp.ConnResets)
	counter(c.tcpResetSegs, tcp.Resets)
	counter(c.tcpRetrans, tcp.Retransmissions)
	counter(c.tcpRetransKind, tcp.FastRetransmissions, "fast")
	counter(c.tcpRetransKind, tcp.RTORetransmissions, "rto")
	counter(c.tcpRetransKind, tcp.SpuriousRetransmits, "spurious")
	counter(c.tcpSYNRetrans, tcp.SYNRetrans)
	counter(c.tcpDupAcks, tcp.DupAcks)
	counter(c.tcpOOO, tcp.OutOfOrder)
	counter(c.tcpZeroWin, tcp.ZeroWindows)
	counter(c.tcpLowWin, tcp.LowWindows)
	counter(c.tcpKeepAlive, tcp.KeepAlives)
	histogram(c.tcpHandshake, &tcp.HandshakeRTT)
	histogram(c.tcpDataRTT, &tcp.DataRTT)

	dns := &t.DNS
	counter(c.dnsQueries, dns.Queries)
	counter(c.dnsResponses, dns.Responses)
	for i, name := range analysis.RcodeNames {
		counter(c.dnsRcodes, dns.Rcodes[i], name)
	}
	counter(c.dnsTimeouts, dns.Timeouts)
	counter(c.dnsUnsolicited, dns.Unsolicited)
	histogram(c.dnsLatency, &dns.Latency)
	histogram(c.udpJitter, &t.Jitter)

	// Health and rates describe the last window: a score averaged over the
	// whole run would hide today's trouble behind yesterday's calm. Before
	// the first window they read as a perfect, idle network.
	h := analysis.Health{Score: 100}
	var pps, bps, fps, end float64
	if w := s.Last; w != nil {
		h, pps, bps, fps = w.Health, w.PacketsPerSecond, w.BitsPerSecond, w.NewFlowsPerSecond
		end = float64(w.End.UnixNano()) / 1e9
		gauge(c.flowsActive, float64(w.ActiveFlows))
	} else {
		gauge(c.flowsActive, 0)
	}
	gauge(c.health, h.Score)
	for _, p := range []struct {
		name string
		v    float64
	}{
		{"retransmissions", h.RetransmissionPenalty}, {"latency", h.LatencyPenalty}, {"dns", h.DNSPenalty},
		{"jitter", h.JitterPenalty}, {"drops", h.DropPenalty}, {"resets", h.ResetPenalty},
	} {
		gauge(c.penalty, p.v, p.name)
	}
	gauge(c.windowLen, c.opts.Window.Seconds())
	gauge(c.windowEnd, end)
	gauge(c.windowPPS, pps)
	gauge(c.windowBPS, bps/8)
	gauge(c.windowFlowRate, fps)

	if c.anom != nil {
		byKind, suppressed := c.anom.Counts()
		for i, k := range anomaly.Kinds {
			counter(c.anomalies, byKind[i], string(k))
		}
		counter(c.suppressed, suppressed)
	}

	if n := c.opts.TopTalkers; n > 0 && s.Last != nil {
		talkers := s.Last.TopTalkers[:min(n, len(s.Last.TopTalkers))]
		if len(talkers) > MaxTopTalkerSeries {
			c.refused.Add(uint64(2 * (len(talkers) - MaxTopTalkerSeries)))
			talkers = talkers[:MaxTopTalkerSeries]
		}
		for _, tk := range talkers {
			gauge(c.talkerBytes, float64(tk.Bytes), tk.Address.String())
			gauge(c.talkerPackets, float64(tk.Packets), tk.Address.String())
		}
	}
	counter(c.seriesRefused, c.refused.Load())
}
