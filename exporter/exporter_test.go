package exporter

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/sonde-project/sonde/bpf/prefilter"
	"github.com/sonde-project/sonde/capture"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden")

type fakeCapture []capture.InterfaceStatus

func (f fakeCapture) Interfaces() []capture.InterfaceStatus { return f }

type fakeRing struct {
	stats   RingStats
	streams []StreamStats
}

func (f *fakeRing) Stats() RingStats           { return f.stats }
func (f *fakeRing) StreamStats() []StreamStats { return f.streams }

func fixtures() (fakeCapture, *fakeRing) {
	cs := fakeCapture{
		{Name: "eth0", State: capture.StateCapturing, Workers: 4, LinkType: capture.LinkTypeEthernet,
			Stats: capture.Stats{Packets: 1000, Bytes: 1_500_000, KernelPackets: 1010, KernelDrops: 10, Freezes: 2}},
		{Name: "wg0", State: capture.StateFailed, Workers: 1, LinkType: capture.LinkTypeRaw, Err: "interface is down"},
	}
	rs := &fakeRing{
		stats: RingStats{
			Files: 12, Bytes: 1_200_000_000,
			OldestPacket: 1_700_000_000_123_456_789, NewestPacket: 1_700_000_600_000_000_000,
			WriteErrors: 1,
			Evictions: []Eviction{
				{Reason: "max_bytes", Files: 3, Bytes: 300_000_000, Packets: 200_000},
				{Reason: "min_free", Files: 1, Bytes: 100_000_000, Packets: 70_000},
				{Reason: "max_bytes", Files: 1, Bytes: 100_000_000, Packets: 50_000},
			},
			FreeBytes: 50_000_000_000, TotalBytes: 100_000_000_000,
		},
		streams: []StreamStats{
			{Interface: "eth0", Worker: 1, Packets: 480, Bytes: 700_000, Files: 3, DropsQueueFull: 5},
			{Interface: "eth0", Worker: 0, Packets: 500, Bytes: 750_000, Files: 3, DropsQueueFull: 3, DropsWriteError: 2},
		},
	}
	return cs, rs
}

type fakePrefilter []prefilter.InterfaceStats

func (f fakePrefilter) Stats() []prefilter.InterfaceStats { return f }

func prefilterFixture() fakePrefilter {
	c := func(p, b uint64) prefilter.Counter { return prefilter.Counter{Packets: p, Bytes: b} }
	return fakePrefilter{{
		Interface: "eth0", Packets: 5000, Bytes: 4_000_000,
		L3:     prefilter.L3Stats{IPv4: c(4000, 3_500_000), IPv6: c(900, 480_000), ARP: c(60, 3600), Other: c(40, 16_400)},
		L4:     prefilter.L4Stats{TCP: c(3000, 3_000_000), UDP: c(1700, 900_000), ICMP: c(200, 80_000), Other: c(100, 20_000)},
		TCPSyn: c(120, 7200), TCPRst: c(7, 420), TCPFin: c(100, 6000),
		FilteredOut: c(1000, 500_000), FlowsCutOff: c(3000, 3_000_000), SampledOut: c(10, 1000),
		RunTime: 1500 * time.Microsecond, RunCount: 5000,
	}}
}

func exposition(t *testing.T, reg *prometheus.Registry) []byte {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// TestGolden compares the exposition of fixed sources with
// testdata/metrics.golden (go test ./exporter -update rewrites it) and lints
// it with promtool.
func TestGolden(t *testing.T) {
	cs, rs := fixtures()
	reg := prometheus.NewPedanticRegistry()
	for _, c := range []prometheus.Collector{
		NewCaptureCollector(cs), NewRingCollector(rs), NewPrefilterCollector(prefilterFixture()),
		newBuildInfoCollector(BuildInfo{Version: "1.2.3", Revision: "abc123", GoVersion: "go1.26.8"}),
	} {
		reg.MustRegister(c)
	}
	got := exposition(t, reg)

	const golden = "testdata/metrics.golden"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./exporter -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("exposition differs from %s (run with -update after checking the change):\n%s", golden, got)
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not on PATH; CI must lint metrics (apt-get install prometheus)")
		}
		t.Skip("promtool not on PATH; install the prometheus package to lint metrics")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(got)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestRegister(t *testing.T) {
	cs, rs := fixtures()
	reg := prometheus.NewRegistry()
	if err := Register(reg, ReadBuildInfo(""), cs, rs); err != nil {
		t.Fatal(err)
	}
	out := string(exposition(t, reg))
	for _, want := range []string{
		"go_goroutines ", "process_cpu_seconds_total ", `sonde_build_info{goversion="go`,
		`sonde_capture_up{interface="eth0"} 1`, `sonde_capture_up{interface="wg0"} 0`,
		`sonde_ring_files 12`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	// Registering twice on the same registry is an error, not a panic.
	if err := Register(reg, ReadBuildInfo(""), cs, rs); err == nil {
		t.Error("second Register succeeded")
	}
	// Without sources, only the process-level metrics are exported.
	reg = prometheus.NewRegistry()
	if err := Register(reg, BuildInfo{Version: "v", Revision: "r", GoVersion: "g"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if out := string(exposition(t, reg)); strings.Contains(out, "sonde_capture_") || strings.Contains(out, "sonde_ring_") {
		t.Errorf("nil sources exported metrics:\n%s", out)
	}
}

// TestScrapeReadsLive checks that values are read at scrape time.
func TestScrapeReadsLive(t *testing.T) {
	cs, rs := fixtures()
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewRingCollector(rs), NewCaptureCollector(cs))
	rs.stats.Files = 99
	cs[0].Packets = 4242
	out := string(exposition(t, reg))
	for _, want := range []string{"sonde_ring_files 99", `sonde_capture_packets_total{interface="eth0"} 4242`} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

func TestReadBuildInfo(t *testing.T) {
	b := ReadBuildInfo("v9.9.9")
	if b.Version != "v9.9.9" || !strings.HasPrefix(b.GoVersion, "go") || b.Revision == "" {
		t.Errorf("ReadBuildInfo = %+v", b)
	}
	if b := ReadBuildInfo(""); b.Version == "" {
		t.Error("empty version")
	}
}
