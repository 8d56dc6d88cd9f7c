package prefilter

import (
	"testing"
)

// BenchmarkPrefilter measures the program in the kernel (BPF_PROG_TEST_RUN
// with repeat): class counting plus a 5-term tcpdump filter, on a packet the
// filter accepts and on one it rejects early. ns/pkt is the kernel's own
// per-run time. With BPF_STATS_RUN_TIME enabled elsewhere on the host each
// run also pays for two clock reads.
func BenchmarkPrefilter(b *testing.B) {
	exprs, progs := tcpdumpPrograms(b)
	if exprs[0] != "tcp and port 80 and host 198.18.0.1 and not port 22 and len > 60" {
		b.Fatalf("first testdata program is %q", exprs[0])
	}
	match := eth(0x0800, ipv4(6, ip4A, ip4B, 0, nil, tcp(40000, 80, tcpACK, make([]byte, 40))))
	miss := eth(0x0800, ipv4(17, ip4A, ip4B, 0, nil, udp(40000, 53, make([]byte, 40))))
	for _, c := range []struct {
		name  string
		cfg   Config
		frame []byte
	}{
		{"count only", Config{}, match},
		{"count+filter accept", Config{Filter: progs[0]}, match},
		{"count+filter reject", Config{Filter: progs[0]}, miss},
		{"count+filter+cutoff+sample", Config{Filter: progs[0], FlowCutoffPackets: 1 << 40, Sample: 2}, match},
	} {
		b.Run(c.name, func(b *testing.B) {
			objs := loadTest(b, c.cfg)
			b.ResetTimer()
			_, per, err := objs.Prefilter.Benchmark(testInput(c.frame), b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
		})
	}
}
