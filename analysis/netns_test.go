package analysis

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// TestGeneratedTrafficAgainstTshark builds two namespaces, drops 2 % of
// the sender's TCP segments with nftables, runs bulk TCP transfers, DNS
// queries with every outcome and a constant-rate UDP stream between them,
// records the receiving side with tcpdump, and checks the engine's reading
// of the file against tshark's.
func TestGeneratedTrafficAgainstTshark(t *testing.T) {
	needTshark(t)
	p := netnstest.New(t)
	if _, err := netnstest.Run(p.A.NS, "nft", "add table inet sondetest"); err != nil {
		t.Fatalf("nftables: %v", err)
	}
	if _, err := netnstest.Run(p.A.NS, "nft", "add chain inet sondetest out { type filter hook output priority 0 ; }"); err != nil {
		t.Fatal(err)
	}
	if _, err := netnstest.Run(p.A.NS, "nft", "add rule inet sondetest out meta l4proto tcp tcp dport 5001 numgen random mod 100 < 2 counter drop"); err != nil {
		t.Fatal(err)
	}
	// Without segmentation offload the sender's stack emits MSS-sized
	// segments, so a drop loses one segment, not a 64 KiB super-segment.
	for _, e := range []netnstest.Endpoint{p.A, p.B} {
		if _, err := netnstest.Run(e.NS, "ethtool", "-K", e.Iface, "tso", "off", "gso", "off", "gro", "off"); err != nil {
			t.Fatalf("ethtool: %v", err)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "gen.pcap")
	td, err := netnstest.StartTcpdump(p.B.NS, p.B.Iface, file)
	if err != nil {
		t.Fatal(err)
	}

	srvB := p.B.Addr.Addr().String()
	var ln net.Listener
	var dnsConn net.PacketConn
	var sink net.PacketConn
	if err := netnstest.Do(p.B.NS, func() (err error) {
		if ln, err = net.Listen("tcp", srvB+":5001"); err != nil {
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
	var udpDNS, udpRTP net.Conn
	if err := netnstest.Do(p.A.NS, func() error {
		for i := 0; i < conns; i++ {
			c, err := net.Dial("tcp", srvB+":5001")
			if err != nil {
				return err
			}
			tcpConns = append(tcpConns, c)
		}
		var err error
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
	c := &s.Totals
	if c.TCP.Retransmissions == 0 || c.TCP.Opened != conns {
		t.Errorf("expected retransmissions under 2%% loss and %d connections: %d retransmissions, %d connections", conns, c.TCP.Retransmissions, c.TCP.Opened)
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

var _ = fmt.Sprint
