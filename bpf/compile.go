package bpf

import (
	"errors"
	"fmt"
)

// LinkType is a pcap LINKTYPE_* value: the framing the filter will see.
type LinkType uint32

// Link types Compile supports.
const (
	LinkNull     LinkType = 0   // BSD loopback, address family in host byte order
	LinkEthernet LinkType = 1   // Ethernet
	LinkRawAlt12 LinkType = 12  // raw IP (DLT_RAW on most systems)
	LinkRawAlt14 LinkType = 14  // raw IP (DLT_RAW on OpenBSD)
	LinkRaw      LinkType = 101 // raw IPv4 or IPv6
	LinkLoop     LinkType = 108 // OpenBSD loopback, address family in network byte order
	LinkSLL      LinkType = 113 // Linux cooked capture v1
	LinkIPv4     LinkType = 228 // raw IPv4 only
	LinkIPv6     LinkType = 229 // raw IPv6 only
	LinkSLL2     LinkType = 276 // Linux cooked capture v2
)

// SyntaxError is returned for any expression Compile cannot compile: a
// grammar error, an unknown or unsupported word, or a primitive that makes
// no sense for the link type. Pos is the byte offset of the offending word.
type SyntaxError struct {
	Expr string
	Pos  int
	Msg  string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("filter %q: %s at position %d", e.Expr, e.Msg, e.Pos)
}

// Compile compiles a tcpdump filter expression into a classic BPF program
// for packets of the given link type, with libpcap's semantics and libpcap's
// optimizer's verdicts. Accepted packets return snaplen, rejected ones 0; an
// empty expression accepts everything. Host and port names are never
// resolved: only numeric addresses are accepted.
func Compile(expr string, lt LinkType, snaplen int) ([]Instruction, error) {
	return compile(expr, lt, snaplen, true)
}

func compile(expr string, lt LinkType, snaplen int, opt bool) (prog Program, err error) {
	g := &gen{lt: lt, opt: opt, expr: expr}
	switch lt {
	case LinkEthernet:
		g.offLinkType, g.offLinkPL = 12, 14
	case LinkSLL:
		g.offLinkType, g.offLinkPL = 14, 16
	case LinkSLL2:
		g.offLinkType, g.offLinkPL = 0, 20
	case LinkRaw, LinkRawAlt12, LinkRawAlt14, LinkIPv4, LinkIPv6:
		g.offLinkType, g.offLinkPL = -1, 0
	case LinkNull, LinkLoop:
		g.offLinkType, g.offLinkPL = -1, 4
	default:
		return nil, &SyntaxError{Expr: expr, Pos: 0, Msg: fmt.Sprintf("unsupported link type %d", lt)}
	}
	if snaplen <= 0 {
		return nil, &SyntaxError{Expr: expr, Pos: 0, Msg: fmt.Sprintf("snaplen %d must be positive", snaplen)}
	}
	toks, err := lex(expr)
	if err != nil {
		var se *SyntaxError
		if errors.As(err, &se) {
			se.Expr = expr
		}
		return nil, err
	}
	p := &parser{toks: toks}
	ast, perr := p.parseProg()
	if perr != nil {
		return nil, &SyntaxError{Expr: expr, Pos: perr.pos, Msg: perr.msg}
	}
	defer func() {
		if r := recover(); r != nil {
			switch e := r.(type) {
			case genErr:
				prog, err = nil, &SyntaxError{Expr: expr, Pos: e.pos, Msg: e.msg}
			case optErr:
				prog, err = nil, &SyntaxError{Expr: expr, Pos: 0, Msg: e.msg}
			default:
				panic(r)
			}
		}
	}()
	root := btrue
	if ast != nil {
		// With opt, this pass only finds the errors libpcap's optimizer
		// reports, with their positions; the program comes from the
		// faithful tree below.
		g0 := *g
		root = g.node(ast)
		g = &g0
	}
	if !opt {
		c := &cfg{}
		entry := c.build(root, &block{ret: uint32(snaplen)}, &block{ret: 0})
		prog, err = emit(entry)
	} else {
		entry := retBlock(uint32(snaplen))
		if ast != nil {
			g.opt, g.faithful = false, true
			l := &lowerer{}
			entry = optimizeBlocks(l.build(g.node(ast), entry, retBlock(0)))
		}
		if entry.s.code == clsRET|retK && entry.s.k == 0 {
			return nil, &SyntaxError{Expr: expr, Pos: 0, Msg: "expression rejects all packets"}
		}
		prog, err = toProgram(entry)
	}
	if err != nil {
		return nil, &SyntaxError{Expr: expr, Pos: 0, Msg: err.Error()}
	}
	return prog, nil
}
