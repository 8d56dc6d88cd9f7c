package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/netnstest"
)

// reportCall makes an API request to the daemon with a body of any bytes.
func (d *daemon) reportCall(method, path, ctype string, body []byte) (*http.Response, []byte) {
	d.t.Helper()
	req, err := http.NewRequest(method, "http://"+listenAddr+path, bytes.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	c := *d.client
	c.Timeout = 60 * time.Second
	res, err := c.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	return res, b
}

type reportStatus struct {
	ID, State, Error string
	Percent          float64
	Packets          uint64
}

// runReport submits a report and waits until it is done.
func (d *daemon) runReport(path, ctype string, body []byte) reportStatus {
	d.t.Helper()
	res, b := d.reportCall("POST", path, ctype, body)
	var st reportStatus
	if res.StatusCode != 202 || json.Unmarshal(b, &st) != nil || st.ID == "" {
		d.t.Fatalf("POST %s: %d %s", path, res.StatusCode, b)
	}
	waitUntil(d.t, 60*time.Second, "report "+st.ID+" done", func() bool {
		res, b := d.reportCall("GET", "/api/v1/reports/"+st.ID, "", nil)
		if res.StatusCode != 200 || json.Unmarshal(b, &st) != nil {
			d.t.Fatalf("status: %d %s", res.StatusCode, b)
		}
		if st.State == "failed" {
			d.t.Fatalf("report failed: %s", st.Error)
		}
		return st.State == "done"
	})
	return st
}

func jsonWithoutFiles(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v: %.300s", err, b)
	}
	delete(m, "files")
	return m
}

// realTraffic sends from A to B: TCP connections carrying data to a server
// in B, UDP datagrams to a closed port (answered by ICMP), and pings.
func realTraffic(t *testing.T, p *netnstest.Pair) {
	t.Helper()
	server := netip(p.B)
	var ln net.Listener
	if err := netnstest.Do(p.B.NS, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(server, "8080"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	payload := bytes.Repeat([]byte("sonde report e2e "), 4096)
	for i := range 20 {
		if err := netnstest.Do(p.A.NS, func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(server, "8080"), 5*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write(payload[:len(payload)-i*100])
			return err
		}); err != nil {
			t.Fatalf("TCP connection %d: %v", i, err)
		}
		if err := netnstest.Do(p.A.NS, func() error {
			c, err := net.Dial("udp", net.JoinHostPort(server, "53"))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("not really dns"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond) // over several 1s windows
	}
	if _, err := exec.LookPath("ping"); err == nil {
		if out, err := netnstest.Run(p.A.NS, "ping", "-c", "10", "-i", "0.05", server); err != nil {
			t.Fatalf("ping: %v\n%s", err, out)
		}
	}
}

func netip(e netnstest.Endpoint) string { return e.Addr.Addr().String() }

// TestReports runs the report flow against the daemon on real traffic: a
// report over a window of the ring and one over an upload of the same
// packets (as /api/v1/pcap serves them) both end done, and both JSON
// documents equal `sonde analyze --format json` of that pcap. The HTML
// report then opens in headless Chromium with no network request and no
// console message; its screenshot is kept in the test's temporary directory.
func TestReports(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	work := t.TempDir()
	tokens := filepath.Join(work, "tokens")
	if err := os.WriteFile(tokens, []byte(apiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "2",
		"--file-max-duration", "1s", "--window", "1s", "--api-token-file", tokens)
	realTraffic(t, p)

	// Wait until every packet is in a published file: the listing stops
	// changing once duration rotation has closed the last files.
	var from, to int64
	var total uint64
	prev := uint64(0)
	waitUntil(t, 20*time.Second, "the ring to settle", func() bool {
		time.Sleep(1500 * time.Millisecond)
		total, from, to = 0, 0, 0
		for _, c := range d.captures() {
			f, _ := time.Parse(time.RFC3339Nano, c.First)
			l, _ := time.Parse(time.RFC3339Nano, c.Last)
			if from == 0 || f.UnixNano() < from {
				from = f.UnixNano()
			}
			to = max(to, l.UnixNano()+1)
			total += c.Packets
		}
		settled := total > 0 && total == prev
		prev = total
		return settled
	})
	t.Logf("ring: %d packets in [%s, %s)", total, epoch(from), epoch(to))

	// The same packets as a pcap, and what `sonde analyze` says of them.
	res, pcap := d.reportCall("GET", fmt.Sprintf("/api/v1/pcap?from=%s&to=%s", epoch(from), epoch(to)), "", nil)
	if res.StatusCode != 200 {
		t.Fatalf("pcap: %d %s", res.StatusCode, pcap)
	}
	pcapFile := filepath.Join(work, "window.pcap")
	if err := os.WriteFile(pcapFile, pcap, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sondeBinary(t), "analyze", "--format", "json", "--window", "1s", pcapFile).Output()
	if err != nil {
		t.Fatalf("sonde analyze: %v", err)
	}
	want := jsonWithoutFiles(t, out)
	if want["packets"].(float64) != float64(total) {
		t.Fatalf("pcap holds %v packets, the ring %d", want["packets"], total)
	}
	if tcp := want["tcp"].(map[string]any); tcp["connections"].(float64) < 20 {
		t.Fatalf("analyze saw %v TCP connections, want 20", tcp["connections"])
	}
	if w := want["windows"].([]any); len(w) < 3 {
		t.Fatalf("%d windows of 1s, want at least 3", len(w))
	}

	ring := d.runReport("/api/v1/reports", "application/json", []byte(fmt.Sprintf(`{"from":%q,"to":%q}`, epoch(from), epoch(to))))
	upload := d.runReport("/api/v1/reports/upload", "application/vnd.tcpdump.pcap", pcap)
	for _, st := range []reportStatus{ring, upload} {
		if st.Percent != 100 || st.Packets != total {
			t.Errorf("report %+v, want 100%% of %d packets", st, total)
		}
		res, b := d.reportCall("GET", "/api/v1/reports/"+st.ID+".json", "", nil)
		if res.StatusCode != 200 {
			t.Fatalf(".json: %d %s", res.StatusCode, b)
		}
		if got := jsonWithoutFiles(t, b); !reflect.DeepEqual(got, want) {
			g, _ := json.MarshalIndent(got, "", " ")
			w, _ := json.MarshalIndent(want, "", " ")
			t.Errorf("report %s differs from sonde analyze:\n got %.4000s\nwant %.4000s", st.ID, g, w)
		}
	}
	if n, err := filepath.Glob(filepath.Join(dir, "reports", ring.ID+".*")); err != nil || len(n) != 4 {
		t.Fatalf("files of report %s under DATA_DIR/reports: %v", ring.ID, n)
	}

	res, html := d.reportCall("GET", "/api/v1/reports/"+ring.ID+".html", "", nil)
	if res.StatusCode != 200 {
		t.Fatalf(".html: %d", res.StatusCode)
	}
	htmlFile := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(htmlFile, html, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("chromium", func(t *testing.T) { checkInChromium(t, htmlFile) })

	if res, b := d.reportCall("DELETE", "/api/v1/reports/"+ring.ID, "", nil); res.StatusCode != 204 {
		t.Fatalf("DELETE: %d %s", res.StatusCode, b)
	}
	if n, _ := filepath.Glob(filepath.Join(dir, "reports", ring.ID+".*")); len(n) != 0 {
		t.Fatalf("left after DELETE: %v", n)
	}
}

// checkInChromium opens an HTML report in headless Chromium: a screenshot,
// then the rendered DOM with the browser's log and its network log. The
// page must render its sections and charts, make no network request and
// log nothing to the console. A control page with one remote image and one
// console.error proves that both checks see what they look for.
func checkInChromium(t *testing.T, htmlFile string) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium not on PATH (apt-get install chromium)")
		}
		t.Skip("chromium not on PATH (apt-get install chromium)")
	}
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run"}
	run := func(args ...string) ([]byte, []byte) {
		t.Helper()
		args = append(append(append([]string{}, base...), "--user-data-dir="+t.TempDir()), args...)
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("chromium %v: %v\n%s", args, err, stderr.Bytes())
			}
		case <-time.After(90 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("chromium %v: no exit within 90s", args)
		}
		return stdout.Bytes(), stderr.Bytes()
	}
	// inspect renders page and returns its DOM, the requests the page made
	// (from the net log: those of the file:// page's network isolation key,
	// not Chromium's own) and its console messages.
	inspect := func(page string) (dom string, requests, console []string) {
		netlog := filepath.Join(t.TempDir(), "netlog.json")
		out, stderr := run("--enable-logging=stderr", "--v=0", "--log-net-log="+netlog, "--dump-dom", "file://"+page)
		for _, l := range strings.Split(string(stderr), "\n") {
			if strings.Contains(l, ":CONSOLE") {
				console = append(console, l)
			}
		}
		b, err := os.ReadFile(netlog)
		if err != nil {
			t.Fatal(err)
		}
		var nl struct {
			Events []struct {
				Params map[string]any `json:"params"`
			} `json:"events"`
		}
		if err := json.Unmarshal(b, &nl); err != nil {
			t.Fatalf("net log: %v", err)
		}
		for _, e := range nl.Events {
			nik, _ := e.Params["network_isolation_key"].(string)
			if u, ok := e.Params["url"].(string); ok && strings.HasPrefix(nik, "file://") {
				requests = append(requests, u)
			}
		}
		return string(out), requests, console
	}

	control := filepath.Join(t.TempDir(), "control.html")
	os.WriteFile(control, []byte(`<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body><img src="http://report-control.invalid/x.png"><script>console.error("control")</script></body></html>`), 0o600)
	if _, req, con := inspect(control); len(req) == 0 || len(con) == 0 {
		t.Fatalf("the checks are blind: the control page's request %v, console %v", req, con)
	}

	dom, req, con := inspect(htmlFile)
	if len(req) > 0 {
		t.Errorf("the report made network requests: %v", req)
	}
	if len(con) > 0 {
		t.Errorf("the report logged to the console: %v", con)
	}
	for _, want := range []string{"Executive summary", "health score", "Traffic over time", "Protocol mix", "Top talkers", "TCP quality", "DNS", "Jitter", "Anomalies", "<svg", "<polyline", "pull packets"} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered report lacks %q", want)
		}
	}

	shot := filepath.Join(filepath.Dir(htmlFile), "report.png")
	run("--screenshot="+shot, "--window-size=1280,2400", "file://"+htmlFile)
	st, err := os.Stat(shot)
	if err != nil || st.Size() < 20<<10 {
		t.Fatalf("screenshot %s: %v (%d bytes)", shot, err, st.Size())
	}
	t.Logf("report %s, screenshot %s (%d bytes)", htmlFile, shot, st.Size())
}
