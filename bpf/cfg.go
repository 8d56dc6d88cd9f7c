package bpf

import (
	"fmt"
	"strconv"
)

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

func (t *btest) key() string {
	if t.x != nil {
		return t.v.key() + " " + strconv.Itoa(int(t.jop)) + " x=" + t.x.key()
	}
	return t.v.key() + " " + strconv.Itoa(int(t.jop)) + " " + strconv.FormatUint(uint64(t.k), 10)
}

// facts are test outcomes known to hold on every path to a point.
type facts struct {
	outcome map[string]bool
	equal   map[string]uint32 // value key -> constant it was found equal to
}

func (f facts) with(t *btest, sense bool) facts {
	n := facts{outcome: make(map[string]bool, len(f.outcome)+1), equal: make(map[string]uint32, len(f.equal)+1)}
	for k, v := range f.outcome {
		n.outcome[k] = v
	}
	for k, v := range f.equal {
		n.equal[k] = v
	}
	n.outcome[t.key()] = sense
	if sense && t.jop == jmpJEQ && t.x == nil {
		n.equal[t.v.key()] = t.k
	}
	return n
}

func (f facts) intersect(o facts) facts {
	n := facts{outcome: map[string]bool{}, equal: map[string]uint32{}}
	for k, v := range f.outcome {
		if w, ok := o.outcome[k]; ok && w == v {
			n.outcome[k] = v
		}
	}
	for k, v := range f.equal {
		if w, ok := o.equal[k]; ok && w == v {
			n.equal[k] = v
		}
	}
	return n
}

// decide returns the outcome of t if the facts determine it.
func (f facts) decide(t *btest) (bool, bool) {
	if v, ok := f.outcome[t.key()]; ok {
		return v, true
	}
	if t.jop == jmpJEQ && t.x == nil {
		if k, ok := f.equal[t.v.key()]; ok && k != t.k {
			return false, true
		}
	}
	return false, false
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

// optimize does what libpcap's optimizer does that can change a verdict:
// it threads jumps past tests whose outcome is already known on every path,
// and removes tests whose two branches lead to the same place, together
// with their loads.
func optimize(root *block) *block {
	for changed := true; changed; {
		changed = false
		// Skip blocks whose branches agree.
		skip := func(b *block) *block {
			for b.t != nil && b.jt == b.jf {
				b = b.jt
			}
			return b
		}
		for _, b := range order(root) {
			if b.t != nil {
				if nt, nf := skip(b.jt), skip(b.jf); nt != b.jt || nf != b.jf {
					b.jt, b.jf, changed = nt, nf, true
				}
			}
		}
		if r := skip(root); r != root {
			root, changed = r, true
		}
		// Thread jumps using the facts known on each edge.
		in := map[*block]facts{}
		seen := map[*block]bool{}
		in[root] = facts{outcome: map[string]bool{}, equal: map[string]uint32{}}
		for _, b := range order(root) {
			if b.t == nil {
				continue
			}
			f := in[b]
			for _, sense := range []bool{true, false} {
				ef := f.with(b.t, sense)
				succ := b.jt
				if !sense {
					succ = b.jf
				}
				for succ.t != nil {
					v, ok := ef.decide(succ.t)
					if !ok {
						break
					}
					if v {
						succ = succ.jt
					} else {
						succ = succ.jf
					}
				}
				if sense {
					if succ != b.jt {
						b.jt, changed = succ, true
					}
				} else if succ != b.jf {
					b.jf, changed = succ, true
				}
				if seen[succ] {
					in[succ] = in[succ].intersect(ef)
				} else {
					seen[succ] = true
					in[succ] = ef
				}
			}
		}
	}
	return root
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
