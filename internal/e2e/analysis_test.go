package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sonde-project/sonde/analysis/anomaly"
	"github.com/sonde-project/sonde/internal/netnstest"
)

// readEvents parses DATA_DIR/events.jsonl strictly (absent: none).
func readEvents(t *testing.T, dir string) []anomaly.Event {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "events.jsonl"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []anomaly.Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var e anomaly.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("events.jsonl line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

func eventsOf(evs []anomaly.Event, k anomaly.Kind) []anomaly.Event {
	var out []anomaly.Event
	for _, e := range evs {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not on PATH (apt-get install nmap hping3)", tool)
			}
			t.Skipf("%s not on PATH (apt-get install nmap hping3)", tool)
		}
	}
}

// TestAnomalyEvents sends real traffic between two namespaces: a quiet
// baseline (pings) raises nothing; an nmap SYN scan of 1000 ports raises a
// port_scan from the scanner; an hping3 SYN flood toward a closed port
// raises a syn_flood. The events are in events.jsonl and the metrics, their
// files are in the ring, and `sonde analyze` finds the scan in those files.
// A SIGHUP that raises the scan threshold then silences a second scan.
// /metrics passes promtool and stays under 2000 series.
func TestAnomalyEvents(t *testing.T) {
	need(t, "nmap", "hping3")
	p := netnstest.New(t)
	dir := t.TempDir()
	conf := filepath.Join(t.TempDir(), "sonde.yaml")
	if err := os.WriteFile(conf, []byte("anomaly: \"port_scan_targets=100\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "2", "--window", "2s",
		"--file-max-duration", "1s", "--config", conf, "--snapshot-on-anomaly", "2s")
	scanner, victim := p.A.Addr.Addr().String(), p.B.Addr.Addr().String()
	do := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", p.A.NS}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// Quiet baseline: pings over several windows, and the events' delay.
	do("hping3", "-q", "-1", "-c", "20", "-i", "u400000", victim)
	time.Sleep(6 * time.Second)
	if evs := readEvents(t, dir); len(evs) != 0 {
		t.Fatalf("quiet baseline raised events: %+v", evs)
	}
	if m := d.metrics(); m.sum("sonde_anomaly_events_total") != 0 || m.sum("sonde_analysis_packets_total", `protocol="icmp"`) < 40 {
		t.Fatalf("after pings: %v anomaly events, %v ICMP packets analysed", m.sum("sonde_anomaly_events_total"), m.sum("sonde_analysis_packets_total", `protocol="icmp"`))
	}

	// SYN scan of 1000 ports.
	do("nmap", "-sS", "-Pn", "-n", "-p", "1-1000", "--max-retries", "0", "--min-rate", "2000", victim)
	waitUntil(t, 20*time.Second, "a port_scan event", func() bool { return len(eventsOf(readEvents(t, dir), anomaly.PortScan)) > 0 })
	scans := eventsOf(readEvents(t, dir), anomaly.PortScan)
	for _, e := range scans {
		if e.Source != scanner || e.Target != victim {
			t.Errorf("port_scan %+v: want source %s, target %s", e, scanner, victim)
		}
	}
	if got := scans[0].Evidence["targets"]; got < 100 {
		t.Errorf("port_scan evidence %v", scans[0].Evidence)
	}

	// SYN flood toward a closed port: 3000 SYNs at 1000/s.
	do("hping3", "-q", "-S", "-p", "9", "-i", "u1000", "-c", "3000", victim)
	waitUntil(t, 20*time.Second, "a syn_flood event", func() bool { return len(eventsOf(readEvents(t, dir), anomaly.SYNFlood)) > 0 })
	floods := eventsOf(readEvents(t, dir), anomaly.SYNFlood)
	for _, e := range floods {
		if e.Source != scanner || e.Target != victim+":9" {
			t.Errorf("syn_flood %+v: want source %s, target %s:9", e, scanner, victim)
		}
	}

	// Metrics count an event when it is detected, the file once its capture
	// files are published: wait for the file to catch up.
	var m metrics
	waitUntil(t, 20*time.Second, "events.jsonl to hold every event counted", func() bool {
		m = d.metrics()
		return m.sum("sonde_anomaly_events_total") == float64(len(readEvents(t, dir)))
	})
	scans = eventsOf(readEvents(t, dir), anomaly.PortScan)
	floods = eventsOf(readEvents(t, dir), anomaly.SYNFlood)
	evs := readEvents(t, dir)
	for _, e := range evs {
		if e.Kind != anomaly.PortScan && e.Kind != anomaly.SYNFlood {
			t.Errorf("unexpected event %+v", e)
		}
		if len(e.Files) == 0 {
			t.Errorf("event %s at %v has no files", e.Kind, e.Start)
		}
		for _, f := range e.Files {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("event %s: file %s: %v", e.Kind, f, err)
			}
		}
	}
	indexed := map[string]bool{}
	for _, e := range readIndex(t, dir) {
		indexed[e.Name] = true
	}
	for _, f := range scans[0].Files {
		if !indexed[f] {
			t.Errorf("port_scan file %s not in the ring index", f)
		}
	}
	// --snapshot-on-anomaly: the scan's files are pinned, with a reason that
	// names the kind, kept out of retention's reach (pins.json persists them).
	waitUntil(t, 20*time.Second, "the port_scan's files to be pinned", func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "pins.json"))
		return err == nil && strings.Contains(string(b), "anomaly port_scan from "+scanner) && strings.Contains(string(b), scans[0].Files[0])
	})
	if !strings.Contains(d.output(), `"kind": "port_scan"`) && !strings.Contains(d.output(), `"kind":"port_scan"`) {
		t.Errorf("no port_scan log line")
	}

	if got := m.sum("sonde_anomaly_events_total", `kind="port_scan"`); got != float64(len(scans)) {
		t.Errorf("sonde_anomaly_events_total{kind=port_scan} = %v, events.jsonl has %d", got, len(scans))
	}
	if got := m.sum("sonde_anomaly_events_total", `kind="syn_flood"`); got != float64(len(floods)) {
		t.Errorf("sonde_anomaly_events_total{kind=syn_flood} = %v, events.jsonl has %d", got, len(floods))
	}
	if m.sum("sonde_tcp_connections_opened_total") < 3000 || m.sum("sonde_tcp_handshake_rtt_seconds_count") == 0 && m.sum("sonde_tcp_connections_reset_total") == 0 {
		t.Errorf("TCP counters: opened %v, reset %v", m.sum("sonde_tcp_connections_opened_total"), m.sum("sonde_tcp_connections_reset_total"))
	}
	checkLiveMetrics(t, d)

	// The scan's own files, analysed offline, show the same scan.
	var paths []string
	for _, f := range scans[0].Files {
		paths = append(paths, filepath.Join(dir, f))
	}
	out, err := exec.Command(sondeBinary(t), append([]string{"analyze", "--format", "json", "--window", "2s"}, paths...)...).Output()
	if err != nil {
		t.Fatalf("sonde analyze: %v", err)
	}
	var rep struct {
		Anomalies []struct{ Kind, Source, Target string } `json:"anomalies"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range rep.Anomalies {
		found = found || a.Kind == "port_scan" && a.Source == scanner
	}
	if !found {
		t.Errorf("sonde analyze of %v: anomalies %+v, want a port_scan from %s", scans[0].Files, rep.Anomalies, scanner)
	}

	// SIGHUP with a higher scan threshold: a second scan raises nothing.
	if err := os.WriteFile(conf, []byte("anomaly: \"port_scan_targets=5000\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the thresholds to reload", func() bool { return strings.Contains(d.output(), "anomaly thresholds reloaded") })
	do("nmap", "-sS", "-Pn", "-n", "-p", "1-1000", "--max-retries", "0", "--min-rate", "2000", victim)
	time.Sleep(7 * time.Second)
	if got := len(eventsOf(readEvents(t, dir), anomaly.PortScan)); got != len(scans) {
		t.Errorf("after raising port_scan_targets to 5000: %d port_scan events, want %d", got, len(scans))
	}
	d.stop()
}

// checkLiveMetrics lints the daemon's /metrics with promtool and bounds
// its series count.
func checkLiveMetrics(t *testing.T, d *daemon) {
	t.Helper()
	_, body, err := d.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, l := range strings.Split(string(body), "\n") {
		if l != "" && l[0] != '#' {
			series++
		}
	}
	if series >= 2000 {
		t.Errorf("/metrics has %d series, want under 2000", series)
	}
	t.Logf("/metrics: %d series", series)
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not on PATH")
		}
		t.Log("promtool not on PATH: /metrics not linted")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestAnalysisOff: --analysis=false captures to the ring alone: no
// analysis metrics and no events file.
func TestAnalysisOff(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "1", "--analysis=false")
	s := sender(t, p)
	frames := p.Flow(7).Frames(netnstest.MixedSizes(500, 7))
	if err := s.SendPaced(frames, chunk, pause); err != nil {
		t.Fatal(err)
	}
	m := d.waitCaptured(float64(len(frames)), p.B.Iface)
	if m.has("sonde_analysis_packets_total") || m.has("sonde_anomaly_events_total") {
		t.Error("analysis metrics with --analysis=false")
	}
	d.stop()
	if _, err := os.Stat(filepath.Join(dir, "events.jsonl")); !os.IsNotExist(err) {
		t.Errorf("events.jsonl with --analysis=false: %v", err)
	}
}
