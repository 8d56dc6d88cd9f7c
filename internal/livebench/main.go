// Command livebench compares sonde's capture cost with tcpdump's on the same
// traffic: it builds a throw-away namespace pair joined by veth, blasts N
// small frames with trafgen pinned to one CPU, captures them on the other
// CPU with `sonde run` (analysis on, the default), `sonde run
// --analysis=false` (capture and ring alone) and `tcpdump -w` in turn, and
// reports CPU seconds per million packets, loss and rates (median of
// -runs).
//
// Everything happens inside namespaces it creates; they are removed on exit,
// on error and on SIGINT/SIGTERM. The only host setting it may touch is
// net.core.netdev_max_backlog (with -backlog), restored afterwards.
//
//	go run ./internal/livebench [-frames 2000000] [-runs 1] [-json out.json]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sonde-project/sonde/internal/netnstest"
)

type options struct {
	frames    int
	size      int
	runs      int
	jsonPath  string
	sonde     string
	ringMiB   int
	backlog   int
	workDir   string
	sendCPU   int
	captCPU   int
	listen    string
	onlyTools string
}

// result is one capturer's measurement in one run.
type result struct {
	Tool          string  `json:"tool"`
	Sent          uint64  `json:"sent"`
	IfaceRx       uint64  `json:"iface_rx_packets"`
	IfaceRxDrop   uint64  `json:"iface_rx_dropped"`
	Captured      uint64  `json:"captured"`
	Loss          int64   `json:"loss"` // IfaceRx - Captured
	ReportedDrops uint64  `json:"reported_kernel_drops"`
	CPUSeconds    float64 `json:"cpu_seconds"`        // utime+stime over the process's life (getrusage)
	CPUSecondsRun float64 `json:"cpu_seconds_steady"` // run time of all its threads (se.sum_exec_runtime): just before the sender starts to when the capture has drained
	SendSeconds   float64 `json:"send_seconds"`
	Mpps          float64 `json:"send_mpps"`
	CPUPerMpkt    float64 `json:"cpu_seconds_per_million_packets"`
}

func main() {
	var o options
	flag.IntVar(&o.frames, "frames", 2000000, "frames trafgen sends per capturer and run")
	flag.IntVar(&o.size, "size", 64, "frame size in bytes as handed to the kernel (no FCS)")
	flag.IntVar(&o.runs, "runs", 1, "repetitions; the median is reported")
	flag.StringVar(&o.jsonPath, "json", "", "also write all results as JSON to this file")
	flag.StringVar(&o.sonde, "sonde", "", "sonde binary (default: go build ./cmd/sonde)")
	flag.IntVar(&o.ringMiB, "ring-mib", 64, "kernel ring size in MiB: sonde's per-worker default, given to tcpdump as -B")
	flag.IntVar(&o.backlog, "backlog", 0, "if > 0, set net.core.netdev_max_backlog for the run and restore it")
	flag.StringVar(&o.workDir, "dir", "", "directory for the captures (default: a temp dir, removed)")
	flag.IntVar(&o.sendCPU, "send-cpu", 0, "CPU for trafgen")
	flag.IntVar(&o.captCPU, "capture-cpu", 1, "CPU for the capturer")
	flag.StringVar(&o.onlyTools, "tools", "sonde,sonde-capture,sonde-ebpf,tcpdump", "capturers to run, comma-separated: sonde (analysis on), sonde-capture (--analysis=false), sonde-ebpf (--analysis=false --prefilter ebpf), tcpdump")
	flag.Parse()
	o.listen = "127.0.0.1:9464"
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "livebench:", err)
		os.Exit(1)
	}
}

func run(o options) (err error) {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root to create network namespaces")
	}
	for _, tool := range []string{"trafgen", "tcpdump", "taskset", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (apt-get install netsniff-ng tcpdump util-linux iproute2)", tool)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.workDir == "" {
		d, err := os.MkdirTemp("", "livebench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.workDir = d
	}
	if o.sonde == "" {
		o.sonde = filepath.Join(o.workDir, "sonde")
		out, err := exec.Command("go", "build", "-o", o.sonde, "./cmd/sonde").CombinedOutput()
		if err != nil {
			return fmt.Errorf("building sonde: %w\n%s", err, out)
		}
	}
	if o.backlog > 0 {
		old, err := os.ReadFile("/proc/sys/net/core/netdev_max_backlog")
		if err != nil {
			return err
		}
		if err := os.WriteFile("/proc/sys/net/core/netdev_max_backlog", []byte(strconv.Itoa(o.backlog)), 0); err != nil {
			return err
		}
		defer os.WriteFile("/proc/sys/net/core/netdev_max_backlog", old, 0)
	}

	p, err := netnstest.NewPair()
	if err != nil {
		return err
	}
	defer p.Close()
	// A signal must still clean up: cancel, let the deferred Close run.
	go func() {
		<-ctx.Done()
		p.Close()
	}()

	conf := filepath.Join(o.workDir, "trafgen.cfg")
	if err := os.WriteFile(conf, trafgenConfig(p.Flow(1).Frame(0, o.size)), 0o644); err != nil {
		return err
	}
	tools := strings.Split(o.onlyTools, ",")
	all := map[string][]result{}
	for r := 0; r < o.runs; r++ {
		for _, tool := range tools {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res, err := measure(ctx, o, p, conf, tool, r)
			if err != nil {
				return fmt.Errorf("run %d, %s: %w", r+1, tool, err)
			}
			fmt.Fprintf(os.Stderr, "run %d %-7s captured %d/%d rx, loss %d, cpu %.2fs, send %.2f Mpps\n",
				r+1, tool, res.Captured, res.IfaceRx, res.Loss, res.CPUSeconds, res.Mpps)
			all[tool] = append(all[tool], res)
		}
	}
	med := map[string]result{}
	for tool, rs := range all {
		med[tool] = median(rs)
	}
	printTable(os.Stdout, o, tools, med)
	if o.jsonPath != "" {
		b, _ := json.MarshalIndent(map[string]any{"frames": o.frames, "size": o.size, "runs": all, "median": med}, "", "  ")
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// trafgenConfig renders one fixed frame in trafgen's packet syntax.
func trafgenConfig(frame []byte) []byte {
	var b strings.Builder
	b.WriteString("/* generated by livebench */\n{\n")
	for i, c := range frame {
		fmt.Fprintf(&b, "0x%02x,", c)
		if i%16 == 15 {
			b.WriteString("\n")
		}
	}
	b.WriteString("\n}\n")
	return []byte(b.String())
}

func measure(ctx context.Context, o options, p *netnstest.Pair, conf, tool string, run int) (result, error) {
	res := result{Tool: tool}
	dir := filepath.Join(o.workDir, fmt.Sprintf("%s-%d", tool, run))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	cpu := strconv.Itoa(o.captCPU)

	var cmd *exec.Cmd
	var stderr syncBuf
	switch tool {
	case "sonde", "sonde-capture", "sonde-ebpf":
		args := []string{"taskset", "-c", cpu, o.sonde, "run",
			"--interface", p.B.Iface, "--data-dir", dir, "--listen", o.listen, "--workers", "1",
			"--file-max-bytes", "100MiB", "--ring-max-bytes", "100GiB", "--node-name", "bench",
			"--analysis=" + strconv.FormatBool(tool == "sonde")}
		if tool == "sonde-ebpf" {
			args = append(args, "--prefilter", "ebpf")
		}
		cmd = netnstest.Command(p.B.NS, args...)
	case "tcpdump":
		cmd = netnstest.Command(p.B.NS, "taskset", "-c", cpu, "tcpdump", "-n", "-Z", "root", "-i", p.B.Iface,
			"-w", filepath.Join(dir, "cap"), "-C", "100", "-W", "10", "-s", "262144",
			"-B", strconv.Itoa(o.ringMiB*1024))
	default:
		return res, fmt.Errorf("unknown capturer %q", tool)
	}
	cmd.Stdout = io.Discard
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return res, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	}()
	if err := waitStarted(ctx, tool, p.B.NS, o.listen, &stderr, exited); err != nil {
		return res, fmt.Errorf("%w: %s", err, stderr.String())
	}

	rx0, err := netnstest.Stat(p.B.NS, p.B.Iface, "rx_packets")
	if err != nil {
		return res, err
	}
	drop0, _ := netnstest.Stat(p.B.NS, p.B.Iface, "rx_dropped")
	// Per-packet cost is what the traffic adds: start-up (allocating and
	// zeroing the kernel ring, the same size for both capturers) is left out.
	cpu0, err := procRuntime(cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	start := time.Now()
	gen := netnstest.Command(p.A.NS, "taskset", "-c", strconv.Itoa(o.sendCPU), "trafgen",
		"--dev", p.A.Iface, "--conf", conf, "-n", strconv.Itoa(o.frames), "--cpus", "1", "-q")
	if out, err := gen.CombinedOutput(); err != nil {
		return res, fmt.Errorf("trafgen: %w: %s", err, out)
	}
	res.SendSeconds = time.Since(start).Seconds()
	res.Sent = uint64(o.frames)
	res.Mpps = float64(o.frames) / res.SendSeconds / 1e6

	// Let the capturer drain its ring before stopping it.
	var sondeDrops uint64
	if tool != "tcpdump" {
		var last float64 = -1
		for i := 0; i < 100; i++ {
			m, err := scrape(p.B.NS, o.listen)
			if err == nil {
				cur := m["sonde_capture_packets_total"]
				sondeDrops = uint64(m["sonde_capture_kernel_drops_total"])
				if cur == last {
					break
				}
				last = cur
			}
			time.Sleep(200 * time.Millisecond)
		}
	} else {
		time.Sleep(time.Second)
	}
	rx1, err := netnstest.Stat(p.B.NS, p.B.Iface, "rx_packets")
	if err != nil {
		return res, err
	}
	drop1, _ := netnstest.Stat(p.B.NS, p.B.Iface, "rx_dropped")
	res.IfaceRx, res.IfaceRxDrop = rx1-rx0, drop1-drop0
	cpu1, err := procRuntime(cmd.Process.Pid)
	if err != nil {
		return res, err
	}
	res.CPUSecondsRun = cpu1 - cpu0

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		return res, fmt.Errorf("%s did not exit within 30s of SIGTERM", tool)
	}
	if st := cmd.ProcessState; st != nil {
		if !st.Success() {
			return res, fmt.Errorf("%s exited with %v: %s", tool, st, stderr.String())
		}
		ru := st.SysUsage().(*syscall.Rusage)
		res.CPUSeconds = tv(ru.Utime) + tv(ru.Stime)
	}

	// The capture files only: tcpdump's cap0..cap9 (-w cap -W 10), sonde's
	// published ring files (its data directory also holds the index, events,
	// reports and snapshots).
	patterns := []string{"*.pcap", "*.pcapng"}
	if tool == "tcpdump" {
		patterns = []string{"cap[0-9]*"}
	}
	var files []string
	for _, pat := range patterns {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		files = append(files, m...)
	}
	for _, f := range files {
		n, err := netnstest.CountPcap(f)
		if err != nil {
			return res, err
		}
		res.Captured += n
	}
	res.Loss = int64(res.IfaceRx) - int64(res.Captured)
	switch tool {
	case "sonde", "sonde-capture", "sonde-ebpf":
		res.ReportedDrops = sondeDrops
	case "tcpdump":
		res.ReportedDrops = tcpdumpDrops(stderr.String())
	}
	res.CPUPerMpkt = res.CPUSecondsRun / (float64(res.IfaceRx) / 1e6)
	return res, nil
}

func waitStarted(ctx context.Context, tool, ns, listen string, stderr *syncBuf, exited chan struct{}) error {
	deadline := time.Now().Add(20 * time.Second)
	client := netnstest.HTTPClient(ns)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("%s exited during start-up", tool)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		switch tool {
		case "sonde", "sonde-capture", "sonde-ebpf":
			if resp, err := client.Get("http://" + listen + "/api/ready"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		case "tcpdump":
			if strings.Contains(stderr.String(), "listening on") {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within 20s", tool)
}

func scrape(ns, listen string) (map[string]float64, error) {
	resp, err := netnstest.HTTPClient(ns).Get("http://" + listen + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name, _, _ := strings.Cut(line[:i], "{")
		m[name] += v
	}
	return m, nil
}

// procRuntime is the CPU time of all a live process's threads, from the
// scheduler's own clock (se.sum_exec_runtime in /proc/PID/task/TID/sched,
// milliseconds with nanosecond digits). utime and stime in /proc/PID/stat
// are counted in 10 ms ticks, and with tick-based accounting their split is
// sampled: it aliased with sonde's periodic wake-ups (the same capture read
// 0.00 to 0.84 s of user time), so it is not reported. A kernel without
// those files (no CONFIG_SCHED_DEBUG) is an error, not 0 s of CPU, which
// would pass every comparison.
func procRuntime(pid int) (float64, error) {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/sched", pid))
	var ms float64
	read := 0
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "se.sum_exec_runtime" {
				x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					return 0, fmt.Errorf("%s: se.sum_exec_runtime %q: %w", t, v, err)
				}
				ms += x
				read++
			}
		}
	}
	if read == 0 {
		return 0, fmt.Errorf("no se.sum_exec_runtime in /proc/%d/task/*/sched (needs CONFIG_SCHED_DEBUG): cannot measure the capturer's CPU", pid)
	}
	return ms / 1000, nil
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func tcpdumpDrops(stderr string) uint64 {
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasSuffix(strings.TrimSpace(line), "packets dropped by kernel") {
			n, _ := strconv.ParseUint(strings.Fields(line)[0], 10, 64)
			return n
		}
	}
	return 0
}

// median takes each field's median independently.
func median(rs []result) result {
	pick := func(get func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m := rs[0]
	m.IfaceRx = uint64(pick(func(r result) float64 { return float64(r.IfaceRx) }))
	m.IfaceRxDrop = uint64(pick(func(r result) float64 { return float64(r.IfaceRxDrop) }))
	m.Captured = uint64(pick(func(r result) float64 { return float64(r.Captured) }))
	m.Loss = int64(pick(func(r result) float64 { return float64(r.Loss) }))
	m.ReportedDrops = uint64(pick(func(r result) float64 { return float64(r.ReportedDrops) }))
	m.CPUSeconds = pick(func(r result) float64 { return r.CPUSeconds })
	m.CPUSecondsRun = pick(func(r result) float64 { return r.CPUSecondsRun })
	m.SendSeconds = pick(func(r result) float64 { return r.SendSeconds })
	m.Mpps = pick(func(r result) float64 { return r.Mpps })
	m.CPUPerMpkt = pick(func(r result) float64 { return r.CPUPerMpkt })
	return m
}

func printTable(w io.Writer, o options, tools []string, med map[string]result) {
	fmt.Fprintf(w, "\n%d x %d-byte frames, trafgen on CPU %d, capture on CPU %d, median of %d run(s)\n\n",
		o.frames, o.size, o.sendCPU, o.captCPU, o.runs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "capturer\tsend Mpps\tiface rx\tveth drops\tcaptured\tloss\treported drops\tCPU s\tCPU s (steady)\tCPU s / Mpkt\t")
	for _, t := range tools {
		r, ok := med[t]
		if !ok {
			continue
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%.3f\t\n", t, r.Mpps, r.IfaceRx, r.IfaceRxDrop,
			r.Captured, r.Loss, r.ReportedDrops, r.CPUSeconds, r.CPUSecondsRun, r.CPUPerMpkt)
	}
	tw.Flush()
	td, ok := med["tcpdump"]
	if !ok || td.CPUPerMpkt <= 0 {
		return
	}
	fmt.Fprintln(w)
	if e, ok := med["sonde-ebpf"]; ok {
		if c, ok := med["sonde-capture"]; ok && c.CPUPerMpkt > 0 {
			fmt.Fprintf(w, "CPU per captured packet, eBPF prefilter / classic filter (both without analysis): %.2f\n", e.CPUPerMpkt/c.CPUPerMpkt)
		}
	}
	for _, t := range []string{"sonde", "sonde-capture", "sonde-ebpf"} {
		if s, ok := med[t]; ok {
			verdict := "ok"
			if s.Loss != 0 || s.CPUPerMpkt > td.CPUPerMpkt {
				verdict = "FAILS the bar (0 loss, CPU per packet <= tcpdump's)"
			}
			fmt.Fprintf(w, "CPU per packet, %s/tcpdump: %.2f, loss %d: %s\n", t, s.CPUPerMpkt/td.CPUPerMpkt, s.Loss, verdict)
		}
	}
}

// syncBuf lets exec's copier goroutine write stderr while we read it.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
