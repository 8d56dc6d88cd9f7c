package extract

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sonde-project/sonde/bpf"
	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
	"github.com/sonde-project/sonde/internal/ring"
)

// TestExtractPcapng: a window over two nodes' interfaces of different link
// types comes out as one pcapng with one interface per (node, interface),
// each packet on its own interface, in time order, and the per-link-type
// filter applied to its own interface only.
func TestExtractPcapng(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	type src struct {
		node, iface string
		lt          capture.LinkType
	}
	srcs := []src{{"b", "eth0", capture.LinkTypeEthernet}, {"a", "wg0", capture.LinkTypeRaw}, {"a", "eth0", capture.LinkTypeEthernet}}
	type want struct {
		ts    int64
		name  string
		data  []byte
		iface string
	}
	var index []ring.FileInfo
	var all []want
	for k, s := range srcs {
		buf := pcapio.AppendFileHeader(nil, pcapio.FormatPcap, s.lt, 65535, "")
		fi := ring.FileInfo{Node: s.node, Interface: s.iface, LinkType: s.lt, Format: pcapio.FormatPcap}
		for i := range 40 {
			ts := t0 + int64(i*3+k)*int64(time.Microsecond)
			d := ethUDP(hostA, hostB, uint16(100+k), 53, uint32(i), 60+i)
			if s.lt == capture.LinkTypeRaw {
				d = d[14:]
			}
			buf = pcapio.AppendRecord(buf, pcapio.FormatPcap, ts, uint32(len(d)), d)
			if i == 0 {
				fi.First = ts
			}
			fi.Last, fi.Packets = ts, fi.Packets+1
			all = append(all, want{ts, s.node + "/" + s.iface, d, s.iface})
		}
		fi.Name = fmt.Sprintf("%d_%s_%s_0.pcap", fi.First, s.node, s.iface)
		fi.Bytes = int64(len(buf))
		if err := os.WriteFile(filepath.Join(dir, fi.Name), buf, 0o640); err != nil {
			t.Fatal(err)
		}
		index = append(index, fi)
	}
	slices.SortFunc(all, func(a, b want) int { return int(a.ts - b.ts) })
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	if _, err := Extract(context.Background(), io.Discard, Dir(root), index, Request{From: t0, To: t0 + 1e9}); err == nil {
		t.Fatal("pcap of mixed link types: no error")
	}
	// Odd sequence numbers only, on Ethernet; the raw interface keeps all.
	eth, err := Compile("udp[11] & 1 == 1", nil, capture.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, filtered := range []bool{false, true} {
		req := Request{From: t0, To: t0 + 1e9, Format: pcapio.FormatPcapng}
		if filtered {
			req.Matches = map[capture.LinkType]bpf.Program{capture.LinkTypeEthernet: eth}
		}
		var out bytes.Buffer
		res, err := Extract(context.Background(), &out, Dir(root), index, req)
		if err != nil {
			t.Fatal(err)
		}
		rd, err := pcapio.NewReader(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		// Nanosecond timestamps, and the snaplen any ring file fits in.
		ns := pcapio.TimeUnit{Exp: 9}
		wantIfs := []pcapio.Interface{
			{LinkType: capture.LinkTypeEthernet, Snaplen: Snaplen, Name: "eth0", Description: "sonde node a", Time: ns},
			{LinkType: capture.LinkTypeRaw, Snaplen: Snaplen, Name: "wg0", Description: "sonde node a", Time: ns},
			{LinkType: capture.LinkTypeEthernet, Snaplen: Snaplen, Name: "eth0", Description: "sonde node b", Time: ns},
		}
		for i, w := range wantIfs {
			if got, ok := rd.Interface(i); !ok || got != w {
				t.Fatalf("interface %d: %+v, want %+v", i, got, w)
			}
		}
		var n uint64
		j := 0
		for {
			rec, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			for filtered && all[j].iface == "eth0" && all[j].data[14+20+11]&1 == 0 {
				j++
			}
			w := all[j]
			j++
			ifc, _ := rd.Interface(rec.Interface)
			node := ifc.Description[len("sonde node "):]
			if rec.Timestamp != w.ts || node+"/"+ifc.Name != w.name || !bytes.Equal(rec.Data, w.data) {
				t.Fatalf("filtered=%v packet %d: ts %d on %s/%s, want ts %d on %s", filtered, n, rec.Timestamp, node, ifc.Name, w.ts, w.name)
			}
			n++
		}
		wantN := uint64(120)
		if filtered {
			wantN = 40 + 40
		}
		if n != wantN || res.Packets != wantN {
			t.Fatalf("filtered=%v: read %d packets, result says %d, want %d", filtered, n, res.Packets, wantN)
		}
	}
}
