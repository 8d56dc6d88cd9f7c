// Package prefilter is sonde's eBPF socket filter (--prefilter ebpf): one
// BPF_PROG_TYPE_SOCKET_FILTER program per interface, attached with
// SO_ATTACH_BPF to each of its capture sockets in place of the classic filter.
//
// Packets enter from the kernel: for each one a socket sees, the program counts
// it by class before any filtering, runs the user's filter (a classic BPF
// program translated to eBPF here, see translate.go), optionally keeps only
// the first packets or bytes of each flow and samples 1 in N of what passed,
// and returns the number of bytes to keep, so the kernel truncates before it
// copies. Counters leave through Stats, read from per-CPU maps at scrape time.
//
// Cost per packet over an empty socket filter, on the development VM (see
// BenchmarkPrefilter): 6-9 ns to count, 12-14 ns (fastest chunks) to count
// and run a 5-term tcpdump filter that accepts the packet.
//
// The C half is prefilter.c; `go generate` rebuilds prefilter_bpfel.{go,o}
// (needs clang, llvm and libbpf-dev), which are committed so that building
// sonde needs no C toolchain.
package prefilter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// Config says what the prefilter does besides counting.
type Config struct {
	// Snaplen is the most bytes kept of each packet; 0 means 262144.
	Snaplen uint32
	// Filter is a classic BPF program returning 0 to reject a packet or the
	// number of bytes to keep, as a compiled tcpdump expression does. nil
	// accepts every packet.
	Filter []unix.SockFilter
	// FlowCutoffPackets and FlowCutoffBytes keep only the first packets, or
	// the packets while fewer than that many bytes went before them, of each
	// IPv4/IPv6 flow (both directions together); 0 turns either off. Non-IP
	// packets are never cut off.
	FlowCutoffPackets, FlowCutoffBytes uint64
	// Sample keeps 1 in Sample of the packets that passed the filter and the
	// cutoff, at random; 0 or 1 keeps all.
	Sample uint32
	// MaxFlows is how many flows the cutoff tracks before it forgets the
	// least recently seen (whose later packets then count as a new flow);
	// 0 means 65536.
	MaxFlows uint32
	// RunTimeStats turns on the kernel's BPF run-time statistics
	// (BPF_STATS_RUN_TIME) while the prefilter is loaded, so that Stats
	// reports RunTime and RunCount. It is host-wide: every BPF program on
	// the host then pays for two clock reads per run. Off by default.
	RunTimeStats bool
}

const (
	defaultSnaplen  = 262144
	defaultMaxFlows = 65536
)

// Counter is a number of packets and their bytes (as the socket saw them,
// before truncation).
type Counter struct {
	Packets, Bytes uint64
}

// L3Stats counts packets by network protocol. VLAN tags are looked through.
type L3Stats struct {
	IPv4, IPv6, ARP, Other Counter
}

// L4Stats counts packets by transport protocol. Other holds everything else,
// non-IP packets and IP packets too short to name their protocol included, so
// each of L3 and L4 adds up to everything seen. IPv6 extension headers are
// walked up to four deep.
type L4Stats struct {
	TCP, UDP, ICMP, Other Counter // ICMP includes ICMPv6
}

// InterfaceStats are one interface's running totals over all its sockets and
// CPUs.
type InterfaceStats struct {
	Interface string
	// Packets and Bytes count everything the sockets saw, before filtering.
	Packets, Bytes uint64
	L3             L3Stats
	L4             L4Stats
	// TCP segments with SYN (SYN-ACK included), RST or FIN set.
	TCPSyn, TCPRst, TCPFin Counter
	// Why packets did not reach the ring: the filter rejected them, their
	// flow was past the cutoff, or sampling left them out.
	FilteredOut, FlowsCutOff, SampledOut Counter
	// RunTime and RunCount are the kernel's statistics for the program,
	// zero unless Config.RunTimeStats is set (and the kernel agreed).
	RunTime  time.Duration
	RunCount uint64
	// InPlace is true when the program reads packets in place; false when
	// the kernel cannot give it the packet data and it copies the first
	// bytes of each packet instead (slower).
	InPlace bool
}

// Prefilter loads one program per interface on first Attach and keeps its maps
// for Stats.
type Prefilter struct {
	cfg  Config
	spec *ebpf.CollectionSpec // everything set but the link-layer header length

	mu      sync.Mutex
	ifaces  []*ifaceProg
	statsOn io.Closer // keeps BPF_STATS_RUN_TIME on while we live; nil if off or refused
	tried   bool      // stats enabling attempted
}

type ifaceProg struct {
	name     string
	l2len    uint32
	loopback bool
	inPlace  bool
	objs     objects
}

// New checks cfg and prepares the program (translating the filter); it loads
// nothing into the kernel.
func New(cfg Config) (*Prefilter, error) {
	if cfg.Snaplen == 0 {
		cfg.Snaplen = defaultSnaplen
	}
	if cfg.MaxFlows == 0 {
		cfg.MaxFlows = defaultMaxFlows
	}
	spec, err := newSpec(cfg, true)
	if err != nil {
		return nil, err
	}
	return &Prefilter{cfg: cfg, spec: spec}, nil
}

// newSpec returns the collection with cfg's constants set and the filter
// spliced in, reading packets in place if direct, else from a copy.
func newSpec(cfg Config, direct bool) (*ebpf.CollectionSpec, error) {
	spec, err := loadPrefilter()
	if err != nil {
		return nil, fmt.Errorf("prefilter: parse embedded program: %w", err)
	}
	sample := cfg.Sample
	if sample == 1 {
		sample = 0
	}
	set := map[string]any{
		"cutoff_packets": cfg.FlowCutoffPackets,
		"cutoff_bytes":   cfg.FlowCutoffBytes,
		"sample":         sample,
	}
	for name, v := range set {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("prefilter: set %s: %w", name, err)
		}
	}
	spec.Maps["flows"].MaxEntries = cfg.MaxFlows
	// The variant with only what cfg turns on (prefilter.c), as "prefilter".
	name := variantName(direct, cfg.FlowCutoffPackets > 0 || cfg.FlowCutoffBytes > 0, sample > 1)
	prog := spec.Programs[name]
	if prog == nil {
		return nil, fmt.Errorf("prefilter: no program %s in the embedded object", name)
	}
	for n := range spec.Programs {
		delete(spec.Programs, n)
	}
	spec.Programs["prefilter"] = prog
	// The verdict is the filter's, capped at the snaplen; without a filter,
	// the snaplen itself.
	if prog.Instructions, err = inline(prog.Instructions, "user_filter", func(frame int16) (asm.Instructions, error) {
		if cfg.Filter == nil {
			return asm.Instructions{asm.Mov.Imm32(asm.R0, int32(cfg.Snaplen))}, nil
		}
		return translateFor(cfg.Filter, layout{frame: frame, direct: direct, snaplen: cfg.Snaplen})
	}); err != nil {
		return nil, fmt.Errorf("prefilter: filter: %w", err)
	}
	return spec, nil
}

// variantName names the build of prefilter.c for a configuration: reading
// packets in place or a copy, with a flow cutoff or not, sampling or not.
func variantName(direct, cutoff, sampling bool) string {
	return fmt.Sprintf("prefilter_%d%d%d", btoi(direct), btoi(cutoff), btoi(sampling))
}

// objects is what one interface loads: the variant of the program its
// configuration needs, as "prefilter" (see newSpec), and the maps. The
// generated prefilterObjects would load every variant.
type objects struct {
	Prefilter *ebpf.Program `ebpf:"prefilter"`
	prefilterMaps
}

func (o *objects) Close() error {
	return errors.Join(o.Prefilter.Close(), o.prefilterMaps.Close())
}

// inline replaces the one call to the function sym in insns, whose fourth
// argument is a stack frame for it, with the body build returns for that
// frame's offset from R10, and drops sym's own instructions. The body must
// keep to the call's convention (arguments in R1-R5, result in R0, R6-R9 and
// the rest of the stack untouched) and fall through at its end.
func inline(insns asm.Instructions, sym string, build func(frame int16) (asm.Instructions, error)) (asm.Instructions, error) {
	call, fn, fnEnd := -1, -1, len(insns)
	for i, ins := range insns {
		switch {
		case ins.IsFunctionCall() && ins.Reference() == sym:
			if call >= 0 {
				return nil, fmt.Errorf("%s is called more than once", sym)
			}
			call = i
		case ins.Symbol() == sym:
			fn = i
		case fn >= 0 && fnEnd == len(insns) && i > fn && ins.Symbol() != "":
			fnEnd = i
		}
	}
	if call < 0 || fn < 0 || call > fn {
		return nil, fmt.Errorf("no call to %s in the program", sym)
	}
	// The frame: clang sets R4 = R10 + off just before the call.
	frame, ok := int16(0), false
	for i := call - 1; i > 0 && i >= call-8; i-- {
		ins := insns[i]
		if ins.Dst != asm.R4 || ins.OpCode.Class().IsJump() || ins.OpCode.Class() == asm.StXClass || ins.OpCode.Class() == asm.StClass {
			continue
		}
		prev := insns[i-1]
		if ins.OpCode == asm.Add.Op(asm.ImmSource) && prev.OpCode == asm.Mov.Op(asm.RegSource) &&
			prev.Dst == asm.R4 && prev.Src == asm.R10 && ins.Constant <= -8*frameWords && ins.Constant%8 == 0 {
			frame, ok = int16(ins.Constant), true
		}
		break
	}
	if !ok {
		return nil, fmt.Errorf("cannot find the stack frame passed to %s", sym)
	}
	body, err := build(frame)
	if err != nil {
		return nil, err
	}
	// Raw jump offsets across the call grow by the body's length.
	grow := 0
	for _, ins := range body {
		grow += int(ins.Size() / asm.InstructionSize)
	}
	grow--
	pos := make([]int, fn+1) // raw slot of each instruction
	for i := 1; i <= fn; i++ {
		pos[i] = pos[i-1] + int(insns[i-1].Size()/asm.InstructionSize)
	}
	at := pos[call]
	moved := func(slot int) int {
		if slot > at {
			return slot + grow
		}
		return slot
	}
	out := make(asm.Instructions, 0, len(insns)+len(body))
	for i, ins := range insns[:fn] {
		if i == call {
			out = append(out, body[0].WithSource(ins.Source()))
			out = append(out, body[1:]...)
			continue
		}
		op := ins.OpCode
		if op.Class().IsJump() && op.JumpOp() != asm.Call && op.JumpOp() != asm.Exit && ins.Reference() == "" {
			from, to := pos[i]+1, pos[i]+1+int(ins.Offset)
			off := moved(to) - moved(from)
			if off > 0x7fff || off < -0x8000 {
				return nil, fmt.Errorf("jump too far after inlining %s", sym)
			}
			ins.Offset = int16(off)
		}
		out = append(out, ins)
	}
	return append(out, insns[fnEnd:]...), nil
}

// Attach implements capture.Filter: the first call for an interface loads
// its program and maps; every call attaches the program to fd.
func (p *Prefilter) Attach(iface string, fd int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ip, err := p.load(iface, fd)
	if err != nil {
		return err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_BPF, ip.objs.Prefilter.FD()); err != nil {
		return fmt.Errorf("prefilter: attach to socket on %q: %w", iface, err)
	}
	return nil
}

func (p *Prefilter) load(iface string, fd int) (*ifaceProg, error) {
	l2len, loopback, err := linkHeader(fd)
	if err != nil {
		return nil, fmt.Errorf("prefilter: %q: %w", iface, err)
	}
	for _, ip := range p.ifaces {
		if ip.name == iface {
			if ip.l2len != l2len || ip.loopback != loopback {
				return nil, fmt.Errorf("prefilter: %q: sockets disagree on the link-layer header", iface)
			}
			return ip, nil
		}
	}
	if p.cfg.RunTimeStats && !p.tried {
		p.tried = true
		// Run time statistics cost two clock reads per packet for every
		// BPF program on the host while enabled; refusal just leaves them 0.
		p.statsOn, _ = ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	}
	ip := &ifaceProg{name: iface, l2len: l2len, loopback: loopback}
	if ip.inPlace, err = loadEither(p.cfg, p.spec, l2len, loopback, &ip.objs); err != nil {
		return nil, fmt.Errorf("prefilter: load for %q: %w", iface, err)
	}
	p.ifaces = append(p.ifaces, ip)
	return ip, nil
}

// loadEither loads spec, which reads packets in place, or if the kernel
// refuses it (no bpf_cast_to_kern_ctx/bpf_rdonly_cast to void, or no BTF)
// cfg's program that reads a copy of them.
func loadEither(cfg Config, spec *ebpf.CollectionSpec, l2len uint32, loopback bool, objs *objects) (inPlace bool, err error) {
	if err = loadObjects(spec, l2len, loopback, objs); err == nil {
		return true, nil
	}
	cp, err2 := newSpec(cfg, false)
	if err2 == nil {
		err2 = loadObjects(cp, l2len, loopback, objs)
	}
	if err2 != nil {
		return false, fmt.Errorf("%w (and reading a copy: %v)", err, err2)
	}
	return false, nil
}

// loadObjects loads spec for a socket whose network header starts at l2len
// and which, on loopback, sees each packet twice (then the outgoing copy is
// rejected before it is counted).
func loadObjects(spec *ebpf.CollectionSpec, l2len uint32, loopback bool, objs *objects) error {
	spec = spec.Copy()
	if err := spec.Variables["l2_len"].Set(l2len); err != nil {
		return err
	}
	if err := spec.Variables["skip_outgoing"].Set(uint32(btoi(loopback))); err != nil {
		return err
	}
	prog := spec.Programs["prefilter"]
	prog.Instructions = foldConstants(prog.Instructions, spec.Variables)
	err := spec.LoadAndAssign(objs, nil)
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w (verifier log tail: %v)", err, tail(ve.Log, 8))
	}
	return err
}

// foldConstants turns each read of a constant (volatile const, in .rodata)
// into its value, so that the verifier knows it: branches on a feature that
// is off are then dead and removed, and the program pays nothing for it, not
// even the test. clang reads a constant as
//
//	rX = map_value(.rodata, off) ll  (two slots)
//	rX = *(uN *)(rX + 0)
//
// which becomes rX = value ll and a no-op (ja +0, which the verifier drops),
// keeping every slot, so no jump moves.
func foldConstants(insns asm.Instructions, vars map[string]*ebpf.VariableSpec) asm.Instructions {
	type key struct {
		section string
		off     uint32
	}
	consts := map[key]*ebpf.VariableSpec{}
	for _, v := range vars {
		if v.Constant() {
			consts[key{v.SectionName, v.Offset}] = v
		}
	}
	out := slices.Clone(insns)
	for i := 0; i+1 < len(out); i++ {
		ld, rd := out[i], out[i+1]
		if !ld.IsLoadFromMap() || ld.Src != asm.PseudoMapValue || rd.OpCode.Class() != asm.LdXClass ||
			rd.OpCode.Mode() != asm.MemMode || rd.Src != ld.Dst || rd.Dst != ld.Dst || rd.Offset != 0 {
			continue
		}
		v := consts[key{ld.Reference(), uint32(uint64(ld.Constant) >> 32)}]
		size := rd.OpCode.Size()
		if v == nil || len(v.Value) != size.Sizeof() {
			continue
		}
		var val uint64
		switch size {
		case asm.Byte:
			val = uint64(v.Value[0])
		case asm.Half:
			val = uint64(binary.NativeEndian.Uint16(v.Value))
		case asm.Word:
			val = uint64(binary.NativeEndian.Uint32(v.Value))
		case asm.DWord:
			val = binary.NativeEndian.Uint64(v.Value)
		default:
			continue
		}
		out[i] = asm.LoadImm(ld.Dst, int64(val), asm.DWord).WithMetadata(ld.Metadata).WithReference("")
		out[i+1] = withOff(ja(), 0).WithSource(rd.Source())
		i++
	}
	return out
}

func tail(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// linkHeader is where the network header starts in what the packet socket
// fd sees, from the device type it is bound to (as capture maps it), and
// whether that device is a loopback.
func linkHeader(fd int) (l2len uint32, loopback bool, err error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, false, fmt.Errorf("read the socket's bound address: %w", err)
	}
	ll, ok := sa.(*unix.SockaddrLinklayer)
	if !ok {
		return 0, false, fmt.Errorf("not a packet socket (bound address %T)", sa)
	}
	switch ll.Hatype {
	case unix.ARPHRD_ETHER:
		return 14, false, nil
	case unix.ARPHRD_LOOPBACK:
		return 14, true, nil
	case unix.ARPHRD_NONE:
		return 0, false, nil
	}
	return 0, false, fmt.Errorf("link type ARPHRD %d is not supported (Ethernet, loopback and raw IP are)", ll.Hatype)
}

// Stats reads every interface's counters, summed over CPUs. An interface
// whose maps cannot be read is reported with zeros rather than failing the
// whole scrape.
func (p *Prefilter) Stats() []InterfaceStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]InterfaceStats, 0, len(p.ifaces))
	for _, ip := range p.ifaces {
		st := InterfaceStats{Interface: ip.name, InPlace: ip.inPlace}
		var perCPU []prefilterStats
		if err := ip.objs.StatsMap.Lookup(uint32(0), &perCPU); err == nil {
			st.add(perCPU)
		}
		if p.statsOn != nil {
			if ps, err := ip.objs.Prefilter.Stats(); err == nil {
				st.RunTime, st.RunCount = ps.Runtime, ps.RunCount
			}
		}
		out = append(out, st)
	}
	return out
}

// The TCP flag bits of a class slot, and how many combinations of them
// (CLS_* in prefilter.c).
const (
	clsFin, clsSyn, clsRst = 1, 2, 4
	clsFlags               = 8
)

func (st *InterfaceStats) add(perCPU []prefilterStats) {
	add := func(c *Counter, v prefilterCounter) {
		c.Packets += v.Packets
		c.Bytes += v.Bytes
	}
	l3 := []*Counter{&st.L3.IPv4, &st.L3.IPv6, &st.L3.ARP, &st.L3.Other}
	l4 := []*Counter{&st.L4.TCP, &st.L4.UDP, &st.L4.ICMP, &st.L4.Other}
	for _, s := range perCPU {
		// Every packet is in exactly one class slot (prefilter.c: struct
		// stats): index (l3*len(l4) + l4)*8 + its TCP FIN|SYN|RST bits.
		for i, v := range s.Cls {
			flags := i % clsFlags
			add(l3[i/clsFlags/len(l4)], v)
			add(l4[i/clsFlags%len(l4)], v)
			if flags&clsSyn != 0 {
				add(&st.TCPSyn, v)
			}
			if flags&clsRst != 0 {
				add(&st.TCPRst, v)
			}
			if flags&clsFin != 0 {
				add(&st.TCPFin, v)
			}
			st.Packets += v.Packets
			st.Bytes += v.Bytes
		}
		add(&st.FilteredOut, s.FilteredOut)
		add(&st.FlowsCutOff, s.CutOff)
		add(&st.SampledOut, s.SampledOut)
	}
}

// Close releases the programs and maps. Sockets the program is attached to
// keep it running until they close.
func (p *Prefilter) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, ip := range p.ifaces {
		errs = append(errs, ip.objs.Close())
	}
	p.ifaces = nil
	if p.statsOn != nil {
		errs = append(errs, p.statsOn.Close())
		p.statsOn = nil
	}
	return errors.Join(errs...)
}

// Supported reports whether this process can load the prefilter: nil if so,
// otherwise an error saying why, for a one-line log before falling back to
// the classic filter. It loads the real program (with a filter, so the
// translated path is checked too) and unloads it.
func Supported() error {
	cfg := Config{
		Snaplen: defaultSnaplen, MaxFlows: 1, FlowCutoffPackets: 1, Sample: 2,
		Filter: []unix.SockFilter{{Code: 0x28, K: 12}, {Code: 0x06, K: 1}}, // ldh [12]; ret #1
	}
	spec, err := newSpec(cfg, true)
	if err != nil {
		return err
	}
	var objs objects
	if _, err := loadEither(cfg, spec, 14, false, &objs); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("eBPF prefilter unavailable: loading a socket filter needs CAP_BPF and CAP_PERFMON (or root): %w", err)
		}
		return fmt.Errorf("eBPF prefilter unavailable: %w", err)
	}
	return objs.Close()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
