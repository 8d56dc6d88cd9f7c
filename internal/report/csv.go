package report

import (
	"encoding/csv"
	"io"
	"strconv"
	"time"
)

// csvHeader names the columns of WriteCSV: the per-window table of the
// report, one row per window.
var csvHeader = []string{
	"start", "end", "packets", "bytes", "packets_per_second", "bits_per_second",
	"new_flows_per_second", "active_flows", "tcp_packets", "udp_packets", "icmp_packets",
	"tcp_connections", "tcp_retransmissions", "dns_queries", "handshake_rtt_p50_seconds", "health_score",
}

// WriteCSV writes the per-window table of d as CSV (RFC 4180) with a
// header row.
func WriteCSV(w io.Writer, d *Document) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for _, win := range d.Windows {
		row := []string{
			win.Start.UTC().Format(time.RFC3339Nano), win.End.UTC().Format(time.RFC3339Nano),
			u(win.Packets), u(win.Bytes), f(win.PacketsPerSecond), f(win.BitsPerSecond),
			f(win.NewFlowsPerSecond), u(win.ActiveFlows),
			u(win.Protocols["tcp"].Packets), u(win.Protocols["udp"].Packets),
			u(win.Protocols["icmp"].Packets + win.Protocols["icmp6"].Packets),
			u(win.TCPConnections), u(win.TCPRetrans), u(win.DNSQueries), f(win.HandshakeRTTP50), f(win.HealthScore),
		}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
