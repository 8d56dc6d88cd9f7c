package prefilter

import (
	"errors"
	"fmt"
	"maps"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// The translation of a classic BPF program takes the place of prefilter.c's
// call to user_filter(skb, p, avail, frame): it is spliced inline into the
// program (see inline in prefilter.go), so it pays for no bpf-to-bpf call and
// the verifier checks it with the caller's register types. It follows the
// kernel's own classic-to-eBPF conversion (net/core/filter.c, which is what
// runs a classic filter today), whose loads read the linear data directly
// when it holds the bytes and call a helper otherwise; so verdicts are the
// same bit for bit. It keeps to the calling convention of the call it
// replaces: it reads R1-R4, clobbers only R0-R5 and the frame the caller gave
// it, and leaves the verdict in R0.
//
//	A  -> R0 (RET A leaves it as the verdict)
//	R1 = skb, R2 = p (packet bytes), R3 = avail (bytes readable at p)
//	X  -> R4, R5 scratch
//	M[0..15], spills and saved loads -> the caller's frame (R10 + frame offset)
//
// Every value is kept zero-extended to 64 bits (32-bit ALU, 32-bit jumps).
// A load of bytes within avail is one memory load; anything else (data past
// the linear part, past a short packet) calls bpf_skb_load_bytes, with R1-R3
// saved in the frame just before and R1-R4 reloaded after. Those slow paths
// are placed after the whole body, so the fast path runs straight through
// and stores nothing. A load that repeats one made on every path to it (same
// offset, X unchanged) reads the value saved then (see reuse). A load beyond
// the packet makes the verdict 0, which rejects the packet as in classic BPF;
// so does division or modulo by X == 0. The eBPF verifier refuses
// unreachable code, so unreachable classic instructions are left out.
//
// The caller guarantees avail >= min(skb->len, cacheLen): p holds the first
// cacheLen bytes, or the whole packet if shorter (prefilter.c takes the
// linear data only then, and copies that much otherwise). So the body starts
// with one check, avail >= min(required(prog), cacheLen), that rejects a
// packet shorter than every accepting path reads (see required), and loads
// within that length then need no check of their own: a 5-term tcpdump
// filter makes one length check instead of six. Should the copy fail, which
// skb_copy_bits does only for a broken skb, avail is 0 and that check
// rejects the packet, as the kernel's own classic loads would.
//
// p is either the skb's linear data itself (direct) or, when the kernel cannot
// give it or the first cacheLen bytes are not linear, a per-CPU copy of the
// first avail <= cacheLen bytes; loads past cacheLen then always take the
// helper, so that the verifier sees every load of the copy inside it.

const (
	cacheLen                       = 128 // CACHE_LEN in prefilter.c
	frameWords                     = 24  // FILTER_FRAME_WORDS in prefilter.c
	fSkb, fP, fAvail, fX, fA       = 0, 8, 16, 24, 32
	fLoad                          = 40        // bpf_skb_load_bytes writes here
	fMem                           = 48        // M[k] at fMem + 4k, up to 112
	fReuse                         = 112       // saved packet loads (see reuse), 4 bytes each, to the frame's end
	maxDirect                      = 0x7fff    // loads ending past this always take the helper
	skfNetOff                      = -0x100000 // SKF_NET_OFF
	skfLLOff                       = -0x200000 // SKF_LL_OFF
	bpfHdrStartMAC, bpfHdrStartNet = 0, 1
	maxInsns                       = 4096
	skfAdOff                       = 0xfffff000 // SKF_AD_OFF as a uint32
	skbLen                         = 0          // offsetof(struct __sk_buff, len)
	skbPkt                         = 4          // pkt_type
	skbMark                        = 8          // mark
	skbQueue                       = 12         // queue_mapping
	skbProto                       = 16         // protocol
	skbVlanP                       = 20         // vlan_present
	skbVlanT                       = 24         // vlan_tci
	skbVlanTP                      = 28         // vlan_proto
	skbIfidx                       = 40         // ifindex
	skbHash                        = 68         // hash
)

const (
	regA     = asm.R0
	regSkb   = asm.R1
	regP     = asm.R2
	regAvail = asm.R3
	regX     = asm.R4
	regTmp   = asm.R5
)

// layout is where the translation runs: the caller's frame and whether p is
// the linear data (direct) or the copy.
type layout struct {
	frame  int16 // offset of the frame from R10
	direct bool
	// sure is how many bytes at p the prologue has checked are readable:
	// packet loads ending within it need no check of their own.
	sure uint32
	// snaplen caps every verdict (the kernel keeps at most that many bytes);
	// 0 leaves verdicts as the program returns them.
	snaplen uint32
}

// classic BPF opcode fields (linux/filter.h, linux/bpf_common.h).
const (
	clsLD, clsLDX, clsST, clsSTX, clsALU, clsJMP, clsRET, clsMISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07

	szW, szH, szB = 0x00, 0x08, 0x10

	mIMM, mABS, mIND, mMEM, mLEN, mMSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xa0

	srcX = 0x08

	jJA, jJEQ, jJGT, jJGE, jJSET = 0x00, 0x10, 0x20, 0x30, 0x40

	retK, retA = 0x00, 0x10

	miscTAX, miscTXA = 0x00, 0x80
)

var aluOps = map[uint16]asm.ALUOp{
	0x00: asm.Add, 0x10: asm.Sub, 0x20: asm.Mul, 0x30: asm.Div, 0x40: asm.Or,
	0x50: asm.And, 0x60: asm.LSh, 0x70: asm.RSh, 0x80: asm.Neg, 0x90: asm.Mod, 0xa0: asm.Xor,
}

// Ancillary loads (SKF_AD_*) that have an eBPF equivalent, by offset.
var ancillaryFields = map[uint32]int16{
	0: skbProto, 4: skbPkt, 8: skbIfidx, 20: skbMark, 24: skbQueue, 32: skbHash,
	44: skbVlanT, 48: skbVlanP, 60: skbVlanTP,
}

const (
	adCPU, adRandom, adXorX                       = 36, 56, 40
	adHatype, adNlattr, adNlattrNest, adPayOffset = 28, 12, 16, 52
)

// slot is the R10 offset of byte off of the frame.
func (l layout) slot(off int) int16 { return l.frame + int16(off) }

func (l layout) memOff(k uint32) int16 { return l.slot(fMem + 4*int(k)) }

// block is the translation of one classic instruction. Jumps to other classic
// instructions (or to the end, index len(prog)) are recorded in fix and
// patched once every block's position is known; jumps inside a block carry
// their offset already.
type block struct {
	ins  []asm.Instruction
	fix  []jumpFix
	cold *block // out-of-line code (slow paths), placed after every block
}

type jumpFix struct {
	at     int // index in ins
	target int // classic instruction index; len(prog) is the end; or toCold, toMain
	local  int // with toMain, the index in the main block's ins
}

const (
	toCold = -1 // the start of the block's cold code
	toMain = -2 // from the cold code, back into the block at local
)

func (b *block) emit(ins ...asm.Instruction) { b.ins = append(b.ins, ins...) }

// toCold emits a conditional jump to the block's cold code; outOfLine fills
// it.
func (b *block) jumpCold(ins asm.Instruction) {
	b.fix = append(b.fix, jumpFix{at: len(b.ins), target: toCold})
	b.ins = append(b.ins, ins)
}

// outOfLine makes slow the block's cold code, which jumpCold reaches and
// which returns to what is emitted next, so that the fast path runs straight
// through with no taken jump.
func (b *block) outOfLine(slow block) {
	slow.fix = append(slow.fix, jumpFix{at: len(slow.ins), target: toMain, local: len(b.ins)})
	slow.ins = append(slow.ins, ja())
	b.cold = &slow
}

// jumpTo emits a jump that lands on classic instruction target.
func (b *block) jumpTo(ins asm.Instruction, target int) {
	b.fix = append(b.fix, jumpFix{at: len(b.ins), target: target})
	b.ins = append(b.ins, ins)
}

func ja() asm.Instruction { return asm.Instruction{OpCode: asm.Ja.Op(asm.ImmSource)} }

// withOff sets a jump's offset (in instructions, all of ours being one slot).
func withOff(ins asm.Instruction, off int) asm.Instruction {
	ins.Offset = int16(off)
	return ins.WithReference("")
}

func sizeOf(code uint16) (asm.Size, uint32) {
	switch code & 0x18 {
	case szH:
		return asm.Half, 2
	case szB:
		return asm.Byte, 1
	}
	return asm.Word, 4
}

// loadBE turns a value just loaded from the packet into host order, as
// classic BPF loads are big-endian.
func loadBE(b *block, size asm.Size) {
	if size != asm.Byte {
		b.emit(asm.HostTo(asm.BE, regA, size))
	}
}

// validate applies the kernel's checks for classic programs
// (bpf_check_classic and check_load_and_stores), so that a program the kernel
// would refuse as a classic filter is refused here too, with its position.
// It returns which instructions are reachable.
func validate(prog []unix.SockFilter) ([]bool, error) {
	if len(prog) == 0 {
		return nil, errors.New("empty program")
	}
	if len(prog) > maxInsns {
		return nil, fmt.Errorf("%d instructions, more than %d", len(prog), maxInsns)
	}
	stored := make([]uint16, len(prog)) // M[] slots written on every path to here
	reached := make([]bool, len(prog))
	for i := range stored {
		stored[i] = 0xffff
	}
	stored[0], reached[0] = 0, true
	flow := func(from, to int, mem uint16) error {
		if to >= len(prog) {
			return fmt.Errorf("instruction %d: jump past the end of the program", from)
		}
		if !reached[from] {
			return nil // checked, but reaches nothing
		}
		if reached[to] {
			stored[to] &= mem
		} else {
			reached[to], stored[to] = true, mem
		}
		return nil
	}
	for i, f := range prog {
		mem := stored[i]
		bad := func(what string) error {
			return fmt.Errorf("instruction %d (code %#04x k %d): %s", i, f.Code, f.K, what)
		}
		switch cls := f.Code & 0x07; cls {
		case clsLD, clsLDX:
			mode := f.Code & 0xe0
			valid := map[uint16]bool{
				clsLD | szW | mIMM: true, clsLD | szW | mABS: true, clsLD | szH | mABS: true, clsLD | szB | mABS: true,
				clsLD | szW | mIND: true, clsLD | szH | mIND: true, clsLD | szB | mIND: true,
				clsLD | szW | mMEM: true, clsLD | szW | mLEN: true,
				clsLDX | szW | mIMM: true, clsLDX | szW | mMEM: true, clsLDX | szW | mLEN: true, clsLDX | szB | mMSH: true,
			}
			if !valid[f.Code] {
				return nil, bad("unknown load")
			}
			if mode == mMEM {
				if f.K >= 16 {
					return nil, bad("scratch memory index out of range")
				}
				if reached[i] && mem&(1<<f.K) == 0 {
					return nil, bad("reads scratch memory that may not have been written")
				}
			}
		case clsST, clsSTX:
			if f.Code != clsST && f.Code != clsSTX {
				return nil, bad("unknown store")
			}
			if f.K >= 16 {
				return nil, bad("scratch memory index out of range")
			}
			mem |= 1 << f.K
		case clsALU:
			op := f.Code & 0xf0
			if _, ok := aluOps[op]; !ok || f.Code&^0xf8 != clsALU || (op == 0x80 && f.Code&srcX != 0) {
				return nil, bad("unknown ALU operation")
			}
			if f.Code&srcX == 0 {
				switch {
				case (op == 0x30 || op == 0x90) && f.K == 0:
					return nil, bad("division by constant zero")
				case (op == 0x60 || op == 0x70) && f.K >= 32:
					return nil, bad("shift by 32 or more")
				}
			}
		case clsJMP:
			op := f.Code & 0xf0
			if op > jJSET || f.Code&^0xf8 != clsJMP || (op == jJA && f.Code&srcX != 0) {
				return nil, bad("unknown jump")
			}
			if op == jJA && f.K >= uint32(len(prog)-i-1) {
				return nil, bad("jump past the end of the program")
			}
		case clsRET:
			if f.Code != clsRET|retK && f.Code != clsRET|retA {
				return nil, bad("unknown return")
			}
		case clsMISC:
			if f.Code != clsMISC|miscTAX && f.Code != clsMISC|miscTXA {
				return nil, bad("unknown misc operation")
			}
		}
		to, n := successors(i, f)
		for _, t := range to[:n] {
			if t == len(prog) && f.Code&0x07 != clsJMP {
				return nil, bad("program does not end with a return")
			}
			if err := flow(i, t, mem); err != nil {
				return nil, err
			}
		}
	}
	return reached, nil
}

// successors are the instructions control can go to after instruction i.
func successors(i int, f unix.SockFilter) (to [2]int, n int) {
	switch f.Code & 0x07 {
	case clsRET:
		return to, 0
	case clsJMP:
		if f.Code&0xf0 == jJA {
			return [2]int{i + 1 + int(f.K)}, 1
		}
		return [2]int{i + 1 + int(f.Jt), i + 1 + int(f.Jf)}, 2
	}
	return [2]int{i + 1}, 1
}

// translate returns the inline body for a classic program, for the default
// layout (direct reads, frame at R10-128); the tests use it to check what is
// refused.
func translate(prog []unix.SockFilter) (asm.Instructions, error) {
	return translateFor(prog, layout{frame: -8 * frameWords, direct: true})
}

// translateFor returns the inline body for a classic program run in l.
func translateFor(prog []unix.SockFilter, l layout) (asm.Instructions, error) {
	reached, err := validate(prog)
	if err != nil {
		return nil, err
	}
	var pro block
	pro.emit(asm.Mov.Imm32(regA, 0), asm.Mov.Imm32(regX, 0))
	// A packet shorter than every accepting path reads is rejected at once,
	// which is the verdict it would get anyway; past that check, loads
	// within those bytes cannot fail, and need no check.
	if r := required(prog, reached); r > 0 {
		l.sure = min(r, cacheLen)
		pro.jumpTo(asm.JLT.Imm(regAvail, int32(l.sure), ""), len(prog))
	}
	slots := reuse(prog, reached)
	blocks := make([]block, len(prog))
	for i, f := range prog {
		if !reached[i] {
			continue
		}
		if r := slots[i]; r.load {
			blocks[i].emit(asm.LoadMem(regA, asm.R10, l.slot(r.slot), asm.Word))
			continue
		}
		if err := l.translateOne(&blocks[i], i, len(prog), f); err != nil {
			return nil, fmt.Errorf("instruction %d (code %#04x k %d): %w", i, f.Code, f.K, err)
		}
		if r := slots[i]; r.store {
			blocks[i].emit(asm.StoreMem(asm.R10, l.slot(r.slot), regA, asm.Word))
		}
	}
	// Cold code goes after every block; without any, the last block's jump
	// to the end, if it ends with one, is a no-op.
	start := make([]int, len(prog)+1)
	coldStart := make([]int, len(prog))
	hasCold := false
	for i := range blocks {
		hasCold = hasCold || blocks[i].cold != nil
	}
	for i := len(blocks) - 1; i >= 0 && !hasCold; i-- {
		if b := &blocks[i]; len(b.ins) > 0 {
			if n := len(b.fix); n > 0 && b.fix[n-1].target == len(prog) && b.fix[n-1].at == len(b.ins)-1 {
				b.ins, b.fix = b.ins[:len(b.ins)-1], b.fix[:n-1]
			}
			break
		}
	}
	pos := len(pro.ins)
	for i := range blocks {
		start[i] = pos
		pos += len(blocks[i].ins)
	}
	for i := range blocks {
		if c := blocks[i].cold; c != nil {
			coldStart[i] = pos
			pos += len(c.ins)
		}
	}
	start[len(prog)] = pos
	out := make(asm.Instructions, 0, pos)
	patch := func(i int, b *block, at int) error {
		for _, fx := range b.fix {
			var to int
			switch fx.target {
			case toCold:
				to = coldStart[i]
			case toMain:
				to = start[i] + fx.local
			default:
				to = start[fx.target]
			}
			off := to - (at + fx.at + 1)
			if off > 0x7fff || off < -0x8000 {
				return fmt.Errorf("instruction %d: jump too far for eBPF", i)
			}
			b.ins[fx.at] = withOff(b.ins[fx.at], off)
		}
		return nil
	}
	if err := patch(-1, &pro, 0); err != nil {
		return nil, err
	}
	out = append(out, pro.ins...)
	for i := range blocks {
		if err := patch(i, &blocks[i], start[i]); err != nil {
			return nil, err
		}
		out = append(out, blocks[i].ins...)
	}
	for i := range blocks {
		if c := blocks[i].cold; c != nil {
			if err := patch(i, c, coldStart[i]); err != nil {
				return nil, err
			}
			out = append(out, c.ins...)
		}
	}
	return out, nil
}

// required returns how many bytes from the start of the packet every path to
// an accepting return reads with absolute loads (the least, over those
// paths, of the most each reads): a packet shorter than that is rejected
// whichever way it goes, by a load past its end or by a return of 0. Indexed
// and relative loads are left out, which only makes the figure smaller.
// Classic programs jump only forward, so one backward pass finds it.
func required(prog []unix.SockFilter, reached []bool) uint32 {
	const never = ^uint32(0) // no accepting return from here
	req := make([]uint32, len(prog)+1)
	req[len(prog)] = never
	for i := len(prog) - 1; i >= 0; i-- {
		f := prog[i]
		if !reached[i] {
			req[i] = never
			continue
		}
		if f.Code == clsRET|retK && f.K == 0 {
			req[i] = never
			continue
		}
		if f.Code&0x07 == clsRET {
			req[i] = 0
			continue
		}
		r := never
		to, n := successors(i, f)
		for _, t := range to[:n] {
			r = min(r, req[t])
		}
		var end uint32
		switch {
		case f.Code&0x07 == clsLD && f.Code&0xe0 == mABS && int32(f.K) >= 0:
			_, n := sizeOf(f.Code)
			end = f.K + n
		case f.Code == clsLDX|szB|mMSH && int32(f.K) >= 0:
			end = f.K + 1
		}
		if r != never {
			r = max(r, end)
		}
		req[i] = r
	}
	if req[0] == never {
		return 0 // never accepts; nothing to gain
	}
	return req[0]
}

// reject makes the verdict 0 and leaves the filter.
func reject(b *block, end int) {
	b.emit(asm.Mov.Imm32(regA, 0))
	b.jumpTo(ja(), end)
}

// fastLimit is how far into the packet a load may read p rather than call
// the helper.
func (l layout) fastLimit() uint32 {
	if l.direct {
		return maxDirect
	}
	return cacheLen
}

func (l layout) translateOne(b *block, i, end int, f unix.SockFilter) error {
	k := f.K
	switch f.Code & 0x07 {
	case clsLD:
		size, n := sizeOf(f.Code)
		switch f.Code & 0xe0 {
		case mIMM:
			b.emit(asm.Mov.Imm32(regA, int32(k)))
		case mLEN:
			b.emit(asm.LoadMem(regA, regSkb, skbLen, asm.Word))
		case mMEM:
			b.emit(asm.LoadMem(regA, asm.R10, l.memOff(k), asm.Word))
		case mABS:
			switch {
			case k >= skfAdOff:
				return l.ancillary(b, end, k, size)
			case int32(k) >= 0 && k+n <= l.sure:
				b.emit(asm.LoadMem(regA, regP, int16(k), size))
				loadBE(b, size)
			case int32(k) >= 0 && k+n <= l.fastLimit():
				// if avail >= k+n { A = p[k:k+n] } else { helper }
				b.jumpCold(asm.JLT.Imm(regAvail, int32(k+n), ""))
				b.emit(asm.LoadMem(regA, regP, int16(k), size))
				loadBE(b, size)
				b.outOfLine(l.slowLoad(false, size, end, asm.Mov.Imm32(asm.R2, int32(k))))
			case int32(k) >= skfLLOff && int32(k) < skfNetOff:
				b.append(l.slowCall(false, size, end, asm.FnSkbLoadBytesRelative,
					asm.Mov.Imm32(asm.R2, int32(k)-skfLLOff), asm.Mov.Imm(asm.R5, bpfHdrStartMAC)))
			case int32(k) >= skfNetOff && int32(k) < 0:
				b.append(l.slowCall(false, size, end, asm.FnSkbLoadBytesRelative,
					asm.Mov.Imm32(asm.R2, int32(k)-skfNetOff), asm.Mov.Imm(asm.R5, bpfHdrStartNet)))
			default:
				b.append(l.slowLoad(false, size, end, asm.Mov.Imm32(asm.R2, int32(k))))
			}
		case mIND:
			// off = X + k wraps at 32 bits, as the kernel's does, and the slow
			// path computes it so. The fast path adds at 64 bits: X + k + n
			// <= avail holds only when X + k did not wrap.
			slow := l.slowLoad(false, size, end, asm.Mov.Reg32(asm.R2, regX), asm.Add.Imm32(asm.R2, int32(k)))
			if l.direct && k <= 0x7fff {
				b.emit(asm.Mov.Reg(regA, regX), asm.Add.Imm(regA, int32(k+n)))
				b.jumpCold(asm.JGT.Reg(regA, regAvail, ""))
				b.emit(
					asm.Mov.Reg(regA, regP),
					asm.Add.Reg(regA, regX),
					asm.LoadMem(regA, regA, int16(k), size),
				)
			} else {
				// The verifier must see a load of the copy within the buffer.
				b.emit(asm.Mov.Reg32(regTmp, regX))
				if k != 0 {
					b.emit(asm.Add.Imm32(regTmp, int32(k)))
				}
				if !l.direct {
					b.jumpCold(asm.JGT.Imm(regTmp, int32(cacheLen-n), ""))
				}
				b.emit(asm.Mov.Reg(regA, regTmp), asm.Add.Imm(regA, int32(n)))
				b.jumpCold(asm.JGT.Reg(regA, regAvail, ""))
				b.emit(
					asm.Mov.Reg(regA, regP),
					asm.Add.Reg(regA, regTmp),
					asm.LoadMem(regA, regA, 0, size),
				)
			}
			loadBE(b, size)
			b.outOfLine(slow)
		}
	case clsLDX:
		switch f.Code & 0xe0 {
		case mIMM:
			b.emit(asm.Mov.Imm32(regX, int32(k)))
		case mLEN:
			b.emit(asm.LoadMem(regX, regSkb, skbLen, asm.Word))
		case mMEM:
			b.emit(asm.LoadMem(regX, asm.R10, l.memOff(k), asm.Word))
		case mMSH:
			// X = 4 * (P[k] & 0xf)
			slow := l.slowLoad(true, asm.Byte, end, asm.Mov.Imm32(asm.R2, int32(k)))
			switch {
			case int32(k) >= 0 && k+1 <= l.sure:
				b.emit(asm.LoadMem(regX, regP, int16(k), asm.Byte))
			case int32(k) >= 0 && k+1 <= l.fastLimit():
				b.jumpCold(asm.JLT.Imm(regAvail, int32(k+1), ""))
				b.emit(asm.LoadMem(regX, regP, int16(k), asm.Byte))
				b.outOfLine(slow)
			default:
				b.append(slow)
			}
			b.emit(asm.And.Imm32(regX, 0xf), asm.LSh.Imm32(regX, 2))
		}
	case clsST:
		b.emit(asm.StoreMem(asm.R10, l.memOff(k), regA, asm.Word))
	case clsSTX:
		b.emit(asm.StoreMem(asm.R10, l.memOff(k), regX, asm.Word))
	case clsALU:
		op := aluOps[f.Code&0xf0]
		switch {
		case op == asm.Neg:
			b.emit(asm.Instruction{OpCode: asm.Neg.Op32(asm.ImmSource), Dst: regA})
		case f.Code&srcX == 0:
			b.emit(op.Imm32(regA, int32(k)))
		default:
			if op == asm.Div || op == asm.Mod {
				// Classic BPF rejects the packet on division by zero; eBPF
				// would yield 0 (div) or leave A (mod).
				b.emit(withOff(asm.JNE.Imm32(regX, 0, ""), 2))
				reject(b, end)
			}
			b.emit(op.Reg32(regA, regX))
		}
	case clsJMP:
		op := f.Code & 0xf0
		if op == jJA {
			if k != 0 {
				b.jumpTo(ja(), i+1+int(k))
			}
			return nil
		}
		t, e := i+1+int(f.Jt), i+1+int(f.Jf)
		if t == e {
			if f.Jt != 0 {
				b.jumpTo(ja(), t)
			}
			return nil
		}
		jop := map[uint16]asm.JumpOp{jJEQ: asm.JEq, jJGT: asm.JGT, jJGE: asm.JGE, jJSET: asm.JSet}[op]
		inv := map[uint16]asm.JumpOp{jJEQ: asm.JNE, jJGT: asm.JLE, jJGE: asm.JLT}[op]
		cond := func(o asm.JumpOp) asm.Instruction {
			if f.Code&srcX != 0 {
				return o.Reg32(regA, regX, "")
			}
			return o.Imm32(regA, int32(k), "")
		}
		switch {
		case f.Jf == 0:
			b.jumpTo(cond(jop), t)
		case f.Jt == 0 && op != jJSET:
			b.jumpTo(cond(inv), e)
		default:
			b.jumpTo(cond(jop), t)
			b.jumpTo(ja(), e)
		}
	case clsRET:
		if f.Code&0x18 == retK {
			if l.snaplen != 0 {
				k = min(k, l.snaplen)
			}
			b.emit(asm.Mov.Imm32(regA, int32(k)))
		} else if l.snaplen != 0 {
			// verdict = min(A, snaplen), unsigned
			b.emit(withOff(asm.JLE.Imm32(regA, int32(l.snaplen), ""), 1), asm.Mov.Imm32(regA, int32(l.snaplen)))
		}
		b.jumpTo(ja(), end)
	case clsMISC:
		if f.Code&0xf8 == miscTAX {
			b.emit(asm.Mov.Reg32(regX, regA))
		} else {
			b.emit(asm.Mov.Reg32(regA, regX))
		}
	}
	return nil
}

// append adds another block's instructions and jump fixes after b's.
func (b *block) append(o block) {
	for _, fx := range o.fix {
		fx.at += len(b.ins)
		b.fix = append(b.fix, fx)
	}
	b.ins = append(b.ins, o.ins...)
}

// ancillary translates a load of SKF_AD_OFF+off: skb metadata instead of
// packet data.
func (l layout) ancillary(b *block, end int, k uint32, size asm.Size) error {
	off := k - skfAdOff
	if field, ok := ancillaryFields[off]; ok {
		b.emit(asm.LoadMem(regA, regSkb, field, asm.Word))
		if off == 0 || off == 60 { // protocol and vlan_proto are big-endian
			b.emit(asm.HostTo(asm.BE, regA, asm.Half))
		}
		return nil
	}
	switch off {
	case adCPU, adRandom:
		fn := asm.FnGetSmpProcessorId
		if off == adRandom {
			fn = asm.FnGetPrandomU32
		}
		b.emit(l.save()...)
		b.emit(asm.StoreMem(asm.R10, l.slot(fX), regX, asm.DWord), fn.Call())
		b.emit(l.reload(false)...)
	case adXorX:
		b.emit(asm.Xor.Reg32(regA, regX))
	case adHatype, adNlattr, adNlattrNest, adPayOffset:
		return fmt.Errorf("ancillary load SKF_AD_OFF+%d (hatype, netlink attribute or payload offset) has no eBPF equivalent", off)
	default:
		// Not an extension the kernel knows: a load at a negative offset,
		// which fails at run time and rejects the packet, as in the kernel.
		b.append(l.slowLoad(false, size, end, asm.Mov.Imm32(asm.R2, int32(k))))
	}
	return nil
}

// save keeps R1-R3 in the frame across a helper call. Only the paths that
// call one pay for it: the fast path never changes R1-R3.
func (l layout) save() []asm.Instruction {
	return []asm.Instruction{
		asm.StoreMem(asm.R10, l.slot(fSkb), regSkb, asm.DWord),
		asm.StoreMem(asm.R10, l.slot(fP), regP, asm.DWord),
		asm.StoreMem(asm.R10, l.slot(fAvail), regAvail, asm.DWord),
	}
}

// reload restores R1-R3 and, unless intoX, X after a helper call.
func (l layout) reload(intoX bool) []asm.Instruction {
	out := []asm.Instruction{
		asm.LoadMem(regSkb, asm.R10, l.slot(fSkb), asm.DWord),
		asm.LoadMem(regP, asm.R10, l.slot(fP), asm.DWord),
		asm.LoadMem(regAvail, asm.R10, l.slot(fAvail), asm.DWord),
	}
	if !intoX {
		out = append(out, asm.LoadMem(regX, asm.R10, l.slot(fX), asm.DWord))
	}
	return out
}

// slowLoad loads size bytes at the offset setOff puts in R2 into A (or X if
// intoX) with bpf_skb_load_bytes, or rejects the packet when it is shorter,
// as a classic load does. Offsets negative as int32 fail, as the kernel's
// classic loads do outside the SKF_NET_OFF and SKF_LL_OFF ranges (which
// absolute loads support, through bpf_skb_load_bytes_relative).
func (l layout) slowLoad(intoX bool, size asm.Size, end int, setOff asm.Instruction, extra ...asm.Instruction) block {
	return l.slowCall(intoX, size, end, asm.FnSkbLoadBytes, setOff, extra...)
}

func (l layout) slowCall(intoX bool, size asm.Size, end int, fn asm.BuiltinFunc, setOff asm.Instruction, extra ...asm.Instruction) block {
	var b block
	b.emit(l.save()...)
	if intoX {
		b.emit(asm.StoreMem(asm.R10, l.slot(fA), regA, asm.DWord))
	} else {
		b.emit(asm.StoreMem(asm.R10, l.slot(fX), regX, asm.DWord))
	}
	b.emit(
		setOff,
		asm.Mov.Reg(asm.R3, asm.R10),
		asm.Add.Imm(asm.R3, int32(l.slot(fLoad))),
		asm.Mov.Imm(asm.R4, int32(size.Sizeof())),
	)
	b.emit(extra...)
	b.emit(fn.Call(), withOff(asm.JEq.Imm(asm.R0, 0, ""), 2))
	reject(&b, end)
	if intoX {
		b.emit(
			asm.LoadMem(regX, asm.R10, l.slot(fLoad), asm.Byte),
			asm.LoadMem(regA, asm.R10, l.slot(fA), asm.DWord),
		)
	} else {
		b.emit(asm.LoadMem(regA, asm.R10, l.slot(fLoad), size))
		loadBE(&b, size)
	}
	b.emit(l.reload(intoX)...)
	return b
}

// reused says what translateFor does with one classic load beyond loading:
// store the value in a frame slot for a later identical load, or (load)
// take the value from the slot instead of the packet.
type reused struct {
	store, load bool
	slot        int
}

// loadKey identifies a packet load into A: its mode, size and offset (and,
// for an indexed load, that it reads relative to X).
type loadKey struct {
	code uint16
	k    uint32
}

// reuse finds the classic loads into A that repeat a load made on every path
// to them, with X unchanged since for an indexed one, as tcpdump's programs
// do for "port 80 and not port 22" (both ports of the same header, twice):
// packet bytes never change, so the first load saves its value in a frame
// slot and the repeat reads the slot. Classic programs only jump forward, so
// one pass in order computes, for each instruction, the loads available on
// every path to it (the intersection over its predecessors).
func reuse(prog []unix.SockFilter, reached []bool) []reused {
	out := make([]reused, len(prog))
	keyOf := func(f unix.SockFilter) (loadKey, bool) {
		if f.Code&0x07 != clsLD {
			return loadKey{}, false
		}
		switch f.Code & 0xe0 {
		case mABS:
			if f.K >= skfAdOff || int32(f.K) < 0 {
				return loadKey{}, false // metadata, or link/network-relative
			}
		case mIND:
		default:
			return loadKey{}, false
		}
		return loadKey{f.Code, f.K}, true
	}
	in := make([]map[loadKey]bool, len(prog)) // nil: no predecessor seen yet
	flow := func(to int, set map[loadKey]bool) {
		if in[to] == nil {
			in[to] = maps.Clone(set)
			return
		}
		for k := range in[to] {
			if !set[k] {
				delete(in[to], k)
			}
		}
	}
	used := map[loadKey]bool{}
	for i, f := range prog {
		if !reached[i] {
			continue
		}
		set := in[i]
		if set == nil {
			set = map[loadKey]bool{}
		}
		if k, ok := keyOf(f); ok {
			if set[k] {
				out[i].load = true
				used[k] = true
			} else {
				set = maps.Clone(set)
				set[k] = true
			}
		}
		if cls := f.Code & 0x07; cls == clsLDX || (cls == clsMISC && f.Code&0xf8 == miscTAX) {
			set = maps.Clone(set)
			for k := range set {
				if k.code&0xe0 == mIND {
					delete(set, k)
				}
			}
		}
		to, n := successors(i, f)
		for _, t := range to[:n] {
			flow(t, set)
		}
	}
	// One slot per reused load, while the frame has room; a load whose
	// repeat gets no slot is simply made again.
	slot := map[loadKey]int{}
	next := fReuse
	for i, f := range prog {
		k, ok := keyOf(f)
		if !ok || !reached[i] || !used[k] {
			continue
		}
		if _, ok := slot[k]; !ok {
			if next+4 > 8*frameWords {
				used[k] = false
				continue
			}
			slot[k] = next
			next += 4
		}
	}
	for i, f := range prog {
		k, ok := keyOf(f)
		if !ok || !reached[i] {
			continue
		}
		if s, ok := slot[k]; ok && used[k] {
			out[i].slot = s
			out[i].store = !out[i].load
		} else {
			out[i].load = false
		}
	}
	return out
}
