package bpf

import (
	"fmt"
	"math/rand"
	"strings"
)

// handExprs cover every supported primitive and qualifier.
var handExprs = []string{
	"", "ip", "ip6", "arp", "rarp", "tcp", "udp", "icmp", "icmp6", "sctp",
	"host 198.18.0.1", "src host 198.18.0.1", "dst host 10.1.2.3", "src or dst host 10.1.2.3",
	"src and dst host 10.1.2.3", "ip host 198.18.0.1", "arp host 10.1.2.3", "rarp src host 10.0.0.1",
	"host 198.18.0.1 or 10.1.2.3", "host 198.18.0.1 and 10.1.2.3", "host (198.18.0.1 or 10.1.2.3)",
	"host 198.18", "host 10", "src 10.1.2.3", "dst 198.18.0.1", "host 2001:db8::1", "src host fe80::1",
	"dst host ff02::1", "ip6 host 2001:db8::2", "host 2001:db8::1 or 2001:db8::2",
	"net 198.18.0.0/15", "net 10", "net 198.18", "net 10.1.2", "src net 10.0.0.0/8", "dst net 224.0.0.0/4",
	"net 10.0.0.0 mask 255.0.0.0", "net 0.0.0.0/0", "net 198.18.0.1/32", "ip net 10.1.0.0/16",
	"arp net 10", "net 2001:db8::/32", "src net fe80::/10", "dst net ff00::/8", "net ::/0", "net 2001:db8::1/128",
	"port 80", "port 53", "src port 1000", "dst port 80", "tcp port 80", "udp port 53", "sctp port 1000",
	"tcp src port 443", "udp dst port 5353", "port 80 or 443", "tcp port 80 or 443", "tcp port (80 or 443)",
	"port 80 and 1000", "src and dst port 53", "src or dst port 53", "port 0x50", "port 010",
	"portrange 1-1024", "portrange 1000-3000", "tcp portrange 50-100", "udp src portrange 50-60",
	"dst portrange 3000-2000", "portrange 80",
	"ether host 00:11:22:33:44:55", "ether src 02:aa:bb:cc:dd:ee", "ether dst ff:ff:ff:ff:ff:ff",
	"ether host 00-11-22-33-44-55", "ether dst 0011.2233.4455", "ether src and dst 02:aa:bb:cc:dd:ee",
	"ether proto 0x800", "ether proto \\ip", "ether proto \\ip6", "ether proto \\arp", "ether proto \\rarp",
	"ether proto 0x9000", "ether proto \\loopback", "ether proto 0x42", "ether proto \\stp", "ether proto \\iso",
	"ether proto 6", "ether proto \\netbeui", "link proto 0x86dd",
	"ether broadcast", "broadcast", "ether multicast", "multicast", "ip multicast", "ip6 multicast",
	"proto 6", "proto 17", "proto \\tcp", "ip proto 1", "ip proto \\udp", "ip proto \\icmp", "ip6 proto 58",
	"ip6 proto 6", "ip6 proto \\tcp", "ip proto 47", "proto \\sctp",
	"vlan", "vlan 100", "vlan 200", "vlan and vlan", "vlan 200 and vlan 300", "vlan and ip", "vlan 100 and tcp port 80",
	"ip and vlan", "vlan or ip", "not vlan", "vlan and host 198.18.0.1", "vlan and ip6", "vlan 10 or vlan 100",
	"greater 100", "less 64", "greater 0", "less 1500", "len > 100", "len <= 60", "len = 54", "len != 60",
	"len - 14 > 40", "len * 2 >= 200", "len / 2 < 40", "len % 7 = 3", "len & 0xff = 60", "len | 1 = 61",
	"len ^ 1 = 61", "len << 1 > 100", "len >> 1 < 40", "-len < 0", "- len + 100 > 50",
	"ip[0] & 0xf > 5", "ip[9] = 6", "ip[6:2] & 0x1fff != 0", "ip[2:2] > 100", "ip[12:4] = 0xc6120001",
	"ip6[6] = 58", "ip6[40] = 128", "ip6[4:2] > 10", "tcp[13] & 2 != 0", "tcp[tcpflags] & tcp-syn != 0",
	"tcp[tcpflags] & (tcp-syn|tcp-ack) = tcp-syn", "tcp[tcpflags] & tcp-fin != 0", "tcp[tcpflags] & (tcp-rst|tcp-push|tcp-urg|tcp-ece|tcp-cwr) != 0",
	"tcp[0:2] = 80", "tcp[2:2] > 1023", "tcp[12] >> 4 = 5", "udp[0:2] = 53", "udp[4:2] > 8", "icmp[0] = 8",
	"icmp[icmptype] = icmp-echo", "icmp[icmptype] = icmp-echoreply or icmp[icmptype] = icmp-unreach",
	"icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply", "icmp[icmpcode] = 1",
	"icmp[0] = icmp-timxceed or icmp[0] = icmp-redirect or icmp[0] = icmp-sourcequench or icmp[0] = icmp-paramprob",
	"icmp[0] = icmp-tstamp or icmp[0] = icmp-tstampreply or icmp[0] = icmp-ireq or icmp[0] = icmp-ireqreply",
	"icmp[0] = icmp-maskreq or icmp[0] = icmp-maskreply or icmp[0] = icmp-routeradvert or icmp[0] = icmp-routersolicit",
	"icmp6[icmp6type] = icmp6-echo", "icmp6[0] = icmp6-neighborsolicit", "icmp6[icmp6code] = 0",
	"icmp6[0] = icmp6-echoreply or icmp6[0] = icmp6-routeradvert or icmp6[0] = icmp6-destinationunreach",
	"sctp[0:2] = 1000", "arp[7] = 1", "arp[6:2] = 2", "rarp[7] = 3", "ether[0] & 1 != 0", "ether[12:2] = 0x800",
	"ether[6:4] = 0x02aabbcc", "ip[0] = 0x45 and ip[9] = 6", "tcp[0:4] = 0", "ip[ip[0] & 0xf] > 0",
	"tcp[tcp[12] >> 4] = 0", "ether[len - 1] = 0", "ip[100] = 0", "tcp[200:2] = 1", "ether[0:4] = 0xffffffff",
	"not ip", "not tcp and not udp", "! arp", "ip && tcp", "ip || arp", "tcp or udp and port 53",
	"not tcp or udp", "not (tcp or udp)", "(tcp or udp) and port 53", "tcp and (port 80 or port 443)",
	"host 198.18.0.1 and not port 80", "ip and not net 10", "ip6 and not host 2001:db8::1",
	"tcp port 80 and (tcp[tcpflags] & tcp-syn != 0)", "udp and (port 53 or port 5353)", "icmp or icmp6",
	"arp or rarp", "ip or ip6 or arp", "not ip and not ip6", "host 10.1.2.3 and (tcp or icmp)",
	"ip or not ip", "tcp and not tcp", "ip[100] = 1 or ip", "tcp[0] * 0 = 0", "tcp[0] & 0 = 0", "0 * tcp[5] = 1",
	"len * 0 = 0", "ip[2:2] - 20 = 0", "1 = 1", "2 > 1", "ip and 1 = 1", "tcp[0] + 0 = 80",
	"ip[9] = 6 and ip proto 6", "ip proto 6 and not ip[9] = 6", "ether[12:2] = 0x800 or ip",
	"tcp[tcpflags] & tcp-syn = 0", "ip[6:2] & 0x1fff = 0 and tcp", "ether[0] = 0xff and ether broadcast",
	"len - 1 ^ 2 + 3 = 0", "len * 2 % 3 + 1 = 0", "ip[0] % 16 = 5", "ip[0] ^ 0x45 = 0",
	"tcp[2:2] / 0x100 = 0", "tcp[2:2] = 0x50 or udp[2:2] = 0x35",
	// gen_arth keeps only the left operand's protocol checks.
	"ip[0] - tcp[1] = len", "tcp[0] + udp[0] = 1", "len - icmp[0] > 10", "ip6[0] * tcp[13] != 0",
	"udp[0] = tcp[0]", "1 + tcp[0] = 81 or host 10.1.2.3",
}

// primitives for random expression trees.
var randomPrims = []string{
	"ip", "ip6", "arp", "rarp", "tcp", "udp", "icmp", "icmp6", "sctp", "vlan", "vlan 100", "vlan 300",
	"host 198.18.0.1", "src host 10.1.2.3", "dst host 198.18.0.1", "host 2001:db8::1", "dst host ff02::1",
	"net 198.18.0.0/15", "src net 10", "net 2001:db8::/32", "net fe80::/10",
	"port 80", "port 53", "src port 1000", "dst port 80", "tcp port 443", "udp port 53", "sctp port 1000",
	"portrange 1000-3000", "tcp dst portrange 1-1023", "ether host 00:11:22:33:44:55", "ether src 02:aa:bb:cc:dd:ee",
	"ether broadcast", "ether multicast", "ip multicast", "ip6 multicast", "ether proto 0x9000", "ether proto \\stp",
	"proto 17", "ip proto 1", "ip6 proto 58", "greater 80", "less 70", "len > 90",
	"tcp[tcpflags] & tcp-syn != 0", "tcp[13] & 0x10 = 0", "udp[0:2] = 53", "icmp[icmptype] = icmp-echo",
	"icmp6[0] = 128", "ip[9] = 6", "ip6[6] = 17", "ip[6:2] & 0x1fff = 0", "ether[0] & 1 = 1", "arp[7] = 2",
	"ip[60] > 0", "tcp[30:2] != 7", "ip6[50] = 0", "ether[14] = 0x45", "ip[ip[0]&0xf] >= 0",
	"tcp[0] * 0 = 0", "len * 0 = 1",
}

// randomExprs builds deterministic random and/or/not trees of primitives.
func randomExprs(n int, seed int64) []string {
	r := rand.New(rand.NewSource(seed))
	var build func(depth int) string
	build = func(depth int) string {
		if depth == 0 || r.Intn(3) == 0 {
			p := randomPrims[r.Intn(len(randomPrims))]
			if r.Intn(5) == 0 {
				p = "not " + p
			}
			return p
		}
		l, rt := build(depth-1), build(depth-1)
		op := []string{" and ", " or ", " && ", " || "}[r.Intn(4)]
		s := l + op + rt
		switch r.Intn(4) {
		case 0:
			s = "(" + s + ")"
		case 1:
			s = "not (" + s + ")"
		}
		return s
	}
	out := make([]string, 0, n)
	for len(out) < n {
		out = append(out, strings.TrimSpace(build(1+r.Intn(3))))
	}
	return out
}

func allExprs() []string {
	out := append([]string{}, handExprs...)
	out = append(out, randomExprs(400, 1)...)
	seen := map[string]bool{}
	var uniq []string
	for _, e := range out {
		if !seen[e] {
			seen[e] = true
			uniq = append(uniq, e)
		}
	}
	return uniq
}

var _ = fmt.Sprint
