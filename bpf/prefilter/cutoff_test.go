package prefilter

import (
	"math"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// flowFrame is packet seq of flow i: IPv4 for even i, IPv6 for odd, TCP or
// UDP, every other packet in the reverse direction.
func flowFrame(i, seq int) []byte {
	sport, dport := uint16(10000+i), uint16(80)
	reverse := seq%2 == 1
	if reverse {
		sport, dport = dport, sport
	}
	var l4 []byte
	proto := byte(6)
	if i%4 < 2 {
		l4 = tcp(sport, dport, tcpACK, make([]byte, 10))
	} else {
		proto, l4 = 17, udp(sport, dport, make([]byte, 10))
	}
	if i%2 == 0 {
		a, b := []byte{198, 18, byte(i >> 8), byte(i)}, ip4B
		if reverse {
			a, b = b, a
		}
		return eth(0x0800, ipv4(proto, a, b, 0, nil, l4))
	}
	a, b := append([]byte(nil), ip6A...), ip6B
	a[14] = byte(i)
	if reverse {
		a, b = b, a
	}
	return eth(0x86dd, ipv6(proto, a, b, l4))
}

func TestFlowCutoffPackets(t *testing.T) {
	objs := loadTest(t, Config{FlowCutoffPackets: 5})
	const flows, perFlow = 100, 50
	accepted := map[int]int{}
	for seq := 0; seq < perFlow; seq++ { // interleaved, as on a link
		for i := 0; i < flows; i++ {
			if runFrame(t, objs.Prefilter, flowFrame(i, seq)) != 0 {
				accepted[i]++
			}
		}
	}
	total := 0
	for i := 0; i < flows; i++ {
		if accepted[i] != 5 {
			t.Errorf("flow %d: %d packets accepted, want 5", i, accepted[i])
		}
		total += accepted[i]
	}
	st := readStats(t, objs)
	if total != 500 || st.FlowsCutOff.Packets != 4500 || st.Packets != 5000 || st.FilteredOut.Packets != 0 {
		t.Errorf("accepted %d, cut off %d of %d seen; want 500, 4500 of 5000", total, st.FlowsCutOff.Packets, st.Packets)
	}
	if st.L3.IPv4.Packets != 2500 || st.L3.IPv6.Packets != 2500 || st.L4.TCP.Packets != 2500 || st.L4.UDP.Packets != 2500 {
		t.Errorf("classes %+v %+v: want 2500 each of IPv4/IPv6 and TCP/UDP", st.L3, st.L4)
	}
	// Non-IP packets are never cut off.
	arp := eth(0x0806, pad(nil, 28))
	for range 20 {
		if runFrame(t, objs.Prefilter, arp) == 0 {
			t.Fatal("ARP packet cut off")
		}
	}
}

func TestFlowCutoffBytes(t *testing.T) {
	objs := loadTest(t, Config{FlowCutoffBytes: 1000})
	f := eth(0x0800, ipv4(17, ip4A, ip4B, 0, nil, udp(1, 2, make([]byte, 300-42))))
	var kept []int
	for seq := range 10 {
		if runFrame(t, objs.Prefilter, f) != 0 {
			kept = append(kept, seq)
		}
	}
	// 300-byte packets: kept while fewer than 1000 bytes went before (0, 300, 600, 900).
	if len(kept) != 4 || kept[3] != 3 {
		t.Errorf("kept packets %v, want the first 4", kept)
	}
	if st := readStats(t, objs); st.FlowsCutOff != (Counter{6, 1800}) {
		t.Errorf("cut off %+v, want 6 packets, 1800 bytes", st.FlowsCutOff)
	}
}

func TestFilterThenCutoff(t *testing.T) {
	// Only UDP passes the filter; the cutoff counts only what passed.
	prog := handFilterUDP()
	objs := loadTest(t, Config{Filter: prog, FlowCutoffPackets: 2})
	tcpF := flowFrame(0, 0)
	udpF := flowFrame(2, 0)
	var got []uint32
	for range 3 {
		got = append(got, runFrame(t, objs.Prefilter, tcpF), runFrame(t, objs.Prefilter, udpF))
	}
	want := []uint32{0, defaultSnaplen, 0, defaultSnaplen, 0, 0}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("verdicts %v, want %v", got, want)
		}
	}
	st := readStats(t, objs)
	if st.FilteredOut.Packets != 3 || st.FlowsCutOff.Packets != 1 {
		t.Errorf("filtered out %d, cut off %d; want 3, 1", st.FilteredOut.Packets, st.FlowsCutOff.Packets)
	}
}

// handFilterUDP is 'udp' for IPv4 and IPv6, without fragments' subtleties.
func handFilterUDP() []unix.SockFilter {
	return []unix.SockFilter{
		stmt(ldH, 12), jump(jK|jJEQ, 0x86dd, 0, 2), stmt(ldB, 20), jump(jK|jJEQ, 17, 3, 4),
		jump(jK|jJEQ, 0x0800, 0, 3), stmt(ldB, 23), jump(jK|jJEQ, 17, 0, 1),
		stmt(retk, 262144), stmt(retk, 0),
	}
}

func TestSampling(t *testing.T) {
	objs := loadTest(t, Config{Sample: 10})
	const n = 100000
	f := flowFrame(0, 0)
	if _, err := objs.Prefilter.Run(&ebpf.RunOptions{Data: testInput(f), Repeat: n}); err != nil {
		t.Fatal(err)
	}
	st := readStats(t, objs)
	kept := float64(st.Packets - st.SampledOut.Packets)
	mean, sigma := n*0.1, math.Sqrt(n*0.1*0.9)
	t.Logf("kept %.0f of %d (expected %.0f ± %.0f at 5 sigma)", kept, st.Packets, mean, 5*sigma)
	if st.Packets != n || math.Abs(kept-mean) > 5*sigma {
		t.Errorf("kept %.0f of %d, want %d within %.0f", kept, st.Packets, int(mean), 5*sigma)
	}
}

func TestSnaplen(t *testing.T) {
	f := flowFrame(0, 0)
	for _, c := range []struct {
		name string
		cfg  Config
		want uint32
	}{
		{"no filter, default", Config{}, defaultSnaplen},
		{"no filter, 96", Config{Snaplen: 96}, 96},
		{"filter verdict above snaplen", Config{Snaplen: 96, Filter: []unix.SockFilter{stmt(retk, 262144)}}, 96},
		{"filter verdict below snaplen", Config{Snaplen: 96, Filter: []unix.SockFilter{stmt(retk, 64)}}, 64},
		{"filter rejects", Config{Snaplen: 96, Filter: []unix.SockFilter{stmt(retk, 0)}}, 0},
		// RET A is capped by the translation's own compare, not a constant.
		{"filter A above snaplen", Config{Snaplen: 96, Filter: []unix.SockFilter{stmt(ldImm, 97), stmt(reta, 0)}}, 96},
		{"filter A at snaplen", Config{Snaplen: 96, Filter: []unix.SockFilter{stmt(ldImm, 96), stmt(reta, 0)}}, 96},
		{"filter A below snaplen", Config{Snaplen: 96, Filter: []unix.SockFilter{stmt(ldLen, 0), stmt(reta, 0)}}, uint32(len(f))},
		{"filter A with the top bit set", Config{Snaplen: 96, Filter: []unix.SockFilter{stmt(ldImm, 0x80000000), stmt(reta, 0)}}, 96},
		{"filter A rejects", Config{Snaplen: 96, Filter: []unix.SockFilter{stmt(ldImm, 0), stmt(reta, 0)}}, 0},
		{"sample 1 is off", Config{Snaplen: 200, Sample: 1}, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := loadTest(t, c.cfg)
			if got := runFrame(t, objs.Prefilter, f); got != c.want {
				t.Errorf("returned %d, want %d", got, c.want)
			}
		})
	}
}

// TestVariants loads each build of prefilter.c (read in place or a copy,
// cutoff on or off, sampling on or off) and checks that its switches do
// what they say: with the cutoff, a flow's second packet is cut off; with
// sampling at 1 in 2, some of 200 packets are sampled out and some kept.
func TestVariants(t *testing.T) {
	needBPF(t)
	for _, direct := range []bool{true, false} {
		for _, cutoff := range []uint64{0, 1} {
			for _, sample := range []uint32{0, 2} {
				name := variantName(direct, cutoff > 0, sample > 1)
				t.Run(name, func(t *testing.T) {
					p, err := New(Config{FlowCutoffPackets: cutoff, Sample: sample})
					if err != nil {
						t.Fatal(err)
					}
					spec, err := newSpec(p.cfg, direct)
					if err != nil {
						t.Fatal(err)
					}
					if got := spec.Programs["prefilter"].Name; got != name {
						t.Fatalf("loaded %s, want %s", got, name)
					}
					var objs objects
					if err := loadObjects(spec, 14, false, &objs); err != nil {
						t.Fatal(err)
					}
					defer objs.Close()
					kept := 0
					for seq := range 200 {
						flow := seq // a new flow each time, but for the second packet
						if seq == 1 {
							flow = 0
						}
						if runFrame(t, objs.Prefilter, flowFrame(flow, 0)) != 0 {
							kept++
						}
					}
					st := readStats(t, &objs)
					if st.Packets != 200 {
						t.Errorf("counted %d packets, want 200", st.Packets)
					}
					if want := uint64(cutoff); st.FlowsCutOff.Packets != want {
						t.Errorf("%d packets cut off, want %d", st.FlowsCutOff.Packets, want)
					}
					switch {
					case sample == 0 && st.SampledOut.Packets != 0:
						t.Errorf("%d packets sampled out with sampling off", st.SampledOut.Packets)
					case sample > 1 && (st.SampledOut.Packets < 50 || st.SampledOut.Packets > 150):
						t.Errorf("%d of 200 packets sampled out at 1 in 2", st.SampledOut.Packets)
					}
					if want := 200 - int(st.FlowsCutOff.Packets+st.SampledOut.Packets); kept != want {
						t.Errorf("%d packets kept, want %d", kept, want)
					}
				})
			}
		}
	}
}
