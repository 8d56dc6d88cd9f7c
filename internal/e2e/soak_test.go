package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/netnstest"
)

// TestSoak keeps traffic of many flows flowing through sonde (trafgen, UDP
// with a random source port per frame: up to 65 536 flows) for a while and
// samples the daemon: after a warm-up, resident memory stays within 10 % of
// where it settled, goroutines stay constant, the kernel drops nothing, and
// the ring stays within its byte budget.
//
// The warm-up is the first half, and at least 40 s: the analysis flow table
// is preallocated and its pages are touched as flows first appear, and
// resident memory steps up as each of the first analysis windows (10 s)
// closes, until the engine's free lists (flow-record buffers and window
// parts, two per worker) and its kept windows are full, then flattens. Measured at this rate (80 s run): +15-19 MB at 8,
// 18, 28 and 38 s, then 263 to 270 MB over the next 40 s. A 40 s run judged
// from 20 s saw the 28 and 38 s steps as growth (10.3 %, failed in CI), so
// the plateau is judged only after the fourth window. Only growth after that
// would be a leak.
//
// SONDE_SOAK_DURATION sets the length (default 60s, as in CI; `make soak
// DURATION=10m` for the real thing) and SONDE_SOAK_RATE trafgen's rate
// (default 50000pps so that a busy CI machine is not the limit; "max" for
// trafgen's full speed).
func TestSoak(t *testing.T) {
	if _, err := exec.LookPath("trafgen"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("trafgen (netsniff-ng) not installed")
		}
		t.Skip("trafgen (netsniff-ng) not installed")
	}
	duration := 60 * time.Second
	if v, err := time.ParseDuration(os.Getenv("SONDE_SOAK_DURATION")); err == nil && v > 0 {
		duration = v
	}
	rate := os.Getenv("SONDE_SOAK_RATE")
	if rate == "" {
		rate = "50000pps"
	}
	p := netnstest.New(t)
	dir := t.TempDir()
	const ringMax = 64 << 20
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "2",
		"--file-max-bytes", "8MiB", "--ring-max-bytes", strconv.Itoa(ringMax), "--min-free-percent", "0")

	// One 128-byte UDP frame whose source port trafgen randomises per frame;
	// the UDP checksum is 0 (none, valid over IPv4), the IP header is fixed.
	frame := p.Flow(500).Frame(0, 128)
	var conf strings.Builder
	conf.WriteString("{\n")
	for i := 0; i < len(frame); i++ {
		switch {
		case i == 34: // UDP source port
			conf.WriteString("drnd(2),\n")
			i++
		case i == 40: // UDP checksum
			conf.WriteString("0x00, 0x00,\n")
			i++
		default:
			fmt.Fprintf(&conf, "0x%02x,", frame[i])
		}
	}
	conf.WriteString("\n}\n")
	cfgPath := filepath.Join(t.TempDir(), "soak.cfg")
	if err := os.WriteFile(cfgPath, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"trafgen", "--dev", p.A.Iface, "--conf", cfgPath, "--cpus", "1", "-q"}
	if rate != "max" {
		args = append(args, "--rate", rate)
	}
	gen := netnstest.Command(p.A.NS, args...)
	var genOut lockedWriter = lockedWriter{new(sync.Mutex), new(bytes.Buffer)}
	gen.Stdout, gen.Stderr = genOut, genOut
	// trafgen forks a worker per CPU: run it in its own process group and
	// stop the whole group.
	gen.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := gen.Start(); err != nil {
		t.Fatal(err)
	}
	genDone := make(chan struct{})
	go func() { gen.Wait(); close(genDone) }()
	stopGen := func() {
		syscall.Kill(-gen.Process.Pid, syscall.SIGINT)
		select {
		case <-genDone:
		case <-time.After(5 * time.Second):
			syscall.Kill(-gen.Process.Pid, syscall.SIGKILL)
			<-genDone
		}
	}
	defer stopGen()

	type sample struct {
		at          time.Duration
		rss         uint64
		goroutines  float64
		kernelDrops float64
		userDrops   float64
		ringBytes   float64
		packets     float64
	}
	var samples []sample
	start := time.Now()
	for time.Since(start) < duration {
		time.Sleep(min(2*time.Second, duration/10))
		if d.exited() {
			t.Fatal("daemon gone during the soak")
		}
		select {
		case <-genDone:
			genOut.mu.Lock()
			t.Fatalf("trafgen stopped during the soak: %s", genOut.b.String())
		default:
		}
		m := d.metrics()
		samples = append(samples, sample{
			at: time.Since(start), rss: rssKiB(t, d.cmd.Process.Pid), goroutines: m.sum("go_goroutines"),
			kernelDrops: m.sum("sonde_capture_kernel_drops_total"), userDrops: m.sum("sonde_capture_user_drops_total"),
			ringBytes: m.sum("sonde_ring_bytes"), packets: m.sum("sonde_capture_packets_total"),
		})
	}
	stopGen()
	d.stop()

	warmUp := max(duration/2, 40*time.Second)
	warm := len(samples) - 1
	for i, s := range samples {
		if s.at >= warmUp {
			warm = i
			break
		}
	}
	base := samples[warm]
	for _, s := range samples {
		t.Logf("t=%5.1fs rss=%6d KiB goroutines=%3.0f packets=%10.0f kernel drops=%v user drops=%v ring=%5.1f MiB",
			s.at.Seconds(), s.rss, s.goroutines, s.packets, s.kernelDrops, s.userDrops, s.ringBytes/(1<<20))
	}
	last := samples[len(samples)-1]
	if last.packets < base.packets+1000 {
		t.Fatalf("traffic did not flow during the soak: %v packets at warm-up, %v at the end", base.packets, last.packets)
	}
	for _, s := range samples[warm:] {
		if float64(s.rss) > 1.10*float64(base.rss) {
			t.Errorf("t=%.0fs: resident memory %d KiB is more than 10%% above %d KiB after warm-up", s.at.Seconds(), s.rss, base.rss)
		}
		if s.goroutines > base.goroutines+3 { // scrapes come and go; a leak keeps climbing
			t.Errorf("t=%.0fs: %v goroutines, %v after warm-up", s.at.Seconds(), s.goroutines, base.goroutines)
		}
		if s.ringBytes > ringMax {
			t.Errorf("t=%.0fs: ring holds %v bytes, over its %d budget", s.at.Seconds(), s.ringBytes, ringMax)
		}
	}
	if last.kernelDrops != 0 || last.userDrops != 0 {
		t.Errorf("%v kernel and %v user-space drops during the soak, want none", last.kernelDrops, last.userDrops)
	}
}

// rssKiB is the resident set of a process, from /proc/PID/status.
func rssKiB(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
