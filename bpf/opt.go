package bpf

import (
	"fmt"
	"math/bits"
)

// This file is a port of libpcap's optimizer (optimize.c, libpcap 1.10):
// value numbering with redundant load elimination and constant folding
// (opt_blk, opt_stmt, opt_peep, opt_deadstores), jump threading over edge
// dominators (opt_j, fold_edge), or_pullup and and_pullup, intern_blocks,
// opt_root, and the conversion to instructions (icode_to_fcode). It works on
// libpcap's own intermediate form, blocks of statements ending in a jump,
// built the way gencode builds them (see lower). The aim is not the same
// bytes as libpcap but the same verdict on every packet, truncated ones
// included: libpcap's optimizer decides which loads run, and a load past
// the captured bytes rejects the packet.

// Atoms of the use-def and value tables: scratch memory 0..15, A and X.
const (
	aAtom  = scratchSlots
	xAtom  = scratchSlots + 1
	nAtoms = scratchSlots + 2
	axAtom = nAtoms // both A and X
	opNOP  = -1
)

type ostmt struct {
	code int
	k    uint32
}

type oedge struct {
	id         int
	code       int
	edom       []uint32
	succ, pred *oblock
	next       *oedge
}

type oblock struct {
	id             int
	stmts          []*ostmt
	s              ostmt // the jump, or the return
	et, ef         oedge
	mark           int
	level          int
	link           *oblock
	dom            []uint32
	inEdges        *oedge
	val            [nAtoms]uint32
	oval           uint32
	def, kill      uint32
	inUse, outUse  uint32
	longjt, longjf int
	offset         int
}

func (b *oblock) jt() *oblock { return b.et.succ }
func (b *oblock) jf() *oblock { return b.ef.succ }

func bpfClass(c int) int { return c & 0x07 }
func bpfMode(c int) int  { return c & 0xe0 }
func bpfOp(c int) int    { return c & 0xf0 }
func bpfSrc(c int) int   { return c & 0x08 }

// optErr is an error the optimizer raises, as libpcap's opt_error does.
type optErr struct{ msg string }

// lowerer builds libpcap's blocks from the boolean IR.
type lowerer struct {
	regused [scratchSlots]bool
	curreg  int
}

func (l *lowerer) allocReg() uint32 {
	for n := 0; n < scratchSlots; n++ {
		if l.regused[l.curreg] {
			l.curreg = (l.curreg + 1) % scratchSlots
			continue
		}
		l.regused[l.curreg] = true
		return uint32(l.curreg)
	}
	panic(optErr{"too many registers needed to evaluate expression"})
}

func (l *lowerer) freeReg(r uint32) { l.regused[r] = false }

func stmtsOf(ins []Instruction) []*ostmt {
	out := make([]*ostmt, len(ins))
	for i, in := range ins {
		out[i] = &ostmt{code: int(in.Op), k: in.K}
	}
	return out
}

// arth emits v the way gen_arth, gen_load, gen_loadi, gen_loadlen and
// gen_neg do: every intermediate result goes through a scratch register.
func (l *lowerer) arth(v *ax) ([]*ostmt, uint32) {
	st := func(r uint32) *ostmt { return &ostmt{code: clsST, k: r} }
	sz := map[uint32]int{1: szB, 2: szH, 4: szW}
	switch v.kind {
	case axConst:
		r := l.allocReg()
		return []*ostmt{{code: clsLD | modeIMM, k: v.k}, st(r)}, r
	case axLen:
		r := l.allocReg()
		return []*ostmt{{code: clsLD | szW | modeLEN}, st(r)}, r
	case axAbs:
		r := l.allocReg()
		return []*ostmt{{code: clsLD | sz[v.size] | modeABS, k: v.k}, st(r)}, r
	case axInd, axTran4:
		var s []*ostmt
		var ri uint32
		if v.l != nil {
			s, ri = l.arth(v.l)
		} else {
			s, ri = l.arth(cnst(0))
		}
		r := l.allocReg()
		l.freeReg(ri)
		if v.kind == axInd {
			s = append(s, &ostmt{code: clsLDX | modeMEM, k: ri})
		} else {
			s = append(s, &ostmt{code: clsLDX | szB | modeMSH, k: v.msh}, &ostmt{code: clsLD | modeMEM, k: ri},
				&ostmt{code: clsALU | aluADD | srcX}, &ostmt{code: clsMISC | miscTAX})
		}
		s = append(s, &ostmt{code: clsLD | sz[v.size] | modeIND, k: v.k}, st(r))
		return s, r
	case axNeg:
		s, r := l.arth(v.l)
		return append(s, &ostmt{code: clsLD | modeMEM, k: r}, &ostmt{code: clsALU | aluNEG}, st(r)), r
	case axBin:
		s0, r0 := l.arth(v.l)
		s1, r1 := l.arth(v.r)
		s := append(s0, s1...)
		s = append(s, &ostmt{code: clsLDX | modeMEM, k: r1}, &ostmt{code: clsLD | modeMEM, k: r0},
			&ostmt{code: clsALU | int(v.op) | srcX})
		l.freeReg(r0)
		l.freeReg(r1)
		r := l.allocReg()
		return append(s, st(r)), r
	}
	panic(fmt.Sprintf("bpf: unknown value kind %d", v.kind))
}

// block builds the block of one test, as gen_ncmp, gen_relation and
// gen_uncond build it.
func (l *lowerer) block(t *btest, jt, jf *oblock) *oblock {
	b := &oblock{}
	b.et.succ, b.ef.succ = jt, jf
	if t.rel {
		s0, r0 := l.arth(t.v)
		s1, r1 := l.arth(t.x)
		s := append(s0, s1...)
		s = append(s, &ostmt{code: clsLDX | modeMEM, k: r1}, &ostmt{code: clsLD | modeMEM, k: r0})
		if t.jop == jmpJEQ {
			s = append(s, &ostmt{code: clsALU | aluSUB | srcX})
			b.s = ostmt{code: clsJMP | jmpJEQ | srcK}
		} else {
			b.s = ostmt{code: clsJMP | int(t.jop) | srcX}
		}
		l.freeReg(r0)
		l.freeReg(r1)
		b.stmts = s
		return b
	}
	code, err := genA(nil, t.v, 0)
	if err != nil {
		panic(optErr{err.Error()})
	}
	b.stmts = stmtsOf(code)
	b.s = ostmt{code: clsJMP | int(t.jop) | srcK, k: t.k}
	return b
}

func (l *lowerer) build(n *bnode, t, f *oblock) *oblock {
	switch n.kind {
	case bTrue, bFalse:
		// gen_uncond: ld #0 (true) or #1 (false); jeq #0.
		k := uint32(0)
		if n.kind == bFalse {
			k = 1
		}
		return l.block(&btest{v: cnst(k), jop: jmpJEQ, k: 0}, t, f)
	case bNot:
		return l.build(n.l, f, t)
	case bAnd:
		return l.build(n.l, l.build(n.r, t, f), f)
	case bOr:
		return l.build(n.l, t, l.build(n.r, t, f))
	}
	return l.block(n.t, t, f)
}

func retBlock(k uint32) *oblock {
	return &oblock{s: ostmt{code: clsRET | retK, k: k}}
}

type vmapinfo struct {
	isConst  bool
	constVal uint32
}

type optState struct {
	done, nonBranch      bool
	blocks               []*oblock
	edges                []*oedge
	nodewords, edgewords int
	levels               []*oblock
	root                 *oblock
	mark                 int
	hash                 map[[3]uint32]uint32
	curval               uint32
	vmap                 []vmapinfo
}

func setMember(p []uint32, a int) bool { return p[a/32]&(1<<(a%32)) != 0 }
func setInsert(p []uint32, a int)      { p[a/32] |= 1 << (a % 32) }
func setIntersect(a, b []uint32) {
	for i := range a {
		a[i] &= b[i]
	}
}

func (o *optState) findLevelsR(b *oblock) {
	if b.mark == o.mark {
		return
	}
	b.mark = o.mark
	b.link = nil
	level := 0
	if b.jt() != nil {
		o.findLevelsR(b.jt())
		o.findLevelsR(b.jf())
		level = max(b.jt().level, b.jf().level) + 1
	}
	b.level = level
	b.link = o.levels[level]
	o.levels[level] = b
}

func (o *optState) findLevels() {
	clear(o.levels)
	o.mark++
	o.findLevelsR(o.root)
}

func (o *optState) findDom() {
	for _, b := range o.blocks {
		for i := range b.dom {
			b.dom[i] = ^uint32(0)
		}
	}
	clear(o.root.dom)
	for i := o.root.level; i >= 0; i-- {
		for b := o.levels[i]; b != nil; b = b.link {
			setInsert(b.dom, b.id)
			if b.jt() == nil {
				continue
			}
			setIntersect(b.jt().dom, b.dom)
			setIntersect(b.jf().dom, b.dom)
		}
	}
}

func propedom(ep *oedge) {
	setInsert(ep.edom, ep.id)
	if ep.succ != nil {
		setIntersect(ep.succ.et.edom, ep.edom)
		setIntersect(ep.succ.ef.edom, ep.edom)
	}
}

func (o *optState) findEdom() {
	for _, e := range o.edges {
		for i := range e.edom {
			e.edom[i] = ^uint32(0)
		}
	}
	clear(o.root.et.edom)
	clear(o.root.ef.edom)
	for i := o.root.level; i >= 0; i-- {
		for b := o.levels[i]; b != nil; b = b.link {
			propedom(&b.et)
			propedom(&b.ef)
		}
	}
}

func atomuse(s *ostmt) int {
	c := s.code
	if c == opNOP {
		return -1
	}
	switch bpfClass(c) {
	case clsRET:
		switch c & 0x18 {
		case retA:
			return aAtom
		case 0x08:
			return xAtom
		}
		return -1
	case clsLD, clsLDX:
		switch bpfMode(c) {
		case modeIND:
			return xAtom
		case modeMEM:
			return int(s.k)
		}
		return -1
	case clsST:
		return aAtom
	case clsSTX:
		return xAtom
	case clsJMP, clsALU:
		if bpfSrc(c) == srcX {
			return axAtom
		}
		return aAtom
	case clsMISC:
		if c&0xf8 == miscTXA {
			return xAtom
		}
		return aAtom
	}
	panic("bpf: atomuse")
}

func atomdef(s *ostmt) int {
	if s.code == opNOP {
		return -1
	}
	switch bpfClass(s.code) {
	case clsLD, clsALU:
		return aAtom
	case clsLDX:
		return xAtom
	case clsST, clsSTX:
		return int(s.k)
	case clsMISC:
		if s.code&0xf8 == miscTAX {
			return xAtom
		}
		return aAtom
	}
	return -1
}

func atomElem(set uint32, atom int) bool { return set&(1<<atom) != 0 }

func computeLocalUD(b *oblock) {
	var def, use, killed uint32
	addUse := func(atom int) {
		if atom < 0 {
			return
		}
		if atom == axAtom {
			if !atomElem(def, xAtom) {
				use |= 1 << xAtom
			}
			if !atomElem(def, aAtom) {
				use |= 1 << aAtom
			}
			return
		}
		if !atomElem(def, atom) {
			use |= 1 << atom
		}
	}
	for _, s := range b.stmts {
		if s.code == opNOP {
			continue
		}
		addUse(atomuse(s))
		if atom := atomdef(s); atom >= 0 {
			if !atomElem(use, atom) {
				killed |= 1 << atom
			}
			def |= 1 << atom
		}
	}
	if bpfClass(b.s.code) == clsJMP {
		addUse(atomuse(&b.s))
	}
	b.def, b.kill, b.inUse = def, killed, use
}

func (o *optState) findUD() {
	maxlevel := o.root.level
	for i := maxlevel; i >= 0; i-- {
		for p := o.levels[i]; p != nil; p = p.link {
			computeLocalUD(p)
			p.outUse = 0
		}
	}
	for i := 1; i <= maxlevel; i++ {
		for p := o.levels[i]; p != nil; p = p.link {
			p.outUse |= p.jt().inUse | p.jf().inUse
			p.inUse |= p.outUse &^ p.kill
		}
	}
}

func (o *optState) initVal() {
	o.curval = 0
	o.hash = make(map[[3]uint32]uint32, len(o.vmap))
	o.vmap = o.vmap[:1]
	o.vmap[0] = vmapinfo{}
}

// f is libpcap's F: the value number of code applied to v0 and v1.
func (o *optState) f(code int, v0, v1 uint32) uint32 {
	key := [3]uint32{uint32(code), v0, v1}
	if v, ok := o.hash[key]; ok {
		return v
	}
	o.curval++
	val := o.curval
	info := vmapinfo{}
	if bpfMode(code) == modeIMM && (bpfClass(code) == clsLD || bpfClass(code) == clsLDX) {
		info = vmapinfo{isConst: true, constVal: v0}
	}
	o.vmap = append(o.vmap, info)
	o.hash[key] = val
	return val
}

func (o *optState) kv(k uint32) uint32 { return o.f(clsLD|modeIMM|szW, k, 0) }

func vstore(s *ostmt, valp *uint32, newval uint32, alter bool) {
	if alter && newval != 0 && *valp == newval {
		s.code = opNOP
	} else {
		*valp = newval
	}
}

func (o *optState) changed() {
	o.nonBranch = true
	o.done = false
}

func (o *optState) foldOp(s *ostmt, v0, v1 uint32) {
	a, b := o.vmap[v0].constVal, o.vmap[v1].constVal
	op := bpfOp(s.code)
	switch op {
	case aluDIV:
		if b == 0 {
			panic(optErr{"division by zero"})
		}
	case aluMOD:
		if b == 0 {
			panic(optErr{"modulus by zero"})
		}
	}
	r, _ := alu(uint16(op), a, b)
	s.k = r
	s.code = clsLD | modeIMM
	o.changed()
}

func (o *optState) optStmt(s *ostmt, val *[nAtoms]uint32, alter bool) {
	switch s.code {
	case clsLD | modeABS | szW, clsLD | modeABS | szH, clsLD | modeABS | szB:
		v := o.f(s.code, s.k, 0)
		vstore(s, &val[aAtom], v, alter)
	case clsLD | modeIND | szW, clsLD | modeIND | szH, clsLD | modeIND | szB:
		v := val[xAtom]
		if alter && o.vmap[v].isConst {
			s.code = clsLD | modeABS | (s.code & 0x18)
			s.k += o.vmap[v].constVal
			v = o.f(s.code, s.k, 0)
			o.changed()
		} else {
			v = o.f(s.code, s.k, v)
		}
		vstore(s, &val[aAtom], v, alter)
	case clsLD | modeLEN:
		v := o.f(s.code, 0, 0)
		vstore(s, &val[aAtom], v, alter)
	case clsLD | modeIMM:
		vstore(s, &val[aAtom], o.kv(s.k), alter)
	case clsLDX | modeIMM:
		vstore(s, &val[xAtom], o.kv(s.k), alter)
	case clsLDX | modeMSH | szB:
		vstore(s, &val[xAtom], o.f(s.code, s.k, 0), alter)
	case clsALU | aluNEG:
		if alter && o.vmap[val[aAtom]].isConst {
			s.code = clsLD | modeIMM
			s.k = -o.vmap[val[aAtom]].constVal
			val[aAtom] = o.kv(s.k)
		} else {
			val[aAtom] = o.f(s.code, val[aAtom], 0)
		}
	case clsALU | aluADD | srcK, clsALU | aluSUB | srcK, clsALU | aluMUL | srcK, clsALU | aluDIV | srcK,
		clsALU | aluMOD | srcK, clsALU | aluAND | srcK, clsALU | aluOR | srcK, clsALU | aluXOR | srcK,
		clsALU | aluLSH | srcK, clsALU | aluRSH | srcK:
		op := bpfOp(s.code)
		if alter {
			if s.k == 0 {
				switch op {
				case aluADD, aluLSH, aluRSH, aluOR, aluXOR:
					s.code = opNOP
					return
				case aluMUL, aluAND:
					s.code = clsLD | modeIMM
					val[aAtom] = o.kv(s.k)
					return
				case aluDIV:
					panic(optErr{"division by zero"})
				case aluMOD:
					panic(optErr{"modulus by zero"})
				}
			}
			if o.vmap[val[aAtom]].isConst {
				o.foldOp(s, val[aAtom], o.kv(s.k))
				val[aAtom] = o.kv(s.k)
				return
			}
		}
		val[aAtom] = o.f(s.code, val[aAtom], o.kv(s.k))
	case clsALU | aluADD | srcX, clsALU | aluSUB | srcX, clsALU | aluMUL | srcX, clsALU | aluDIV | srcX,
		clsALU | aluMOD | srcX, clsALU | aluAND | srcX, clsALU | aluOR | srcX, clsALU | aluXOR | srcX,
		clsALU | aluLSH | srcX, clsALU | aluRSH | srcX:
		op := bpfOp(s.code)
		if alter && o.vmap[val[xAtom]].isConst {
			if o.vmap[val[aAtom]].isConst {
				o.foldOp(s, val[aAtom], val[xAtom])
				val[aAtom] = o.kv(s.k)
			} else {
				s.code = clsALU | srcK | op
				s.k = o.vmap[val[xAtom]].constVal
				if (op == aluLSH || op == aluRSH) && s.k > 31 {
					panic(optErr{"shift by more than 31 bits"})
				}
				o.changed()
				val[aAtom] = o.f(s.code, val[aAtom], o.kv(s.k))
			}
			return
		}
		if alter && o.vmap[val[aAtom]].isConst && o.vmap[val[aAtom]].constVal == 0 {
			switch op {
			case aluADD, aluOR, aluXOR:
				s.code = clsMISC | miscTXA
				vstore(s, &val[aAtom], val[xAtom], alter)
				return
			case aluMUL, aluDIV, aluMOD, aluAND, aluLSH, aluRSH:
				s.code = clsLD | modeIMM
				s.k = 0
				vstore(s, &val[aAtom], o.kv(s.k), alter)
				return
			}
		}
		val[aAtom] = o.f(s.code, val[aAtom], val[xAtom])
	case clsMISC | miscTXA:
		vstore(s, &val[aAtom], val[xAtom], alter)
	case clsLD | modeMEM:
		v := val[s.k]
		if alter && o.vmap[v].isConst {
			s.code = clsLD | modeIMM
			s.k = o.vmap[v].constVal
			o.changed()
		}
		vstore(s, &val[aAtom], v, alter)
	case clsMISC | miscTAX:
		vstore(s, &val[xAtom], val[aAtom], alter)
	case clsLDX | modeMEM:
		v := val[s.k]
		if alter && o.vmap[v].isConst {
			s.code = clsLDX | modeIMM
			s.k = o.vmap[v].constVal
			o.changed()
		}
		vstore(s, &val[xAtom], v, alter)
	case clsST:
		vstore(s, &val[s.k], val[aAtom], alter)
	case clsSTX:
		vstore(s, &val[s.k], val[xAtom], alter)
	}
}

func thisOp(s []*ostmt, i int) int {
	for ; i < len(s); i++ {
		if s[i].code != opNOP {
			return i
		}
	}
	return -1
}

func optNot(b *oblock) { b.et.succ, b.ef.succ = b.ef.succ, b.et.succ }

func (o *optState) peep(b *oblock) {
	s := b.stmts
	if len(s) == 0 {
		return
	}
	last := s[0]
	for i := 0; ; {
		i = thisOp(s, i)
		if i < 0 {
			break
		}
		n := thisOp(s, i+1)
		if n < 0 {
			break
		}
		last = s[n]
		cur, next := s[i], s[n]
		if cur.code == clsST && next.code == clsLDX|modeMEM && cur.k == next.k {
			o.changed()
			next.code = clsMISC | miscTAX
		}
		if cur.code == clsLD|modeIMM && next.code == clsMISC|miscTAX {
			cur.code = clsLDX | modeIMM
			next.code = clsMISC | miscTXA
			o.changed()
		}
		if cur.code == clsLD|modeIMM && !atomElem(b.outUse, xAtom) {
			add := n
			if next.code == clsLDX|modeMSH|szB {
				add = thisOp(s, n+1)
			}
			if add >= 0 && s[add].code == clsALU|aluADD|srcX {
				if tax := thisOp(s, add+1); tax >= 0 && s[tax].code == clsMISC|miscTAX {
					if ild := thisOp(s, tax+1); ild >= 0 && bpfClass(s[ild].code) == clsLD && bpfMode(s[ild].code) == modeIND {
						s[ild].k += cur.k
						cur.code = opNOP
						s[add].code = opNOP
						s[tax].code = opNOP
						o.changed()
					}
				}
			}
		}
		i = n
	}
	if b.s.code == clsJMP|jmpJEQ|srcK && !atomElem(b.outUse, aAtom) {
		switch {
		case last.code == clsALU|aluSUB|srcX:
			val := b.val[xAtom]
			if o.vmap[val].isConst {
				b.s.k += o.vmap[val].constVal
				last.code = opNOP
				o.changed()
			} else if b.s.k == 0 {
				last.code = opNOP
				b.s.code = clsJMP | jmpJEQ | srcX
				o.changed()
			}
		case last.code == clsALU|aluSUB|srcK:
			last.code = opNOP
			b.s.k += last.k
			o.changed()
		case last.code == clsALU|aluAND|srcK && b.s.k == 0:
			b.s.k = last.k
			b.s.code = clsJMP | srcK | jmpJSET
			last.code = opNOP
			o.changed()
			optNot(b)
		}
	}
	if b.s.code == clsJMP|srcK|jmpJSET {
		if b.s.k == 0 {
			b.et.succ = b.ef.succ
		}
		if b.s.k == 0xffffffff {
			b.ef.succ = b.et.succ
		}
	}
	if val := b.val[xAtom]; o.vmap[val].isConst && bpfSrc(b.s.code) == srcX {
		b.s.code &^= srcX
		b.s.k = o.vmap[val].constVal
	}
	if val := b.val[aAtom]; o.vmap[val].isConst && bpfSrc(b.s.code) == srcK {
		v := o.vmap[val].constVal
		var r bool
		switch bpfOp(b.s.code) {
		case jmpJEQ:
			r = v == b.s.k
		case jmpJGT:
			r = v > b.s.k
		case jmpJGE:
			r = v >= b.s.k
		case jmpJSET:
			r = v&b.s.k != 0
		}
		if b.jf() != b.jt() {
			o.changed()
		}
		if r {
			b.ef.succ = b.et.succ
		} else {
			b.et.succ = b.ef.succ
		}
	}
}

func (o *optState) deadstmt(s *ostmt, last *[nAtoms]*ostmt) {
	if atom := atomuse(s); atom >= 0 {
		if atom == axAtom {
			last[xAtom] = nil
			last[aAtom] = nil
		} else {
			last[atom] = nil
		}
	}
	if atom := atomdef(s); atom >= 0 {
		if last[atom] != nil {
			o.changed()
			last[atom].code = opNOP
		}
		last[atom] = s
	}
}

func (o *optState) deadstores(b *oblock) {
	var last [nAtoms]*ostmt
	for _, s := range b.stmts {
		o.deadstmt(s, &last)
	}
	o.deadstmt(&b.s, &last)
	for atom := 0; atom < nAtoms; atom++ {
		if last[atom] != nil && !atomElem(b.outUse, atom) {
			last[atom].code = opNOP
			o.changed()
		}
	}
}

func (o *optState) optBlk(b *oblock, doStmts bool) {
	p := b.inEdges
	if p == nil {
		b.val = [nAtoms]uint32{}
	} else {
		b.val = p.pred.val
		for p = p.next; p != nil; p = p.next {
			for i := range b.val {
				if b.val[i] != p.pred.val[i] {
					b.val[i] = 0
				}
			}
		}
	}
	aval, xval := b.val[aAtom], b.val[xAtom]
	for _, s := range b.stmts {
		o.optStmt(s, &b.val, doStmts)
	}
	if doStmts && ((b.outUse == 0 && aval != 0 && b.val[aAtom] == aval && xval != 0 && b.val[xAtom] == xval) ||
		bpfClass(b.s.code) == clsRET) {
		if b.stmts != nil {
			b.stmts = nil
			o.changed()
		}
	} else {
		o.peep(b)
		o.deadstores(b)
	}
	if bpfSrc(b.s.code) == srcK {
		b.oval = o.kv(b.s.k)
	} else {
		b.oval = b.val[xAtom]
	}
	b.et.code = b.s.code
	b.ef.code = -b.s.code
}

func useConflict(b, succ *oblock) bool {
	use := succ.outUse
	if use == 0 {
		return false
	}
	for atom := 0; atom < nAtoms; atom++ {
		if atomElem(use, atom) && b.val[atom] != succ.val[atom] {
			return true
		}
	}
	return false
}

func foldEdge(child *oblock, ep *oedge) *oblock {
	code, sense := ep.code, true
	if code < 0 {
		code, sense = -code, false
	}
	if child.s.code != code {
		return nil
	}
	if child.val[aAtom] != ep.pred.val[aAtom] {
		return nil
	}
	if child.oval == ep.pred.oval {
		if sense {
			return child.jt()
		}
		return child.jf()
	}
	if sense && code == clsJMP|jmpJEQ|srcK {
		return child.jf()
	}
	return nil
}

func (o *optState) optJ(ep *oedge) {
	if ep.succ.jt() == nil {
		return
	}
	if ep.succ.jt() == ep.succ.jf() {
		if !useConflict(ep.pred, ep.succ.jt()) {
			o.changed()
			ep.succ = ep.succ.jt()
		}
	}
top:
	for i := 0; i < o.edgewords; i++ {
		x := ep.edom[i]
		for x != 0 {
			k := bits.TrailingZeros32(x)
			x &^= 1 << k
			k += i * 32
			target := foldEdge(ep.succ, o.edges[k])
			if target != nil && !useConflict(ep.pred, target) {
				o.done = false
				ep.succ = target
				if target.jt() != nil {
					goto top
				}
				return
			}
		}
	}
}

// pullup is or_pullup (and == false) and and_pullup (and == true).
func (o *optState) pullup(b *oblock, and bool) {
	// same returns the link along the chain, other the exit shared with b.
	same := func(p *oblock) **oblock {
		if and {
			return &p.et.succ
		}
		return &p.ef.succ
	}
	other := func(p *oblock) *oblock {
		if and {
			return p.jf()
		}
		return p.jt()
	}
	ep := b.inEdges
	if ep == nil {
		return
	}
	val := ep.pred.val[aAtom]
	for ep = ep.next; ep != nil; ep = ep.next {
		if val != ep.pred.val[aAtom] {
			return
		}
	}
	var diffp **oblock
	if first := b.inEdges.pred; first.jt() == b {
		diffp = &first.et.succ
	} else {
		diffp = &first.ef.succ
	}
	atTop := true
	for {
		if *diffp == nil {
			return
		}
		if other(*diffp) != other(b) {
			return
		}
		if !setMember((*diffp).dom, b.id) {
			return
		}
		if (*diffp).val[aAtom] != val {
			break
		}
		diffp = same(*diffp)
		atTop = false
	}
	samep := same(*diffp)
	for {
		if *samep == nil {
			return
		}
		if other(*samep) != other(b) {
			return
		}
		if !setMember((*samep).dom, b.id) {
			return
		}
		if (*samep).val[aAtom] == val {
			break
		}
		samep = same(*samep)
	}
	pull := *samep
	*samep = *same(pull)
	*same(pull) = *diffp
	if atTop {
		for ep := b.inEdges; ep != nil; ep = ep.next {
			if ep.pred.jt() == b {
				ep.pred.et.succ = pull
			} else {
				ep.pred.ef.succ = pull
			}
		}
	} else {
		*diffp = pull
	}
	o.done = false
}

func (o *optState) findInedges() {
	for _, b := range o.blocks {
		b.inEdges = nil
	}
	for level := o.root.level; level > 0; level-- {
		for b := o.levels[level]; b != nil; b = b.link {
			b.et.next, b.jt().inEdges = b.jt().inEdges, &b.et
			b.ef.next, b.jf().inEdges = b.jf().inEdges, &b.ef
		}
	}
}

func (o *optState) optBlks(doStmts bool) {
	o.initVal()
	maxlevel := o.root.level
	o.findInedges()
	for i := maxlevel; i >= 0; i-- {
		for p := o.levels[i]; p != nil; p = p.link {
			o.optBlk(p, doStmts)
		}
	}
	if doStmts {
		return
	}
	for i := 1; i <= maxlevel; i++ {
		for p := o.levels[i]; p != nil; p = p.link {
			o.optJ(&p.et)
			o.optJ(&p.ef)
		}
	}
	o.findInedges()
	for i := 1; i <= maxlevel; i++ {
		for p := o.levels[i]; p != nil; p = p.link {
			o.pullup(p, false)
			o.pullup(p, true)
		}
	}
}

func (o *optState) optLoop(doStmts bool) {
	loopCount := 0
	for {
		o.done = true
		o.nonBranch = false
		o.findLevels()
		o.findDom()
		o.findUD()
		o.findEdom()
		o.optBlks(doStmts)
		if o.done {
			break
		}
		if o.nonBranch {
			loopCount = 0
		} else if loopCount++; loopCount >= 100 {
			o.done = true
			break
		}
	}
}

func (o *optState) numberBlks(p *oblock) {
	if p == nil || p.mark == o.mark {
		return
	}
	p.mark = o.mark
	p.id = len(o.blocks)
	o.blocks = append(o.blocks, p)
	o.numberBlks(p.jt())
	o.numberBlks(p.jf())
}

func (o *optState) init() {
	o.mark++
	o.numberBlks(o.root)
	n := len(o.blocks)
	o.edges = make([]*oedge, 2*n)
	o.levels = make([]*oblock, n)
	o.edgewords = 2*n/32 + 1
	o.nodewords = n/32 + 1
	space := make([]uint32, n*o.nodewords+2*n*o.edgewords)
	for i, b := range o.blocks {
		b.dom, space = space[:o.nodewords:o.nodewords], space[o.nodewords:]
		b.et.edom, space = space[:o.edgewords:o.edgewords], space[o.edgewords:]
		b.ef.edom, space = space[:o.edgewords:o.edgewords], space[o.edgewords:]
		b.et.id, b.ef.id = i, n+i
		o.edges[i], o.edges[n+i] = &b.et, &b.ef
		b.et.pred, b.ef.pred = b, b
	}
	o.vmap = make([]vmapinfo, 1, 64)
}

func eqSlist(x, y []*ostmt) bool {
	i, j := 0, 0
	for {
		for i < len(x) && x[i].code == opNOP {
			i++
		}
		for j < len(y) && y[j].code == opNOP {
			j++
		}
		if i == len(x) || j == len(y) {
			return i == len(x) && j == len(y)
		}
		if *x[i] != *y[j] {
			return false
		}
		i++
		j++
	}
}

func eqBlk(b0, b1 *oblock) bool {
	return b0.s == b1.s && b0.jt() == b1.jt() && b0.jf() == b1.jf() && eqSlist(b0.stmts, b1.stmts)
}

func (o *optState) makeMarks(p *oblock) {
	if p.mark == o.mark {
		return
	}
	p.mark = o.mark
	if bpfClass(p.s.code) != clsRET {
		o.makeMarks(p.jt())
		o.makeMarks(p.jf())
	}
}

func (o *optState) internBlocks() {
	n := len(o.blocks)
	for {
		done := true
		for _, b := range o.blocks {
			b.link = nil
		}
		o.mark++
		o.makeMarks(o.root)
		for i := n - 1; i != 0; {
			i--
			if o.blocks[i].mark != o.mark {
				continue
			}
			for j := i + 1; j < n; j++ {
				if o.blocks[j].mark != o.mark {
					continue
				}
				if eqBlk(o.blocks[i], o.blocks[j]) {
					if o.blocks[j].link != nil {
						o.blocks[i].link = o.blocks[j].link
					} else {
						o.blocks[i].link = o.blocks[j]
					}
					break
				}
			}
		}
		for _, p := range o.blocks {
			if p.jt() == nil {
				continue
			}
			if l := p.jt().link; l != nil {
				done = false
				p.et.succ = l
			}
			if l := p.jf().link; l != nil {
				done = false
				p.ef.succ = l
			}
		}
		if done {
			return
		}
	}
}

func optRoot(b *oblock) *oblock {
	s := b.stmts
	b.stmts = nil
	for bpfClass(b.s.code) == clsJMP && b.jt() == b.jf() {
		b = b.jt()
	}
	s = append(s, b.stmts...)
	b.stmts = s
	if bpfClass(b.s.code) == clsRET {
		b.stmts = nil
	}
	return b
}

// optimize runs libpcap's bpf_optimize on the graph from root and returns
// the new root.
func optimizeBlocks(root *oblock) *oblock {
	o := &optState{root: root}
	o.init()
	o.optLoop(false)
	o.optLoop(true)
	o.internBlocks()
	return optRoot(o.root)
}

func slength(s []*ostmt) int {
	n := 0
	for _, x := range s {
		if x.code != opNOP {
			n++
		}
	}
	return n
}

type convState struct {
	mark int
	prog Program
	tail int
}

func (c *convState) countStmts(p *oblock) int {
	if p == nil || p.mark == c.mark {
		return 0
	}
	p.mark = c.mark
	n := c.countStmts(p.jt()) + c.countStmts(p.jf())
	return slength(p.stmts) + n + 1 + p.longjt + p.longjf
}

func (c *convState) convert(p *oblock) bool {
	if p == nil || p.mark == c.mark {
		return true
	}
	p.mark = c.mark
	if !c.convert(p.jf()) || !c.convert(p.jt()) {
		return false
	}
	slen := slength(p.stmts)
	c.tail -= slen + 1 + p.longjt + p.longjf
	dst := c.tail
	p.offset = dst
	for _, s := range p.stmts {
		if s.code == opNOP {
			continue
		}
		c.prog[dst] = Instruction{Op: uint16(s.code), K: s.k}
		dst++
	}
	c.prog[dst] = Instruction{Op: uint16(p.s.code), K: p.s.k}
	if p.jt() != nil {
		extra := 0
		off := p.jt().offset - (p.offset + slen) - 1
		if off >= 256 {
			if p.longjt == 0 {
				p.longjt++
				return false
			}
			c.prog[dst].Jt = uint8(extra)
			extra++
			c.prog[dst+extra] = Instruction{Op: clsJMP | jmpJA, K: uint32(off - extra)}
		} else {
			c.prog[dst].Jt = uint8(off)
		}
		off = p.jf().offset - (p.offset + slen) - 1
		if off >= 256 {
			if p.longjf == 0 {
				p.longjf++
				return false
			}
			c.prog[dst].Jf = uint8(extra)
			extra++
			c.prog[dst+extra] = Instruction{Op: clsJMP | jmpJA, K: uint32(off - extra)}
		} else {
			c.prog[dst].Jf = uint8(off)
		}
	}
	return true
}

// toProgram is libpcap's icode_to_fcode.
func toProgram(root *oblock) (Program, error) {
	c := &convState{mark: 1 << 30}
	for {
		c.mark++
		n := c.countStmts(root)
		if n > maxInstructions {
			return nil, fmt.Errorf("program needs %d instructions, more than the kernel's limit of %d", n, maxInstructions)
		}
		c.prog = make(Program, n)
		c.tail = n
		c.mark++
		if c.convert(root) {
			return c.prog, nil
		}
	}
}
