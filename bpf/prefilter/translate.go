package prefilter

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// The translation of a classic BPF program replaces the body of prefilter.c's
// user_filter(skb, sc), a static subprogram, so the verifier checks it with
// the caller's register types. It follows the kernel's own classic-to-eBPF
// conversion (net/core/filter.c), which is what runs a classic filter today,
// so verdicts are the same bit for bit:
//
//	A  -> R0 (RET A is a plain exit)
//	X  -> R7
//	M[0..15] -> 4-byte stack slots
//	R6 = skb, R8 = sc, R9 = sc->len
//
// Every value is kept zero-extended to 64 bits (32-bit ALU, 32-bit jumps). A
// load beyond the packet returns 0 from the subprogram, which rejects the
// packet as in classic BPF; so does division or modulo by X == 0. The eBPF
// verifier refuses unreachable code, so unreachable classic instructions are
// left out.
//
// Loads at offsets inside the first cacheLen bytes read the copy the C part
// made of them (sc->buf); anything else calls bpf_skb_load_bytes.

const (
	cacheLen                       = 128       // CACHE_LEN in prefilter.c
	scLen                          = 0         // offsetof(struct scratch, len)
	scBuf                          = 8         // offsetof(struct scratch, buf)
	memBase                        = -64       // M[k] lives at R10 + memBase + 4k
	saveSlot                       = -72       // A is kept here across the slow path of LDX MSH
	loadSlot                       = -80       // bpf_skb_load_bytes writes here
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
	regA   = asm.R0
	regX   = asm.R7
	regSkb = asm.R6
	regSc  = asm.R8
	regN   = asm.R9
)

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

func memOff(k uint32) int16 { return int16(memBase + 4*int(k)) }

// block is the translation of one classic instruction. Jumps to other classic
// instructions are recorded in fix and patched once every block's position
// is known; jumps inside a block carry their offset already.
type block struct {
	ins []asm.Instruction
	fix []jumpFix
}

type jumpFix struct {
	at     int // index in ins
	target int // classic instruction index
}

func (b *block) emit(ins ...asm.Instruction) { b.ins = append(b.ins, ins...) }

// jumpTo emits a jump that lands on classic instruction target.
func (b *block) jumpTo(ins asm.Instruction, target int) {
	b.fix = append(b.fix, jumpFix{len(b.ins), target})
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

// loadBE turns a value just loaded from the packet copy into host order, as
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
		next := true
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
			next = false
			if op == jJA {
				if f.K >= uint32(len(prog)-i-1) {
					return nil, bad("jump past the end of the program")
				}
				if err := flow(i, i+1+int(f.K), mem); err != nil {
					return nil, err
				}
				break
			}
			if err := flow(i, i+1+int(f.Jt), mem); err != nil {
				return nil, err
			}
			if err := flow(i, i+1+int(f.Jf), mem); err != nil {
				return nil, err
			}
		case clsRET:
			if f.Code != clsRET|retK && f.Code != clsRET|retA {
				return nil, bad("unknown return")
			}
			next = false
		case clsMISC:
			if f.Code != clsMISC|miscTAX && f.Code != clsMISC|miscTXA {
				return nil, bad("unknown misc operation")
			}
		}
		if next {
			if i+1 >= len(prog) {
				return nil, bad("program does not end with a return")
			}
			if err := flow(i, i+1, mem); err != nil {
				return nil, err
			}
		}
	}
	return reached, nil
}

// translate returns the eBPF body of user_filter for a classic program.
func translate(prog []unix.SockFilter) (asm.Instructions, error) {
	reached, err := validate(prog)
	if err != nil {
		return nil, err
	}
	prologue := []asm.Instruction{
		asm.Mov.Reg(regSkb, asm.R1),
		asm.Mov.Reg(regSc, asm.R2),
		asm.LoadMem(regN, regSc, scLen, asm.Word),
		asm.Mov.Imm32(regA, 0),
		asm.Mov.Imm32(regX, 0),
	}
	blocks := make([]block, len(prog))
	for i, f := range prog {
		if !reached[i] {
			continue
		}
		if err := translateOne(&blocks[i], i, f); err != nil {
			return nil, fmt.Errorf("instruction %d (code %#04x k %d): %w", i, f.Code, f.K, err)
		}
	}
	start := make([]int, len(prog))
	pos := len(prologue)
	for i := range blocks {
		start[i] = pos
		pos += len(blocks[i].ins)
	}
	out := make(asm.Instructions, 0, pos)
	out = append(out, prologue...)
	for i := range blocks {
		for _, fx := range blocks[i].fix {
			off := start[fx.target] - (start[i] + fx.at + 1)
			if off > 0x7fff {
				return nil, fmt.Errorf("instruction %d: jump too far for eBPF", i)
			}
			blocks[i].ins[fx.at] = withOff(blocks[i].ins[fx.at], off)
		}
		out = append(out, blocks[i].ins...)
	}
	return out, nil
}

func translateOne(b *block, i int, f unix.SockFilter) error {
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
			b.emit(asm.LoadMem(regA, asm.R10, memOff(k), asm.Word))
		case mABS:
			switch {
			case k >= skfAdOff:
				return ancillary(b, k, size)
			case int32(k) >= 0 && k+n <= cacheLen:
				// if n >= k+size { A = packet copy } else { load from skb }
				slow := loadSlow(size, asm.Mov.Imm32(asm.R2, int32(k)))
				b.emit(withOff(asm.JGE.Imm(regN, int32(k+n), ""), len(slow)+1))
				b.emit(slow...)
				b.emit(
					withOff(ja(), 1+btoi(size != asm.Byte)),
					asm.LoadMem(regA, regSc, int16(scBuf+k), size),
				)
				loadBE(b, size)
			case int32(k) >= skfLLOff && int32(k) < skfNetOff:
				b.emit(loadRelative(size, uint32(int32(k)-skfLLOff), bpfHdrStartMAC)...)
			case int32(k) >= skfNetOff && int32(k) < 0:
				b.emit(loadRelative(size, uint32(int32(k)-skfNetOff), bpfHdrStartNet)...)
			default:
				b.emit(loadSlow(size, asm.Mov.Imm32(asm.R2, int32(k)))...)
			}
		case mIND:
			// off = X + k wraps at 32 bits, as the kernel's does.
			fast := []asm.Instruction{
				asm.Add.Reg(asm.R1, regSc),
				asm.LoadMem(regA, asm.R1, scBuf, size),
			}
			if size != asm.Byte {
				fast = append(fast, asm.HostTo(asm.BE, regA, size))
			}
			b.emit(asm.Mov.Reg32(asm.R1, regX))
			if k != 0 {
				b.emit(asm.Add.Imm32(asm.R1, int32(k)))
			}
			slow := loadSlow(size, asm.Mov.Reg32(asm.R2, asm.R1))
			toSlow := 4 + len(fast) // jump offset from the first check to the slow path
			b.emit(
				withOff(asm.JGT.Imm(asm.R1, int32(cacheLen-n), ""), toSlow),
				asm.Mov.Reg(asm.R2, asm.R1),
				asm.Add.Imm(asm.R2, int32(n)),
				withOff(asm.JGT.Reg(asm.R2, regN, ""), toSlow-3),
			)
			b.emit(fast...)
			b.emit(withOff(ja(), len(slow)))
			b.emit(slow...)
		}
	case clsLDX:
		switch f.Code & 0xe0 {
		case mIMM:
			b.emit(asm.Mov.Imm32(regX, int32(k)))
		case mLEN:
			b.emit(asm.LoadMem(regX, regSkb, skbLen, asm.Word))
		case mMEM:
			b.emit(asm.LoadMem(regX, asm.R10, memOff(k), asm.Word))
		case mMSH:
			// X = 4 * (P[k] & 0xf); the slow path's helper call clobbers A.
			slow := []asm.Instruction{asm.StoreMem(asm.R10, saveSlot, regA, asm.Word)}
			slow = append(slow, loadSlow(asm.Byte, asm.Mov.Imm32(asm.R2, int32(k)))...)
			slow = append(slow, asm.Mov.Reg32(regX, regA), asm.LoadMem(regA, asm.R10, saveSlot, asm.Word))
			if int32(k) >= 0 && k+1 <= cacheLen {
				b.emit(withOff(asm.JGE.Imm(regN, int32(k+1), ""), len(slow)+1))
				b.emit(slow...)
				b.emit(
					withOff(ja(), 1),
					asm.LoadMem(regX, regSc, int16(scBuf+k), asm.Byte),
				)
			} else {
				b.emit(slow...)
			}
			b.emit(asm.And.Imm32(regX, 0xf), asm.LSh.Imm32(regX, 2))
		}
	case clsST:
		b.emit(asm.StoreMem(asm.R10, memOff(k), regA, asm.Word))
	case clsSTX:
		b.emit(asm.StoreMem(asm.R10, memOff(k), regX, asm.Word))
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
				b.emit(
					withOff(asm.JNE.Imm32(regX, 0, ""), 2),
					asm.Mov.Imm32(asm.R0, 0),
					asm.Return(),
				)
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
			b.emit(asm.Mov.Imm32(asm.R0, int32(k)))
		}
		b.emit(asm.Return())
	case clsMISC:
		if f.Code&0xf8 == miscTAX {
			b.emit(asm.Mov.Reg32(regX, regA))
		} else {
			b.emit(asm.Mov.Reg32(regA, regX))
		}
	}
	return nil
}

// ancillary translates a load of SKF_AD_OFF+off: skb metadata instead of
// packet data.
func ancillary(b *block, k uint32, size asm.Size) error {
	off := k - skfAdOff
	if field, ok := ancillaryFields[off]; ok {
		b.emit(asm.LoadMem(regA, regSkb, field, asm.Word))
		if off == 0 || off == 60 { // protocol and vlan_proto are big-endian
			b.emit(asm.HostTo(asm.BE, regA, asm.Half))
		}
		return nil
	}
	switch off {
	case adCPU:
		b.emit(asm.FnGetSmpProcessorId.Call())
	case adRandom:
		b.emit(asm.FnGetPrandomU32.Call())
	case adXorX:
		b.emit(asm.Xor.Reg32(regA, regX))
	case adHatype, adNlattr, adNlattrNest, adPayOffset:
		return fmt.Errorf("ancillary load SKF_AD_OFF+%d (hatype, netlink attribute or payload offset) has no eBPF equivalent", off)
	default:
		// Not an extension the kernel knows: a load at a negative offset,
		// which fails at run time and rejects the packet, as in the kernel.
		b.emit(loadSlow(size, asm.Mov.Imm32(asm.R2, int32(k)))...)
	}
	return nil
}

// loadSlow loads size bytes at the offset setOff puts in R2 into A with
// bpf_skb_load_bytes, or returns 0 (reject) when the packet is shorter, as a
// classic load does. It stands in for eBPF's LD_ABS/LD_IND, which this
// kernel's verifier fails on (EFAULT) inside subprograms. Offsets negative
// as int32 fail, as the kernel's classic loads do outside the SKF_NET_OFF and
// SKF_LL_OFF ranges (which absolute loads support, below).
func loadSlow(size asm.Size, setOff asm.Instruction) []asm.Instruction {
	return loadCall(size, asm.FnSkbLoadBytes, setOff, nil)
}

// loadRelative loads size bytes at off from the start of the MAC or network
// header (SKF_LL_OFF and SKF_NET_OFF loads).
func loadRelative(size asm.Size, off uint32, start int32) []asm.Instruction {
	return loadCall(size, asm.FnSkbLoadBytesRelative, asm.Mov.Imm32(asm.R2, int32(off)),
		[]asm.Instruction{asm.Mov.Imm(asm.R5, start)})
}

func loadCall(size asm.Size, fn asm.BuiltinFunc, setOff asm.Instruction, extra []asm.Instruction) []asm.Instruction {
	out := []asm.Instruction{
		setOff,
		asm.Mov.Reg(asm.R1, regSkb),
		asm.Mov.Reg(asm.R3, asm.R10),
		asm.Add.Imm(asm.R3, loadSlot),
		asm.Mov.Imm(asm.R4, int32(size.Sizeof())),
	}
	out = append(out, extra...)
	out = append(out,
		fn.Call(),
		withOff(asm.JEq.Imm(asm.R0, 0, ""), 2),
		asm.Mov.Imm32(asm.R0, 0),
		asm.Return(),
		asm.LoadMem(regA, asm.R10, loadSlot, size),
	)
	if size != asm.Byte {
		out = append(out, asm.HostTo(asm.BE, regA, size))
	}
	return out
}
