package pcapio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/testcorpus"
)

type pkt struct {
	ts   int64
	wire uint32
	data []byte
}

// testPackets returns packets of awkward sizes (0..7 bytes past a multiple
// of 4 exercise pcapng padding) with nanosecond timestamps.
func testPackets(n int) []pkt {
	ps := make([]pkt, n)
	for i := range ps {
		size := (i * 37) % 1600
		d := make([]byte, size)
		for j := range d {
			d[j] = byte(i + j)
		}
		ps[i] = pkt{ts: 1_700_000_000_123_456_789 + int64(i)*1_000_001, wire: uint32(size + i%3), data: d}
	}
	return ps
}

func encode(f Format, ps []pkt) []byte {
	b := AppendFileHeader(nil, f, capture.LinkTypeEthernet, 65535, "eth0")
	for _, p := range ps {
		b = AppendRecord(b, f, p.ts, p.wire, p.data)
	}
	return b
}

func readAll(t *testing.T, b []byte) ([]pkt, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	var ps []pkt
	for {
		rec, err := r.Next()
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return ps, err
		}
		ps = append(ps, pkt{rec.Timestamp, rec.Length, bytes.Clone(rec.Data)})
	}
}

var formats = []Format{FormatPcap, FormatPcapng}

func TestRoundTrip(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			want := testPackets(200)
			b := encode(f, want)
			got, err := readAll(t, b)
			if err != nil {
				t.Fatalf("reading back: %v", err)
			}
			comparePackets(t, got, want)

			res, err := Scan(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			var wire uint64
			for _, p := range want {
				wire += uint64(p.wire)
			}
			if res.Format != f || res.LinkType != capture.LinkTypeEthernet || res.Packets != 200 ||
				res.FirstTS != want[0].ts || res.LastTS != want[199].ts || res.WireBytes != wire || res.ValidBytes != int64(len(b)) {
				t.Fatalf("Scan = %+v, want 200 packets, %d wire bytes, %d valid bytes", res, wire, len(b))
			}
		})
	}
}

func comparePackets(t *testing.T, got, want []pkt) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d packets, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ts != want[i].ts || got[i].wire != want[i].wire || !bytes.Equal(got[i].data, want[i].data) {
			t.Fatalf("packet %d: got ts %d wire %d len %d, want ts %d wire %d len %d",
				i, got[i].ts, got[i].wire, len(got[i].data), want[i].ts, want[i].wire, len(want[i].data))
		}
	}
}

// TestGopacketOracle checks the encoding against an independent reader.
func TestGopacketOracle(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			want := testPackets(100)
			got, lt, err := readGopacket(bytes.NewReader(encode(f, want)), f)
			if err != nil {
				t.Fatalf("gopacket: %v", err)
			}
			if lt != capture.LinkTypeEthernet && f == FormatPcap {
				t.Fatalf("gopacket link type %d", lt)
			}
			comparePackets(t, got, want)
		})
	}
}

// readGopacket reads a whole file with gopacket's pcapgo.
func readGopacket(r io.Reader, f Format) ([]pkt, capture.LinkType, error) {
	var ps []pkt
	var lt capture.LinkType
	add := func(data []byte, ts int64, wire int) { ps = append(ps, pkt{ts, uint32(wire), data}) }
	if f == FormatPcapng {
		ng, err := pcapgo.NewNgReader(r, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, 0, err
		}
		lt = capture.LinkType(ng.LinkType())
		for {
			data, ci, err := ng.ReadPacketData()
			if err != nil {
				return ps, lt, eofNil(err)
			}
			add(data, ci.Timestamp.UnixNano(), ci.Length)
		}
	}
	pr, err := pcapgo.NewReader(r)
	if err != nil {
		return nil, 0, err
	}
	lt = capture.LinkType(pr.LinkType())
	for {
		data, ci, err := pr.ReadPacketData()
		if err != nil {
			return ps, lt, eofNil(err)
		}
		add(data, ci.Timestamp.UnixNano(), ci.Length)
	}
}

func eofNil(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

// TestExternalTools checks that capinfos and tcpdump accept the files.
func TestExternalTools(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x"+f.Ext())
			if err := os.WriteFile(path, encode(f, testPackets(57)), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := exec.LookPath("capinfos"); err != nil {
				t.Log("capinfos not on PATH, skipping its check")
			} else {
				out, err := exec.Command("capinfos", "-c", "-M", path).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "57") {
					t.Errorf("capinfos -c: %v\n%s", err, out)
				}
			}
			if _, err := exec.LookPath("tcpdump"); err != nil {
				t.Log("tcpdump not on PATH, skipping its check")
			} else {
				out, err := exec.Command("tcpdump", "--count", "-r", path).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "57 packets") {
					t.Errorf("tcpdump --count -r: %v\n%s", err, out)
				}
			}
		})
	}
}

func TestAppendRecordNoAlloc(t *testing.T) {
	data := make([]byte, 1499)
	for _, f := range formats {
		buf := make([]byte, 0, 1<<20)
		allocs := testing.AllocsPerRun(1000, func() {
			buf = AppendRecord(buf[:0], f, 1, 1500, data)
		})
		if allocs != 0 {
			t.Errorf("%s: AppendRecord allocates %.1f times per call", f, allocs)
		}
		if len(buf) != RecordLen(f, len(data)) || len(buf) > len(data)+RecordOverhead(f) {
			t.Errorf("%s: record of %d bytes, RecordLen says %d", f, len(buf), RecordLen(f, len(data)))
		}
		ts, wire, size, err := ParseRecord(f, buf)
		if err != nil || ts != 1 || wire != 1500 || size != len(buf) {
			t.Errorf("%s: ParseRecord = %d %d %d %v", f, ts, wire, size, err)
		}
	}
}

func BenchmarkAppendRecord(b *testing.B) {
	data := make([]byte, 1500)
	for _, f := range formats {
		b.Run(string(f), func(b *testing.B) {
			buf := make([]byte, 0, 1<<20)
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for i := 0; b.Loop(); i++ {
				if cap(buf)-len(buf) < RecordLen(f, len(data)) {
					buf = buf[:0]
				}
				buf = AppendRecord(buf, f, int64(i), 1500, data)
			}
		})
	}
}

// TestTruncation cuts a small file at every byte: Scan must report the last
// whole record boundary, and Reader everything before it and then an
// unexpected EOF naming the offset.
func TestTruncation(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			ps := testPackets(6)
			hdr := AppendFileHeader(nil, f, capture.LinkTypeRaw, 65535, "eth0")
			bounds := []int{len(hdr)}
			b := hdr
			for _, p := range ps {
				b = AppendRecord(b, f, p.ts, p.wire, p.data)
				bounds = append(bounds, len(b))
			}
			for cut := 0; cut <= len(b); cut++ {
				res, err := Scan(bytes.NewReader(b), int64(cut))
				if cut < len(hdr) {
					// A pcapng section header alone is a valid, empty file.
					if f == FormatPcapng && cut >= 28 && err == nil && res.Packets == 0 {
						continue
					}
					if err == nil {
						t.Fatalf("cut %d inside the header: Scan succeeded", cut)
					}
					continue
				}
				if err != nil {
					t.Fatalf("cut %d: Scan: %v", cut, err)
				}
				whole := 0
				for whole+1 < len(bounds) && bounds[whole+1] <= cut {
					whole++
				}
				if res.ValidBytes != int64(bounds[whole]) || res.Packets != uint64(whole) {
					t.Fatalf("cut %d: ValidBytes %d packets %d, want %d and %d", cut, res.ValidBytes, res.Packets, bounds[whole], whole)
				}
				got, err := readAll(t, b[:cut])
				comparePackets(t, got, ps[:whole])
				if cut == bounds[whole] {
					if err != nil {
						t.Fatalf("cut %d at a boundary: %v", cut, err)
					}
				} else if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "offset "+strconv.Itoa(bounds[whole])) {
					t.Fatalf("cut %d: error %v, want unexpected EOF at offset %d", cut, err, bounds[whole])
				}
			}
		})
	}
}

func TestRejectsHugeRecord(t *testing.T) {
	b := AppendFileHeader(nil, FormatPcap, capture.LinkTypeEthernet, 65535, "")
	b = AppendRecord(b, FormatPcap, 1, 10, make([]byte, 10))
	b = binary.LittleEndian.AppendUint32(b, 1)
	b = binary.LittleEndian.AppendUint32(b, 1)
	b = binary.LittleEndian.AppendUint32(b, 0x7fffffff)
	b = binary.LittleEndian.AppendUint32(b, 0x7fffffff)
	got, err := readAll(t, b)
	if len(got) != 1 || err == nil || !strings.Contains(err.Error(), "byte offset 50") || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("got %d packets, error %v; want 1 packet and a length error at byte offset 50", len(got), err)
	}
	res, err := Scan(bytes.NewReader(b), int64(len(b)))
	if err == nil || res.ValidBytes != 50 || res.Packets != 1 {
		t.Fatalf("Scan = %+v, %v; want 1 packet, 50 valid bytes and an error", res, err)
	}
}

// TestByteOrders reads files sonde never writes: big-endian microsecond
// pcap, and big-endian pcapng with two interfaces of different link types
// and timestamp resolutions, a simple packet block and an unknown block.
func TestByteOrders(t *testing.T) {
	be := binary.BigEndian
	t.Run("pcap-be-micros", func(t *testing.T) {
		var b []byte
		b = be.AppendUint32(b, magicMicros)
		b = be.AppendUint16(b, 2)
		b = be.AppendUint16(b, 4)
		b = append(b, make([]byte, 8)...)
		b = be.AppendUint32(b, 96)
		b = be.AppendUint32(b, 101)
		b = be.AppendUint32(b, 10)
		b = be.AppendUint32(b, 500)
		b = be.AppendUint32(b, 3)
		b = be.AppendUint32(b, 9)
		b = append(b, 1, 2, 3)
		got, err := readAll(t, b)
		comparePackets(t, got, []pkt{{10_000_500_000, 9, []byte{1, 2, 3}}})
		if err != nil {
			t.Fatal(err)
		}
		r, _ := NewReader(bytes.NewReader(b))
		if r.LinkType() != capture.LinkTypeRaw {
			t.Fatalf("link type %d", r.LinkType())
		}
	})
	t.Run("pcapng-be", func(t *testing.T) {
		block := func(b []byte, typ uint32, body []byte) []byte {
			b = be.AppendUint32(b, typ)
			b = be.AppendUint32(b, uint32(12+len(body)))
			b = append(b, body...)
			return be.AppendUint32(b, uint32(12+len(body)))
		}
		idb := func(lt uint16, resol byte) []byte {
			var v []byte
			v = be.AppendUint16(v, lt)
			v = be.AppendUint16(v, 0)
			v = be.AppendUint32(v, 0)
			v = be.AppendUint16(v, optIfTsresol)
			v = be.AppendUint16(v, 1)
			v = append(v, resol, 0, 0, 0)
			return append(v, 0, 0, 0, 0)
		}
		epb := func(id uint32, ts uint64, data []byte) []byte {
			var v []byte
			v = be.AppendUint32(v, id)
			v = be.AppendUint32(v, uint32(ts>>32))
			v = be.AppendUint32(v, uint32(ts))
			v = be.AppendUint32(v, uint32(len(data)))
			v = be.AppendUint32(v, uint32(len(data)+100))
			v = append(v, data...)
			return appendPad(v, len(data))
		}
		var shb []byte
		shb = be.AppendUint32(shb, byteOrderMagic)
		shb = be.AppendUint16(shb, 1)
		shb = be.AppendUint16(shb, 0)
		shb = be.AppendUint64(shb, ^uint64(0))
		b := block(nil, blockSHB, shb)
		b = block(b, blockIDB, idb(1, 6))
		b = block(b, blockIDB, idb(101, 0x80|10)) // 2^-10 s
		b = block(b, 0xBAD, []byte{9, 9, 9, 9})
		b = block(b, blockEPB, epb(0, 5_000_001, []byte{1, 2, 3, 4, 5}))
		b = block(b, blockEPB, epb(1, 3<<10|512, []byte{6}))
		b = block(b, blockSPB, append(be.AppendUint32(nil, 2), 7, 8, 0, 0))
		want := []pkt{
			{5_000_001_000, 105, []byte{1, 2, 3, 4, 5}},
			{3_500_000_000, 101, []byte{6}},
			{0, 2, []byte{7, 8}},
		}
		got, err := readAll(t, b)
		if err != nil {
			t.Fatal(err)
		}
		comparePackets(t, got, want)
		r, _ := NewReader(bytes.NewReader(b))
		if r.LinkType() != capture.LinkTypeEthernet || r.Format() != FormatPcapng {
			t.Fatalf("link type %d format %s", r.LinkType(), r.Format())
		}
		if rec, _ := r.Next(); rec.Interface != 0 {
			t.Fatalf("interface %d", rec.Interface)
		}
		if rec, _ := r.Next(); rec.Interface != 1 {
			t.Fatalf("interface %d", rec.Interface)
		}
		res, err := Scan(bytes.NewReader(b), int64(len(b)))
		if err != nil || res.Packets != 3 || res.ValidBytes != int64(len(b)) {
			t.Fatalf("Scan = %+v, %v", res, err)
		}
	})
}

// TestCorpus runs the reader over real, often malformed captures: it must
// never panic, and where gopacket reads a file cleanly the packet counts
// must agree (capinfos settles the cases where gopacket itself is wrong).
func TestCorpus(t *testing.T) {
	corpusDir := testcorpus.Dir(t)
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatalf("reading the corpus: %v", err)
	}
	_, capErr := exec.LookPath("capinfos")
	var compared, damaged int
	for _, e := range entries {
		path := filepath.Join(corpusDir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, ourErr := readAll(t, b)
		res, scanErr := Scan(bytes.NewReader(b), int64(len(b)))
		if (ourErr == nil) != (scanErr == nil && res.ValidBytes == int64(len(b))) || (ourErr == nil && res.Packets != uint64(len(got))) {
			t.Errorf("%s: Reader (%d packets, %v) and Scan (%+v, %v) disagree", e.Name(), len(got), ourErr, res, scanErr)
		}
		if ourErr != nil {
			damaged++
		}
		f := FormatPcap
		if bytes.HasPrefix(b, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
			f = FormatPcapng
		}
		gp, _, gpErr := readGopacket(bytes.NewReader(b), f)
		if gpErr != nil {
			continue
		}
		compared++
		if ourErr == nil && len(gp) == len(got) {
			continue
		}
		// gopacket read it cleanly but we disagree: ask capinfos.
		if capErr == nil {
			out, _ := exec.Command("capinfos", "-c", "-M", path).CombinedOutput()
			if n, ok := capinfosCount(out); ok && n == len(got) {
				t.Logf("%s: gopacket %d packets, ours and capinfos %d (%v)", e.Name(), len(gp), n, ourErr)
				continue
			}
		}
		t.Errorf("%s: we read %d packets (%v), gopacket %d", e.Name(), len(got), ourErr, len(gp))
	}
	t.Logf("%d files, %d compared with gopacket, %d reported damaged by us", len(entries), compared, damaged)
}

func capinfosCount(out []byte) (int, bool) {
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Number of packets:") {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(l, "Number of packets:")))
			return n, err == nil
		}
	}
	return 0, false
}

func FuzzReader(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.pcap*")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(encode(FormatPcapng, testPackets(3)))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b))
		n := 0
		if err == nil {
			for {
				if _, err := r.Next(); err != nil {
					break
				}
				n++
			}
		}
		res, _ := Scan(bytes.NewReader(b), int64(len(b)))
		if res.ValidBytes > int64(len(b)) || res.Packets > uint64(n) && err == nil {
			t.Fatalf("Scan %+v beyond the %d bytes / %d packets read", res, len(b), n)
		}
	})
}
