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
//	ns/pkt          the program, the kernel's own per-run time
//	ns/pkt-empty    the empty program, same packet, same run
//	ns/pkt-net      the difference: what the prefilter adds per packet
//	ns/pkt-net-min  the same from the fastest of 16 chunks of each: on a
//	                busy host (interrupts and other tenants land inside
//	                the timed runs) the steadiest figure of the four
//
// With BPF_STATS_RUN_TIME enabled elsewhere on the host each run also pays
// for two clock reads.
//
// On the development VM (2 vCPUs, AMD EPYC, kernel 6.18, load average ~8
// from other tests), -benchtime 2000000x -count 5 gave for "count+filter
// accept" (the first program of testdata/tcpdump-ddd.txt) ns/pkt-net-min
// 22-29 (median 23) and ns/pkt-net 25-42 (median 35); count only 10-14
// and rejected 11-21 (median 12) ns/pkt-net-min. Issue 3's 15 ns for the
// accepted case is not met. Copying the first packet bytes onto the stack at
// entry (6 probed 8-byte loads) for the class parser and the filter to read
// with plain stack loads was tried and measured slower, interleaved with
// this code: accepted 23-26 against 20-22, rejected 14-15 against 10-12
// (minimum over 60 chunks, 6 rounds each).
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
			per, base, minPer, minBase := benchPair(b, objs.Prefilter, empty, testInput(c.frame), b.N)
			b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
			b.ReportMetric(float64(base.Nanoseconds()), "ns/pkt-empty")
			b.ReportMetric(float64(per.Nanoseconds()-base.Nanoseconds()), "ns/pkt-net")
			b.ReportMetric(float64(minPer.Nanoseconds()-minBase.Nanoseconds()), "ns/pkt-net-min")
		})
	}
}

// benchPair runs prog and empty n times each on in, in interleaved chunks so
// that both see the same host conditions, and returns their mean times per
// run and the mean of each one's fastest chunk.
func benchPair(tb testing.TB, prog, empty *ebpf.Program, in []byte, n int) (per, base, minPer, minBase time.Duration) {
	const chunks = 16
	var tp, te time.Duration
	minPer, minBase = time.Duration(1<<62), time.Duration(1<<62)
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
			p        *ebpf.Program
			sum, min *time.Duration
		}{{empty, &te, &minBase}, {prog, &tp, &minPer}} {
			_, d, err := r.p.Benchmark(in, m, nil)
			if err != nil {
				tb.Fatal(err)
			}
			*r.sum += d * time.Duration(m)
			*r.min = min(*r.min, d)
		}
		done += m
	}
	return tp / time.Duration(n), te / time.Duration(n), minPer, minBase
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
