package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/netnstest"
)

// TestPrefilterFlowCutoff runs the daemon with the eBPF prefilter, a filter
// and a flow cutoff of 5 packets: of 100 flows of 50 packets to port 9 (plus
// 1000 packets to port 10, which the filter rejects), exactly the first 5 of
// each flow reach the ring, byte for byte, while the kernel-side counters
// show every packet the interface carried.
func TestPrefilterFlowCutoff(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "2",
		"--prefilter", "ebpf", "--filter", "udp dst port 9", "--flow-cutoff-packets", "5", "--prefilter-stats")
	code, body, err := d.get("/api/health")
	if err != nil || code != 200 {
		t.Fatalf("/api/health: %d %v", code, err)
	}
	var h struct {
		Filter struct{ Mode, Expression, Note string } `json:"filter"`
	}
	if err := json.Unmarshal(body, &h); err != nil || h.Filter.Mode != "ebpf" || h.Filter.Expression != "udp dst port 9" {
		t.Fatalf("/api/health filter = %+v (%v), want mode ebpf", h.Filter, err)
	}

	var all, want [][]byte
	sizes := make([]int, 50)
	for i := range sizes {
		sizes[i] = 100
	}
	for stream := uint32(100); stream < 200; stream++ {
		frames := p.Flow(stream).Frames(sizes)
		all = append(all, frames...)
		want = append(want, frames[:5]...)
	}
	other := p.Flow(300)
	other.DstPort = 10
	all = append(all, other.Frames(make([]int, 1000))...)
	if err := sender(t, p).SendPaced(all, chunk, pause); err != nil {
		t.Fatal(err)
	}
	var m metrics
	waitUntil(t, 15*time.Second, "the prefilter to count every packet", func() bool {
		m = d.metrics()
		return m.sum("sonde_prefilter_network_packets_total", `protocol="ipv4"`) >= float64(len(all))
	})
	time.Sleep(300 * time.Millisecond)
	m = d.metrics()
	d.stop()

	checks := []struct {
		name string
		got  float64
		want int
	}{
		{"sonde_prefilter_network_packets_total{protocol=ipv4}", m.sum("sonde_prefilter_network_packets_total", `protocol="ipv4"`), len(all)},
		{"sonde_prefilter_transport_packets_total{protocol=udp}", m.sum("sonde_prefilter_transport_packets_total", `protocol="udp"`), len(all)},
		{"sonde_prefilter_excluded_packets_total{reason=filter}", m.sum("sonde_prefilter_excluded_packets_total", `reason="filter"`), 1000},
		{"sonde_prefilter_excluded_packets_total{reason=flow_cutoff}", m.sum("sonde_prefilter_excluded_packets_total", `reason="flow_cutoff"`), 100 * 45},
		{"sonde_capture_packets_total", m.sum("sonde_capture_packets_total"), 500},
	}
	for _, c := range checks {
		if c.got != float64(c.want) {
			t.Errorf("%s = %v, want %d", c.name, c.got, c.want)
		}
	}
	// --prefilter-stats: the kernel ran the program on every packet seen.
	if runs, secs := m.sum("sonde_prefilter_runs_total"), m.sum("sonde_prefilter_run_seconds_total"); runs < float64(len(all)) || secs <= 0 {
		t.Errorf("prefilter run statistics: %v runs in %v s, want at least %d runs and some time", runs, secs, len(all))
	}
	// Per flow, in order: the first 5 frames of each.
	got := map[uint32][]capRecord{}
	for _, r := range ringRecords(t, dir, p.A.MAC, false) {
		s, _, err := netnstest.Parse(r.Data)
		if err != nil {
			t.Fatal(err)
		}
		got[s] = append(got[s], r)
	}
	if len(got) != 100 {
		t.Errorf("%d flows in the ring, want 100", len(got))
	}
	for i := 0; i < 100; i++ {
		compareFrames(t, "flow", want[5*i:5*i+5], got[uint32(100+i)])
	}
}

// TestPrefilterSample keeps 1 packet in 10 at random: of 20 000 sent, the
// ring holds 2000 ± 212 (5 standard deviations of the binomial), and the
// kernel counted every one as seen.
func TestPrefilterSample(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "1", "--prefilter", "ebpf", "--sample", "10")
	sizes := make([]int, 20000)
	for i := range sizes {
		sizes[i] = 64
	}
	if err := sender(t, p).SendPaced(p.Flow(400).Frames(sizes), chunk, pause); err != nil {
		t.Fatal(err)
	}
	var m metrics
	waitUntil(t, 15*time.Second, "the prefilter to count every packet", func() bool {
		m = d.metrics()
		return m.sum("sonde_prefilter_network_packets_total", `protocol="ipv4"`) >= 20000
	})
	time.Sleep(300 * time.Millisecond)
	m = d.metrics()
	d.stop()
	kept := m.sum("sonde_capture_packets_total")
	out := m.sum("sonde_prefilter_excluded_packets_total", `reason="sampled_out"`)
	if kept < 2000-212 || kept > 2000+212 {
		t.Errorf("kept %v of 20000 with 1-in-10 sampling, want 2000 ± 212", kept)
	}
	if kept+out != 20000 {
		t.Errorf("kept %v + sampled out %v != 20000 sent", kept, out)
	}
}

// TestPrefilterFallback starts sonde without CAP_BPF, CAP_SYS_ADMIN and
// CAP_PERFMON (and unprivileged BPF is off on this kernel): it says so in one
// log line, runs the classic filter, and /api/health shows why.
func TestPrefilterFallback(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	d := startDaemonWrapped(t, p.B.NS, dir,
		[]string{"setpriv", "--bounding-set", "-bpf,-sys_admin,-perfmon", "--inh-caps", "-all"},
		"--interface", p.B.Iface, "--workers", "1", "--prefilter", "ebpf", "--filter", "udp dst port 9")
	code, body, err := d.get("/api/health")
	if err != nil || code != 200 {
		t.Fatalf("/api/health: %d %v", code, err)
	}
	var h struct {
		Filter struct{ Mode, Note string } `json:"filter"`
	}
	if err := json.Unmarshal(body, &h); err != nil || h.Filter.Mode != "classic" || h.Filter.Note == "" {
		t.Fatalf("/api/health filter = %+v (%v): want classic with a note saying why", h.Filter, err)
	}
	keep := p.Flow(410)
	skip := p.Flow(411)
	skip.DstPort = 10
	want := keep.Frames(netnstest.MixedSizes(500, 410))
	frames := append(append([][]byte{}, want...), skip.Frames(netnstest.MixedSizes(500, 411))...)
	if err := sender(t, p).SendPaced(frames, chunk, pause); err != nil {
		t.Fatal(err)
	}
	d.waitCaptured(float64(len(want)), p.B.Iface)
	d.stop()
	compareFrames(t, "classic fallback", want, ringRecords(t, dir, p.A.MAC, false))
	if n := countLines(d.output(), "eBPF prefilter unavailable"); n != 1 {
		t.Errorf("%d log lines about the fallback, want exactly 1:\n%s", n, d.output())
	}
}
