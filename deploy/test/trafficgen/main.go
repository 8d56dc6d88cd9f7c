// Command trafficgen makes the traffic deploy/test/monitoring.sh needs for
// every analysis panel to have data: TCP connections carrying data both ways
// (handshake and data RTT, some ended by RST), and DNS over UDP port 53 from
// one client socket (latency, NOERROR/NXDOMAIN/SERVFAIL, timeouts, UDP
// jitter). The test runs the server in its namespace and the client in a
// peer namespace across a veth pair, both made by the test with addresses
// of 198.18.0.0/15; nothing leaves them.
package main

import (
	"encoding/binary"
	"flag"
	"io"
	"log"
	"net"
	"strconv"
	"time"
)

func main() {
	serve := flag.String("serve", "", "address to serve TCP port 8080 and DNS port 53 on (empty: none)")
	target := flag.String("target", "", "address to connect to and query (empty: none)")
	every := flag.Duration("every", 100*time.Millisecond, "interval between TCP connections and between DNS queries")
	flag.Parse()
	if *serve == "" && *target == "" {
		log.Fatal("nothing to do: give -serve, -target or both")
	}
	if *serve != "" {
		ln, err := net.Listen("tcp", net.JoinHostPort(*serve, "8080"))
		if err != nil {
			log.Fatal(err)
		}
		go serveTCP(ln)
		pc, err := net.ListenPacket("udp", net.JoinHostPort(*serve, "53"))
		if err != nil {
			log.Fatal(err)
		}
		go serveDNS(pc)
	}
	if *target == "" {
		select {}
	}
	go queryDNS(net.JoinHostPort(*target, "53"), *every)
	for i := 0; ; i++ {
		tcpClient(net.JoinHostPort(*target, "8080"), i%4 == 0)
		time.Sleep(*every)
	}
}

// serveTCP answers each request with 64 KiB, so the client ACKs data.
func serveTCP(ln net.Listener) {
	buf := make([]byte, 64<<10)
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			req := make([]byte, 512)
			if _, err := c.Read(req); err != nil {
				return
			}
			c.Write(buf)
		}()
	}
}

// tcpClient sends a request and reads the answer; with reset, it closes
// with SO_LINGER 0 (an RST instead of a FIN).
func tcpClient(addr string, reset bool) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		log.Print(err)
		return
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	c.Write(make([]byte, 300))
	io.CopyN(io.Discard, c, 64<<10)
	if reset {
		c.(*net.TCPConn).SetLinger(0)
	}
	c.Close()
}

// serveDNS answers by the query's first label: "nx..." NXDOMAIN,
// "fail..." SERVFAIL, "drop..." not at all (a timeout), else NOERROR.
func serveDNS(pc net.PacketConn) {
	buf := make([]byte, 512)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			log.Fatal(err)
		}
		if n < 13 {
			continue
		}
		label := string(buf[13 : 13+min(int(buf[12]), n-13)])
		rcode := byte(0)
		switch {
		case len(label) >= 4 && label[:4] == "drop":
			continue
		case len(label) >= 2 && label[:2] == "nx":
			rcode = 3
		case len(label) >= 4 && label[:4] == "fail":
			rcode = 2
		}
		resp := append([]byte(nil), buf[:n]...)
		resp[2] |= 0x80 // QR
		resp[3] = 0x80 | rcode
		pc.WriteTo(resp, from)
	}
}

// queryDNS sends one A query per interval from a single socket (one UDP
// flow, so jitter has observations) and reads the answers.
func queryDNS(addr string, every time.Duration) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		log.Fatal(err)
	}
	go io.Copy(io.Discard, c)
	names := []string{"ok", "ok", "ok", "ok", "ok", "nx", "ok", "fail", "ok", "drop"}
	for i := 0; ; i++ {
		c.Write(query(uint16(i), names[i%len(names)]+strconv.Itoa(i)))
		time.Sleep(every)
	}
}

func query(id uint16, label string) []byte {
	q := make([]byte, 12, 64)
	binary.BigEndian.PutUint16(q[0:], id)
	q[2] = 0x01 // RD
	binary.BigEndian.PutUint16(q[4:], 1)
	q = append(q, byte(len(label)))
	q = append(q, label...)
	q = append(q, 4, 't', 'e', 's', 't', 0)
	return append(q, 0, 1, 0, 1) // A, IN
}
