package fleet

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
)

// pkt is one packet as a test expects it out of a merge.
type pkt struct {
	ts    int64
	iface string // NODE/IFACE
	data  []byte
}

// memberStream builds a member's pcapng: the interfaces ifaces (of node,
// described as sonde describes them) and n packets per interface, spaced
// step ns apart from t0, interleaved over the interfaces. usec writes the
// timestamps in microseconds (if_tsresol 6) instead of nanoseconds.
func memberStream(node string, ifaces []string, n int, t0, step int64, size func(int) int, usec bool) ([]byte, []pkt) {
	b := pcapio.AppendSectionHeader(nil, "")
	for _, name := range ifaces {
		if usec {
			b = idbMicros(b, name, "sonde node "+node)
		} else {
			b = pcapio.AppendInterface(b, capture.LinkTypeEthernet, 65535, name, "sonde node "+node)
		}
	}
	var want []pkt
	for i := range n * len(ifaces) {
		ts := t0 + int64(i)*step
		if usec {
			ts -= ts % 1000
		}
		d := make([]byte, size(i))
		binary.BigEndian.PutUint64(d, uint64(ts))
		copy(d[8:], node)
		k := i % len(ifaces)
		if usec {
			b = pcapio.AppendPacket(b, uint32(k), ts/1000, uint32(len(d)+4), d)
		} else {
			b = pcapio.AppendPacket(b, uint32(k), ts, uint32(len(d)+4), d)
		}
		want = append(want, pkt{ts, node + "/" + ifaces[k], d})
	}
	return b, want
}

// idbMicros is an interface block with the default microsecond resolution.
func idbMicros(b []byte, name, desc string) []byte {
	ng := pcapio.AppendInterface(nil, capture.LinkTypeEthernet, 65535, name, desc)
	// Drop the if_tsresol option (the 8 bytes before opt_endofopt).
	n := len(ng)
	ng = append(ng[:n-16], ng[n-8:]...)
	binary.LittleEndian.PutUint32(ng[4:], uint32(len(ng)))
	binary.LittleEndian.PutUint32(ng[len(ng)-4:], uint32(len(ng)))
	return append(b, ng...)
}

// readMerged reads a merge's output back with pcapio: every packet with
// its interface's name, checking the description names the same node.
func readMerged(t testing.TB, b []byte) ([]pkt, string) {
	t.Helper()
	rd, err := pcapio.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out []pkt
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			return out, ""
		}
		if err != nil {
			t.Fatalf("reading the merge after %d packets: %v", len(out), err)
		}
		ifc, _ := rd.Interface(rec.Interface)
		node, _, _ := bytes.Cut([]byte(ifc.Name), []byte("/"))
		if ifc.Description != "sonde node "+string(node) {
			t.Fatalf("interface %q described %q", ifc.Name, ifc.Description)
		}
		out = append(out, pkt{rec.Timestamp, ifc.Name, slices.Clone(rec.Data)})
	}
}

func sortPkts(p []pkt) {
	slices.SortStableFunc(p, func(a, b pkt) int { return int(min(max(a.ts-b.ts, -1), 1)) })
}

func samePkts(t *testing.T, got, want []pkt) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ts != want[i].ts || got[i].iface != want[i].iface || !bytes.Equal(got[i].data, want[i].data) {
			t.Fatalf("packet %d: %d on %s, want %d on %s (or the data differs)", i, got[i].ts, got[i].iface, want[i].ts, want[i].iface)
		}
	}
}

// TestMerge: three members (one of two interfaces, one in microseconds)
// merge into one pcapng in time order with every packet on its node's
// interface, byte for byte, and the output opens in tshark.
func TestMerge(t *testing.T) {
	size := func(i int) int { return 60 + i%700 }
	a, wa := memberStream("alpha", []string{"eth0", "eth1"}, 300, 1_000_000_000, 7, size, false)
	b, wb := memberStream("beta", []string{"eth0"}, 500, 1_000_000_003, 5, size, false)
	c, wc := memberStream("gamma", []string{"eth0"}, 200, 1_000_000_000, 20_000, size, true)
	want := slices.Concat(wa, wb, wc)
	sortPkts(want)
	var out bytes.Buffer
	res, err := Merge(context.Background(), &out, []Input{
		{Member: "a", Node: "ignored", R: bytes.NewReader(a)},
		{Member: "b", Node: "ignored", R: iotestHalf(bytes.NewReader(b))},
		{Member: "c", Node: "ignored", R: bytes.NewReader(c)},
	}, MergeOptions{Comment: "three members"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := readMerged(t, out.Bytes())
	samePkts(t, got, want)
	if res.Packets != uint64(len(want)) || res.Truncated || res.Bytes != int64(out.Len()) {
		t.Fatalf("result %+v, wrote %d bytes of %d packets", res, out.Len(), len(want))
	}
	for i, n := range []uint64{600, 500, 200} {
		if res.Inputs[i].Packets != n || res.Inputs[i].Err != nil {
			t.Fatalf("input %d: %+v, want %d packets", i, res.Inputs[i], n)
		}
	}
	tsharkCheck(t, out.Bytes(), len(want))
}

// iotestHalf returns reads of at most 7 bytes, so blocks straddle reads.
func iotestHalf(r io.Reader) io.Reader { return &smallReader{r} }

type smallReader struct{ r io.Reader }

func (s *smallReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), 7)]) }

// tsharkCheck opens the merge in tshark (when installed) and counts its
// packets per interface name.
func tsharkCheck(t *testing.T, b []byte, packets int) {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Log("tshark not installed: output checked with pcapio only")
		return
	}
	p := filepath.Join(t.TempDir(), "merged.pcapng")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("tshark", "-r", p, "-T", "fields", "-e", "frame.interface_name")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v: %s", err, stderr.Bytes())
	}
	if n := bytes.Count(out, []byte("\n")); n != packets {
		t.Fatalf("tshark reads %d packets, want %d: %.300s", n, packets, out)
	}
}

// failing yields the first n bytes of b, then err.
type failing struct {
	b   []byte
	err error
}

func (f *failing) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		return 0, f.err
	}
	n := copy(p, f.b)
	f.b = f.b[n:]
	return n, nil
}

// TestMergeMemberFails: a member whose stream breaks midway (inside a
// block) keeps the packets it sent before the break, is reported with its
// error, and the others are merged whole.
func TestMergeMemberFails(t *testing.T) {
	size := func(i int) int { return 100 }
	a, wa := memberStream("alpha", []string{"eth0"}, 100, 0, 10, size, false)
	b, wb := memberStream("beta", []string{"eth0"}, 100, 5, 10, size, false)
	// beta breaks 40 whole packets in, in the middle of the 41st.
	hdr := len(pcapio.AppendSectionHeader(nil, "")) + len(pcapio.AppendInterface(nil, 1, 65535, "eth0", "sonde node beta"))
	cut := hdr + 40*pcapio.RecordLen(pcapio.FormatPcapng, 100) + 30
	broken := errors.New("connection reset")
	var out bytes.Buffer
	res, err := Merge(context.Background(), &out, []Input{
		{Member: "a", R: bytes.NewReader(a)},
		{Member: "b", R: &failing{b[:cut], broken}},
		{Member: "c", R: &failing{nil, io.ErrUnexpectedEOF}},
		{Member: "d", R: bytes.NewReader([]byte("not a capture at all"))},
	}, MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Concat(wa, wb[:40])
	sortPkts(want)
	got, _ := readMerged(t, out.Bytes())
	samePkts(t, got, want)
	if !errors.Is(res.Inputs[1].Err, broken) || res.Inputs[1].Packets != 40 {
		t.Fatalf("beta: %+v, want 40 packets and the reset", res.Inputs[1])
	}
	if res.Inputs[0].Err != nil || res.Inputs[0].Packets != 100 {
		t.Fatalf("alpha: %+v", res.Inputs[0])
	}
	if res.Inputs[2].Err == nil || res.Inputs[3].Err == nil {
		t.Fatalf("empty and garbage members not reported: %+v", res.Inputs)
	}
}

// TestMergeTruncated: MaxBytes ends the output at the last whole packet
// block that fits, a valid pcapng holding a prefix of the merge.
func TestMergeTruncated(t *testing.T) {
	size := func(i int) int { return 64 + i%200 }
	a, wa := memberStream("alpha", []string{"eth0"}, 200, 0, 10, size, false)
	b, wb := memberStream("beta", []string{"eth0"}, 200, 3, 10, size, false)
	want := slices.Concat(wa, wb)
	sortPkts(want)
	const max = 20000
	var out bytes.Buffer
	res, err := Merge(context.Background(), &out, []Input{{Member: "a", R: bytes.NewReader(a)}, {Member: "b", R: bytes.NewReader(b)}}, MergeOptions{MaxBytes: max})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := readMerged(t, out.Bytes())
	if !res.Truncated || out.Len() > max || len(got) == 0 || int(res.Packets) != len(got) {
		t.Fatalf("truncated %v, %d bytes, %d packets (result %d)", res.Truncated, out.Len(), len(got), res.Packets)
	}
	next := pcapio.RecordLen(pcapio.FormatPcapng, len(want[len(got)].data))
	if out.Len()+next <= max {
		t.Fatalf("stopped at %d bytes although the next block of %d fits under %d", out.Len(), next, max)
	}
	samePkts(t, got, want[:len(got)])
}

// BenchmarkMerge merges 4 members' streams of 16 MiB each (frames of 64
// to 1500 bytes, interleaved in time) from memory to io.Discard: MB/s is
// member bytes merged per second on one goroutine.
func BenchmarkMerge(b *testing.B) {
	inputs, total := benchInputs(4, 16<<20)
	b.SetBytes(total)
	for b.Loop() {
		in := make([]Input, len(inputs))
		for i, s := range inputs {
			in[i] = Input{Member: fmt.Sprint(i), R: bytes.NewReader(s)}
		}
		res, err := Merge(context.Background(), io.Discard, in, MergeOptions{})
		if err != nil || res.Inputs[0].Err != nil {
			b.Fatal(err, res.Inputs[0].Err)
		}
	}
}

// BenchmarkMergecap is the peer figure: Wireshark's mergecap merging the
// same streams, from files in the page cache, to /dev/null.
func BenchmarkMergecap(b *testing.B) {
	if _, err := exec.LookPath("mergecap"); err != nil {
		b.Skip("mergecap not installed")
	}
	inputs, total := benchInputs(4, 16<<20)
	dir := b.TempDir()
	args := []string{"-F", "pcapng", "-w", "/dev/null"}
	for i, s := range inputs {
		p := filepath.Join(dir, fmt.Sprintf("m%d.pcapng", i))
		if err := os.WriteFile(p, s, 0o600); err != nil {
			b.Fatal(err)
		}
		args = append(args, p)
	}
	b.SetBytes(total)
	for b.Loop() {
		if out, err := exec.Command("mergecap", args...).CombinedOutput(); err != nil {
			b.Fatalf("mergecap: %v: %s", err, out)
		}
	}
}

func benchInputs(n, bytesEach int) ([][]byte, int64) {
	rng := rand.New(rand.NewPCG(1, 2))
	var out [][]byte
	var total int64
	for m := range n {
		s := pcapio.AppendSectionHeader(nil, "")
		s = pcapio.AppendInterface(s, capture.LinkTypeEthernet, 262144, "eth0", fmt.Sprintf("sonde node n%d", m))
		ts := int64(1e18) + int64(m)
		d := make([]byte, 1500)
		for len(s) < bytesEach {
			size := 64 + rng.IntN(1437)
			s = pcapio.AppendPacket(s, 0, ts, uint32(size), d[:size])
			ts += int64(1000 + rng.IntN(1000))
		}
		out = append(out, s)
		total += int64(len(s))
	}
	return out, total
}
