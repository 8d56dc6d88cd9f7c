package extract

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/sonde-project/sonde/bpf"
	"github.com/sonde-project/sonde/capture"
)

// Flow selects the packets of one transport flow, in both directions.
type Flow struct {
	A, B  netip.AddrPort
	Proto string // tcp, udp or sctp
}

// ParseFlow parses SRC:PORT-DST:PORT/PROTO, such as
// 10.0.0.1:40000-10.0.0.2:443/tcp or [2001:db8::1]:53-[2001:db8::2]:5353/udp.
func ParseFlow(s string) (Flow, error) {
	const want = "want SRC:PORT-DST:PORT/PROTO such as 10.0.0.1:40000-10.0.0.2:443/tcp ([ADDR]:PORT for IPv6; PROTO tcp, udp or sctp)"
	ends, proto, ok := strings.Cut(s, "/")
	if !ok {
		return Flow{}, fmt.Errorf("flow %q has no /PROTO: %s", s, want)
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return Flow{}, fmt.Errorf("flow %q: protocol %q is not tcp, udp or sctp: %s", s, proto, want)
	}
	a, b, ok := strings.Cut(ends, "-")
	if !ok {
		return Flow{}, fmt.Errorf("flow %q has no '-' between its two ends: %s", s, want)
	}
	var f Flow
	var err error
	if f.A, err = netip.ParseAddrPort(a); err != nil {
		return Flow{}, fmt.Errorf("flow %q: first end %q: %s", s, a, want)
	}
	if f.B, err = netip.ParseAddrPort(b); err != nil {
		return Flow{}, fmt.Errorf("flow %q: second end %q: %s", s, b, want)
	}
	if f.A.Addr().Unmap().Is4() != f.B.Addr().Unmap().Is4() {
		return Flow{}, fmt.Errorf("flow %q mixes an IPv4 and an IPv6 address", s)
	}
	f.A = netip.AddrPortFrom(f.A.Addr().Unmap(), f.A.Port())
	f.B = netip.AddrPortFrom(f.B.Addr().Unmap(), f.B.Port())
	f.Proto = proto
	return f, nil
}

// Expr is the flow as a tcpdump expression.
func (f Flow) Expr() string {
	end := func(dir string, ap netip.AddrPort) string {
		return fmt.Sprintf("%s host %s and %s port %d", dir, ap.Addr(), dir, ap.Port())
	}
	return fmt.Sprintf("%s and ((%s and %s) or (%s and %s))", f.Proto,
		end("src", f.A), end("dst", f.B), end("src", f.B), end("dst", f.A))
}

// FilterError is a filter expression the compiler refused.
type FilterError struct{ Err error }

func (e *FilterError) Error() string { return fmt.Sprintf("invalid filter: %v", e.Err) }
func (e *FilterError) Unwrap() error { return e.Err }

// Compile builds the program that selects packets of link type lt matching
// the tcpdump expression filter (empty: all) and, when flow is set, of that
// flow. It returns nil when there is nothing to select on. A filter the
// compiler refuses is a *FilterError carrying its message and position.
func Compile(filter string, flow *Flow, lt capture.LinkType) (bpf.Program, error) {
	filter = strings.TrimSpace(filter)
	if filter == "" && flow == nil {
		return nil, nil
	}
	if filter != "" {
		// Alone first, so the error's position refers to what the user wrote.
		if _, err := bpf.Compile(filter, bpf.LinkType(lt), Snaplen); err != nil {
			return nil, &FilterError{err}
		}
	}
	expr := filter
	if flow != nil {
		expr = flow.Expr()
		if filter != "" {
			expr = "(" + filter + ") and (" + expr + ")"
		}
	}
	prog, err := bpf.Compile(expr, bpf.LinkType(lt), Snaplen)
	if err != nil {
		return nil, &FilterError{err}
	}
	return prog, nil
}
