package bpf

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEmptyExpressionAcceptsEverything(t *testing.T) {
	p, err := Compile("", LinkEthernet, 1500)
	if err != nil {
		t.Fatal(err)
	}
	if got := Program(p).Match(nil, 0); got != 1500 {
		t.Fatalf("Match = %d, want 1500", got)
	}
}

func TestSyntaxErrorMessage(t *testing.T) {
	_, err := Compile("tcp and foo", LinkEthernet, 65535)
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *SyntaxError", err)
	}
	if want := `filter "tcp and foo": unknown word "foo" at position 8`; se.Error() != want {
		t.Fatalf("Error() = %q, want %q", se.Error(), want)
	}
}

// TestRefused checks that constructs outside the supported set are refused
// with the position of the offending word, never compiled to something else.
func TestRefused(t *testing.T) {
	cases := []struct {
		expr string
		lt   LinkType
		word string
	}{
		{"gateway 10.0.0.1", LinkEthernet, "gateway"},
		{"tcp and wlan host 00:11:22:33:44:55", LinkEthernet, "wlan"},
		{"mpls", LinkEthernet, "mpls"},
		{"ip and pppoes", LinkEthernet, "pppoes"},
		{"geneve", LinkEthernet, "geneve"},
		{"decnet host 1.2", LinkEthernet, "decnet"},
		{"iso", LinkEthernet, "iso"},
		{"atalk", LinkEthernet, "atalk"},
		{"llc", LinkEthernet, "llc"},
		{"ip protochain 6", LinkEthernet, "protochain"},
		{"inbound", LinkEthernet, "inbound"},
		{"outbound", LinkEthernet, "outbound"},
		{"ifname eth0", LinkEthernet, "ifname"},
		{"host example.com", LinkEthernet, "example.com"},
		{"tcp port http", LinkEthernet, "http"},
		{"ip broadcast", LinkEthernet, "broadcast"},
		{"ether[0] = 1", LinkRaw, "ether"},
		{"ether host 00:11:22:33:44:55", LinkSLL, "00:11:22:33:44:55"},
		{"vlan 10", LinkSLL, "vlan"},
		{"broadcast", LinkRaw, "broadcast"},
		{"tcp port 80 and igmp", LinkEthernet, "igmp"},
		{"port 70000", LinkEthernet, "70000"},
		{"host 10.0.0.1/8", LinkEthernet, "10.0.0.1"},
		{"len / 0 = 1", LinkEthernet, "/"},
		{"tcp[0:3] = 1", LinkEthernet, "tcp"},
		{"tcp or", LinkEthernet, ""},
	}
	for _, c := range cases {
		_, err := Compile(c.expr, c.lt, 65535)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q on %d: err = %v, want *SyntaxError", c.expr, c.lt, err)
			continue
		}
		want := len(c.expr)
		if c.word != "" {
			want = strings.Index(c.expr, c.word)
		}
		if se.Pos != want {
			t.Errorf("%q on %d: position %d, want %d (%v)", c.expr, c.lt, se.Pos, want, err)
		}
	}
}

func TestUnknownLinkType(t *testing.T) {
	if _, err := Compile("ip", 127, 65535); err == nil {
		t.Fatal("link type 127 compiled")
	}
}

// FuzzCompile: every expression either compiles to a valid program or
// fails with a SyntaxError; nothing panics.
func FuzzCompile(f *testing.F) {
	for _, e := range handExprs {
		f.Add(e, uint16(1))
	}
	f.Add("host (1 or (2 and not 3))", uint16(113))
	f.Add("((((((((len))))))) = 1", uint16(0))
	f.Add("net ::/0 or ip6[1+2*3-4/5%6&7|8^9<<1>>2] = 1", uint16(276))
	lts := []LinkType{LinkNull, LinkEthernet, LinkRaw, LinkLoop, LinkSLL, LinkSLL2, LinkIPv4, LinkIPv6, LinkRawAlt14}
	f.Fuzz(func(t *testing.T, expr string, lti uint16) {
		// Long inputs stall the fuzzer: each new interesting one is
		// minimized for up to a minute, by O(n²) executions. Long inputs
		// are covered by TestLongExpressions instead.
		if len(expr) > 256 {
			return
		}
		lt := lts[int(lti)%len(lts)]
		for _, opt := range []bool{true, false} {
			p, err := compile(expr, lt, 65535, opt)
			if err != nil {
				var se *SyntaxError
				if !errors.As(err, &se) {
					t.Fatalf("%q: error %T %v is not a SyntaxError", expr, err, err)
				}
				continue
			}
			if verr := p.Validate(); verr != nil {
				t.Fatalf("%q: invalid program: %v\n%s", expr, verr, p)
			}
			p.Match([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 8, 0, 0x45}, 60)
		}
	})
}

// TestLongExpressions compiles long pathological expressions, which used to
// take seconds to minutes: lexing tried every prefix of the rest of the
// input as a keyword (cubic in the number of tokens), and runs of "(" were
// re-parsed as arithmetic at every depth.
func TestLongExpressions(t *testing.T) {
	for name, e := range map[string]string{
		"nots":   strings.Repeat("not ", 4000) + "ip",
		"parens": strings.Repeat("(", 4000) + "len" + strings.Repeat(")", 4000) + " = 1",
		"open":   strings.Repeat("(", 4000),
		"word":   strings.Repeat("a", 16000),
		"v6":     strings.Repeat("1:", 8000),
		"ands":   strings.Repeat("&", 8000),
		"arith":  "len" + strings.Repeat("+len", 2000) + " = 1",
		"hosts":  "host " + strings.Repeat("10.0.0.1 or ", 100) + "10.0.0.2",
	} {
		start := time.Now()
		for _, opt := range []bool{true, false} {
			_, _ = compile(e, LinkEthernet, 65535, opt)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: %d bytes took %v", name, len(e), d)
		}
	}
}
