package bpf

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// tokKind is a lexical class of libpcap's scanner (scanner.l).
type tokKind int

const (
	tEOF tokKind = iota
	tID
	tNUM
	tHID
	tHID6
	tEID
	tAID
	tOp  // punctuation and operators: text holds the canonical spelling
	tKey // keyword: text holds the keyword
)

type token struct {
	kind tokKind
	text string // canonical text (keyword, operator, or the word itself)
	num  uint32
	pos  int
	raw  string // the text as written
}

// keywords maps every word libpcap's scanner treats as a keyword to a
// canonical spelling. Words that sonde does not support are still keywords
// here, so that they are refused by name instead of being mistaken for host
// names.
var keywords = buildKeywords()

// maxKeywordLen and maxNamedLen bound the prefixes lex looks up: trying
// every prefix of the rest of the input made lexing cubic in its length.
var maxKeywordLen, maxNamedLen = maxLen(keywords), maxLen(namedNumbers)

func maxLen[V any](m map[string]V) int {
	n := 0
	for k := range m {
		n = max(n, len(k))
	}
	return n
}

func buildKeywords() map[string]string {
	kw := map[string]string{}
	for _, group := range []string{
		"dst src link:link ether:link ppp slip fddi tr wlan",
		"arp rarp ip sctp tcp udp icmp igmp igrp pim vrrp carp radio ip6 icmp6 ah esp",
		"atalk aarp decnet lat sca moprc mopdl iso esis es-is:esis isis is-is:isis l1 l2 iih lsp snp csnp psnp clnp stp ipx netbeui",
		"host net mask port portrange proto protochain gateway type subtype direction:dir dir",
		"address1:addr1 addr1 address2:addr2 addr2 address3:addr3 addr3 address4:addr4 addr4 ra ta",
		"less greater byte broadcast multicast and or not len length:len inbound outbound ifindex",
		"vlan mpls pppoed pppoes geneve vxlan batadv lane llc metac bcc oam oamf4 oamf4ec oamf4sc sc ilmic vpi vci connectmsg metaconnect",
		"on:ifname ifname rset:ruleset ruleset rnr:rulenum rulenum srnr:subrulenum subrulenum reason action",
		"fisu lssu lsu:lssu msu hfisu hlssu hmsu sio opc dpc sls hsio hopc hdpc hsls",
	} {
		for _, w := range strings.Fields(group) {
			word, canon, ok := strings.Cut(w, ":")
			if !ok {
				canon = word
			}
			kw[word] = canon
		}
	}
	return kw
}

// namedNumbers are the scanner's symbolic constants (scanner.l).
var namedNumbers = map[string]uint32{
	"icmptype": 0, "icmpcode": 1,
	"icmp-echoreply": 0, "icmp-unreach": 3, "icmp-sourcequench": 4, "icmp-redirect": 5,
	"icmp-echo": 8, "icmp-routeradvert": 9, "icmp-routersolicit": 10, "icmp-timxceed": 11,
	"icmp-paramprob": 12, "icmp-tstamp": 13, "icmp-tstampreply": 14, "icmp-ireq": 15,
	"icmp-ireqreply": 16, "icmp-maskreq": 17, "icmp-maskreply": 18,
	"icmp6type": 0, "icmp6code": 1,
	"icmp6-destinationunreach": 1, "icmp6-packettoobig": 2, "icmp6-timeexceeded": 3,
	"icmp6-parameterproblem": 4, "icmp6-echo": 128, "icmp6-echoreply": 129,
	"icmp6-multicastlistenerquery": 130, "icmp6-multicastlistenerreportv1": 131,
	"icmp6-multicastlistenerdone": 132, "icmp6-routersolicit": 133, "icmp6-routeradvert": 134,
	"icmp6-neighborsolicit": 135, "icmp6-neighboradvert": 136, "icmp6-redirect": 137,
	"icmp6-routerrenum": 138, "icmp6-nodeinformationquery": 139,
	"icmp6-nodeinformationresponse": 140, "icmp6-ineighbordiscoverysolicit": 141,
	"icmp6-ineighbordiscoveryadvert": 142, "icmp6-multicastlistenerreportv2": 143,
	"icmp6-homeagentdiscoveryrequest": 144, "icmp6-homeagentdiscoveryreply": 145,
	"icmp6-mobileprefixsolicit": 146, "icmp6-mobileprefixadvert": 147,
	"icmp6-certpathsolicit": 148, "icmp6-certpathadvert": 149,
	"icmp6-multicastrouteradvert": 151, "icmp6-multicastroutersolicit": 152,
	"icmp6-multicastrouterterm": 153,
	"tcpflags":                  13, "tcp-fin": 0x01, "tcp-syn": 0x02, "tcp-rst": 0x04, "tcp-push": 0x08,
	"tcp-ack": 0x10, "tcp-urg": 0x20, "tcp-ece": 0x40, "tcp-cwr": 0x80,
}

const numRE = `(?:0[xX][0-9A-Fa-f]+|[0-9]+)`

var (
	reNum   = longest(`^` + numRE)
	reHID   = longest(`^` + numRE + `\.` + numRE + `(?:\.` + numRE + `(?:\.` + numRE + `)?)?`)
	reMAC   = longest(`^(?:[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5}|[0-9A-Fa-f]{1,2}(?:-[0-9A-Fa-f]{1,2}){5}|[0-9A-Fa-f]{1,2}(?:\.[0-9A-Fa-f]{1,2}){5}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}|[0-9A-Fa-f]{12})`)
	reBogus = longest(`^[0-9A-Fa-f]{1,2}:+(?:[0-9A-Fa-f]{1,2}:+)+`)
	reID    = longest(`^[A-Za-z0-9](?:[-_.A-Za-z0-9]*[.A-Za-z0-9])?`)
	reV6Run = longest(`^[0-9A-Fa-f:.]+`)
	reAID   = longest(`^\$[0-9A-Fa-f]{1,2}`)
)

// longest compiles a pattern that prefers the longest match, as flex does.
func longest(pat string) *regexp.Regexp {
	re := regexp.MustCompile(pat)
	re.Longest()
	return re
}

// v6Len returns the length of the longest IPv6 literal at the start of s.
func v6Len(s string) int {
	run := reV6Run.FindString(s)
	// No IPv6 literal is longer than 45 characters
	// (ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255).
	for n := min(len(run), 45); n >= 2; n-- {
		c := run[:n]
		if !strings.Contains(c, ":") {
			return 0
		}
		if a, err := netip.ParseAddr(c); err == nil && a.Is6() && a.Zone() == "" {
			return n
		}
	}
	return 0
}

// lex splits a filter expression into tokens with libpcap's rules: at each
// position the longest match wins, ties go to the earlier scanner rule.
func lex(expr string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(expr) {
		c := expr[i]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
			i++
			continue
		}
		rest := expr[i:]
		// Two-character operators, then single-character punctuation.
		if len(rest) >= 2 {
			two := rest[:2]
			canon := map[string]string{">=": ">=", "<=": "<=", "!=": "!=", "==": "=", "<<": "<<", ">>": ">>", "&&": "and", "||": "or"}[two]
			if canon != "" {
				kind := tOp
				if canon == "and" || canon == "or" {
					kind = tKey
				}
				toks = append(toks, token{kind: kind, text: canon, pos: i, raw: two})
				i += 2
				continue
			}
		}
		if strings.IndexByte("+-*/%:[]!<>()&|^=", c) >= 0 && (c != ':' || v6Len(rest) == 0) {
			text := string(c)
			kind := tOp
			if c == '!' {
				kind, text = tKey, "not"
			}
			toks = append(toks, token{kind: kind, text: text, pos: i, raw: string(c)})
			i++
			continue
		}
		if c == '\\' {
			n := 1
			for n < len(rest) && strings.IndexByte(" !()\n\t", rest[n]) < 0 {
				n++
			}
			if n == 1 {
				return nil, &SyntaxError{Pos: i, Msg: "stray backslash"}
			}
			toks = append(toks, token{kind: tID, text: rest[1:n], pos: i, raw: rest[:n]})
			i += n
			continue
		}
		if m := reAID.FindString(rest); m != "" {
			toks = append(toks, token{kind: tAID, text: m, pos: i, raw: m})
			i += len(m)
			continue
		}
		// Candidates in scanner rule order; the first of the longest wins.
		type cand struct {
			n    int
			kind tokKind
		}
		var cands []cand
		kwLen := 0
		for n := min(len(rest), maxKeywordLen); n > 0; n-- {
			if _, ok := keywords[rest[:n]]; ok {
				kwLen = n
				break
			}
		}
		cands = append(cands, cand{kwLen, tKey})
		cands = append(cands, cand{len(reMAC.FindString(rest)), tEID})
		cands = append(cands, cand{len(reNum.FindString(rest)), tNUM})
		cands = append(cands, cand{len(reHID.FindString(rest)), tHID})
		cands = append(cands, cand{v6Len(rest), tHID6})
		cands = append(cands, cand{len(reBogus.FindString(rest)), tEOF})
		namedLen := 0
		for n := min(len(rest), maxNamedLen); n > 0; n-- {
			if _, ok := namedNumbers[rest[:n]]; ok {
				namedLen = n
				break
			}
		}
		cands = append(cands, cand{namedLen, tNUM + 100})
		cands = append(cands, cand{len(reID.FindString(rest)), tID})
		best := cand{}
		for _, cd := range cands {
			if cd.n > best.n {
				best = cd
			}
		}
		if best.n == 0 {
			return nil, &SyntaxError{Pos: i, Msg: fmt.Sprintf("illegal character %q", c)}
		}
		word := rest[:best.n]
		tok := token{kind: best.kind, text: word, pos: i, raw: word}
		switch best.kind {
		case tKey:
			tok.text = keywords[word]
		case tNUM:
			v, err := parseNum(word)
			if err != nil {
				return nil, &SyntaxError{Pos: i, Msg: err.Error()}
			}
			tok.num = v
		case tNUM + 100:
			tok.kind, tok.num = tNUM, namedNumbers[word]
		case tEOF:
			return nil, &SyntaxError{Pos: i, Msg: fmt.Sprintf("bogus ethernet address %s", word)}
		}
		toks = append(toks, tok)
		i += best.n
	}
	toks = append(toks, token{kind: tEOF, pos: len(expr)})
	return toks, nil
}

// parseNum converts a NUM token like libpcap's stoulen: 0x hex, leading-zero
// octal, decimal, all limited to 32 bits.
func parseNum(s string) (uint32, error) {
	base, digits := uint64(10), s
	switch {
	case len(s) > 1 && (s[1] == 'x' || s[1] == 'X'):
		base, digits = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, digits = 8, s[1:]
	}
	var v uint64
	for _, ch := range digits {
		var d uint64
		switch {
		case ch >= '0' && ch <= '9':
			d = uint64(ch - '0')
		case ch >= 'a' && ch <= 'f':
			d = uint64(ch-'a') + 10
		case ch >= 'A' && ch <= 'F':
			d = uint64(ch-'A') + 10
		}
		if d >= base {
			return 0, fmt.Errorf("number %s contains non-%s digit", s, map[uint64]string{8: "octal", 10: "decimal", 16: "hex"}[base])
		}
		v = v*base + d
		if v > 0xffffffff {
			return 0, fmt.Errorf("number %s overflows 32 bits", s)
		}
	}
	return uint32(v), nil
}
