package extract

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
	"github.com/sonde-project/sonde/internal/ring"
)

type pkt struct {
	ts   int64
	wire uint32
	data []byte
}

// ethUDP builds an Ethernet/IPv4/UDP frame of size bytes between two
// addresses and ports, carrying seq.
func ethUDP(src, dst [4]byte, sport, dport uint16, seq uint32, size int) []byte {
	b := make([]byte, max(size, 14+20+8+4))
	copy(b[0:6], []byte{2, 0, 0, 0, 0, 2})
	copy(b[6:12], []byte{2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(b)-14))
	ip[8], ip[9] = 64, 17
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(b)-34))
	binary.BigEndian.PutUint32(udp[8:], seq)
	return b
}

var (
	hostA = [4]byte{10, 0, 0, 1}
	hostB = [4]byte{10, 0, 0, 2}
	hostC = [4]byte{10, 0, 0, 3}
)

// writeRing writes files for workers, each worker's packets split into
// files of perFile packets, and returns the index entries sorted by first
// packet as the ring keeps them, with every packet written.
func writeRing(t testing.TB, dir string, format pcapio.Format, workers, files, perFile int, t0 int64, step time.Duration, size func(int) int) ([]ring.FileInfo, []pkt) {
	t.Helper()
	var index []ring.FileInfo
	var all []pkt
	rng := rand.New(rand.NewPCG(1, 2))
	for w := range workers {
		ts := t0 + int64(w)*int64(step)/int64(workers) // interleave workers
		for f := range files {
			buf := pcapio.AppendFileHeader(nil, format, capture.LinkTypeEthernet, 65535, "eth0")
			fi := ring.FileInfo{Interface: "eth0", Node: "n", Worker: w, LinkType: capture.LinkTypeEthernet, Format: format}
			for i := range perFile {
				seq := uint32(w<<24 | f<<12 | i)
				src, dst, sp, dp := hostA, hostB, uint16(1000+w), uint16(53)
				switch rng.IntN(3) {
				case 0:
					src, dst, sp, dp = dst, src, dp, sp
				case 1:
					dst = hostC
				}
				d := ethUDP(src, dst, sp, dp, seq, size(i))
				p := pkt{ts: ts, wire: uint32(len(d) + 10), data: d}
				buf = pcapio.AppendRecord(buf, format, p.ts, p.wire, p.data)
				all = append(all, p)
				if i == 0 {
					fi.First = ts
				}
				fi.Last = ts
				fi.Packets++
				ts += int64(step)
			}
			fi.Name = fmt.Sprintf("%d_n_eth0_%d%s", fi.First, w, format.Ext())
			fi.Bytes = int64(len(buf))
			if err := os.WriteFile(filepath.Join(dir, fi.Name), buf, 0o640); err != nil {
				t.Fatal(err)
			}
			index = append(index, fi)
		}
	}
	slices.SortFunc(index, func(a, b ring.FileInfo) int { return int(min(max(a.First-b.First, -1), 1)) })
	return index, all
}

func overlapping(files []ring.FileInfo, from, to int64) []ring.FileInfo {
	var out []ring.FileInfo
	for _, f := range files {
		if f.First < to && f.Last >= from {
			out = append(out, f)
		}
	}
	return out
}

func readAll(t *testing.T, b []byte) (capture.LinkType, []pkt) {
	t.Helper()
	rd, err := pcapio.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if rd.Format() != pcapio.FormatPcap {
		t.Fatalf("format %s", rd.Format())
	}
	var out []pkt
	for {
		r, err := rd.Next()
		if err == io.EOF {
			return rd.LinkType(), out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pkt{r.Timestamp, r.Length, slices.Clone(r.Data)})
	}
}

func samePkts(t *testing.T, got, want []pkt) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ts != want[i].ts || got[i].wire != want[i].wire || !bytes.Equal(got[i].data, want[i].data) {
			t.Fatalf("packet %d: ts %d wire %d, want ts %d wire %d (or data differs)", i, got[i].ts, got[i].wire, want[i].ts, want[i].wire)
		}
	}
}

func TestExtract(t *testing.T) {
	for _, format := range []pcapio.Format{pcapio.FormatPcap, pcapio.FormatPcapng} {
		t.Run(string(format), func(t *testing.T) {
			dir := t.TempDir()
			t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
			index, all := writeRing(t, dir, format, 3, 4, 50, t0, time.Millisecond, func(i int) int { return 60 + i*7 })
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			slices.SortStableFunc(all, func(a, b pkt) int { return int(min(max(a.ts-b.ts, -1), 1)) })
			flow, err := ParseFlow("10.0.0.2:53-10.0.0.1:1001/udp")
			if err != nil {
				t.Fatal(err)
			}
			isFlow := func(p pkt) bool {
				a, b := [4]byte(p.data[26:30]), [4]byte(p.data[30:34])
				sp, dp := binary.BigEndian.Uint16(p.data[34:]), binary.BigEndian.Uint16(p.data[36:])
				return a == hostA && b == hostB && sp == 1001 && dp == 53 || a == hostB && b == hostA && sp == 53 && dp == 1001
			}
			cases := []struct {
				name     string
				from, to int64
				filter   string
				flow     *Flow
				keep     func(pkt) bool
			}{
				{"everything", t0 - 1, t0 + int64(time.Hour), "", nil, nil},
				{"middle", t0 + 37*int64(time.Millisecond), t0 + 151*int64(time.Millisecond), "", nil, nil},
				{"empty", t0 + int64(time.Hour), t0 + 2*int64(time.Hour), "", nil, nil},
				{"filter", t0, t0 + int64(time.Hour), "dst host 10.0.0.3", nil, func(p pkt) bool { return [4]byte(p.data[30:34]) == hostC }},
				{"flow", t0 + 10*int64(time.Millisecond), t0 + int64(time.Hour), "", &flow, isFlow},
				{"filter and flow", t0, t0 + int64(time.Hour), "len > 300", &flow, func(p pkt) bool { return isFlow(p) && p.wire > 300 }},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					prog, err := Compile(c.filter, c.flow, capture.LinkTypeEthernet)
					if err != nil {
						t.Fatal(err)
					}
					var out bytes.Buffer
					files := overlapping(index, c.from, c.to)
					res, err := Extract(context.Background(), &out, Dir(root), files, Request{From: c.from, To: c.to, Match: prog})
					if err != nil {
						t.Fatal(err)
					}
					var want []pkt
					for _, p := range all {
						if p.ts >= c.from && p.ts < c.to && (c.keep == nil || c.keep(p)) {
							want = append(want, p)
						}
					}
					lt, got := readAll(t, out.Bytes())
					if lt != capture.LinkTypeEthernet {
						t.Fatalf("link type %d", lt)
					}
					samePkts(t, got, want)
					if res.Packets != uint64(len(want)) || res.Bytes != int64(out.Len()) || res.Files != len(files) || res.Truncated {
						t.Fatalf("result %+v for %d packets, %d bytes, %d files", res, len(want), out.Len(), len(files))
					}
				})
			}
		})
	}
}

func TestExtractLimitsAndEviction(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now().UnixNano()
	index, all := writeRing(t, dir, pcapio.FormatPcap, 2, 3, 20, t0, time.Millisecond, func(int) int { return 100 })
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	slices.SortStableFunc(all, func(a, b pkt) int { return int(min(max(a.ts-b.ts, -1), 1)) })
	req := Request{From: t0, To: t0 + int64(time.Hour)}

	// Byte bound: header plus 10 whole records and half of the next.
	req.MaxBytes = 24 + 10*116 + 50
	var out bytes.Buffer
	res, err := Extract(context.Background(), &out, Dir(root), index, req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Truncated || res.Packets != 10 || out.Len() != 24+10*116 {
		t.Fatalf("bounded: %+v, %d bytes", res, out.Len())
	}
	_, got := readAll(t, out.Bytes())
	samePkts(t, got, all[:10])

	// A file evicted after the lookup is skipped and counted.
	if err := os.Remove(filepath.Join(dir, index[0].Name)); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	req.MaxBytes = 0
	res, err = Extract(context.Background(), &out, Dir(root), index, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Missing != 1 || res.Packets != uint64(len(all)-20) {
		t.Fatalf("after eviction: %+v", res)
	}

	// A cancelled request stops at the next flush.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	bigDir := t.TempDir()
	big, _ := writeRing(t, bigDir, pcapio.FormatPcap, 1, 1, 20000, t0, time.Microsecond, func(int) int { return 200 })
	root2, err := os.OpenRoot(bigDir)
	if err != nil {
		t.Fatal(err)
	}
	defer root2.Close()
	out.Reset()
	if _, err := Extract(ctx, &out, Dir(root2), big, req); !errors.Is(err, context.Canceled) || out.Len() != 0 {
		t.Fatalf("cancelled: %v after %d bytes", err, out.Len())
	}
}

func TestMixedLinkTypes(t *testing.T) {
	files := []ring.FileInfo{
		{Name: "a", Interface: "eth0", LinkType: capture.LinkTypeEthernet},
		{Name: "b", Interface: "wg0", LinkType: capture.LinkTypeRaw},
	}
	_, err := Extract(context.Background(), io.Discard, nil, files, Request{})
	var me *MixedLinkTypesError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "eth0") || !strings.Contains(err.Error(), "wg0") || !strings.Contains(err.Error(), "interface=") {
		t.Fatalf("mixed link types: %v", err)
	}
}

func TestParseFlow(t *testing.T) {
	good := map[string]string{
		"10.0.0.1:40000-10.0.0.2:443/tcp":      "tcp and ((src host 10.0.0.1 and src port 40000 and dst host 10.0.0.2 and dst port 443) or (src host 10.0.0.2 and src port 443 and dst host 10.0.0.1 and dst port 40000))",
		"[2001:db8::1]:53-[2001:db8::2]:5/UDP": "udp and ((src host 2001:db8::1 and src port 53 and dst host 2001:db8::2 and dst port 5) or (src host 2001:db8::2 and src port 5 and dst host 2001:db8::1 and dst port 53))",
	}
	for in, want := range good {
		f, err := ParseFlow(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if f.Expr() != want {
			t.Fatalf("%s: %s", in, f.Expr())
		}
		if _, err := Compile("", &f, capture.LinkTypeEthernet); err != nil {
			t.Fatalf("%s does not compile: %v", in, err)
		}
	}
	for _, bad := range []string{"", "10.0.0.1:1-10.0.0.2:2", "10.0.0.1:1-10.0.0.2:2/icmp", "10.0.0.1:1/tcp", "10.0.0.1-10.0.0.2:2/tcp",
		"10.0.0.1:1-[::1]:2/tcp", "10.0.0.1:99999-10.0.0.2:2/tcp", "host:1-10.0.0.2:2/tcp"} {
		if _, err := ParseFlow(bad); err == nil {
			t.Errorf("ParseFlow(%q) accepted", bad)
		}
	}
}

func TestCompileError(t *testing.T) {
	_, err := Compile("tcp and and", nil, capture.LinkTypeEthernet)
	var fe *FilterError
	if !errors.As(err, &fe) {
		t.Fatalf("err %v, want FilterError", err)
	}
	if p, _ := Compile("", nil, capture.LinkTypeEthernet); p != nil {
		t.Fatal("empty selection compiled to a program")
	}
}
