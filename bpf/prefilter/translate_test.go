package prefilter

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
	"github.com/sonde-project/sonde/internal/testcorpus"
)

// meta is the skb metadata a test run gives the program: ancillary loads
// read it.
type meta struct {
	protocol uint16
	ifindex  uint32
}

// interpret runs a classic program the way the kernel does (its classic
// programs are converted to eBPF too): 32-bit registers, loads outside the
// packet and division by X == 0 reject, shifts by X use X mod 32, and X+k of
// an indexed load wraps at 32 bits.
func interpret(t testing.TB, prog []unix.SockFilter, pkt []byte, m meta) uint32 {
	var a, x uint32
	var mem [16]uint32
	load := func(off uint32, size uint32) (uint32, bool) {
		if int32(off) < 0 || uint64(off)+uint64(size) > uint64(len(pkt)) {
			return 0, false
		}
		switch size {
		case 1:
			return uint32(pkt[off]), true
		case 2:
			return uint32(binary.BigEndian.Uint16(pkt[off:])), true
		}
		return binary.BigEndian.Uint32(pkt[off:]), true
	}
	for pc := 0; pc < len(prog); pc++ {
		f := prog[pc]
		k := f.K
		_, n := sizeOf(f.Code)
		var ok bool
		switch f.Code & 0x07 {
		case clsLD:
			switch f.Code & 0xe0 {
			case mIMM:
				a = k
			case mLEN:
				a = uint32(len(pkt))
			case mMEM:
				a = mem[k]
			case mABS:
				if k >= skfAdOff {
					switch k - skfAdOff {
					case 0:
						a = uint32(m.protocol)
					case 8:
						a = m.ifindex
					case 4, 20, 24, 32, 44, 48, 60: // pkt_type (host), mark, queue, hash, vlan: all 0 in a test run
						a = 0
					case adXorX:
						a ^= x
					default: // not an extension: a failing load
						return 0
					}
					break
				}
				if a, ok = load(k, n); !ok {
					return 0
				}
			case mIND:
				if a, ok = load(x+k, n); !ok {
					return 0
				}
			}
		case clsLDX:
			switch f.Code & 0xe0 {
			case mIMM:
				x = k
			case mLEN:
				x = uint32(len(pkt))
			case mMEM:
				x = mem[k]
			case mMSH:
				v, ok := load(k, 1)
				if !ok {
					return 0
				}
				x = 4 * (v & 0xf)
			}
		case clsST:
			mem[k] = a
		case clsSTX:
			mem[k] = x
		case clsALU:
			v := k
			if f.Code&srcX != 0 {
				v = x
			}
			switch f.Code & 0xf0 {
			case 0x00:
				a += v
			case 0x10:
				a -= v
			case 0x20:
				a *= v
			case 0x30:
				if v == 0 {
					return 0
				}
				a /= v
			case 0x40:
				a |= v
			case 0x50:
				a &= v
			case 0x60:
				a <<= v & 31
			case 0x70:
				a >>= v & 31
			case 0x80:
				a = -a
			case 0x90:
				if v == 0 {
					return 0
				}
				a %= v
			case 0xa0:
				a ^= v
			}
		case clsJMP:
			v := k
			if f.Code&srcX != 0 {
				v = x
			}
			var cond bool
			switch f.Code & 0xf0 {
			case jJA:
				pc += int(k)
				continue
			case jJEQ:
				cond = a == v
			case jJGT:
				cond = a > v
			case jJGE:
				cond = a >= v
			case jJSET:
				cond = a&v != 0
			}
			if cond {
				pc += int(f.Jt)
			} else {
				pc += int(f.Jf)
			}
		case clsRET:
			if f.Code&0x18 == retA {
				return a
			}
			return k
		case clsMISC:
			if f.Code&0xf8 == miscTAX {
				x = a
			} else {
				a = x
			}
		}
	}
	t.Fatal("interpret: fell off the end")
	return 0
}

// Classic instruction constructors, named as in bpf_asm.
func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

const (
	ldW, ldH, ldB       = clsLD | szW | mABS, clsLD | szH | mABS, clsLD | szB | mABS
	ldiW, ldiH, ldiB    = clsLD | szW | mIND, clsLD | szH | mIND, clsLD | szB | mIND
	ldImm, ldLen, ldMem = clsLD | mIMM, clsLD | mLEN, clsLD | mMEM
	ldxImm, ldxLen      = clsLDX | mIMM, clsLDX | mLEN
	ldxMem, ldxMsh      = clsLDX | mMEM, clsLDX | szB | mMSH
	st, stx             = clsST, clsSTX
	tax, txa            = clsMISC | miscTAX, clsMISC | miscTXA
	retk, reta          = clsRET | retK, clsRET | retA
	jmpA                = clsJMP | jJA
	aluK, aluX          = clsALU, clsALU | srcX
	jK, jX              = clsJMP, clsJMP | srcX
)

const ad = skfAdOff

// handPrograms cover every classic opcode class: each returns A (or a
// constant naming the path taken), so a wrong value shows.
var handPrograms = map[string][]unix.SockFilter{
	"loads abs w/h/b": {
		stmt(ldB, 0), stmt(tax, 0), stmt(ldH, 1), stmt(aluX|0x00, 0), stmt(tax, 0),
		stmt(ldW, 3), stmt(aluX|0xa0, 0), stmt(reta, 0),
	},
	"abs at the cache edge and past it": {
		stmt(ldH, 126), stmt(tax, 0), stmt(ldB, 127), stmt(aluX|0x00, 0), stmt(st, 0),
		stmt(ldW, 125), stmt(ldxMem, 0), stmt(aluX|0xa0, 0), stmt(st, 1),
		stmt(ldW, 126), stmt(ldxMem, 1), stmt(aluX|0x00, 0), stmt(st, 2), // straddles: slow path
		stmt(ldH, 200), stmt(ldxMem, 2), stmt(aluX|0x00, 0), stmt(reta, 0),
	},
	"abs beyond every packet": {stmt(ldB, 100000), stmt(retk, 1)},
	"abs negative offset":     {stmt(ldB, 0xfffffff0), stmt(retk, 1)},
	"loads ind w/h/b": {
		stmt(ldB, 14), stmt(aluK|0x50, 0x3f), stmt(tax, 0),
		stmt(ldiB, 1), stmt(st, 0), stmt(ldiH, 2), stmt(ldxMem, 0), stmt(aluX|0x00, 0), stmt(st, 1),
		stmt(ldxImm, 3), stmt(ldiW, 5), stmt(ldxMem, 1), stmt(aluX|0xa0, 0), stmt(reta, 0),
	},
	"ind at the cache edge and past it": {
		stmt(ldxImm, 120), stmt(ldiB, 7), stmt(st, 0), stmt(ldiH, 6), stmt(ldxMem, 0), stmt(aluX|0x00, 0), stmt(st, 0),
		stmt(ldxImm, 120), stmt(ldiH, 7), stmt(ldxMem, 0), stmt(aluX|0x00, 0), stmt(st, 0), // 127..128: slow
		stmt(ldxImm, 120), stmt(ldiW, 30), stmt(ldxMem, 0), stmt(aluX|0x00, 0), stmt(reta, 0),
	},
	"ind offset wraps at 32 bits": {stmt(ldxImm, 0xffffffff), stmt(ldiB, 15), stmt(reta, 0)},
	"ind negative offset":         {stmt(ldxImm, 0xfffffff0), stmt(ldiB, 1), stmt(retk, 1)},
	"len imm mem": {
		stmt(ldLen, 0), stmt(st, 7), stmt(ldxLen, 0), stmt(stx, 8), stmt(ldImm, 0xdeadbeef), stmt(ldxImm, 3),
		stmt(ldxMem, 7), stmt(aluX|0x00, 0), stmt(ldxMem, 8), stmt(aluX|0x00, 0), stmt(reta, 0),
	},
	"msh":                        {stmt(ldxMsh, 14), stmt(ldiH, 16), stmt(reta, 0)},
	"msh at the edge and beyond": {stmt(ldxMsh, 127), stmt(txa, 0), stmt(st, 0), stmt(ldxMsh, 128), stmt(ldMem, 0), stmt(aluX|0x00, 0), stmt(reta, 0)},
	"msh keeps A":                {stmt(ldImm, 1234), stmt(ldxMsh, 14), stmt(aluX|0x00, 0), stmt(ldxMsh, 300), stmt(aluX|0x00, 0), stmt(reta, 0)},
	"alu k": {
		stmt(ldW, 14), stmt(aluK|0x00, 7), stmt(aluK|0x10, 3), stmt(aluK|0x20, 2654435761), stmt(aluK|0x30, 7),
		stmt(aluK|0x40, 0x100), stmt(aluK|0x50, 0xfffff0ff), stmt(aluK|0x60, 3), stmt(aluK|0x70, 1),
		stmt(aluK|0x90, 1000003), stmt(aluK|0xa0, 0x5a5a), stmt(aluK|0x80, 0), stmt(aluK|0x70, 31), stmt(aluK|0x60, 31), stmt(aluK|0x40, 1), stmt(reta, 0),
	},
	"alu x": {
		stmt(ldW, 10), stmt(tax, 0), stmt(ldW, 14), stmt(aluX|0x00, 0), stmt(aluX|0x10, 0), stmt(aluX|0x20, 0),
		stmt(aluX|0x40, 0), stmt(aluX|0x50, 0), stmt(aluX|0xa0, 0), stmt(st, 0),
		stmt(ldxLen, 0), stmt(ldMem, 0), stmt(aluX|0x30, 0), stmt(aluX|0x90, 0), stmt(st, 1),
		stmt(ldB, 13), stmt(tax, 0), stmt(ldMem, 0), stmt(aluX|0x60, 0), stmt(ldxMem, 1), stmt(aluX|0xa0, 0), stmt(st, 1),
		stmt(ldB, 15), stmt(tax, 0), stmt(ldMem, 0), stmt(aluX|0x70, 0), stmt(ldxMem, 1), stmt(aluX|0x00, 0), stmt(aluK|0x40, 1), stmt(reta, 0),
	},
	"div by x zero":      {stmt(ldxImm, 0), stmt(ldImm, 5), stmt(aluX|0x30, 0), stmt(retk, 77)},
	"mod by x zero":      {stmt(ldxImm, 0), stmt(ldImm, 5), stmt(aluX|0x90, 0), stmt(retk, 77)},
	"div by packet byte": {stmt(ldB, 20), stmt(tax, 0), stmt(ldImm, 1000), stmt(aluX|0x30, 0), stmt(aluK|0x40, 1), stmt(reta, 0)},
	"jumps k": {
		stmt(ldH, 12),
		jump(jK|jJEQ, 0x0800, 0, 3),
		stmt(ldB, 23), jump(jK|jJGT, 16, 0, 1), stmt(retk, 1001), stmt(ldB, 14), // 6
		jump(jK|jJGE, 0x45, 2, 0), jump(jK|jJSET, 0x40, 3, 4), stmt(retk, 1002),
		jump(jK|jJSET, 0x01, 0, 1), stmt(retk, 1003), stmt(retk, 1004),
		stmt(jmpA, 1), stmt(retk, 1005), jump(jK|jJEQ, 0x86, 1, 1), stmt(retk, 1006), stmt(retk, 1007),
	},
	"jumps x": {
		stmt(ldB, 14), stmt(tax, 0), stmt(ldB, 15),
		jump(jX|jJGT, 0, 0, 2), jump(jX|jJSET, 0, 3, 0), stmt(retk, 2001),
		jump(jX|jJEQ, 0, 0, 1), stmt(retk, 2002), jump(jX|jJGE, 0, 1, 0), stmt(retk, 2003), stmt(retk, 2004),
	},
	"jumps with jt and jf equal and both zero": {
		stmt(ldB, 14), jump(jK|jJEQ, 0x45, 0, 0), jump(jK|jJEQ, 0x45, 1, 1), stmt(retk, 1), stmt(retk, 2),
	},
	"ret k and a":              {stmt(ldB, 16), jump(jK|jJGT, 0, 0, 1), stmt(reta, 0), stmt(retk, 0xffffffff)},
	"tax txa":                  {stmt(ldB, 14), stmt(tax, 0), stmt(ldImm, 9), stmt(txa, 0), stmt(aluK|0x00, 1), stmt(reta, 0)},
	"shift by x of 32 or more": {stmt(ldxImm, 33), stmt(ldImm, 0x80000001), stmt(aluX|0x60, 0), stmt(st, 0), stmt(ldxImm, 63), stmt(ldImm, 0x80000001), stmt(aluX|0x70, 0), stmt(ldxMem, 0), stmt(aluX|0x00, 0), stmt(reta, 0)},
	"ancillary": {
		stmt(ldW, ad+0), stmt(tax, 0), stmt(ldW, ad+8), stmt(aluX|0x20, 0), stmt(tax, 0), // protocol * ifindex
		stmt(ldW, ad+48), stmt(aluX|0x00, 0), stmt(tax, 0), stmt(ldW, ad+44), stmt(aluX|0x00, 0), stmt(tax, 0),
		stmt(ldW, ad+4), stmt(aluX|0x00, 0), stmt(tax, 0), stmt(ldW, ad+20), stmt(aluX|0x00, 0), stmt(tax, 0),
		stmt(ldImm, 0x1111), stmt(ldW, ad+40), stmt(reta, 0), // A ^= X
	},
	"ancillary cpu and random": {stmt(ldW, ad+36), stmt(ldW, ad+56), stmt(retk, 3)},
	"repeated loads read the saved value": {
		stmt(ldxMsh, 14), stmt(ldiH, 14), stmt(st, 0), stmt(ldW, 26), stmt(st, 1),
		stmt(ldiH, 14), stmt(ldxMem, 0), stmt(aluX|0x10, 0), stmt(st, 2), // A - X: 0 if the repeat is right
		stmt(ldW, 26), stmt(ldxMem, 1), stmt(aluX|0xa0, 0), stmt(ldxMem, 2), stmt(aluX|0x00, 0), stmt(st, 3),
		stmt(ldxImm, 2), stmt(ldiH, 14), stmt(aluK|0x50, 0x3f), stmt(tax, 0), stmt(ldiH, 14), // X changed: loaded again
		stmt(ldxMem, 3), stmt(aluX|0x00, 0), stmt(aluK|0x00, 5), stmt(reta, 0),
	},
	"repeated indexed load after paths with different X": {
		stmt(ldB, 14), jump(jK|jJSET, 1, 0, 4),
		stmt(ldxImm, 4), stmt(ldiH, 10), stmt(ldImm, 0), stmt(jmpA, 2),
		stmt(ldxImm, 8), stmt(ldiH, 10),
		stmt(ldiH, 10), stmt(aluK|0x00, 1), stmt(reta, 0),
	},
	"load on one path only is not reused": {
		stmt(ldB, 14), jump(jK|jJSET, 1, 0, 1), stmt(ldH, 20), stmt(ldH, 20), stmt(aluK|0x00, 1), stmt(reta, 0),
	},
	"ancillary unknown": {stmt(ldW, ad+62), stmt(retk, 3)},
	// The length prologue (see required): every accepting path reads 60
	// bytes here, so shorter packets are rejected before any load, and the
	// loads within 60 bytes are made unchecked.
	"every accepting path reads 60 bytes": {
		stmt(ldH, 12), jump(jK|jJEQ, 0x800, 0, 5), stmt(ldB, 59), stmt(tax, 0), stmt(ldW, 20), stmt(aluX|0x00, 0),
		stmt(jmpA, 2), stmt(ldW, 56), stmt(aluK|0x00, 1), stmt(reta, 0),
	},
	// 7 and 8 are unreachable: 8 must not count as reached from 7.
	"unreachable code after a jump": {
		stmt(ldH, 12), jump(jK|jJEQ, 0x800, 0, 4), stmt(ldB, 59), stmt(tax, 0), stmt(ldW, 20), stmt(aluX|0x00, 0),
		stmt(jmpA, 2), stmt(ldW, 56), stmt(aluK|0x00, 1), stmt(reta, 0),
	},
	"one accepting path reads nothing": {
		stmt(ldLen, 0), jump(jK|jJGT, 100, 0, 1), stmt(retk, 7), stmt(ldxMsh, 14), stmt(ldB, 50), stmt(aluX|0x00, 0), stmt(reta, 0),
	},
	"accepting paths read different lengths": {
		stmt(ldB, 14), jump(jK|jJSET, 1, 0, 3), stmt(ldB, 20), stmt(aluK|0x00, 1), stmt(reta, 0), stmt(ldB, 40), stmt(reta, 0),
	},
	"rejecting paths read further than accepting ones": {
		stmt(ldB, 23), jump(jK|jJEQ, 6, 0, 2), stmt(ldH, 36), stmt(retk, 0), stmt(ldxMsh, 14), stmt(ldB, 30), stmt(reta, 0),
	},
	"every accepting path reads past the cache": {
		stmt(ldB, 14), jump(jK|jJSET, 1, 0, 2), stmt(ldH, 200), stmt(reta, 0), stmt(ldB, 140), stmt(aluK|0x00, 2), stmt(reta, 0),
	},
}

// testFrames are the packets the filter tests run on: the class table's
// frames, short and odd ones, and random bytes of many lengths.
func testFrames() [][]byte {
	var out [][]byte
	for _, c := range classFrames() {
		out = append(out, c.frame)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{20, 21, 22, 24, 30, 60, 64, 100, 126, 127, 128, 129, 130, 131, 132, 140, 200, 300, 1514} {
		for range 4 {
			f := make([]byte, n)
			for i := range f {
				f[i] = byte(r.Uint32())
			}
			f[12], f[13] = 0x08, 0x00 // IPv4, so ancillary protocol is known
			if r.IntN(2) == 0 {
				f[14] = 0x45
			}
			out = append(out, f)
		}
	}
	return out
}

// checkProgram loads prog as the filter and compares its verdict with the
// interpreter's on every frame.
func checkProgram(t *testing.T, prog []unix.SockFilter, frames [][]byte) (accepted int) {
	t.Helper()
	for i, l := range loaders {
		t.Run(l.name, func(t *testing.T) {
			acc := checkProgramWith(t, l.load(t, Config{Snaplen: 0xffffffff, Filter: prog}), prog, frames)
			if i == 0 {
				accepted = acc
			}
		})
	}
	return accepted
}

func checkProgramWith(t *testing.T, objs *objects, prog []unix.SockFilter, frames [][]byte) (accepted int) {
	t.Helper()
	mismatches := 0
	for _, f := range frames {
		m := meta{ifindex: 1}
		if len(f) >= 14 {
			// as eth_type_trans sets skb->protocol in the test run
			m.protocol = binary.BigEndian.Uint16(f[12:])
			if m.protocol < 0x600 {
				m.protocol = unix.ETH_P_802_2
				if len(f) >= 16 && f[14] == 0xff && f[15] == 0xff {
					m.protocol = unix.ETH_P_802_3
				}
			}
		}
		want := interpret(t, prog, f, m)
		got := runFrame(t, objs.Prefilter, f)
		if got != want {
			if mismatches++; mismatches <= 5 {
				t.Errorf("frame of %d bytes %x...: eBPF verdict %d, classic %d", len(f), f[:min(len(f), 40)], got, want)
			}
		}
		if want != 0 {
			accepted++
		}
	}
	if mismatches > 0 {
		t.Errorf("%d of %d frames differ", mismatches, len(frames))
	}
	return accepted
}

func TestTranslateHandPrograms(t *testing.T) {
	frames := testFrames()
	for name, prog := range handPrograms {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if name == "ancillary cpu and random" {
				objs := loadTest(t, Config{Filter: prog})
				if v := runFrame(t, objs.Prefilter, frames[0]); v != 3 {
					t.Errorf("verdict %d, want 3", v)
				}
				return
			}
			checkProgram(t, prog, frames)
		})
	}
}

// tcpdumpPrograms reads testdata/tcpdump-ddd.txt.
func tcpdumpPrograms(t testing.TB) (exprs []string, progs [][]unix.SockFilter) {
	fh, err := os.Open("testdata/tcpdump-ddd.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# "):
			exprs = append(exprs, strings.TrimPrefix(line, "# "))
			progs = append(progs, nil)
		case line == "" || strings.HasPrefix(line, "#") || !strings.Contains(line, " "):
		default:
			var f unix.SockFilter
			var code, jt, jf, k uint64
			if _, err := fmt.Sscan(line, &code, &jt, &jf, &k); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			f.Code, f.Jt, f.Jf, f.K = uint16(code), uint8(jt), uint8(jf), uint32(k)
			progs[len(progs)-1] = append(progs[len(progs)-1], f)
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("only %d programs in testdata/tcpdump-ddd.txt", len(exprs))
	}
	return exprs, progs
}

// corpusFrames returns the Ethernet frames of the corpus files whose names
// contain any of the given words.
func corpusFrames(t testing.TB, words ...string) [][]byte {
	dir := testcorpus.Dir(t)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, e := range ents {
		match := false
		for _, w := range words {
			match = match || strings.Contains(e.Name(), w)
		}
		if !match || !strings.HasSuffix(e.Name(), ".pcap") {
			continue
		}
		fh, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		r, err := pcapio.NewReader(fh)
		for err == nil && r.LinkType() == capture.LinkTypeEthernet {
			var rec pcapio.Record
			if rec, err = r.Next(); err == nil && testRunnable(rec.Data) {
				out = append(out, bytes.Clone(rec.Data))
			}
		}
		fh.Close()
	}
	return out
}

// TestTranslateTcpdumpPrograms runs what libpcap compiles for real
// expressions over real captures.
func TestTranslateTcpdumpPrograms(t *testing.T) {
	frames := corpusFrames(t, "http", "dns", "tcp", "icmp", "ipv6", "vlan", "arp", "udp", "mpls", "pppoe", "dhcp")
	frames = append(frames, testFrames()...)
	if len(frames) < 1000 {
		t.Fatalf("only %d corpus frames", len(frames))
	}
	exprs, progs := tcpdumpPrograms(t)
	total := 0
	for i, expr := range exprs {
		t.Run(expr, func(t *testing.T) {
			if strings.Contains(expr, "protochain") {
				// Its loop jumps backwards, which the kernel refuses in a
				// socket filter (libpcap then filters in user space).
				if _, err := translate(progs[i]); err == nil {
					t.Error("translated a program with a backward jump")
				}
				return
			}
			acc := checkProgram(t, progs[i], frames)
			t.Logf("%d of %d frames accepted", acc, len(frames))
			total += acc
		})
	}
	if total == 0 {
		t.Error("no expression accepted any frame: the comparison proves nothing")
	}
}

func TestTranslateRefuses(t *testing.T) {
	long := make([]unix.SockFilter, maxInsns+1)
	long[len(long)-1] = stmt(retk, 1)
	for name, prog := range map[string][]unix.SockFilter{
		"empty":                  {},
		"too long":               long,
		"no return at the end":   {stmt(ldB, 0)},
		"jump past the end":      {jump(jK|jJEQ, 1, 0, 5), stmt(retk, 1)},
		"ja past the end":        {stmt(jmpA, 1), stmt(retk, 1)},
		"division by constant 0": {stmt(aluK|0x30, 0), stmt(retk, 1)},
		"modulo by constant 0":   {stmt(aluK|0x90, 0), stmt(retk, 1)},
		"shift by 32":            {stmt(aluK|0x60, 32), stmt(retk, 1)},
		"scratch out of range":   {stmt(st, 16), stmt(retk, 1)},
		"scratch read unwritten": {stmt(ldB, 0), jump(jK|jJEQ, 1, 0, 1), stmt(st, 2), stmt(ldMem, 2), stmt(reta, 0)},
		"unknown opcode":         {stmt(0x0e, 0), stmt(retk, 1)},
		"ret x":                  {stmt(clsRET|0x08, 0), stmt(retk, 1)},
		"hatype":                 {stmt(ldW, ad+28), stmt(retk, 1)},
	} {
		if _, err := translate(prog); err == nil {
			t.Errorf("%s: translated, want an error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// Written on every path before the read: accepted.
	ok := []unix.SockFilter{stmt(ldB, 0), jump(jK|jJEQ, 1, 0, 2), stmt(st, 2), stmt(jmpA, 1), stmt(st, 2), stmt(ldMem, 2), stmt(reta, 0)}
	if _, err := translate(ok); err != nil {
		t.Errorf("scratch written on both paths: %v", err)
	}
}

// TestRequired checks the length every accepting path reads, which the
// translation checks once at its start; the hand programs above run every
// case against the interpreter.
func TestRequired(t *testing.T) {
	off := int32(skfNetOff + 40)
	netOff40 := uint32(off)
	_, progs := tcpdumpPrograms(t)
	for name, c := range map[string]struct {
		prog []unix.SockFilter
		want uint32
	}{
		// tcp and port 80 and host 198.18.0.1 and not port 22 and len > 60:
		// the path matching the source address reads [26:4] and not [30:4];
		// the port loads are indexed and not counted.
		"tcpdump":                 {progs[0], 30},
		"60 bytes":                {handPrograms["every accepting path reads 60 bytes"], 60},
		"path reading nothing":    {handPrograms["one accepting path reads nothing"], 0},
		"different lengths":       {handPrograms["accepting paths read different lengths"], 21},
		"rejecting paths":         {handPrograms["rejecting paths read further than accepting ones"], 31},
		"past the cache":          {handPrograms["every accepting path reads past the cache"], 141},
		"return A counts":         {[]unix.SockFilter{stmt(ldB, 3), stmt(reta, 0)}, 4},
		"never accepts":           {[]unix.SockFilter{stmt(ldB, 90), stmt(retk, 0)}, 0},
		"ancillary and relative":  {[]unix.SockFilter{stmt(ldW, ad+0), stmt(ldB, netOff40), stmt(reta, 0)}, 0},
		"unreached loads ignored": {[]unix.SockFilter{stmt(ldB, 1), stmt(jmpA, 1), stmt(ldB, 99), stmt(reta, 0)}, 2},
	} {
		reached, err := validate(c.prog)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := required(c.prog, reached); got != c.want {
			t.Errorf("%s: required %d bytes, want %d", name, got, c.want)
		}
	}
}

// TestReuse checks which loads of tcpdump's program for the benchmark's
// expression are saved and repeated: the source port, loaded on every path
// and again for "not port 22" with X unchanged (the destination port is
// loaded only when the source port is not 80, so it is loaded again).
func TestReuse(t *testing.T) {
	exprs, progs := tcpdumpPrograms(t)
	if !strings.HasPrefix(exprs[0], "tcp and port 80 and host 198.18.0.1 and not port 22") {
		t.Fatalf("first program is %q", exprs[0])
	}
	reached, err := validate(progs[0])
	if err != nil {
		t.Fatal(err)
	}
	var stores, loads []int
	for i, r := range reuse(progs[0], reached) {
		if r.store {
			stores = append(stores, i)
		}
		if r.load {
			loads = append(loads, i)
		}
	}
	if !slices.Equal(stores, []int{7}) || !slices.Equal(loads, []int{15}) {
		t.Errorf("saved at %v and read back at %v, want [7] and [15]", stores, loads)
	}
	for name, prog := range map[string][]unix.SockFilter{
		"one path only": handPrograms["load on one path only is not reused"],
	} {
		reached, _ := validate(prog)
		for i, r := range reuse(prog, reached) {
			if r.load || r.store {
				t.Errorf("%s: instruction %d reused: %+v", name, i, r)
			}
		}
	}
}
