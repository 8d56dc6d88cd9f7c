package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/netnstest"
)

const listenAddr = "127.0.0.1:9464" // inside the daemon's own namespace

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// sondeBinary builds ./cmd/sonde once per test binary.
func sondeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "sonde-e2e-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "sonde")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/sonde-project/sonde/cmd/sonde")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/sonde: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type daemon struct {
	t       *testing.T
	ns      string
	dataDir string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	logMu   *sync.Mutex
	done    chan struct{}
	waitErr error
	client  *http.Client
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// startDaemon runs `sonde run` inside ns on dataDir with the given extra
// flags and waits for /api/ready.
func startDaemon(t *testing.T, ns, dataDir string, flags ...string) *daemon {
	t.Helper()
	return startDaemonWrapped(t, ns, dataDir, nil, flags...)
}

// startDaemonWrapped is startDaemon with sonde run under a wrapper command
// (setpriv, say).
func startDaemonWrapped(t *testing.T, ns, dataDir string, wrapper []string, flags ...string) *daemon {
	t.Helper()
	args := append([]string{sondeBinary(t), "run", "--data-dir", dataDir, "--listen", listenAddr, "--node-name", "e2e"}, flags...)
	args = append(append([]string{}, wrapper...), args...)
	d := &daemon{t: t, ns: ns, dataDir: dataDir, log: new(bytes.Buffer), logMu: new(sync.Mutex),
		done: make(chan struct{}), client: netnstest.HTTPClient(ns)}
	d.cmd = netnstest.Command(ns, args...)
	w := lockedWriter{d.logMu, d.log}
	d.cmd.Stdout, d.cmd.Stderr = w, w
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting sonde: %v", err)
	}
	go func() { d.waitErr = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("sonde output:\n%s", d.output())
		}
	})
	t.Logf("started: %s", strings.Join(args, " "))
	d.waitReady(15 * time.Second)
	return d
}

func (d *daemon) output() string {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.String()
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *daemon) waitReady(timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if d.exited() {
			d.t.Fatalf("sonde exited before becoming ready (%v):\n%s", d.waitErr, d.output())
		}
		code, body, err := d.get("/api/ready")
		if err == nil && code == http.StatusOK {
			return
		}
		last = fmt.Sprintf("status %d, body %q, err %v", code, body, err)
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("/api/ready not 200 within %v (last: %s):\n%s", timeout, last, d.output())
}

func (d *daemon) get(path string) (int, []byte, error) {
	resp, err := d.client.Get("http://" + listenAddr + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// metrics scrapes /metrics into series → value, keyed as exposed
// (`name{label="v",...}`).
func (d *daemon) metrics() metrics {
	d.t.Helper()
	code, body, err := d.get("/metrics")
	if err != nil || code != http.StatusOK {
		d.t.Fatalf("GET /metrics: status %d, %v", code, err)
	}
	m := metrics{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			d.t.Fatalf("bad metrics line %q", line)
		}
		m[line[:i]] = v
	}
	return m
}

type metrics map[string]float64

// sum adds every series of the metric name whose labels contain all of
// the given `label="value"` matchers.
func (m metrics) sum(name string, matchers ...string) float64 {
	var s float64
	for k, v := range m {
		base, labels, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		ok := true
		for _, mt := range matchers {
			if !strings.Contains(labels, mt) {
				ok = false
			}
		}
		if ok {
			s += v
		}
	}
	return s
}

func (m metrics) has(name string) bool {
	for k := range m {
		if base, _, _ := strings.Cut(k, "{"); base == name {
			return true
		}
	}
	return false
}

// waitCaptured polls until sonde_capture_packets_total (summed over the
// given interfaces) reaches n and stays still, so everything sent has been
// read from the kernel.
func (d *daemon) waitCaptured(n float64, ifaces ...string) metrics {
	d.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var m metrics
	var got float64
	for time.Now().Before(deadline) {
		m = d.metrics()
		got = 0
		for _, ifc := range ifaces {
			got += m.sum("sonde_capture_packets_total", `interface="`+ifc+`"`)
		}
		if got >= n {
			return m
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.t.Fatalf("sonde_capture_packets_total for %v is %v, want >= %v within 20s (kernel drops %v)",
		ifaces, got, n, m.sum("sonde_capture_kernel_drops_total"))
	return nil
}

// stop sends SIGTERM and requires exit status 0 within 5 s and no .part
// file left behind.
func (d *daemon) stop() {
	d.t.Helper()
	start := time.Now()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		d.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		d.t.Fatalf("sonde still running 5s after SIGTERM:\n%s", d.output())
	}
	if d.waitErr != nil {
		d.t.Fatalf("sonde exited after SIGTERM with %v (want status 0) after %v:\n%s", d.waitErr, time.Since(start), d.output())
	}
	d.t.Logf("sonde exited 0, %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if parts := partFiles(d.t, d.dataDir); len(parts) > 0 {
		d.t.Fatalf(".part files left after SIGTERM: %v", parts)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) kill() {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		d.t.Fatal("sonde survived SIGKILL for 5s")
	}
}

func partFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".*.part"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// publishedFiles lists DATA_DIR/*.pcap (published names never start with a dot).
func publishedFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

type indexEntry struct {
	Name      string          `json:"name"`
	Interface string          `json:"interface"`
	First     json.RawMessage `json:"first"`
	Last      json.RawMessage `json:"last"`
	Packets   uint64          `json:"packets"`
	Bytes     uint64          `json:"bytes"`
	Drops     uint64          `json:"drops"`
}

// readIndex parses index.jsonl strictly: every line one JSON object.
func readIndex(t *testing.T, dir string) []indexEntry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.jsonl"))
	if err != nil {
		t.Fatalf("reading index: %v", err)
	}
	var out []indexEntry
	for i, line := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e indexEntry
		dec := json.NewDecoder(bytes.NewReader(line))
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("index.jsonl line %d %q: %v", i+1, line, err)
		}
		if e.Name == "" {
			t.Fatalf("index.jsonl line %d has no name: %s", i+1, line)
		}
		out = append(out, e)
	}
	return out
}

// checkIndexMatchesDisk requires index.jsonl to list exactly the published
// files on disk, each with its true packet count.
func checkIndexMatchesDisk(t *testing.T, dir string) {
	t.Helper()
	idx := readIndex(t, dir)
	var names []string
	for _, e := range idx {
		names = append(names, e.Name)
		pf, err := netnstest.ReadPcap(filepath.Join(dir, filepath.Base(e.Name)))
		if err != nil {
			t.Errorf("index entry %s: %v", e.Name, err)
			continue
		}
		if uint64(len(pf.Records)) != e.Packets {
			t.Errorf("index says %s has %d packets, file has %d", e.Name, e.Packets, len(pf.Records))
		}
	}
	var disk []string
	for _, f := range publishedFiles(t, dir) {
		disk = append(disk, filepath.Base(f))
	}
	for i := range names {
		names[i] = filepath.Base(names[i])
	}
	slices.Sort(names)
	if !slices.Equal(names, disk) {
		t.Errorf("index.jsonl lists %v, disk has %v", names, disk)
	}
}

type capRecord struct {
	file string
	netnstest.Record
}

// ringRecords reads every published file (and, with parts, the .part files)
// with the independent reader, orders files by their first timestamp and
// returns the records whose source MAC is src.
func ringRecords(t *testing.T, dir string, src []byte, parts bool) []capRecord {
	t.Helper()
	files := publishedFiles(t, dir)
	if parts {
		files = append(files, partFiles(t, dir)...)
	}
	type fileRecs struct {
		first int64
		recs  []capRecord
	}
	var all []fileRecs
	for _, f := range files {
		pf, err := netnstest.ReadPcap(f)
		if err != nil {
			t.Fatalf("independent reader: %v", err)
		}
		if pf.LinkType != 1 {
			t.Fatalf("%s: link type %d, want 1 (Ethernet)", f, pf.LinkType)
		}
		fr := fileRecs{first: 1<<63 - 1}
		for _, r := range pf.Records {
			if len(r.Data) >= 12 && bytes.Equal(r.Data[6:12], src) {
				fr.recs = append(fr.recs, capRecord{file: filepath.Base(f), Record: r})
			}
		}
		if len(pf.Records) > 0 {
			fr.first = pf.Records[0].TsNanos
		}
		all = append(all, fr)
	}
	slices.SortStableFunc(all, func(a, b fileRecs) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	var out []capRecord
	for _, fr := range all {
		out = append(out, fr.recs...)
	}
	return out
}

// tcpdumpCount counts, with tcpdump -r, the records of files sent by src.
// tcpdump exits non-zero on a truncated or corrupt file.
func tcpdumpCount(t *testing.T, files []string, src string) int {
	t.Helper()
	n := 0
	for _, f := range files {
		cmd := exec.Command("tcpdump", "-n", "-r", f, "ether src "+src)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tcpdump -r %s: %v: %s", f, err, stderr.String())
		}
		if strings.Contains(stderr.String(), "truncated") {
			t.Fatalf("tcpdump -r %s: %s", f, stderr.String())
		}
		n += bytes.Count(out, []byte("\n"))
	}
	return n
}

// capinfosPackets returns the packet count capinfos reports for a file, and
// fails the test when capinfos cannot read it.
func capinfosPackets(t *testing.T, file string) int {
	t.Helper()
	out, err := exec.Command("capinfos", "-M", "-c", "-T", "-r", file).CombinedOutput()
	if err != nil {
		t.Fatalf("capinfos %s: %v: %s", file, err, out)
	}
	fields := strings.Split(strings.TrimSpace(string(out)), "\t")
	n, err := strconv.Atoi(fields[len(fields)-1])
	if err != nil {
		t.Fatalf("capinfos %s: unexpected output %q", file, out)
	}
	return n
}

// compareFrames requires got to be exactly want, in order, byte for byte.
func compareFrames(t *testing.T, what string, want [][]byte, got []capRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d frames in the ring, sent %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if !bytes.Equal(got[i].Data, want[i]) || got[i].OrigLen != uint32(len(want[i])) {
			_, seq, err := netnstest.Parse(got[i].Data)
			t.Fatalf("%s: record %d (in %s, seq %d %v, caplen %d, len %d) differs from frame %d sent (len %d)\nsent %x\n got %x",
				what, i, got[i].file, seq, err, len(got[i].Data), got[i].OrigLen, i, len(want[i]), head(want[i]), head(got[i].Data))
		}
	}
}

func head(b []byte) []byte { return b[:min(len(b), 64)] }

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countLines counts the lines of s containing sub.
func countLines(s, sub string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}
