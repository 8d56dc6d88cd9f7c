// Package netnstest builds throw-away Linux network namespaces joined by veth
// pairs for sonde's privileged tests and benchmarks, and sends exact Ethernet
// frames from inside them.
//
// Everything it creates lives inside namespaces it made: veth ends are created
// directly in their namespace (never in the host's), addresses come from the
// benchmarking range 198.18.0.0/15, IPv6 is disabled (no ND/MLD noise),
// forwarding is off and there is no default route. Frames are addressed to
// DstMAC, a locally administered unicast address that is nobody's, so the
// receiving veth hands them to AF_PACKET taps but its IP stack drops them
// without replying: a capture sees exactly what was sent.
package netnstest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Root skips t when the process is not root, and fails it instead when the
// environment says CI=true: CI runs as root, so a skip there would hide a
// broken setup.
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("privileged test needs root, and CI=true requires it to run")
	}
	t.Skip("privileged test: needs root to create network namespaces")
}

// Endpoint is one end of a veth pair.
type Endpoint struct {
	NS    string           // network namespace name (under /run/netns)
	Iface string           // interface name inside NS
	MAC   net.HardwareAddr // the interface's address
	Addr  netip.Prefix     // IPv4 address and /30 prefix in 198.18.0.0/15
}

// Pair is a veth pair: A is the sending side, B the capturing side.
type Pair struct {
	A, B Endpoint
	// owned are namespaces created by NewPair, removed by Close.
	owned []string
}

// RandomSuffix returns n random lowercase hex characters, to keep the names
// of parallel test runs apart.
func RandomSuffix(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)[:n]
}

// NewNamespace creates a network namespace with lo up, IPv6 disabled and
// forwarding off. The caller removes it with DeleteNamespace.
func NewNamespace(prefix string) (string, error) {
	name := prefix + "-" + RandomSuffix(8)
	if _, err := ip("netns", "add", name); err != nil {
		return "", err
	}
	steps := [][]string{
		{"sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"},
		{"sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"},
		{"sysctl", "-qw", "net.ipv4.ip_forward=0"},
		{"ip", "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if _, err := Run(name, s...); err != nil {
			DeleteNamespace(name)
			return "", fmt.Errorf("setting up namespace %s: %w", name, err)
		}
	}
	return name, nil
}

// DeleteNamespace removes a namespace; the veth ends inside it go with it,
// and so do their peers.
func DeleteNamespace(name string) error {
	_, err := ip("netns", "del", name)
	return err
}

// NewPair creates two fresh namespaces joined by a veth pair. Close removes
// them.
func NewPair() (*Pair, error) {
	a, err := NewNamespace("sndA")
	if err != nil {
		return nil, err
	}
	b, err := NewNamespace("sndB")
	if err != nil {
		DeleteNamespace(a)
		return nil, err
	}
	p, err := Connect(a, b)
	if err != nil {
		DeleteNamespace(a)
		DeleteNamespace(b)
		return nil, err
	}
	p.owned = []string{a, b}
	return p, nil
}

// Close removes the namespaces NewPair created (and so the veth pair).
func (p *Pair) Close() error {
	var errs []error
	for _, ns := range p.owned {
		if err := DeleteNamespace(ns); err != nil {
			errs = append(errs, err)
		}
	}
	p.owned = nil
	if len(errs) > 0 {
		return fmt.Errorf("deleting namespaces: %v", errs)
	}
	return nil
}

// Connect joins two existing namespaces with a new veth pair, addressed from
// a random /30 of 198.18.0.0/15, both ends up. The veth goes away with either
// namespace.
func Connect(nsA, nsB string) (*Pair, error) {
	sfx := RandomSuffix(6)
	p := &Pair{
		A: Endpoint{NS: nsA, Iface: "sv" + sfx + "a"},
		B: Endpoint{NS: nsB, Iface: "sv" + sfx + "b"},
	}
	// Created directly in the target namespaces, so no interface of ours
	// ever exists in the host's namespace.
	if _, err := ip("link", "add", p.A.Iface, "netns", nsA, "type", "veth",
		"peer", "name", p.B.Iface, "netns", nsB); err != nil {
		return nil, err
	}
	n, err := rand.Int(rand.Reader, big.NewInt(1<<15)) // /30s in a /15
	if err != nil {
		return nil, err
	}
	base := uint32(198)<<24 | uint32(18)<<16 | uint32(n.Int64())<<2
	p.A.Addr = netip.PrefixFrom(addr4(base+1), 30)
	p.B.Addr = netip.PrefixFrom(addr4(base+2), 30)
	for _, e := range []*Endpoint{&p.A, &p.B} {
		cmds := [][]string{
			{"ip", "addr", "add", e.Addr.String(), "dev", e.Iface},
			{"ip", "link", "set", e.Iface, "up"},
		}
		for _, c := range cmds {
			if _, err := Run(e.NS, c...); err != nil {
				return nil, err
			}
		}
		out, err := Run(e.NS, "cat", "/sys/class/net/"+e.Iface+"/address")
		if err != nil {
			return nil, err
		}
		if e.MAC, err = net.ParseMAC(strings.TrimSpace(string(out))); err != nil {
			return nil, fmt.Errorf("parsing MAC of %s: %w", e.Iface, err)
		}
	}
	return p, nil
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// New is NewPair for tests: it skips or fails through Root, and removes the
// namespaces in t.Cleanup, also when the test fails.
func New(t testing.TB) *Pair {
	t.Helper()
	Root(t)
	p, err := NewPair()
	if err != nil {
		t.Fatalf("creating veth pair: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return p
}

// Namespace is NewNamespace for tests, removed in t.Cleanup.
func Namespace(t testing.TB, prefix string) string {
	t.Helper()
	Root(t)
	ns, err := NewNamespace(prefix)
	if err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := DeleteNamespace(ns); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return ns
}

// Link is Connect for tests; the veth goes with the namespaces' cleanup.
func Link(t testing.TB, nsA, nsB string) *Pair {
	t.Helper()
	p, err := Connect(nsA, nsB)
	if err != nil {
		t.Fatalf("creating veth pair: %v", err)
	}
	return p
}

// Run runs a command inside namespace ns and returns its standard output.
// The error carries the command's standard error.
func Run(ns string, args ...string) ([]byte, error) {
	cmd := Command(ns, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("ip netns exec %s %s: %w: %s", ns, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// Command returns an unstarted command that runs args inside namespace ns.
func Command(ns string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
}

// Start starts args inside namespace ns with the given output writers.
func Start(ns string, stdout, stderr *os.File, args ...string) (*exec.Cmd, error) {
	cmd := Command(ns, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s in %s: %w", strings.Join(args, " "), ns, err)
	}
	return cmd, nil
}

func ip(args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// Stat reads a counter of /sys/class/net/IFACE/statistics (e.g. rx_packets)
// as seen inside ns.
func Stat(ns, iface, name string) (uint64, error) {
	out, err := Run(ns, "cat", "/sys/class/net/"+iface+"/statistics/"+name)
	if err != nil {
		return 0, err
	}
	var v uint64
	if _, err := fmt.Sscan(string(out), &v); err != nil {
		return 0, fmt.Errorf("parsing %s of %s: %w", name, iface, err)
	}
	return v, nil
}
