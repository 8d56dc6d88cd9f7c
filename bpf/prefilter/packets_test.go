package prefilter

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Frames for the tests, built by hand so that truncation and odd headers are
// exactly what the case says.

var (
	macA = []byte{0x02, 0, 0, 0, 0, 0x0a}
	macB = []byte{0x02, 0, 0, 0, 0, 0x0b}
	ip4A = []byte{198, 18, 0, 1}
	ip4B = []byte{198, 18, 0, 2}
	ip6A = []byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}
	ip6B = []byte{0x20, 0x01, 0x0d, 0xb8, 15: 2}
)

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func eth(etype uint16, payload []byte) []byte {
	return cat(macB, macA, be16(etype), payload)
}

// vlanTag is an 802.1Q/802.1ad tag as it sits in the data: TPID was the
// previous ethertype field, so this is TCI then the next ethertype.
func vlanTag(tci, next uint16) []byte { return cat(be16(tci), be16(next)) }

func ipv4(proto byte, src, dst []byte, fragOff uint16, opts []byte, payload []byte) []byte {
	h := make([]byte, 20)
	h[0] = 0x40 | byte((20+len(opts))/4)
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(opts)+len(payload)))
	binary.BigEndian.PutUint16(h[6:], fragOff)
	h[8], h[9] = 64, proto
	copy(h[12:], src)
	copy(h[16:], dst)
	return cat(h, opts, payload)
}

func ipv6(next byte, src, dst []byte, payload []byte) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6], h[7] = next, 64
	copy(h[8:], src)
	copy(h[24:], dst)
	return cat(h, payload)
}

// ext6 is an IPv6 extension header of 8 bytes (hop-by-hop, routing, dstopts).
func ext6(next byte) []byte { return []byte{next, 0, 1, 4, 0, 0, 0, 0} }

func frag6(next byte, off uint16) []byte {
	return cat([]byte{next, 0}, be16(off<<3), []byte{0, 0, 0, 1})
}

func tcp(sport, dport uint16, flags byte, payload []byte) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	h[12], h[13] = 5<<4, flags
	return cat(h, payload)
}

func udp(sport, dport uint16, payload []byte) []byte {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(8+len(payload)))
	return cat(h, payload)
}

func icmpEcho() []byte { return []byte{8, 0, 0, 0, 0, 1, 0, 1} }

func pad(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	return append(b, make([]byte, n-len(b))...)
}

// supported is Supported, asked once: it loads the program, which takes a
// while.
var supported = sync.OnceValue(Supported)

// needBPF skips the test when this process may not load eBPF, unless
// CI=true or we are root, where the prefilter must work.
func needBPF(t testing.TB) {
	t.Helper()
	err := supported()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" || os.Geteuid() == 0 || !errors.Is(err, unix.EPERM) {
		t.Fatal(err)
	}
	t.Skipf("cannot load eBPF here: %v", err)
}

// loadTest loads the program for cfg as Attach would for an Ethernet
// interface, without a socket, reading packets in place.
func loadTest(t testing.TB, cfg Config) *objects {
	t.Helper()
	needBPF(t)
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var objs objects
	if err := loadObjects(p.spec, 14, false, &objs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	return &objs
}

// loadTestCopy is loadTest for the program that copies the first bytes of
// each packet, the fallback for kernels that cannot give them in place.
func loadTestCopy(t testing.TB, cfg Config) *objects {
	t.Helper()
	needBPF(t)
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := newSpec(p.cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	var objs objects
	if err := loadObjects(spec, 14, false, &objs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	return &objs
}

// loaders are both ways the program reads packets.
var loaders = []struct {
	name string
	load func(testing.TB, Config) *objects
}{{"in place", loadTest}, {"copy", loadTestCopy}}

// testInput wraps frame for BPF_PROG_TEST_RUN. For socket filters the kernel
// treats the first 14 bytes as an Ethernet header it pulls off (eth_type_trans)
// and runs the program on the rest, as a packet socket's filter runs on what
// follows the headers it pushed back. So the frame goes behind a copy of its
// own Ethernet header: the program sees exactly the frame, with
// skb->protocol set from its ethertype.
func testInput(frame []byte) []byte {
	in := make([]byte, 14, 14+len(frame))
	if len(frame) >= 14 {
		copy(in[12:14], frame[12:14])
	}
	return append(in, frame...)
}

// testRunnable reports whether BPF_PROG_TEST_RUN takes frame: it refuses
// IPv4 frames shorter than 20 bytes and IPv6 ones shorter than 40 (it reads
// their addresses), and anything that does not fit a page.
func testRunnable(frame []byte) bool {
	if len(frame) < 14 || len(frame) > 3000 {
		return false
	}
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		return len(frame) >= 20
	case 0x86dd:
		return len(frame) >= 40
	}
	return true
}

func runFrame(t testing.TB, prog *ebpf.Program, frame []byte) uint32 {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: testInput(frame)})
	if err != nil {
		t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	return ret
}

func readStats(t testing.TB, objs *objects) InterfaceStats {
	t.Helper()
	var perCPU []prefilterStats
	if err := objs.StatsMap.Lookup(uint32(0), &perCPU); err != nil {
		t.Fatal(err)
	}
	var st InterfaceStats
	st.add(perCPU)
	return st
}

// sub returns a - b field by field.
func (a InterfaceStats) sub(b InterfaceStats) InterfaceStats {
	d := func(x, y Counter) Counter { return Counter{x.Packets - y.Packets, x.Bytes - y.Bytes} }
	return InterfaceStats{
		Packets: a.Packets - b.Packets, Bytes: a.Bytes - b.Bytes,
		L3:     L3Stats{d(a.L3.IPv4, b.L3.IPv4), d(a.L3.IPv6, b.L3.IPv6), d(a.L3.ARP, b.L3.ARP), d(a.L3.Other, b.L3.Other)},
		L4:     L4Stats{d(a.L4.TCP, b.L4.TCP), d(a.L4.UDP, b.L4.UDP), d(a.L4.ICMP, b.L4.ICMP), d(a.L4.Other, b.L4.Other)},
		TCPSyn: d(a.TCPSyn, b.TCPSyn), TCPRst: d(a.TCPRst, b.TCPRst), TCPFin: d(a.TCPFin, b.TCPFin),
		FilteredOut: d(a.FilteredOut, b.FilteredOut), FlowsCutOff: d(a.FlowsCutOff, b.FlowsCutOff),
		SampledOut: d(a.SampledOut, b.SampledOut),
	}
}
