package prefilter

//go:generate go tool bpf2go -tags linux -cflags "-O2 -g -Wall -Werror -mcpu=v3 -Iinclude" -target bpfel -no-global-types floor testdata/floor.c

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
// On the development VM (2 vCPUs, AMD EPYC, kernel 6.18, spectre_v2
// retpolines and the SRSO "Safe RET" return thunk), -benchtime 2000000x
// -count 5, twice, gives ns/pkt-net-min: count only 6-9, count+filter
// accept (the first program of testdata/tcpdump-ddd.txt) 12-14, rejected
// 7-9, with the cutoff and sampling on 60-65; the cutoff alone 46-49 with
// the flow past it and 49-50 under it (runs now and then 10-25 ns higher),
// so the flow map lookup is ~40 ns and the atomic adds 1-3. Issue 3 asks for at most 15
// for the accepted case. Interleaved with earlier builds in the same runs,
// the accepted case went 21-22 -> 19-21 (the translation reusing repeated
// loads, saving R1-R3 only for helper calls) -> 17-18 on the VM of earlier
// sessions (one length check for all absolute loads, slow paths out of
// line); then on this session's VM, which measured that build at 15-17:
// -> 13-15 (one counter per packet in a class slot, the snaplen cap in the
// translation) -> 12-14 (a build of prefilter.c per combination of its
// switches). A JIT placement effect moves a whole run by up to 2 ns, so
// compare builds over several processes, not within one.
//
// BenchmarkPrefilterFloor measures, in the same way, what reading packet
// bytes costs here and a program written by hand for this packet's work.
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
		// The cutoff alone, against count only: its flow map lookup, with the
		// flow past its cutoff after the first run (no atomic adds), and under
		// it (the two atomic adds on every packet).
		{"count+cutoff past", Config{FlowCutoffPackets: 1}, match},
		{"count+cutoff under", Config{FlowCutoffPackets: 1 << 40}, match},
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

// BenchmarkPrefilterFloor runs the reference programs of testdata/floor.c on
// the benchmark's accepted packet, each interleaved with an empty program as
// BenchmarkPrefilter does (same metrics):
//
//	probed_reads              16 byte reads through the in-place pointer (BPF_PROBE_MEM)
//	plain_reads               the same 16 reads from a map value
//	ld_abs_reads              4 LD_ABS loads (helper calls)
//	dynptr_reads              bpf_dynptr_from_skb + bpf_dynptr_slice, then the 16 reads
//	by_hand_count             IPv4/TCP class counting written for this packet only
//	by_hand_filter            that plus the 5-term filter written out in C
//	by_hand_filter_unchecked  the same without bounds checks on its reads
//
// On the development VM (-benchtime 2000000x -count 5, twice,
// ns/pkt-net-min): probed 8-9, plain 3-5, LD_ABS 25-27, dynptr 33-35; by
// hand: count 8-10 (it keeps four counters where the prefilter keeps one),
// count+filter 11-13, unchecked 10-11, against the prefilter's 6-9 and 12-14
// in the same runs. Every way to plain reads is a call costing far more than
// the guards of probed ones. Grouping the filter's loads into 8-byte windows
// (4 guarded loads instead of 9 for this packet, the rest shifted out of a
// register) measured 0.3 ns faster on average, within noise, and was not
// kept: independent guarded loads are cheap, and the cost follows the
// number of instructions.
func BenchmarkPrefilterFloor(b *testing.B) {
	needBPF(b)
	match := eth(0x0800, ipv4(6, ip4A, ip4B, 0, nil, tcp(40000, 80, tcpACK, make([]byte, 40))))
	miss := eth(0x0800, ipv4(17, ip4A, ip4B, 0, nil, udp(40000, 53, make([]byte, 40))))
	var objs floorObjects
	if err := loadFloorObjects(&objs, nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { objs.Close() })
	// The hand-written filter must decide as the translated one does.
	for _, p := range []*ebpf.Program{objs.ByHandFilter, objs.ByHandFilterUnchecked} {
		if v := runFrame(b, p, match); v != 262144 {
			b.Fatalf("hand-written filter: verdict %d on the accepted packet", v)
		}
		if v := runFrame(b, p, miss); v != 0 {
			b.Fatalf("hand-written filter: verdict %d on the rejected packet", v)
		}
	}
	empty := emptyProgram(b)
	for _, c := range []struct {
		name string
		prog *ebpf.Program
	}{
		{"probed_reads", objs.ProbedReads}, {"plain_reads", objs.PlainReads},
		{"ld_abs_reads", objs.LdAbsReads}, {"dynptr_reads", objs.DynptrReads},
		{"by_hand_count", objs.ByHandCount}, {"by_hand_filter", objs.ByHandFilter},
		{"by_hand_filter_unchecked", objs.ByHandFilterUnchecked},
	} {
		b.Run(c.name, func(b *testing.B) {
			per, base, minPer, minBase := benchPair(b, c.prog, empty, testInput(match), b.N)
			b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
			b.ReportMetric(float64(base.Nanoseconds()), "ns/pkt-empty")
			b.ReportMetric(float64(per.Nanoseconds()-base.Nanoseconds()), "ns/pkt-net")
			b.ReportMetric(float64(minPer.Nanoseconds()-minBase.Nanoseconds()), "ns/pkt-net-min")
		})
	}
}
