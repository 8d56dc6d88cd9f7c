package prefilter

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// BenchmarkPrefilter measures the program in the kernel (BPF_PROG_TEST_RUN
// with repeat): class counting alone, plus a 5-term tcpdump filter on a
// packet it accepts and on one it rejects early, and with the flow cutoff
// and sampling on too. Every case also times an empty socket filter (return
// -1) on the same packet, interleaved with it, so that what the test run
// itself costs on this host can be taken away:
//
//	ns/pkt        the program, the kernel's own per-run time
//	ns/pkt-empty  the empty program, same packet, same run
//	ns/pkt-net    the difference: what the prefilter adds per packet
//
// With BPF_STATS_RUN_TIME enabled elsewhere on the host each run also pays
// for two clock reads.
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
			empty := emptyProgram(b)
			b.ResetTimer()
			per, base := benchPair(b, objs.Prefilter, empty, testInput(c.frame), b.N)
			b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
			b.ReportMetric(float64(base.Nanoseconds()), "ns/pkt-empty")
			b.ReportMetric(float64(per.Nanoseconds()-base.Nanoseconds()), "ns/pkt-net")
		})
	}
}

// benchPair runs prog and empty n times each on in, in interleaved chunks so
// that both see the same host conditions, and returns their mean times per
// run.
func benchPair(tb testing.TB, prog, empty *ebpf.Program, in []byte, n int) (per, base time.Duration) {
	const chunks = 8
	var tp, te time.Duration
	done := 0
	for i := range chunks {
		m := n / chunks
		if i == chunks-1 {
			m = n - done
		}
		if m == 0 {
			continue
		}
		for _, r := range []struct {
			p   *ebpf.Program
			sum *time.Duration
		}{{empty, &te}, {prog, &tp}} {
			_, d, err := r.p.Benchmark(in, m, nil)
			if err != nil {
				tb.Fatal(err)
			}
			*r.sum += d * time.Duration(m)
		}
		done += m
	}
	return tp / time.Duration(n), te / time.Duration(n)
}

// emptyProgram is a socket filter that keeps every packet whole.
func emptyProgram(tb testing.TB) *ebpf.Program {
	tb.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SocketFilter,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm32(asm.R0, -1), asm.Return()},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}
