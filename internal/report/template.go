package report

import (
	"html/template"
	"strconv"
	"time"
)

// page is the HTML report. It is parsed once and never changed.
var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"bytes": func(v uint64) string { return bytesOf(float64(v)) },
	"bits":  bits,
	"rate":  rate,
	"count": count,
	"time":  func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
	"score": func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"secs":  secs,
	"width": func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) + "%" },
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="sonde">
<link rel="icon" href="data:,">
<title>{{.Title}}</title>
<style>
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#ffffff; --accent:#2563eb; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 16px 0 6px; }
.meta { color: var(--muted); margin: 0 0 12px; }
nav { margin: 8px 0 16px; font-size: 13px; }
nav a { margin-right: 12px; color: var(--accent); text-decoration: none; }
.summary { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
.score { width: 150px; height: 150px; border-radius: 50%; display: flex; flex-direction: column; align-items: center; justify-content: center; color: #fff; flex: none; }
.score b { font-size: 44px; line-height: 1; }
.score span { font-size: 12px; opacity: .9; }
.good { background: #16a34a; } .fair { background: #d97706; } .poor { background: #dc2626; }
.facts { flex: 1; min-width: 300px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv td:first-child { width: 40%; color: var(--muted); }
code { font: 12px/1.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f3f4f6; padding: 1px 4px; border-radius: 3px; word-break: break-all; }
.filters code { display: inline-block; margin: 1px 0; }
.meter { background: #f3f4f6; height: 8px; width: 120px; border-radius: 4px; overflow: hidden; }
.meter i { display: block; height: 100%; background: var(--accent); }
svg.chart { width: 100%; height: auto; display: block; margin: 8px 0; }
svg .ct { font: 600 13px system-ui, sans-serif; fill: var(--fg); }
svg .ax { font: 11px system-ui, sans-serif; fill: var(--muted); }
svg .frame { fill: none; stroke: var(--line); }
svg .grid { stroke: var(--line); stroke-dasharray: 3 3; }
svg .bar { fill: var(--accent); }
.anomaly { border: 1px solid var(--line); border-left: 4px solid #dc2626; padding: 8px 12px; margin: 8px 0; border-radius: 4px; }
.none { color: var(--muted); font-style: italic; }
a.pull { color: var(--accent); }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  nav, a.pull { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  section, .anomaly, table, svg.chart { break-inside: avoid; page-break-inside: avoid; }
  .score { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  code { background: none; padding: 0; }
  @page { margin: 14mm; }
}
</style>
</head>
<body>
<header>
<h1>{{.Title}}</h1>
<p class="meta">{{if .Files}}Source: {{.Files}} · {{end}}{{if .Period}}{{.Period}} ({{.Duration}}) · {{end}}generated {{.Generated}}</p>
<nav><a href="#summary">Summary</a><a href="#traffic">Traffic</a><a href="#protocols">Protocols</a><a href="#talkers">Talkers</a><a href="#tcp">TCP</a><a href="#dns">DNS</a><a href="#jitter">Jitter</a><a href="#anomalies">Anomalies</a><a href="#windows">Windows</a></nav>
</header>

<section id="summary">
<h2>Executive summary</h2>
<div class="summary">
<div class="score {{.ScoreClass}}"><b>{{.Score}}</b><span>health score / 100</span></div>
<div class="facts">
<table class="kv">
<tr><td>Packets</td><td class="n">{{.Packets}}</td></tr>
<tr><td>Bytes</td><td class="n">{{.Bytes}}</td></tr>
{{if .AvgRate}}<tr><td>Average rate</td><td class="n">{{.AvgRate}}</td></tr>{{end}}
<tr><td>Anomalies</td><td class="n">{{len .Anomalies}}</td></tr>
</table>
<ul>{{range .Highlights}}<li>{{.}}</li>{{end}}</ul>
</div>
</div>
<h3>What the score is made of</h3>
<table class="kv">{{range .Penalties}}<tr><td>{{.K}}</td><td>{{.V}}</td></tr>{{end}}</table>
</section>

<section id="traffic">
<h2>Traffic over time</h2>
{{if .Windows}}{{.TrafficChart}}{{.HealthChart}}{{else}}<p class="none">No complete window.</p>{{end}}
</section>

<section id="protocols">
<h2>Protocol mix</h2>
{{.ProtoChart}}
<table class="kv">{{range .Protocols}}<tr><td>{{.K}}</td><td>{{.V}}</td></tr>{{end}}</table>
</section>

<section id="talkers">
<h2>Top talkers and conversations</h2>
{{define "rows"}}{{if .}}<table>
<tr><th>Who</th><th class="n">Packets</th><th class="n">Bytes</th><th>Share</th><th>Filters and packets</th></tr>
{{range .}}<tr><td>{{.Label}}</td><td class="n">{{.Packets}}</td><td class="n">{{.Bytes}}</td><td><div class="meter"><i style="width: {{width .Share}}"></i></div></td><td class="filters">{{template "finding" .Finding}}</td></tr>
{{end}}</table>{{else}}<p class="none">None.</p>{{end}}{{end}}
{{define "finding"}}{{if .Tcpdump}}tcpdump <code>{{.Tcpdump}}</code><br>{{end}}{{if .Tshark}}tshark <code>{{.Tshark}}</code>{{end}}{{if .Pull}}<br><a class="pull" href="{{.Pull}}">pull packets (pcap)</a>{{end}}{{end}}
<h3>Top talkers</h3>
{{template "rows" .Talkers}}
<h3>Top conversations</h3>
{{template "rows" .Convs}}
<h3>Top ports</h3>
{{template "rows" .Ports}}
</section>

<section id="tcp">
<h2>TCP quality</h2>
<table class="kv">{{range .TCP}}<tr><td>{{.K}}</td><td class="n">{{.V}}</td></tr>{{end}}</table>
<h3>Handshake and round-trip times</h3>
<table class="kv">{{range .TCPTimes}}<tr><td>{{.K}}</td><td>{{.V}}</td></tr>{{end}}</table>
{{if .Windows}}{{.RetransChart}}{{end}}
<p class="filters">{{template "finding" .TCPFinding}}</p>
</section>

<section id="dns">
<h2>DNS</h2>
<table class="kv">{{range .DNS}}<tr><td>{{.K}}</td><td>{{.V}}</td></tr>{{end}}</table>
<h3>Response codes</h3>
<table class="kv">{{range .Rcodes}}<tr><td>{{.K}}</td><td class="n">{{.V}}</td></tr>{{end}}</table>
<h3>Top names</h3>
{{if .DNSNames}}<table><tr><th>Name</th><th class="n">Queries</th><th>Share</th><th>Filters and packets</th></tr>
{{range .DNSNames}}<tr><td>{{.Label}}</td><td class="n">{{.Packets}}</td><td><div class="meter"><i style="width: {{width .Share}}"></i></div></td><td class="filters">{{template "finding" .Finding}}</td></tr>
{{end}}</table>{{else}}<p class="none">No DNS query.</p>{{end}}
<p class="filters">{{template "finding" .DNSFinding}}</p>
</section>

<section id="jitter">
<h2>Jitter</h2>
<table class="kv">{{range .Jitter}}<tr><td>{{.K}}</td><td>{{.V}}</td></tr>{{end}}</table>
<p class="filters">{{template "finding" .JitterFinding}}</p>
</section>

<section id="anomalies">
<h2>Anomalies</h2>
{{range .Anomalies}}<div class="anomaly">
<h3>{{.Kind}}</h3>
<table class="kv">
<tr><td>When</td><td>{{.Start}} to {{.End}}</td></tr>
{{if .Source}}<tr><td>Source</td><td>{{.Source}}</td></tr>{{end}}
{{if .Target}}<tr><td>Target</td><td>{{.Target}}</td></tr>{{end}}
{{range .Evidence}}<tr><td>{{.K}}</td><td class="n">{{.V}}</td></tr>{{end}}
</table>
<p class="filters">{{template "finding" .Finding}}</p>
</div>{{else}}<p class="none">No anomaly was detected.</p>{{end}}
</section>

<section id="windows">
<h2>Windows</h2>
{{if .Windows}}<table>
<tr><th>Start</th><th class="n">Packets</th><th class="n">Bytes</th><th class="n">Rate</th><th class="n">Active flows</th><th class="n">TCP conns</th><th class="n">Retrans</th><th class="n">DNS queries</th><th class="n">Handshake p50</th><th class="n">Health</th></tr>
{{range .Windows}}<tr><td>{{time .Start}}</td><td class="n">{{count .Packets}}</td><td class="n">{{bytes .Bytes}}</td><td class="n">{{bits .BitsPerSecond}}</td><td class="n">{{count .ActiveFlows}}</td><td class="n">{{count .TCPConnections}}</td><td class="n">{{count .TCPRetrans}}</td><td class="n">{{count .DNSQueries}}</td><td class="n">{{secs .HandshakeRTTP50}}</td><td class="n">{{score .HealthScore}}</td></tr>
{{end}}</table>{{else}}<p class="none">No window.</p>{{end}}
</section>

<footer>Generated by sonde. Filters are tcpdump (BPF) and Wireshark/tshark display filters; "pull packets" links fetch the span from the sensor's /api/v1/pcap and need an API token.</footer>
</body>
</html>
`
