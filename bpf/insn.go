package bpf

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Instruction is one classic BPF instruction, laid out like the kernel's
// struct sock_filter so a Program can be handed to SO_ATTACH_FILTER as is.
type Instruction struct {
	Op     uint16
	Jt, Jf uint8
	K      uint32
}

// Program is a classic BPF program as Compile returns it.
type Program []Instruction

// Classic BPF opcode fields (linux/filter.h, pcap/bpf.h).
const (
	clsLD   = 0x00
	clsLDX  = 0x01
	clsST   = 0x02
	clsSTX  = 0x03
	clsALU  = 0x04
	clsJMP  = 0x05
	clsRET  = 0x06
	clsMISC = 0x07

	szW = 0x00
	szH = 0x08
	szB = 0x10

	modeIMM = 0x00
	modeABS = 0x20
	modeIND = 0x40
	modeMEM = 0x60
	modeLEN = 0x80
	modeMSH = 0xa0

	aluADD = 0x00
	aluSUB = 0x10
	aluMUL = 0x20
	aluDIV = 0x30
	aluOR  = 0x40
	aluAND = 0x50
	aluLSH = 0x60
	aluRSH = 0x70
	aluNEG = 0x80
	aluMOD = 0x90
	aluXOR = 0xa0

	jmpJA   = 0x00
	jmpJEQ  = 0x10
	jmpJGT  = 0x20
	jmpJGE  = 0x30
	jmpJSET = 0x40

	srcK = 0x00
	srcX = 0x08

	retK = 0x00
	retA = 0x10

	miscTAX = 0x00
	miscTXA = 0x80
)

// scratchSlots is the size of the cBPF scratch memory M[].
const scratchSlots = 16

// maxInstructions is the kernel's BPF_MAXINSNS.
const maxInstructions = 4096

// Match runs the program over one packet the way the kernel and libpcap's
// bpf_filter do: pkt holds the captured bytes, wireLen the length on the wire
// (what "len" sees). It returns the program's verdict: 0 rejects, anything
// else is the number of bytes to keep. A load outside pkt, a division by zero
// or an invalid instruction rejects the packet.
func (p Program) Match(pkt []byte, wireLen int) uint32 {
	var a, x uint32
	var mem [scratchSlots]uint32
	buflen := uint32(len(pkt))
	for pc := 0; pc < len(p); pc++ {
		ins := p[pc]
		switch ins.Op {
		case clsRET | retK:
			return ins.K
		case clsRET | retA:
			return a
		case clsLD | szW | modeABS, clsLD | szH | modeABS, clsLD | szB | modeABS,
			clsLD | szW | modeIND, clsLD | szH | modeIND, clsLD | szB | modeIND:
			size := uint32(4)
			switch ins.Op & 0x18 {
			case szH:
				size = 2
			case szB:
				size = 1
			}
			var k uint32
			if ins.Op&0xe0 == modeIND {
				if ins.K > buflen || x > buflen-ins.K {
					return 0
				}
				k = x + ins.K
			} else {
				k = ins.K
				if k > buflen {
					return 0
				}
			}
			if size > buflen-k {
				return 0
			}
			switch size {
			case 4:
				a = binary.BigEndian.Uint32(pkt[k:])
			case 2:
				a = uint32(binary.BigEndian.Uint16(pkt[k:]))
			default:
				a = uint32(pkt[k])
			}
		case clsLD | szW | modeLEN:
			a = uint32(wireLen)
		case clsLDX | szW | modeLEN:
			x = uint32(wireLen)
		case clsLD | modeIMM:
			a = ins.K
		case clsLDX | modeIMM:
			x = ins.K
		case clsLDX | szB | modeMSH:
			if ins.K >= buflen {
				return 0
			}
			x = uint32(pkt[ins.K]&0xf) << 2
		case clsLD | modeMEM:
			if ins.K >= scratchSlots {
				return 0
			}
			a = mem[ins.K]
		case clsLDX | modeMEM:
			if ins.K >= scratchSlots {
				return 0
			}
			x = mem[ins.K]
		case clsST:
			if ins.K >= scratchSlots {
				return 0
			}
			mem[ins.K] = a
		case clsSTX:
			if ins.K >= scratchSlots {
				return 0
			}
			mem[ins.K] = x
		case clsJMP | jmpJA:
			pc += int(ins.K)
		case clsMISC | miscTAX:
			x = a
		case clsMISC | miscTXA:
			a = x
		case clsALU | aluNEG:
			a = -a
		default:
			switch ins.Op & 0x07 {
			case clsJMP:
				v := ins.K
				if ins.Op&srcX != 0 {
					v = x
				}
				var ok bool
				switch ins.Op & 0xf0 {
				case jmpJEQ:
					ok = a == v
				case jmpJGT:
					ok = a > v
				case jmpJGE:
					ok = a >= v
				case jmpJSET:
					ok = a&v != 0
				default:
					return 0
				}
				if ok {
					pc += int(ins.Jt)
				} else {
					pc += int(ins.Jf)
				}
			case clsALU:
				v := ins.K
				if ins.Op&srcX != 0 {
					v = x
				}
				r, ok := alu(ins.Op&0xf0, a, v)
				if !ok {
					return 0
				}
				a = r
			default:
				return 0
			}
		}
	}
	return 0
}

// alu applies one ALU operation; ok is false for a division by zero.
func alu(op uint16, a, v uint32) (uint32, bool) {
	switch op {
	case aluADD:
		return a + v, true
	case aluSUB:
		return a - v, true
	case aluMUL:
		return a * v, true
	case aluDIV:
		if v == 0 {
			return 0, false
		}
		return a / v, true
	case aluMOD:
		if v == 0 {
			return 0, false
		}
		return a % v, true
	case aluAND:
		return a & v, true
	case aluOR:
		return a | v, true
	case aluXOR:
		return a ^ v, true
	case aluLSH:
		if v >= 32 {
			return 0, true
		}
		return a << v, true
	case aluRSH:
		if v >= 32 {
			return 0, true
		}
		return a >> v, true
	}
	return 0, false
}

// Validate reports whether the program is one the kernel would accept:
// known opcodes, jumps inside the program, scratch slots in range and a
// return at the end.
func (p Program) Validate() error {
	if len(p) == 0 || len(p) > maxInstructions {
		return fmt.Errorf("program has %d instructions, want 1..%d", len(p), maxInstructions)
	}
	for pc, ins := range p {
		switch ins.Op & 0x07 {
		case clsJMP:
			if ins.Op&0xf0 == jmpJA {
				if uint64(pc)+1+uint64(ins.K) >= uint64(len(p)) {
					return fmt.Errorf("instruction %d: jump out of range", pc)
				}
			} else if pc+1+int(ins.Jt) >= len(p) || pc+1+int(ins.Jf) >= len(p) {
				return fmt.Errorf("instruction %d: jump out of range", pc)
			}
		case clsLD, clsLDX, clsST, clsSTX:
			if ins.Op&0xe0 == modeMEM || ins.Op&0x07 == clsST || ins.Op&0x07 == clsSTX {
				if ins.K >= scratchSlots {
					return fmt.Errorf("instruction %d: scratch slot %d out of range", pc, ins.K)
				}
			}
		case clsALU:
			if (ins.Op&0xf0 == aluDIV || ins.Op&0xf0 == aluMOD) && ins.Op&srcX == 0 && ins.K == 0 {
				return fmt.Errorf("instruction %d: division by constant zero", pc)
			}
		}
	}
	if last := p[len(p)-1]; last.Op&0x07 != clsRET {
		return fmt.Errorf("program does not end in a return")
	}
	return nil
}

// String renders the program like tcpdump -ddd: one "op jt jf k" line per
// instruction.
func (p Program) String() string {
	var b strings.Builder
	for _, ins := range p {
		fmt.Fprintf(&b, "%d %d %d %d\n", ins.Op, ins.Jt, ins.Jf, ins.K)
	}
	return b.String()
}
