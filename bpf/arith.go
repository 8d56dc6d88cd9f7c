package bpf

// relation mirrors gen_relation: the protocol checks of both sides, then one
// test that computes both sides and compares them.
func (g *gen) relation(n *relNode) *bnode {
	a0, c0 := g.arth(n.a0)
	a1, c1 := g.arth(n.a1)
	var b *bnode
	switch {
	case g.faithful:
		b = &bnode{kind: bTest, t: &btest{v: a0, jop: n.op, x: a1, rel: true}}
	case a0.kind == axConst && a1.kind == axConst && g.opt:
		if cmpConst(a0.k, n.op, a1.k) {
			b = btrue
		} else {
			b = bfalse
		}
	case a1.kind == axConst:
		b = g.canonTest(a0, n.op, a1.k)
	default:
		b = &bnode{kind: bTest, t: &btest{v: a0, jop: n.op, x: a1}}
	}
	if n.reversed {
		b = g.not(b)
	}
	return g.and(g.and(c0, c1), b)
}

// canonTest builds "v op k" in the form libpcap's peephole optimizer leaves
// it, so that equal tests are recognised as equal.
func (g *gen) canonTest(v *ax, op uint16, k uint32) *bnode {
	if !g.opt || op != jmpJEQ {
		return test(v, op, k)
	}
	for v.kind == axBin && v.op == aluSUB && v.r.kind == axConst {
		k += v.r.k
		v = v.l
	}
	if k == 0 && v.kind == axBin && v.op == aluAND && v.r.kind == axConst {
		return g.not(test(v.l, jmpJSET, v.r.k))
	}
	return test(v, op, k)
}

// firstIsZero reports whether the first instruction libpcap generates for
// an arithmetic expression is "ld #0": gen_arth refuses such a divisor.
func firstIsZero(a *arth) bool {
	switch a.kind {
	case arNum:
		return a.num == 0
	case arLoad, arBin, arNeg:
		return firstIsZero(a.l)
	}
	return false
}

// arth generates an arithmetic expression: the value and the protocol checks
// that must pass before it is computed.
func (g *gen) arth(a *arth) (*ax, *bnode) {
	switch a.kind {
	case arNum:
		return cnst(a.num), nil
	case arLen:
		return &ax{kind: axLen}, nil
	case arNeg:
		v, c := g.arth(a.l)
		if g.opt && v.kind == axConst {
			return cnst(-v.k), c
		}
		return &ax{kind: axNeg, l: v}, c
	case arBin:
		if a.op == aluDIV && firstIsZero(a.r) {
			g.fail(a.tok.pos, "division by zero")
		}
		if a.op == aluMOD && firstIsZero(a.r) {
			g.fail(a.tok.pos, "modulus by zero")
		}
		// libpcap's gen_arth keeps only the left operand's protocol
		// checks: "ip[0] - tcp[1] = 0" loads tcp[1] on any IPv4 packet.
		l, cl := g.arth(a.l)
		r, _ := g.arth(a.r)
		return g.fold(a, l, r), cl
	case arLoad:
		return g.loadArth(a)
	}
	panic("bpf: unknown arithmetic node")
}

// fold applies the constant folding libpcap's optimizer does, including its
// shortcuts for a zero operand, which drop the other operand's loads.
func (g *gen) fold(a *arth, l, r *ax) *ax {
	bin := &ax{kind: axBin, op: a.op, l: l, r: r}
	if !g.opt {
		return bin
	}
	if l.kind == axConst && r.kind == axConst {
		if (a.op == aluDIV || a.op == aluMOD) && r.k == 0 {
			g.fail(a.tok.pos, "division by zero")
		}
		v, _ := alu(a.op, l.k, r.k)
		return cnst(v)
	}
	if r.kind == axConst && r.k == 0 {
		switch a.op {
		case aluADD, aluLSH, aluRSH, aluOR, aluXOR:
			return l
		case aluMUL, aluAND:
			return cnst(0)
		case aluDIV, aluMOD:
			g.fail(a.tok.pos, "division by zero")
		}
	}
	if l.kind == axConst && l.k == 0 {
		switch a.op {
		case aluADD, aluOR, aluXOR:
			return r
		case aluMUL, aluDIV, aluMOD, aluAND, aluLSH, aluRSH:
			return cnst(0)
		}
	}
	return bin
}

func (g *gen) loadArth(a *arth) (*ax, *bnode) {
	pos := a.tok.pos
	if a.size != 1 && a.size != 2 && a.size != 4 {
		g.fail(pos, "data size must be 1, 2, or 4")
	}
	idx, checks := g.arth(a.l)
	indexed := func(base uint32) *ax {
		if g.opt && idx.kind == axConst {
			return &ax{kind: axAbs, size: a.size, k: base + idx.k}
		}
		return &ax{kind: axInd, size: a.size, k: base, l: idx}
	}
	switch a.pname {
	case qLink:
		switch g.lt {
		case LinkRaw, LinkRawAlt12, LinkRawAlt14, LinkIPv4, LinkIPv6:
			g.fail(pos, "%q: link type %d has no link-layer header", a.tok.raw+"[]", g.lt)
		}
		return indexed(0), checks
	case qIP, qARP, qRARP, qIP6:
		return indexed(uint32(g.offLinkPL)), g.and(checks, g.protoAbbrev(a.pname, pos))
	case qTCP, qUDP, qSCTP, qICMP:
		v := &ax{kind: axTran4, size: a.size, msh: uint32(g.offLinkPL), k: uint32(g.offLinkPL), l: idx}
		c := g.and(g.protoAbbrev(qIP, pos), g.and(checks, g.and(g.protoAbbrev(a.pname, pos), g.ipfrag())))
		return v, c
	case qICMP6:
		c := g.and(g.and(checks, g.protoAbbrev(qIP6, pos)), g.cmp(orLinkPL, 6, 1, 58))
		return indexed(uint32(g.offLinkPL + 40)), c
	}
	g.fail(pos, "%s[] is not supported", a.tok.raw)
	return nil, nil
}
