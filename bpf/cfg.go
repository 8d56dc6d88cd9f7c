package bpf

import "fmt"

// The unoptimised path (tcpdump -O): the boolean IR laid out as is. The
// optimised path builds libpcap's blocks and runs the optimizer port in
// opt.go instead.

// block is a node of the control-flow graph: a test with two successors, or
// a return when t is nil.
type block struct {
	t      *btest
	ret    uint32
	jt, jf *block
	seq    int // creation order; later blocks run earlier
}

type cfg struct {
	blocks []*block
}

func (c *cfg) newBlock(b *block) *block {
	b.seq = len(c.blocks)
	c.blocks = append(c.blocks, b)
	return b
}

// build turns the boolean IR into blocks, wiring short-circuit jumps.
func (c *cfg) build(n *bnode, t, f *block) *block {
	switch n.kind {
	case bTrue:
		return t
	case bFalse:
		return f
	case bNot:
		return c.build(n.l, f, t)
	case bAnd:
		return c.build(n.l, c.build(n.r, t, f), f)
	case bOr:
		return c.build(n.l, t, c.build(n.r, t, f))
	}
	return c.newBlock(&block{t: n.t, jt: t, jf: f})
}

// order returns the blocks reachable from root, each before its successors.
func order(root *block) []*block {
	var post []*block
	seen := map[*block]bool{}
	var visit func(b *block)
	visit = func(b *block) {
		if seen[b] {
			return
		}
		seen[b] = true
		if b.t != nil {
			visit(b.jf)
			visit(b.jt)
		}
		post = append(post, b)
	}
	visit(root)
	for i, j := 0, len(post)-1; i < j; i, j = i+1, j-1 {
		post[i], post[j] = post[j], post[i]
	}
	return post
}

// emitter lays blocks out as cBPF, widening jumps that do not fit in 8 bits.
type emitter struct {
	far map[*block]bool
}

func (e *emitter) code(t *btest) ([]Instruction, error) {
	var out []Instruction
	var err error
	if t.x != nil {
		if out, err = genA(out, t.x, 0); err != nil {
			return nil, err
		}
		out = append(out, Instruction{Op: clsST, K: 0})
		if out, err = genA(out, t.v, 1); err != nil {
			return nil, err
		}
		out = append(out, Instruction{Op: clsLDX | modeMEM, K: 0})
		return out, nil
	}
	return genA(out, t.v, 0)
}

// genA appends code leaving v in A; depth is the first free scratch slot.
func genA(out []Instruction, v *ax, depth uint32) ([]Instruction, error) {
	var err error
	sz := func(s uint32) uint16 {
		switch s {
		case 1:
			return szB
		case 2:
			return szH
		}
		return szW
	}
	switch v.kind {
	case axConst:
		return append(out, Instruction{Op: clsLD | modeIMM, K: v.k}), nil
	case axLen:
		return append(out, Instruction{Op: clsLD | szW | modeLEN}), nil
	case axAbs:
		return append(out, Instruction{Op: clsLD | sz(v.size) | modeABS, K: v.k}), nil
	case axInd:
		if out, err = genA(out, v.l, depth); err != nil {
			return nil, err
		}
		return append(out, Instruction{Op: clsMISC | miscTAX}, Instruction{Op: clsLD | sz(v.size) | modeIND, K: v.k}), nil
	case axTran4:
		if v.l == nil {
			return append(out, Instruction{Op: clsLDX | szB | modeMSH, K: v.msh}, Instruction{Op: clsLD | sz(v.size) | modeIND, K: v.k}), nil
		}
		if out, err = genA(out, v.l, depth); err != nil {
			return nil, err
		}
		return append(out, Instruction{Op: clsLDX | szB | modeMSH, K: v.msh}, Instruction{Op: clsALU | aluADD | srcX},
			Instruction{Op: clsMISC | miscTAX}, Instruction{Op: clsLD | sz(v.size) | modeIND, K: v.k}), nil
	case axNeg:
		if out, err = genA(out, v.l, depth); err != nil {
			return nil, err
		}
		return append(out, Instruction{Op: clsALU | aluNEG}), nil
	case axBin:
		if v.r.kind == axConst && !((v.op == aluDIV || v.op == aluMOD) && v.r.k == 0) {
			if out, err = genA(out, v.l, depth); err != nil {
				return nil, err
			}
			return append(out, Instruction{Op: clsALU | v.op | srcK, K: v.r.k}), nil
		}
		if depth >= scratchSlots {
			return nil, fmt.Errorf("expression too complex: more than %d scratch registers needed", scratchSlots)
		}
		if out, err = genA(out, v.r, depth); err != nil {
			return nil, err
		}
		out = append(out, Instruction{Op: clsST, K: depth})
		if out, err = genA(out, v.l, depth+1); err != nil {
			return nil, err
		}
		return append(out, Instruction{Op: clsLDX | modeMEM, K: depth}, Instruction{Op: clsALU | v.op | srcX}), nil
	}
	return nil, fmt.Errorf("bpf: unknown value kind %d", v.kind)
}

// emit lays out the graph from root. Blocks are placed in an order where
// every jump goes forward; conditional jumps too long for 8 bits become a
// short conditional jump over two unconditional ones.
func emit(root *block) (Program, error) {
	blocks := order(root)
	codes := make(map[*block][]Instruction, len(blocks))
	for _, b := range blocks {
		if b.t != nil {
			c, err := (&emitter{}).code(b.t)
			if err != nil {
				return nil, err
			}
			codes[b] = c
		}
	}
	far := map[*block]bool{}
	for {
		pos := make(map[*block]int, len(blocks))
		n := 0
		for _, b := range blocks {
			pos[b] = n
			if b.t == nil {
				n++
				continue
			}
			n += len(codes[b]) + 1
			if far[b] {
				n += 2
			}
		}
		grew := false
		for _, b := range blocks {
			if b.t == nil || far[b] {
				continue
			}
			after := pos[b] + len(codes[b]) + 1
			if pos[b.jt]-after > 255 || pos[b.jf]-after > 255 {
				far[b], grew = true, true
			}
		}
		if grew {
			continue
		}
		if n > maxInstructions {
			return nil, fmt.Errorf("program needs %d instructions, more than the kernel's limit of %d", n, maxInstructions)
		}
		prog := make(Program, 0, n)
		for _, b := range blocks {
			if b.t == nil {
				prog = append(prog, Instruction{Op: clsRET | retK, K: b.ret})
				continue
			}
			prog = append(prog, codes[b]...)
			op := clsJMP | b.t.jop | srcK
			if b.t.x != nil {
				op = clsJMP | b.t.jop | srcX
			}
			after := len(prog) + 1
			if far[b] {
				prog = append(prog, Instruction{Op: op, K: b.t.k, Jt: 0, Jf: 1},
					Instruction{Op: clsJMP | jmpJA, K: uint32(pos[b.jt] - (after + 1))},
					Instruction{Op: clsJMP | jmpJA, K: uint32(pos[b.jf] - (after + 2))})
				continue
			}
			prog = append(prog, Instruction{Op: op, K: b.t.k, Jt: uint8(pos[b.jt] - after), Jf: uint8(pos[b.jf] - after)})
		}
		return prog, nil
	}
}
