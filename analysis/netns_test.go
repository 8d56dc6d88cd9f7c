package analysis

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/netnstest"
)

// dnsResponder answers DNS queries on conn until it is closed: names
// starting with "nx" get NXDOMAIN, "fail" SERVFAIL, "drop" no answer at all,
// anything else an empty NOERROR.
func dnsResponder(conn net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < 13 {
			continue
		}
		name := string(buf[13 : 13+min(int(buf[12]), n-13)])
		rcode := byte(0)
		switch {
		case strings.HasPrefix(name, "drop"):
			continue
		case strings.HasPrefix(name, "nx"):
			rcode = 3
		case strings.HasPrefix(name, "fail"):
			rcode = 2
		}
		resp := append([]byte(nil), buf[:n]...)
		resp[2] |= 0x80
		resp[3] = 0x80 | rcode
		conn.WriteTo(resp, from)
	}
}

func dnsQuery(id uint16, name string) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0)
	for _, l := range strings.Split(name, ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0, 0, 1, 0, 1)
}

// lossyPath builds three namespaces, A -> R -> B, with R routing between
// two veth pairs (specific routes only, no default route), every offload
// off so each packet on the wire is one MSS-sized segment, and TCP to ports
// 5001-5002 dropped at random twice: 2 % at R's ingress from A (lost before
// the capture point on B, so B's capture shows holes filled later) and 1 %
// at B's ingress (lost after the capture point: tcpdump's tap runs before
// the netdev ingress hook, so the capture holds both copies). A token
// bucket on A's egress queues the sender and gives the path an RTT of
// milliseconds instead of microseconds.
//
// The kernel here has no netem (CONFIG_NET_SCH_NETEM is not set), and an
// nftables rule on A's output hook cannot drop single segments: TCP hands
// the stack 64 KiB GSO super-segments whatever ethtool says, and they are
// only cut to MSS size at the device, after the output hook. That is why an
// output-hook rule matched a few dozen "packets" and produced only a
// handful of retransmissions: the netdev ingress hook of the next hop is
// the first place that sees wire segments.
func lossyPath(t *testing.T) (a, b netnstest.Endpoint) {
	nsA, nsR, nsB := netnstest.Namespace(t, "snla"), netnstest.Namespace(t, "snlr"), netnstest.Namespace(t, "snlb")
	ar := netnstest.Link(t, nsA, nsR)
	rb := netnstest.Link(t, nsR, nsB)
	run := func(ns string, args ...string) {
		t.Helper()
		if _, err := netnstest.Run(ns, args...); err != nil {
			t.Fatalf("%s: %v", strings.Join(args, " "), err)
		}
	}
	run(nsR, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	run(nsA, "ip", "route", "add", rb.B.Addr.Masked().String(), "via", ar.B.Addr.Addr().String())
	run(nsB, "ip", "route", "add", ar.A.Addr.Masked().String(), "via", rb.A.Addr.Addr().String())
	for _, e := range []netnstest.Endpoint{ar.A, ar.B, rb.A, rb.B} {
		run(e.NS, "ethtool", "-K", e.Iface, "tso", "off", "gso", "off", "gro", "off")
	}
	run(nsA, "tc", "qdisc", "add", "dev", ar.A.Iface, "root", "tbf", "rate", "200mbit", "burst", "16k", "latency", "20ms")
	drop := func(e netnstest.Endpoint, pct int) {
		run(e.NS, "nft", "add", "table", "netdev", "sondeloss")
		run(e.NS, "nft", "add chain netdev sondeloss in { type filter hook ingress device "+e.Iface+" priority 0 ; }")
		run(e.NS, "nft", fmt.Sprintf("add rule netdev sondeloss in ip protocol tcp tcp dport 5001-5002 numgen random mod 100 < %d counter drop", pct))
	}
	drop(ar.B, 2)
	drop(rb.B, 1)
	t.Cleanup(func() {
		for _, e := range []netnstest.Endpoint{ar.B, rb.B} {
			out, _ := netnstest.Run(e.NS, "nft", "list", "table", "netdev", "sondeloss")
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(l, "counter") {
					t.Logf("%s %s: %s", e.NS, e.Iface, strings.TrimSpace(l))
				}
			}
		}
	})
	return ar.A, rb.B
}

// TestGeneratedTrafficAgainstTshark runs bulk TCP transfers over a lossy
// routed path (lossyPath), one of them into a receiver that reads slowly
// through a small buffer (zero windows), DNS queries with every outcome and
// a constant-rate UDP stream, records the receiving side with tcpdump, and
// checks the engine's reading of the file against tshark's, class by class.
func TestGeneratedTrafficAgainstTshark(t *testing.T) {
	needTshark(t)
	netnstest.Root(t)
	pa, pb := lossyPath(t)
	p := struct{ A, B netnstest.Endpoint }{pa, pb}
	dir := t.TempDir()
	file := filepath.Join(dir, "gen.pcap")
	td, err := netnstest.StartTcpdump(p.B.NS, p.B.Iface, file)
	if err != nil {
		t.Fatal(err)
	}

	srvB := p.B.Addr.Addr().String()
	var ln, slowLn net.Listener
	var dnsConn net.PacketConn
	var sink net.PacketConn
	if err := netnstest.Do(p.B.NS, func() (err error) {
		if ln, err = net.Listen("tcp", srvB+":5001"); err != nil {
			return err
		}
		// A receive buffer set on the listener before the handshake keeps
		// the advertised window small for good (no window scaling growth).
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}}
		if slowLn, err = lc.Listen(context.Background(), "tcp", srvB+":5002"); err != nil {
			return err
		}
		if sink, err = net.ListenPacket("udp", srvB+":5004"); err != nil {
			return err
		}
		dnsConn, err = net.ListenPacket("udp", srvB+":53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	defer slowLn.Close()
	go func() {
		c, err := slowLn.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1024)
		for {
			time.Sleep(2 * time.Millisecond)
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	defer dnsConn.Close()
	defer sink.Close()
	go dnsResponder(dnsConn)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()

	const conns, perConn = 6, 1 << 20
	var tcpConns []net.Conn
	var udpDNS, udpRTP, slow net.Conn
	if err := netnstest.Do(p.A.NS, func() error {
		for i := 0; i < conns; i++ {
			c, err := net.Dial("tcp", srvB+":5001")
			if err != nil {
				return err
			}
			tcpConns = append(tcpConns, c)
		}
		var err error
		if slow, err = net.Dial("tcp", srvB+":5002"); err != nil {
			return err
		}
		if udpDNS, err = net.Dial("udp", srvB+":53"); err != nil {
			return err
		}
		udpRTP, err = net.Dial("udp", srvB+":5004")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	names := []string{"www.example.com", "nx1.example.com", "fail.example.net", "drop.example.org", "api.example.com"}
	for i := 0; i < 100; i++ {
		udpDNS.Write(dnsQuery(uint16(i), names[i%len(names)]))
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	for _, c := range tcpConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for sent := 0; sent < perConn; sent += len(buf) {
				if _, err := c.Write(buf); err != nil {
					t.Error(err)
					return
				}
			}
			c.Close()
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := slow.Write(make([]byte, 256<<10)); err != nil {
			t.Error(err)
		}
		slow.Close()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			udpRTP.Write(make([]byte, 160))
			time.Sleep(2 * time.Millisecond)
		}
	}()
	wg.Wait()
	time.Sleep(300 * time.Millisecond)
	if _, err := td.Stop(); err != nil {
		t.Fatal(err)
	}

	s := analyzeFile(t, file)
	compareWithTshark(t, file, s)
	if t.Failed() {
		keepMismatch(t, file)
	}
	c := &s.Totals
	if c.TCP.Retransmissions == 0 || c.TCP.Opened != conns+1 {
		t.Errorf("expected retransmissions under 2%% loss and %d connections: %d retransmissions, %d connections", conns+1, c.TCP.Retransmissions, c.TCP.Opened)
	}
	if c.DNS.Queries != 100 || c.DNS.Unanswered+c.DNS.Timeouts != 20 || c.DNS.Rcodes[3] != 20 || c.DNS.Rcodes[2] != 20 {
		t.Errorf("DNS: %+v", c.DNS)
	}
	if c.Jitter.Count == 0 {
		t.Error("no jitter measured for the 2 ms UDP stream")
	}
	if len(s.TopTalkers) < 2 || s.TopTalkers[0].Address != p.A.Addr.Addr() && s.TopTalkers[0].Address != p.B.Addr.Addr() {
		t.Errorf("top talkers %v", s.TopTalkers)
	}
	if keep := os.Getenv("SONDE_KEEP_PCAP"); keep != "" {
		data, _ := os.ReadFile(file)
		os.WriteFile(keep, data, 0o644)
	}
	t.Logf("health %.1f, fast retrans %d, RTO %d, spurious %d, out of order %d, dup acks %d, data RTT p50 %v, jitter p50 %v",
		s.Health.Score, c.TCP.FastRetransmissions, c.TCP.RTORetransmissions, c.TCP.SpuriousRetransmits, c.TCP.OutOfOrder, c.TCP.DupAcks,
		c.TCP.DataRTT.Quantile(0.5), c.Jitter.Quantile(0.5))
}

// keepMismatch copies a capture that sonde and tshark read differently to
// a kept /tmp/sonde-mismatch-*.pcap (t.TempDir is removed) and logs its
// path and the frames whose classes differ.
func keepMismatch(t *testing.T, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Logf("keeping the capture: %v", err)
		return
	}
	f, err := os.CreateTemp("/tmp", "sonde-mismatch-*.pcap")
	if err != nil {
		t.Logf("keeping the capture: %v", err)
		return
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Logf("keeping the capture: %v", err)
		return
	}
	t.Logf("capture kept as %s (SONDE_FRAME_DIFF=%s go test ./analysis -run TestFrameFlagsFile)", f.Name(), f.Name())
	for _, l := range diffFrameFlags(sondeFrameFlags(t, file), tsharkFrameFlags(t, file), 50) {
		t.Log(l)
	}
}

// TestLoopbackWindowFull checks the window-full count on loopback, where the
// 64 KiB MSS made the old "window below two MSS" heuristic fire on almost
// every ACK: a bulk transfer into a fast reader and one into a reader that
// sleeps, both on lo in a fresh namespace, must count exactly the segments
// tshark marks tcp.analysis.window_full.
func TestLoopbackWindowFull(t *testing.T) {
	needTshark(t)
	netnstest.Root(t)
	ns := netnstest.Namespace(t, "snlo")
	file := filepath.Join(t.TempDir(), "lo.pcap")
	td, err := netnstest.StartTcpdump(ns, "lo", file)
	if err != nil {
		t.Fatal(err)
	}
	var fast, slow net.Listener
	if err := netnstest.Do(ns, func() (err error) {
		if fast, err = net.Listen("tcp", "127.0.0.1:5001"); err != nil {
			return err
		}
		slow, err = net.Listen("tcp", "127.0.0.1:5002")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	defer slow.Close()
	serve := func(ln net.Listener, pause time.Duration) {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 16<<10)
		for {
			if pause > 0 {
				time.Sleep(pause)
			}
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}
	go serve(fast, 0)
	go serve(slow, time.Millisecond)
	var wg sync.WaitGroup
	for _, port := range []string{"5001", "5002"} {
		var c net.Conn
		if err := netnstest.Do(ns, func() (err error) {
			c, err = net.Dial("tcp", "127.0.0.1:"+port)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			if _, err := c.Write(make([]byte, 8<<20)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	time.Sleep(200 * time.Millisecond)
	if _, err := td.Stop(); err != nil {
		t.Fatal(err)
	}
	s := analyzeFile(t, file)
	want := tsharkCount(t, file, "tcp.analysis.window_full")
	if got := s.Totals.TCP.LowWindows; got != want {
		t.Errorf("window full %d, tshark %d", got, want)
	}
	if z, want := s.Totals.TCP.ZeroWindows, tsharkCount(t, file, "tcp.analysis.zero_window"); z != want {
		t.Errorf("zero windows %d, tshark %d", z, want)
	}
	t.Logf("%d TCP segments on lo: window full %d (tshark %d), zero windows %d", s.Totals.TCP.Segments, s.Totals.TCP.LowWindows, want, s.Totals.TCP.ZeroWindows)
}
