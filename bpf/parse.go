package bpf

import "fmt"

// Qualifier values, mirroring libpcap's Q_* constants for the subset sonde
// supports.
const (
	qDefault = iota
	qUndef
	// protocol qualifiers
	qLink
	qIP
	qARP
	qRARP
	qSCTP
	qTCP
	qUDP
	qICMP
	qIP6
	qICMP6
	// direction qualifiers
	qSrc
	qDst
	qOr
	qAnd
	// address qualifiers
	qHost
	qNet
	qPort
	qPortrange
	qProto
)

type qual struct{ proto, dir, addr int }

var qerr = qual{qUndef, qUndef, qUndef}

var pnames = map[string]int{
	"link": qLink, "ip": qIP, "arp": qARP, "rarp": qRARP, "sctp": qSCTP, "tcp": qTCP,
	"udp": qUDP, "icmp": qICMP, "ip6": qIP6, "icmp6": qICMP6,
}

// unsupported lists libpcap keywords sonde refuses, with the reason given.
var unsupported = map[string]string{
	"gateway": "needs name resolution", "wlan": "is not supported", "fddi": "is not supported",
	"tr": "is not supported", "ppp": "is not supported", "slip": "is not supported", "protochain": "is not supported",
	"inbound": "needs packet direction metadata", "outbound": "needs packet direction metadata",
	"ifindex": "needs interface metadata", "ifname": "is a pflog field",
	"byte": "is not supported", "mpls": "is not supported", "pppoed": "is not supported",
	"pppoes": "is not supported", "geneve": "is not supported", "vxlan": "is not supported",
	"batadv": "is not supported", "llc": "is not supported", "type": "is an 802.11 field",
	"subtype": "is an 802.11 field", "dir": "is an 802.11 field",
	"addr1": "is an 802.11 field", "addr2": "is an 802.11 field", "addr3": "is an 802.11 field",
	"addr4": "is an 802.11 field", "ra": "is an 802.11 field", "ta": "is an 802.11 field",
}

// AST. Code is generated from it in source order after parsing, which is
// the order libpcap's parser generates code in (this matters for "vlan").
type (
	node interface{ position() int }

	andNode  struct{ l, r node }
	orNode   struct{ l, r node }
	notNode  struct{ x node }
	primNode struct {
		q    qual
		val  token  // NUM, ID, HID, HID6, EID or AID
		mask *token // HID after "mask", or NUM after "/"
	}
	abbrevNode struct {
		pname int
		tok   token
	}
	relNode struct {
		op       uint16
		reversed bool
		a0, a1   *arth
		tok      token
	}
	castNode struct {
		multicast bool
		pname     int
		tok       token
	}
	lenNode struct {
		less bool
		n    uint32
		tok  token
	}
	vlanNode struct {
		has bool
		n   uint32
		tok token
	}
)

type arth struct {
	kind  int // arNum, arLen, arLoad, arBin, arNeg
	num   uint32
	pname int
	size  uint32
	op    uint16
	l, r  *arth
	tok   token
}

const (
	arNum = iota
	arLen
	arLoad
	arBin
	arNeg
)

func (n *andNode) position() int    { return n.l.position() }
func (n *orNode) position() int     { return n.l.position() }
func (n *notNode) position() int    { return n.x.position() }
func (n *primNode) position() int   { return n.val.pos }
func (n *abbrevNode) position() int { return n.tok.pos }
func (n *relNode) position() int    { return n.tok.pos }
func (n *castNode) position() int   { return n.tok.pos }
func (n *lenNode) position() int    { return n.tok.pos }
func (n *vlanNode) position() int   { return n.tok.pos }

type parser struct {
	toks []token
	i    int
	// arthMemo caches parseArth by (position, binding power): a run of
	// "(" is tried as an expression and then, at every depth, as a
	// relation, which re-parsed the same arithmetic quadratically often.
	arthMemo map[[2]int]arthResult
}

type arthResult struct {
	a   *arth
	err *perr
	end int
}

// perr is a parse failure; fatal ones stop backtracking because no other
// reading of the input could succeed.
type perr struct {
	pos   int
	msg   string
	fatal bool
}

func (p *parser) peek(n int) token {
	if p.i+n < len(p.toks) {
		return p.toks[p.i+n]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) next() token { t := p.peek(0); p.i++; return t }

func isKey(t token, words ...string) bool {
	if t.kind != tKey {
		return false
	}
	for _, w := range words {
		if t.text == w {
			return true
		}
	}
	return false
}

func isOp(t token, ops ...string) bool {
	if t.kind != tOp {
		return false
	}
	for _, o := range ops {
		if t.text == o {
			return true
		}
	}
	return false
}

func (p *parser) fail(t token) *perr {
	if t.kind == tEOF {
		return &perr{pos: t.pos, msg: "unexpected end of expression"}
	}
	if t.kind == tKey {
		if why, ok := unsupported[t.text]; ok {
			return &perr{pos: t.pos, msg: fmt.Sprintf("%q %s", t.raw, why), fatal: true}
		}
		if _, ok := pnames[t.text]; !ok && !knownKeyword(t.text) {
			return &perr{pos: t.pos, msg: fmt.Sprintf("unsupported word %q", t.raw), fatal: true}
		}
	}
	if t.kind == tAID {
		return &perr{pos: t.pos, msg: fmt.Sprintf("ARCnet address %q is not supported", t.raw), fatal: true}
	}
	return &perr{pos: t.pos, msg: fmt.Sprintf("syntax error at %q", t.raw)}
}

// knownKeyword reports whether a keyword is part of the supported grammar.
func knownKeyword(w string) bool {
	switch w {
	case "src", "dst", "host", "net", "mask", "port", "portrange", "proto", "less", "greater",
		"broadcast", "multicast", "and", "or", "not", "len", "vlan":
		return true
	}
	return false
}

func farther(a, b *perr) *perr {
	if a == nil {
		return b
	}
	if b == nil || a.fatal || (!b.fatal && a.pos >= b.pos) {
		return a
	}
	return b
}

func (p *parser) parseProg() (node, *perr) {
	if p.peek(0).kind == tEOF {
		return nil, nil
	}
	n, _, err := p.parseExpr(qerr)
	if err != nil {
		return nil, err
	}
	if t := p.peek(0); t.kind != tEOF {
		return nil, p.fail(t)
	}
	return n, nil
}

// parseExpr parses "term { (and|or) (term|id) }", left-associative with
// "and" and "or" at the same precedence, as libpcap's grammar does.
func (p *parser) parseExpr(ctx qual) (node, qual, *perr) {
	left, q, err := p.parseTerm(ctx)
	if err != nil {
		return nil, q, err
	}
	for isKey(p.peek(0), "and", "or") {
		op := p.next()
		save := p.i
		right, q2, terr := p.parseTerm(q)
		if terr != nil {
			if terr.fatal {
				return nil, q, terr
			}
			p.i = save
			var ierr *perr
			right, ierr = p.parseID(q)
			if ierr != nil {
				return nil, q, farther(terr, ierr)
			}
		} else {
			q = q2
		}
		if op.text == "and" {
			left = &andNode{left, right}
		} else {
			left = &orNode{left, right}
		}
	}
	return left, q, nil
}

func (p *parser) parseTerm(ctx qual) (node, qual, *perr) {
	if isKey(p.peek(0), "not") {
		p.next()
		n, q, err := p.parseTerm(ctx)
		if err != nil {
			return nil, q, err
		}
		return &notNode{n}, q, nil
	}
	return p.parseRterm(ctx)
}

func isDqual(t token) bool { return isKey(t, "src", "dst") }
func isAqual(t token) bool { return isKey(t, "host", "net", "port", "portrange") }

func (p *parser) parseRterm(ctx qual) (node, qual, *perr) {
	t := p.peek(0)
	switch {
	case isOp(t, "("):
		save := p.i
		p.next()
		n, _, err := p.parseExpr(ctx)
		if err == nil && isOp(p.peek(0), ")") {
			p.next()
			return n, ctx, nil
		}
		if err != nil && err.fatal {
			return nil, ctx, err
		}
		if err == nil {
			err = p.fail(p.peek(0))
		}
		p.i = save
		r, rerr := p.parseRelation()
		if rerr != nil {
			return nil, ctx, farther(err, rerr)
		}
		return r, qerr, nil
	case t.kind == tKey && pnames[t.text] != 0:
		nt := p.peek(1)
		switch {
		case isOp(nt, "["):
			r, err := p.parseRelation()
			return r, qerr, err
		case isDqual(nt) || isAqual(nt) || isKey(nt, "proto", "protochain", "gateway"):
			return p.parseHeadID()
		case isKey(nt, "broadcast", "multicast"):
			p.next()
			p.next()
			return &castNode{multicast: nt.text == "multicast", pname: pnames[t.text], tok: nt}, qerr, nil
		}
		p.next()
		return &abbrevNode{pname: pnames[t.text], tok: t}, qerr, nil
	case isDqual(t) || isAqual(t) || isKey(t, "proto", "protochain", "gateway"):
		return p.parseHeadID()
	case isKey(t, "broadcast", "multicast"):
		p.next()
		return &castNode{multicast: t.text == "multicast", pname: qDefault, tok: t}, qerr, nil
	case isKey(t, "less", "greater"):
		p.next()
		n := p.next()
		if n.kind != tNUM {
			return nil, qerr, p.fail(n)
		}
		return &lenNode{less: t.text == "less", n: n.num, tok: t}, qerr, nil
	case isKey(t, "vlan"):
		p.next()
		save := p.i
		if v, ok := p.parsePnum(); ok {
			return &vlanNode{has: true, n: v, tok: t}, qerr, nil
		}
		p.i = save
		return &vlanNode{tok: t}, qerr, nil
	case t.kind == tNUM || isOp(t, "-") || isKey(t, "len"):
		r, err := p.parseRelation()
		return r, qerr, err
	}
	return nil, qerr, p.fail(t)
}

func (p *parser) parseHeadID() (node, qual, *perr) {
	q := qual{qDefault, qDefault, qDefault}
	if t := p.peek(0); t.kind == tKey && pnames[t.text] != 0 {
		q.proto = pnames[t.text]
		p.next()
	}
	t := p.peek(0)
	switch {
	case isDqual(t):
		p.next()
		q.dir = map[string]int{"src": qSrc, "dst": qDst}[t.text]
		if c := p.peek(0); isKey(c, "and", "or") && isDqual(p.peek(1)) && p.peek(1).text != t.text {
			p.next()
			p.next()
			q.dir = map[string]int{"and": qAnd, "or": qOr}[c.text]
		}
		if a := p.peek(0); isAqual(a) {
			p.next()
			q.addr = aquals[a.text]
		} else if isKey(a, "gateway") {
			return nil, q, p.fail(a)
		}
	case isAqual(t):
		p.next()
		q.addr = aquals[t.text]
	case isKey(t, "proto"):
		p.next()
		q.addr = qProto
	default:
		return nil, q, p.fail(t)
	}
	n, err := p.parseID(q)
	return n, q, err
}

var aquals = map[string]int{"host": qHost, "net": qNet, "port": qPort, "portrange": qPortrange}

// parsePnum parses NUM or a parenthesised pnum.
func (p *parser) parsePnum() (uint32, bool) {
	t := p.next()
	if t.kind == tNUM {
		return t.num, true
	}
	if isOp(t, "(") {
		v, ok := p.parsePnum()
		if ok && isOp(p.peek(0), ")") {
			p.next()
			return v, true
		}
	}
	return 0, false
}

// parseID parses libpcap's "id": an address, number or name that inherits
// the qualifiers q, possibly negated or a parenthesised and/or list.
func (p *parser) parseID(q qual) (node, *perr) {
	t := p.peek(0)
	switch {
	case isKey(t, "not"):
		p.next()
		n, err := p.parseID(q)
		if err != nil {
			return nil, err
		}
		return &notNode{n}, nil
	case isOp(t, "("):
		save := p.i
		if v, ok := p.parsePnum(); ok {
			return &primNode{q: q, val: token{kind: tNUM, num: v, pos: t.pos, raw: fmt.Sprint(v)}}, nil
		}
		p.i = save
		p.next()
		left, err := p.parseNidOrNum(q)
		if err != nil {
			return nil, err
		}
		for isKey(p.peek(0), "and", "or") {
			op := p.next()
			right, err := p.parseID(q)
			if err != nil {
				return nil, err
			}
			if op.text == "and" {
				left = &andNode{left, right}
			} else {
				left = &orNode{left, right}
			}
		}
		if c := p.next(); !isOp(c, ")") {
			return nil, p.fail(c)
		}
		return left, nil
	}
	return p.parseNidOrNum(q)
}

func (p *parser) parseNidOrNum(q qual) (node, *perr) {
	t := p.peek(0)
	switch t.kind {
	case tNUM:
		p.next()
		return &primNode{q: q, val: t}, nil
	case tID, tHID6, tEID:
		p.next()
		n := &primNode{q: q, val: t}
		if t.kind == tHID6 && isOp(p.peek(0), "/") {
			p.next()
			m := p.next()
			if m.kind != tNUM {
				return nil, p.fail(m)
			}
			n.mask = &m
		}
		return n, nil
	case tHID:
		p.next()
		n := &primNode{q: q, val: t}
		if isOp(p.peek(0), "/") {
			p.next()
			m := p.next()
			if m.kind != tNUM {
				return nil, p.fail(m)
			}
			n.mask = &m
		} else if isKey(p.peek(0), "mask") {
			p.next()
			m := p.next()
			if m.kind != tHID {
				return nil, p.fail(m)
			}
			n.mask = &m
		}
		return n, nil
	case tKey:
		if t.text == "not" {
			return p.parseID(q)
		}
	case tOp:
		if t.text == "(" {
			return p.parseID(q)
		}
	}
	return nil, p.fail(t)
}

// parseRelation parses "arth relop arth".
func (p *parser) parseRelation() (node, *perr) {
	a0, err := p.parseArth(0)
	if err != nil {
		return nil, err
	}
	t := p.next()
	var op uint16
	var rev bool
	switch {
	case isOp(t, ">"):
		op = jmpJGT
	case isOp(t, ">="):
		op = jmpJGE
	case isOp(t, "="):
		op = jmpJEQ
	case isOp(t, "<="):
		op, rev = jmpJGT, true
	case isOp(t, "<"):
		op, rev = jmpJGE, true
	case isOp(t, "!="):
		op, rev = jmpJEQ, true
	default:
		return nil, p.fail(t)
	}
	a1, err := p.parseArth(0)
	if err != nil {
		return nil, err
	}
	return &relNode{op: op, reversed: rev, a0: a0, a1: a1, tok: t}, nil
}

// Binding powers of the arithmetic operators. '%' and '^' have no
// precedence in libpcap's grammar, so yacc always shifts them: they bind
// tightest to their left and loosest to their right.
var binOps = map[string]struct {
	op       uint16
	lbp, rbp int
}{
	"|": {aluOR, 1, 1}, "&": {aluAND, 2, 2}, "<<": {aluLSH, 3, 3}, ">>": {aluRSH, 3, 3},
	"+": {aluADD, 4, 4}, "-": {aluSUB, 4, 4}, "*": {aluMUL, 5, 5}, "/": {aluDIV, 5, 5},
	"%": {aluMOD, 100, 0}, "^": {aluXOR, 100, 0},
}

const unaryMinusBP = 6

func (p *parser) parseArth(minbp int) (*arth, *perr) {
	key := [2]int{p.i, minbp}
	if r, ok := p.arthMemo[key]; ok {
		p.i = r.end
		return r.a, r.err
	}
	a, err := p.parseArthUncached(minbp)
	if p.arthMemo == nil {
		p.arthMemo = map[[2]int]arthResult{}
	}
	p.arthMemo[key] = arthResult{a, err, p.i}
	return a, err
}

func (p *parser) parseArthUncached(minbp int) (*arth, *perr) {
	left, err := p.parseArthPrimary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek(0)
		if t.kind != tOp {
			break
		}
		b, ok := binOps[t.text]
		if !ok || b.lbp <= minbp {
			break
		}
		p.next()
		right, err := p.parseArth(b.rbp)
		if err != nil {
			return nil, err
		}
		left = &arth{kind: arBin, op: b.op, l: left, r: right, tok: t}
	}
	return left, nil
}

func (p *parser) parseArthPrimary() (*arth, *perr) {
	t := p.next()
	switch {
	case t.kind == tNUM:
		return &arth{kind: arNum, num: t.num, tok: t}, nil
	case isKey(t, "len"):
		return &arth{kind: arLen, tok: t}, nil
	case isOp(t, "-"):
		x, err := p.parseArth(unaryMinusBP)
		if err != nil {
			return nil, err
		}
		return &arth{kind: arNeg, l: x, tok: t}, nil
	case isOp(t, "("):
		x, err := p.parseArth(0)
		if err != nil {
			return nil, err
		}
		if c := p.next(); !isOp(c, ")") {
			return nil, p.fail(c)
		}
		return x, nil
	case t.kind == tKey && pnames[t.text] != 0:
		if c := p.next(); !isOp(c, "[") {
			return nil, p.fail(c)
		}
		idx, err := p.parseArth(0)
		if err != nil {
			return nil, err
		}
		size := uint32(1)
		if isOp(p.peek(0), ":") {
			p.next()
			n := p.next()
			if n.kind != tNUM {
				return nil, p.fail(n)
			}
			size = n.num
		}
		if c := p.next(); !isOp(c, "]") {
			return nil, p.fail(c)
		}
		return &arth{kind: arLoad, pname: pnames[t.text], l: idx, size: size, tok: t}, nil
	}
	return nil, p.fail(t)
}
