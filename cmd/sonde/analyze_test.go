package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/testcorpus"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/analyze")

const analyzeData = "testdata/analyze"

func runAnalyze(args ...string) (status int, stdout, stderr string) {
	var o, e bytes.Buffer
	status = analyzeCmd(args, &o, &e)
	return status, o.String(), e.String()
}

// TestAnalyzeGolden checks sonde analyze's text and JSON reports of small
// real captures (DNS over UDP, TCP with handshakes, a pcapng file) against
// golden files. Run with -update after a deliberate change and read the
// diff.
func TestAnalyzeGolden(t *testing.T) {
	for _, name := range []string{"edns-opts.pcap", "resp_1_benchmark.pcap", "mptcp-v1.pcapng"} {
		for _, format := range []string{"text", "json"} {
			t.Run(name+"/"+format, func(t *testing.T) {
				status, out, errOut := runAnalyze("--format", format, "--window", "1s", filepath.Join(analyzeData, name))
				if status != exitOK || errOut != "" {
					t.Fatalf("status %d, stderr %q", status, errOut)
				}
				golden := filepath.Join(analyzeData, name+"."+format+".golden")
				if *update {
					if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test -update to create it)", err)
				}
				if out != string(want) {
					t.Errorf("output differs from %s (go test -update rewrites it):\n%s", golden, out)
				}
			})
		}
	}
}

// TestAnalyzeJSONKeys checks that every key issue 4 names is in the JSON
// report with the right JSON type, on a TCP file and a DNS file.
func TestAnalyzeJSONKeys(t *testing.T) {
	const (
		num = "number"
		str = "string"
		arr = "array"
		obj = "object"
	)
	keys := []struct{ path, kind string }{
		{"packets", num}, {"bytes", num}, {"start", str}, {"end", str},
		{"protocols.tcp.packets", num}, {"protocols.tcp.bytes", num},
		{"protocols.udp.packets", num}, {"protocols.udp.bytes", num},
		{"tcp.connections", num}, {"tcp.retransmissions", num}, {"tcp.resets", num}, {"tcp.zero_windows", num},
		{"tcp.handshake_rtt_seconds.p50", num}, {"tcp.handshake_rtt_seconds.p95", num},
		{"dns.queries", num}, {"dns.responses", num}, {"dns.timeouts", num},
		{"dns.rcodes", obj}, {"dns.rcodes.NOERROR", num}, {"dns.rcodes.NXDOMAIN", num}, {"dns.rcodes.SERVFAIL", num},
		{"dns.latency_seconds.p50", num}, {"dns.latency_seconds.p95", num},
		{"top_talkers", arr}, {"anomalies", arr}, {"health_score", num}, {"windows", arr},
	}
	for _, name := range []string{"edns-opts.pcap", "resp_1_benchmark.pcap"} {
		status, out, errOut := runAnalyze("--format", "json", filepath.Join(analyzeData, name))
		if status != exitOK {
			t.Fatalf("%s: status %d: %s", name, status, errOut)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, k := range keys {
			v, ok := lookup(doc, k.path)
			if !ok {
				t.Errorf("%s: no key %s", name, k.path)
				continue
			}
			if got := jsonKind(v); got != k.kind {
				t.Errorf("%s: %s is a %s, want a %s", name, k.path, got, k.kind)
			}
		}
		for _, k := range []string{"start", "end"} {
			if s, ok := doc[k].(string); ok {
				if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
					t.Errorf("%s: %s %q is not RFC 3339: %v", name, k, s, err)
				}
			}
		}
		talkers, _ := doc["top_talkers"].([]any)
		if len(talkers) == 0 {
			t.Errorf("%s: no top talkers", name)
		}
		for i, tk := range talkers {
			m, _ := tk.(map[string]any)
			for k, kind := range map[string]string{"address": str, "packets": num, "bytes": num} {
				if jsonKind(m[k]) != kind {
					t.Errorf("%s: top_talkers[%d].%s is %v, want a %s", name, i, k, m[k], kind)
				}
			}
		}
		if ws, _ := doc["windows"].([]any); len(ws) == 0 {
			t.Errorf("%s: no windows", name)
		}
		if h, _ := doc["health_score"].(float64); h < 0 || h > 100 {
			t.Errorf("%s: health_score %v outside 0-100", name, h)
		}
	}
}

func lookup(doc map[string]any, path string) (any, bool) {
	var v any = doc
	for _, p := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[p]; !ok {
			return nil, false
		}
	}
	return v, true
}

func jsonKind(v any) string {
	switch v.(type) {
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// jsonReportOf runs analyze with --format json and decodes the result.
func jsonReportOf(t *testing.T, args ...string) (int, map[string]any, string) {
	t.Helper()
	status, out, errOut := runAnalyze(append([]string{"--format", "json"}, args...)...)
	var doc map[string]any
	if out != "" {
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	return status, doc, errOut
}

// TestAnalyzeStatusesAndFlags checks exit statuses and error messages, and
// what --filter, --window and pcapng input do to the report.
func TestAnalyzeStatusesAndFlags(t *testing.T) {
	tcpFile := filepath.Join(analyzeData, "resp_1_benchmark.pcap")
	dnsFile := filepath.Join(analyzeData, "edns-opts.pcap")
	notPcap := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notPcap, []byte("these are not packets\n"), 0o644)
	cases := []struct {
		name   string
		args   []string
		status int
		stdout string
		stderr string
	}{
		{"no file", nil, exitUsage, "", "no capture file given"},
		{"unknown flag", []string{"--frobnicate", tcpFile}, exitUsage, "", "frobnicate"},
		{"bad format", []string{"--format", "xml", tcpFile}, exitUsage, "", `--format "xml"`},
		{"bad window", []string{"--window", "1ms", tcpFile}, exitUsage, "", "--window"},
		{"bad window value", []string{"--window", "soon", tcpFile}, exitUsage, "", "soon"},
		{"bad filter", []string{"--filter", "tcp port banana", tcpFile}, exitUsage, "", "--filter"},
		{"missing file", []string{"/nonexistent/x.pcap"}, exitFailed, "", "/nonexistent/x.pcap"},
		{"not a capture", []string{notPcap}, exitFailed, "", "notes.txt: not a readable pcap"},
		{"damaged file prints what was read", []string{filepath.Join(analyzeData, "truncated.pcap")}, exitFailed, "148 packets", "truncated.pcap: damaged after"},
		{"help", []string{"--help"}, exitOK, "Usage: sonde analyze", ""},
		{"ok", []string{tcpFile}, exitOK, "150 packets", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, out, errOut := runAnalyze(c.args...)
			if status != c.status || !strings.Contains(out, c.stdout) || !strings.Contains(errOut, c.stderr) {
				t.Errorf("status %d (want %d)\nstdout: %s\nstderr: %s\nwant stdout ~ %q, stderr ~ %q", status, c.status, out, errOut, c.stdout, c.stderr)
			}
		})
	}

	t.Run("filter", func(t *testing.T) {
		_, all, _ := jsonReportOf(t, tcpFile, dnsFile)
		_, udp, _ := jsonReportOf(t, "--filter", "udp port 53", tcpFile, dnsFile)
		if all["packets"].(float64) != 192 || udp["packets"].(float64) != 42 {
			t.Errorf("packets %v unfiltered (want 192), %v with udp port 53 (want 42)", all["packets"], udp["packets"])
		}
		if v, _ := lookup(udp, "protocols.tcp.packets"); v.(float64) != 0 {
			t.Errorf("tcp packets %v through a udp filter", v)
		}
	})
	t.Run("window", func(t *testing.T) {
		// edns-opts.pcap spans 20.7 s within one hour.
		_, w1, _ := jsonReportOf(t, "--window", "1s", dnsFile)
		_, w60, _ := jsonReportOf(t, "--window", "1h", dnsFile)
		n1, n60 := len(w1["windows"].([]any)), len(w60["windows"].([]any))
		if n60 != 1 || n1 <= n60 {
			t.Errorf("%d one-second windows, %d one-hour windows", n1, n60)
		}
		var sum float64
		for _, w := range w1["windows"].([]any) {
			sum += w.(map[string]any)["packets"].(float64)
		}
		if sum != w1["packets"].(float64) {
			t.Errorf("windows hold %v packets, total %v", sum, w1["packets"])
		}
	})
	t.Run("pcapng reads as pcap", func(t *testing.T) {
		dir := t.TempDir()
		ng := filepath.Join(dir, "resp.pcapng")
		if out, err := exec.Command("editcap", "-F", "pcapng", tcpFile, ng).CombinedOutput(); err != nil {
			t.Skipf("editcap: %v %s", err, out)
		}
		_, a, _ := jsonReportOf(t, tcpFile)
		_, b, _ := jsonReportOf(t, ng)
		delete(a, "files")
		delete(b, "files")
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if !bytes.Equal(ja, jb) {
			t.Errorf("pcapng report differs from the pcap one:\n%s\n%s", ja, jb)
		}
	})
}

// TestAnalyzeCorpus runs sonde analyze over every file of the shared
// tcpdump corpus (hostile, often damaged captures) in a child process
// each, with a time bound: no panic, no hang, and either success or a
// failure that names the file and says what is wrong with it. Each file
// is also run cut at two thirds of its length, mid-record as a rule, which
// must fail that way after reporting what was read. SONDE_CORPUS_LIMIT=N
// (or -short, 50) checks only the first N files.
//
// The children are a sonde binary built here without the race detector,
// GOMAXPROCS of them at a time: a race-instrumented child costs over half
// a second to start and analyse one small file, 1660 of them most of the
// suite's time, and the detector finds nothing in separate single-file
// processes that it would not find in a few. So a sample of files spread
// over the corpus (whole and cut) still runs through this race-instrumented
// test binary (TestAnalyzeChild), with the same checks and no data race
// allowed.
func TestAnalyzeCorpus(t *testing.T) {
	dir := testcorpus.Dir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("corpus %s: %d files, %v", dir, len(files), err)
	}
	if testing.Short() {
		files = files[:min(50, len(files))]
	}
	if n := os.Getenv("SONDE_CORPUS_LIMIT"); n != "" {
		var lim int
		fmt.Sscan(n, &lim)
		files = files[:min(lim, len(files))]
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sonde := buildPlainSonde(t)
	const (
		bound      = 10 * time.Second
		raceSample = 8 // files (each whole and cut) run by the race-instrumented test binary
	)
	cutDir := t.TempDir()
	type run struct {
		file string
		race bool
	}
	var runs []run
	stride := max(1, len(files)/raceSample)
	for i, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cut := filepath.Join(cutDir, "cut-"+filepath.Base(f))
		if err := os.WriteFile(cut, data[:len(data)*2/3], 0o644); err != nil {
			t.Fatal(err)
		}
		race := sonde == "" || i%stride == 0
		runs = append(runs, run{f, race}, run{cut, race})
	}

	var (
		mu                 sync.Mutex
		ok, failed, inRace int
		slowest            time.Duration
		slowestFile        string
	)
	check := func(r run) {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		var cmd *exec.Cmd
		if r.race {
			cmd = exec.CommandContext(ctx, exe, "-test.run=^TestAnalyzeChild$")
			cmd.Env = append(os.Environ(), "SONDE_ANALYZE_CHILD="+r.file)
		} else {
			cmd = exec.CommandContext(ctx, sonde, "analyze", "--format", "json", r.file)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		took := time.Since(start)
		timedOut := ctx.Err() == context.DeadlineExceeded
		name := filepath.Base(r.file)
		errOut := stderr.String()
		mu.Lock()
		defer mu.Unlock()
		if took > slowest {
			slowest, slowestFile = took, name
		}
		if r.race {
			inRace++
		}
		switch {
		case timedOut:
			t.Errorf("%s: no result within %v", name, bound)
		case strings.Contains(errOut, "panic") || strings.Contains(stdout.String(), "panic:"):
			t.Errorf("%s: panicked:\n%s", name, errOut)
		case strings.Contains(errOut, "DATA RACE"):
			t.Errorf("%s: data race:\n%s", name, errOut)
		case err == nil:
			ok++
		default:
			code := cmd.ProcessState.ExitCode()
			if code != exitFailed || !strings.Contains(errOut, "sonde analyze: "+r.file+": ") {
				t.Errorf("%s: exit %d, stderr %q: want 1 and a message naming the file", name, code, errOut)
			}
			failed++
		}
	}
	work := make(chan run)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for r := range work {
				check(r)
			}
		})
	}
	for _, r := range runs {
		work <- r
	}
	close(work)
	wg.Wait()
	t.Logf("%d files (%d corpus files, whole and cut; %d of them by the race-instrumented test binary): %d analysed, %d refused with a message naming the file; slowest %v (%s)",
		len(runs), len(files), inRace, ok, failed, slowest, slowestFile)
}

// buildPlainSonde builds this package, with the test binary's build tags
// but without the race detector, into a temporary directory, and returns
// the binary's path; "" when no go command is found (the caller then runs
// every child through the test binary).
func buildPlainSonde(t *testing.T) string {
	t.Helper()
	// go test puts its own go command first on the test's PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Logf("no go command (%v): every corpus child runs race-instrumented", err)
		return ""
	}
	var tags string
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-tags" {
				tags = s.Value
			}
		}
	}
	bin := filepath.Join(t.TempDir(), "sonde")
	// -race=false overrides a -race in GOFLAGS.
	cmd := exec.Command(goTool, "build", "-race=false", "-tags="+tags, "-o", bin, ".")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built %s without the race detector in %v", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// TestAnalyzeChild is TestAnalyzeCorpus's child: it analyses one file and
// exits with analyze's status.
func TestAnalyzeChild(t *testing.T) {
	f := os.Getenv("SONDE_ANALYZE_CHILD")
	if f == "" {
		t.Skip("run by TestAnalyzeCorpus")
	}
	os.Exit(analyzeCmd([]string{"--format", "json", f}, os.Stdout, os.Stderr))
}
