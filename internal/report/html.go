package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sonde-project/sonde/analysis"
)

// HTMLOptions tune WriteHTML.
type HTMLOptions struct {
	// Title heads the page (default "sonde traffic report").
	Title string
	// PcapURL is where a Finding's packets are pulled from, the sensor's
	// /api/v1/pcap (default: that path, relative to the page's server).
	PcapURL string
}

// WriteHTML writes d as one self-contained HTML page: styles inline, charts
// as inline SVG, no script and no reference to any other resource, so it
// opens offline, mails as one file and prints cleanly.
func WriteHTML(w io.Writer, d *Document, o HTMLOptions) error {
	if o.Title == "" {
		o.Title = "sonde traffic report"
	}
	if o.PcapURL == "" {
		o.PcapURL = "/api/v1/pcap"
	}
	v := buildView(d, o)
	return page.Execute(w, v)
}

// Finding is one row the reader may want the packets of.
type Finding struct {
	Label   string
	Tcpdump string
	Tshark  string
	Pull    string // URL of the packets on the sensor, empty without a time span
}

type kv struct {
	K string
	V string
}

type talkerRow struct {
	Finding
	Packets, Bytes string
	Share          float64 // of the report's bytes, 0-100
}

type anomalyRow struct {
	Finding
	Kind, Start, End, Source, Target string
	Evidence                         []kv
}

type view struct {
	Title, Generated, Files, Period, Duration string
	Packets, Bytes, AvgRate                   string
	Empty                                     bool
	Score                                     string
	ScoreClass                                string
	Penalties                                 []kv
	Highlights                                []string
	TrafficChart, HealthChart, RetransChart   template.HTML
	ProtoChart                                template.HTML
	Protocols                                 []kv
	Talkers, Convs, Ports                     []talkerRow
	TCP, TCPTimes                             []kv
	TCPFinding                                Finding
	DNS                                       []kv
	Rcodes                                    []kv
	DNSNames                                  []talkerRow
	DNSFinding                                Finding
	Jitter                                    []kv
	JitterFinding                             Finding
	Anomalies                                 []anomalyRow
	Windows                                   []Window
	WindowRows                                [][]string
}

func buildView(d *Document, o HTMLOptions) *view {
	v := &view{Title: o.Title, Generated: time.Now().UTC().Format(time.RFC3339), Files: strings.Join(d.Files, ", "),
		Packets: count(d.Packets), Bytes: bytesOf(float64(d.Bytes)), Empty: d.Packets == 0}
	var from, to time.Time
	if d.Start != nil && d.End != nil {
		from, to = *d.Start, d.End.Add(time.Nanosecond)
		v.Period = d.Start.Format(time.RFC3339Nano) + " to " + d.End.Format(time.RFC3339Nano)
		v.Duration = (time.Duration(d.Duration * float64(time.Second))).Round(time.Millisecond).String()
		if d.Duration > 0 {
			v.AvgRate = bits(float64(d.Bytes) * 8 / d.Duration)
		}
	}
	pull := func(f, t time.Time, filter string) string {
		if f.IsZero() {
			return ""
		}
		u := o.PcapURL + "?from=" + url.QueryEscape(f.UTC().Format(time.RFC3339Nano)) + "&to=" + url.QueryEscape(t.UTC().Format(time.RFC3339Nano))
		if filter != "" {
			u += "&filter=" + url.QueryEscape(filter)
		}
		return u
	}
	mk := func(label, tcpdump, tshark string) Finding {
		return Finding{Label: label, Tcpdump: tcpdump, Tshark: tshark, Pull: pull(from, to, tcpdump)}
	}

	h := d.Health
	v.Score = strconv.FormatFloat(d.HealthScore, 'f', 1, 64)
	switch {
	case d.HealthScore >= 90:
		v.ScoreClass = "good"
	case d.HealthScore >= 70:
		v.ScoreClass = "fair"
	default:
		v.ScoreClass = "poor"
	}
	pen := func(p float64) string {
		if p <= 0 {
			return "no penalty"
		}
		return fmt.Sprintf("−%.1f points", p)
	}
	v.Penalties = []kv{
		{"TCP retransmissions", fmt.Sprintf("%s of data segments: %s", pct(h.RetransmissionRate), pen(h.RetransmissionPenalty))},
		{"Latency (p95 handshake RTT)", fmt.Sprintf("%s: %s", h.LatencyP95, pen(h.LatencyPenalty))},
		{"DNS errors", fmt.Sprintf("%s of queries: %s", pct(h.DNSErrorRate), pen(h.DNSPenalty))},
		{"UDP jitter (p95)", fmt.Sprintf("%s: %s", h.JitterP95, pen(h.JitterPenalty))},
		{"Capture drops", fmt.Sprintf("%s of packets: %s", pct(h.DropRate), pen(h.DropPenalty))},
		{"TCP resets", fmt.Sprintf("%s of connections: %s", pct(h.ResetRate), pen(h.ResetPenalty))},
	}
	v.Highlights = highlights(d)

	// Time series.
	if len(d.Windows) > 0 {
		xs := make([]time.Time, len(d.Windows))
		bps, pps, score, retr := make([]float64, len(d.Windows)), make([]float64, len(d.Windows)), make([]float64, len(d.Windows)), make([]float64, len(d.Windows))
		for i, w := range d.Windows {
			xs[i], bps[i], pps[i], score[i], retr[i] = w.Start, w.BitsPerSecond, w.PacketsPerSecond, w.HealthScore, float64(w.TCPRetrans)
		}
		v.TrafficChart = lineChart("Traffic per window", xs, []series{{"bits/s", bps, "#2563eb", bits}, {"packets/s", pps, "#d97706", rate}})
		v.HealthChart = lineChart("Health score per window", xs, []series{{"score", score, "#16a34a", func(f float64) string { return strconv.FormatFloat(f, 'f', 0, 64) }}})
		v.RetransChart = lineChart("TCP retransmissions per window", xs, []series{{"retransmissions", retr, "#dc2626", func(f float64) string { return count(uint64(f)) }}})
	}

	// Protocol mix, by bytes.
	var bars []bar
	for _, name := range analysis.ProtoNames() {
		c := d.Protocols[name]
		v.Protocols = append(v.Protocols, kv{name, fmt.Sprintf("%s packets, %s", count(c.Packets), bytesOf(float64(c.Bytes)))})
		bars = append(bars, bar{name, float64(c.Bytes), bytesOf(float64(c.Bytes)) + " (" + share(c.Bytes, d.Bytes) + ")"})
	}
	v.ProtoChart = barChart(bars)

	for _, t := range d.TopTalkers {
		td, ts := hostFilter(t.Address)
		v.Talkers = append(v.Talkers, talkerRow{mk(t.Address, td, ts), count(t.Packets), bytesOf(float64(t.Bytes)), frac(t.Bytes, d.Bytes)})
	}
	for _, c := range d.TopConvs {
		a, b := c.A.String(), c.B.String()
		td1, ts1 := hostFilter(a)
		td2, ts2 := hostFilter(b)
		v.Convs = append(v.Convs, talkerRow{mk(a+" ⇄ "+b, td1+" and "+td2, ts1+" && "+ts2), count(c.Packets), bytesOf(float64(c.Bytes)), frac(c.Bytes, d.Bytes)})
	}
	for _, p := range d.TopPorts {
		proto := protoName(p.Protocol)
		td := fmt.Sprintf("%s port %d", proto, p.Port)
		ts := fmt.Sprintf("%s.port == %d", proto, p.Port)
		if proto != "tcp" && proto != "udp" && proto != "sctp" {
			td, ts = fmt.Sprintf("ip proto %d", p.Protocol), fmt.Sprintf("ip.proto == %d", p.Protocol)
		}
		v.Ports = append(v.Ports, talkerRow{mk(fmt.Sprintf("%d/%s", p.Port, proto), td, ts), count(p.Packets), bytesOf(float64(p.Bytes)), frac(p.Bytes, d.Bytes)})
	}

	t := d.TCP
	v.TCP = []kv{
		{"Connections opened", count(t.Connections)}, {"Established", count(t.Established)},
		{"Closed (FIN both ways)", count(t.Closed)}, {"Reset", fmt.Sprintf("%s (%s RST segments)", count(t.ConnectionResets), count(t.Resets))},
		{"Segments", fmt.Sprintf("%s (%s with data)", count(t.Segments), count(t.DataSegments))},
		{"Retransmissions", fmt.Sprintf("%s (%s of data segments)", count(t.Retransmissions), share(t.Retransmissions, t.DataSegments))},
		{"  fast / RTO / spurious / SYN", fmt.Sprintf("%s / %s / %s / %s", count(t.FastRetransmissions), count(t.RTORetransmissions), count(t.SpuriousRetransmits), count(t.SYNRetransmissions))},
		{"Out of order", count(t.OutOfOrder)}, {"Duplicate ACKs", count(t.DupAcks)},
		{"Zero windows", count(t.ZeroWindows)}, {"Window full", count(t.WindowFull)}, {"Keep-alives", count(t.KeepAlives)},
	}
	v.TCPTimes = []kv{
		{"Handshake RTT (SYN to ACK)", histText(t.HandshakeRTT)},
		{"SYN to SYN-ACK (beyond the sensor)", histText(t.SYNToSYNACK)},
		{"SYN-ACK to ACK (before the sensor)", histText(t.SYNACKToACK)},
		{"Data RTT", histText(t.DataRTT)},
	}
	v.TCPFinding = mk("TCP retransmissions and window problems", "tcp", "tcp.analysis.retransmission || tcp.analysis.zero_window || tcp.analysis.window_full")

	n := d.DNS
	v.DNS = []kv{
		{"Queries", count(n.Queries)}, {"Responses", count(n.Responses)}, {"Answered (matched)", count(n.Answered)},
		{"Timeouts", count(n.Timeouts)}, {"Unanswered at the end", count(n.Unanswered)},
		{"Unsolicited responses", count(n.Unsolicited)}, {"Latency", histText(n.Latency)},
	}
	rc := make([]string, 0, len(n.Rcodes))
	for k := range n.Rcodes {
		rc = append(rc, k)
	}
	sort.Strings(rc)
	for _, k := range rc {
		v.Rcodes = append(v.Rcodes, kv{k, count(n.Rcodes[k])})
	}
	for _, nm := range n.TopNames {
		v.DNSNames = append(v.DNSNames, talkerRow{mk(nm.Name, "udp port 53", fmt.Sprintf("dns.qry.name == %q", nm.Name)), count(nm.Queries), "", frac(nm.Queries, n.Queries)})
	}
	v.DNSFinding = mk("DNS errors and slow answers", "udp port 53", "dns.flags.rcode != 0 || dns.time > 0.1")

	j := d.UDP["jitter_seconds"]
	v.Jitter = []kv{{"Flow directions measured", count(j.Count)}, {"Jitter (RFC 3550)", histText(j)}}
	v.JitterFinding = mk("UDP flows", "udp and not port 53", "udp && !dns")

	for _, a := range d.Anomalies {
		td, ts := pairFilter(a.Source, a.Target)
		f := Finding{Label: a.Kind, Tcpdump: td, Tshark: ts, Pull: pull(a.Start, a.End, td)}
		row := anomalyRow{Finding: f, Kind: a.Kind, Start: a.Start.UTC().Format(time.RFC3339Nano), End: a.End.UTC().Format(time.RFC3339Nano), Source: a.Source, Target: a.Target}
		keys := make([]string, 0, len(a.Evidence))
		for k := range a.Evidence {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			row.Evidence = append(row.Evidence, kv{k, strconv.FormatFloat(a.Evidence[k], 'g', 6, 64)})
		}
		v.Anomalies = append(v.Anomalies, row)
	}
	v.Windows = d.Windows
	return v
}

// highlights are the sentences of the executive summary: the signals that
// cost points, and the anomalies.
func highlights(d *Document) []string {
	var out []string
	if d.Packets == 0 {
		return []string{"No packets were analysed."}
	}
	h := d.Health
	for _, p := range []struct {
		pen  float64
		text string
	}{
		{h.RetransmissionPenalty, fmt.Sprintf("TCP retransmitted %s of its data segments.", pct(h.RetransmissionRate))},
		{h.LatencyPenalty, fmt.Sprintf("TCP handshakes took %s at the 95th percentile.", h.LatencyP95)},
		{h.DNSPenalty, fmt.Sprintf("%s of DNS queries failed or timed out.", pct(h.DNSErrorRate))},
		{h.JitterPenalty, fmt.Sprintf("UDP jitter reached %s at the 95th percentile.", h.JitterP95)},
		{h.DropPenalty, fmt.Sprintf("The capture dropped %s of packets.", pct(h.DropRate))},
		{h.ResetPenalty, fmt.Sprintf("%s of TCP connections were reset.", pct(h.ResetRate))},
	} {
		if p.pen > 0 {
			out = append(out, fmt.Sprintf("%s (−%.1f points)", p.text, p.pen))
		}
	}
	if len(d.Anomalies) > 0 {
		kinds := map[string]int{}
		for _, a := range d.Anomalies {
			kinds[a.Kind]++
		}
		var ks []string
		for k, n := range kinds {
			ks = append(ks, fmt.Sprintf("%s ×%d", k, n))
		}
		sort.Strings(ks)
		out = append(out, fmt.Sprintf("%d anomalies detected: %s.", len(d.Anomalies), strings.Join(ks, ", ")))
	}
	if len(out) == 0 {
		out = append(out, "No signal cost the network any points, and no anomaly was detected.")
	}
	if len(d.TopTalkers) > 0 {
		t := d.TopTalkers[0]
		out = append(out, fmt.Sprintf("Top talker: %s, %s sent and received.", t.Address, bytesOf(float64(t.Bytes))))
	}
	return out
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 132:
		return "sctp"
	case 1:
		return "icmp"
	case 58:
		return "icmp6"
	}
	return "proto" + strconv.Itoa(int(p))
}

// hostFilter is the tcpdump and tshark filters of one address.
func hostFilter(addr string) (tcpdump, tshark string) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return "", ""
	}
	if a.Is4() || a.Is4In6() {
		return "host " + a.Unmap().String(), "ip.addr == " + a.Unmap().String()
	}
	return "host " + a.String(), "ipv6.addr == " + a.String()
}

// endpointFilter reads an anomaly's source or target: an address, an
// address and port, or something else (then no filter).
func endpointFilter(s string) (tcpdump, tshark string) {
	if s == "" {
		return "", ""
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		td, ts := hostFilter(ap.Addr().String())
		return fmt.Sprintf("%s and port %d", td, ap.Port()), fmt.Sprintf("%s && (tcp.port == %d || udp.port == %d)", ts, ap.Port(), ap.Port())
	}
	return hostFilter(s)
}

func pairFilter(src, dst string) (tcpdump, tshark string) {
	var tds, tss []string
	for _, e := range []string{src, dst} {
		if td, ts := endpointFilter(e); td != "" {
			tds, tss = append(tds, td), append(tss, ts)
		}
	}
	return strings.Join(tds, " and "), strings.Join(tss, " && ")
}

func histText(h Hist) string {
	if h.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s, p95 %s, p99 %s, mean %s (%s samples)", secs(h.P50), secs(h.P95), secs(h.P99), secs(h.Mean), count(h.Count))
}

func secs(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond).String()
}

func count(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func scaled(v float64, unit string, base float64, prefixes []string) string {
	i := 0
	for math.Abs(v) >= base && i < len(prefixes)-1 {
		v /= base
		i++
	}
	if i == 0 {
		return strconv.FormatFloat(v, 'f', -1, 64) + " " + unit
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + prefixes[i] + unit
}

func bytesOf(v float64) string {
	return scaled(math.Round(v), "B", 1024, []string{"", "Ki", "Mi", "Gi", "Ti"})
}
func bits(v float64) string {
	return scaled(math.Round(v), "bit/s", 1000, []string{"", "k", "M", "G", "T"})
}
func rate(v float64) string { return scaled(math.Round(v), "pkt/s", 1000, []string{"", "k", "M", "G"}) }

func pct(f float64) string { return strconv.FormatFloat(f*100, 'f', 2, 64) + " %" }

func share(n, of uint64) string {
	if of == 0 {
		return "0 %"
	}
	return pct(float64(n) / float64(of))
}

func frac(n, of uint64) float64 {
	if of == 0 {
		return 0
	}
	return math.Min(100, float64(n)/float64(of)*100)
}

// series is one line of a chart.
type series struct {
	name   string
	ys     []float64
	color  string
	format func(float64) string
}

// lineChart draws each series on its own scale (the first on the left axis,
// with its maximum labelled; the others are labelled in the legend), over
// the windows' start times.
func lineChart(title string, xs []time.Time, ss []series) template.HTML {
	const w, h, left, right, top, bottom = 960.0, 220.0, 70.0, 10.0, 28.0, 30.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`, w, h, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text x="%g" y="16" class="ct">%s</text>`, left, template.HTMLEscapeString(title))
	pw, ph := w-left-right, h-top-bottom
	fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%g" height="%g" class="frame"/>`, left, top, pw, ph)
	for i := 1; i < 4; i++ {
		y := top + ph*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%.1f" y2="%.1f" class="grid"/>`, left, left+pw, y, y)
	}
	x := func(i int) float64 {
		if len(xs) == 1 {
			return left + pw/2
		}
		return left + pw*float64(i)/float64(len(xs)-1)
	}
	legendX := left + 250
	for si, s := range ss {
		mx := 0.0
		for _, y := range s.ys {
			mx = math.Max(mx, y)
		}
		if mx == 0 {
			mx = 1
		}
		var pts []string
		for i, y := range s.ys {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), top+ph-ph*y/mx))
		}
		if len(pts) == 1 {
			fmt.Fprintf(&b, `<circle cx="%s" r="3" fill="%s"/>`, strings.Replace(pts[0], ",", `" cy="`, 1), s.color)
		} else {
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5"/>`, strings.Join(pts, " "), s.color)
		}
		if si == 0 {
			fmt.Fprintf(&b, `<text x="%g" y="%g" class="ax" text-anchor="end">%s</text>`, left-4, top+8, template.HTMLEscapeString(s.format(mx)))
			fmt.Fprintf(&b, `<text x="%g" y="%g" class="ax" text-anchor="end">0</text>`, left-4, top+ph)
		}
		fmt.Fprintf(&b, `<rect x="%g" y="8" width="10" height="10" fill="%s"/><text x="%g" y="16" class="ax">%s (max %s)</text>`,
			legendX, s.color, legendX+14, template.HTMLEscapeString(s.name), template.HTMLEscapeString(s.format(mx)))
		legendX += 260
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" class="ax">%s</text>`, left, h-10, xs[0].UTC().Format("2006-01-02 15:04:05Z"))
	fmt.Fprintf(&b, `<text x="%g" y="%g" class="ax" text-anchor="end">%s</text>`, left+pw, h-10, xs[len(xs)-1].UTC().Format("2006-01-02 15:04:05Z"))
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

type bar struct {
	label string
	value float64
	text  string
}

func barChart(bars []bar) template.HTML {
	const w, rowH, labelW = 960.0, 24.0, 90.0
	mx := 0.0
	for _, b := range bars {
		mx = math.Max(mx, b.value)
	}
	if mx == 0 {
		mx = 1
	}
	var b strings.Builder
	h := rowH*float64(len(bars)) + 8
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="protocol mix" xmlns="http://www.w3.org/2000/svg">`, w, h)
	for i, br := range bars {
		y := 4 + rowH*float64(i)
		bw := (w - labelW - 260) * br.value / mx
		fmt.Fprintf(&b, `<text x="%g" y="%g" class="ax" text-anchor="end">%s</text>`, labelW-6, y+15, template.HTMLEscapeString(br.label))
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="%.1f" height="%g" class="bar"/>`, labelW, y+3, bw, rowH-8)
		fmt.Fprintf(&b, `<text x="%.1f" y="%g" class="ax">%s</text>`, labelW+bw+6, y+15, template.HTMLEscapeString(br.text))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
