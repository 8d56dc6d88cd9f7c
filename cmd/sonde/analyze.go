package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sonde-project/sonde/analysis"
	"github.com/sonde-project/sonde/bpf"
	"github.com/sonde-project/sonde/internal/pcapio"
	"github.com/sonde-project/sonde/internal/report"
)

const analyzeUsage = `Usage: sonde analyze [flags] FILE...

Analyse pcap or pcapng files with the same engine as live capture and print
a summary. Files are read in the order given, as one capture.

Flags:
  --format text|json|html
                      output format (default text); html is one
                      self-contained page
  --window D          reporting window, 1s to 1h (default 10s)
  --filter EXPR       tcpdump filter expression; only matching packets count
`

// analyzeCmd runs 'sonde analyze'. It returns 2 on bad usage, 1 when a file
// cannot be read to its end (after printing what was read before the
// damage), 0 otherwise.
func analyzeCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sonde analyze", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	format := fs.String("format", "text", "")
	window := fs.Duration("window", analysis.DefaultWindow, "")
	filterExpr := fs.String("filter", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, analyzeUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "sonde analyze: %v\n\n%s", err, analyzeUsage)
		return exitUsage
	}
	files := fs.Args()
	if len(files) == 0 {
		fmt.Fprintf(stderr, "sonde analyze: no capture file given\n\n%s", analyzeUsage)
		return exitUsage
	}
	if *format != "text" && *format != "json" && *format != "html" {
		fmt.Fprintf(stderr, "sonde analyze: --format %q: want text, json or html\n", *format)
		return exitUsage
	}
	x, err := report.NewAnalysis(*window, 0)
	if err != nil {
		fmt.Fprintf(stderr, "sonde analyze: --window %v: %v\n", *window, err)
		return exitUsage
	}

	status := exitOK
	var failure string
	for _, name := range files {
		if err := replayFile(name, x, *filterExpr); err != nil {
			var se *bpf.SyntaxError
			if errors.As(err, &se) {
				fmt.Fprintf(stderr, "sonde analyze: --filter: %v\n", err)
				return exitUsage
			}
			failure = fmt.Sprintf("sonde analyze: %s: %v", name, err)
			status = exitFailed
			break
		}
	}
	switch *format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(x.Document(files)); err != nil {
			fmt.Fprintf(stderr, "sonde analyze: write the report: %v\n", err)
			return exitFailed
		}
	case "html":
		if err := report.WriteHTML(stdout, x.Document(files), report.HTMLOptions{}); err != nil {
			fmt.Fprintf(stderr, "sonde analyze: write the report: %v\n", err)
			return exitFailed
		}
	default:
		writeText(stdout, x.Snapshot(), files)
	}
	if failure != "" {
		fmt.Fprintln(stderr, failure)
	}
	return status
}

// replayFile analyses one file; a filter is compiled for the file's own
// link type.
func replayFile(name string, x *report.Analysis, filterExpr string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := pcapio.NewReader(f)
	if err != nil {
		return fmt.Errorf("not a readable pcap or pcapng file: %w", err)
	}
	_, err = x.Replay(r, filterExpr)
	return err
}

func writeText(w io.Writer, s *analysis.Snapshot, files []string) {
	c := &s.Totals
	fmt.Fprintf(w, "sonde analyze: %s\n", strings.Join(files, ", "))
	if c.Packets == 0 {
		fmt.Fprintln(w, "no packets")
		return
	}
	start, end := time.Unix(0, c.FirstTS).UTC(), time.Unix(0, c.LastTS).UTC()
	fmt.Fprintf(w, "%d packets, %d bytes, %s to %s (%v), %d windows\n", c.Packets, c.Bytes,
		start.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano), end.Sub(start), len(s.Windows))
	fmt.Fprintf(w, "health score %.1f/100\n\n", s.Health.Score)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "protocol\tpackets\tbytes\t")
	for i, pb := range c.Protos {
		fmt.Fprintf(tw, "%s\t%d\t%d\t\n", analysis.Proto(i), pb.Packets, pb.Bytes)
	}
	tw.Flush()
	t := &c.TCP
	fmt.Fprintf(w, "\nTCP: %d connections (%d established, %d closed, %d reset), %d RST segments\n",
		t.Opened, t.Established, t.Closed, t.ConnResets, t.Resets)
	fmt.Fprintf(w, "  retransmissions %d of %d data segments (fast %d, RTO %d, spurious %d, SYN %d)\n",
		t.Retransmissions, t.DataSegments, t.FastRetransmissions, t.RTORetransmissions, t.SpuriousRetransmits, t.SYNRetrans)
	fmt.Fprintf(w, "  out of order %d, duplicate ACKs %d, zero windows %d, window full %d\n",
		t.OutOfOrder, t.DupAcks, t.ZeroWindows, t.LowWindows)
	fmt.Fprintf(w, "  handshake RTT p50 %v p95 %v (%d); data RTT p50 %v p95 %v (%d)\n",
		t.HandshakeRTT.Quantile(0.5), t.HandshakeRTT.Quantile(0.95), t.HandshakeRTT.Count,
		t.DataRTT.Quantile(0.5), t.DataRTT.Quantile(0.95), t.DataRTT.Count)
	d := &c.DNS
	fmt.Fprintf(w, "\nDNS: %d queries, %d responses, %d timeouts, latency p50 %v p95 %v\n",
		d.Queries, d.Responses, d.Timeouts, d.Latency.Quantile(0.5), d.Latency.Quantile(0.95))
	var rc []string
	for i, n := range d.Rcodes {
		if n > 0 {
			rc = append(rc, fmt.Sprintf("%s %d", analysis.RcodeNames[i], n))
		}
	}
	if len(rc) > 0 {
		fmt.Fprintf(w, "  rcodes: %s\n", strings.Join(rc, ", "))
	}
	for _, n := range s.TopDNSNames[:min(5, len(s.TopDNSNames))] {
		fmt.Fprintf(w, "  %6d  %s\n", n.Queries, n.Name)
	}
	if c.Jitter.Count > 0 {
		fmt.Fprintf(w, "\nUDP jitter p50 %v p95 %v over %d flow windows\n", c.Jitter.Quantile(0.5), c.Jitter.Quantile(0.95), c.Jitter.Count)
	}
	fmt.Fprintf(w, "\nIP fragments %d first, %d non-first; ICMP unreachable %d (frag-needed %d, packet-too-big %d)\n",
		c.FragFirst, c.FragNonFirst, c.ICMPUnreachable, c.ICMPFragNeeded, c.ICMPPacketTooBig)
	if m := c.MalformedTotal(); m > 0 {
		fmt.Fprintf(w, "malformed frames %d\n", m)
	}
	fmt.Fprintln(w, "\ntop talkers:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, t := range s.TopTalkers[:min(10, len(s.TopTalkers))] {
		fmt.Fprintf(tw, "%s\t%d pkts\t%d bytes\t\n", t.Address, t.Packets, t.Bytes)
	}
	tw.Flush()
}
