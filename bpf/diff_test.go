package bpf

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "regenerate testdata/libpcap.json.gz with tcpdump")

const (
	corpusDir  = "/work/shared/testdata/tcpdump-corpus"
	oracleFile = "testdata/libpcap.json.gz"
	snaplen    = 262144
)

// diffLinkTypes are the link types compared against libpcap (tcpdump on
// Linux does not know DLT 14).
var diffLinkTypes = []LinkType{LinkNull, LinkEthernet, LinkRawAlt12, LinkRaw, LinkLoop, LinkSLL, LinkIPv4, LinkIPv6, LinkSLL2}

func oracleKey(lt LinkType, opt bool, expr string) string {
	return fmt.Sprintf("%d|%t|%s", lt, opt, expr)
}

func loadOracle(t *testing.T) map[string]string {
	m := map[string]string{}
	f, err := os.Open(oracleFile)
	if os.IsNotExist(err) {
		return m
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(zr).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func saveOracle(t *testing.T, m map[string]string) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	enc := json.NewEncoder(zw)
	enc.SetIndent("", " ")
	if err := enc.Encode(m); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(oracleFile, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tcpdumpProgram asks libpcap, through tcpdump -ddd, for the program of
// expr on an empty capture of link type lt. Errors come back as "ERR: msg".
func tcpdumpProgram(dir string, lt LinkType, opt bool, expr string, n int) string {
	capFile := filepath.Join(dir, fmt.Sprintf("lt%d.pcap", lt))
	exprFile := filepath.Join(dir, fmt.Sprintf("expr%d", n))
	if err := os.WriteFile(exprFile, []byte(expr), 0o644); err != nil {
		return "ERR: " + err.Error()
	}
	args := []string{"-r", capFile, "-s", strconv.Itoa(snaplen), "-ddd", "-F", exprFile}
	if !opt {
		args = append([]string{"-O"}, args...)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command("tcpdump", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
		return "ERR: " + lines[len(lines)-1]
	}
	return strings.TrimSpace(out.String())
}

func parseProgram(s string) (Program, error) {
	lines := strings.Split(s, "\n")
	var p Program
	for _, l := range lines[1:] {
		var op, jt, jf, k uint64
		if _, err := fmt.Sscan(l, &op, &jt, &jf, &k); err != nil {
			return nil, fmt.Errorf("line %q: %w", l, err)
		}
		p = append(p, Instruction{Op: uint16(op), Jt: uint8(jt), Jf: uint8(jf), K: uint32(k)})
	}
	return p, nil
}

// oraclePrograms returns libpcap's answer for every (link type, optimize,
// expression), from the cache, asking tcpdump for missing ones.
func oraclePrograms(t *testing.T, exprs []string) map[string]string {
	m := loadOracle(t)
	var missing []string
	for _, lt := range diffLinkTypes {
		for _, opt := range []bool{true, false} {
			for _, e := range exprs {
				if k := oracleKey(lt, opt, e); *update || m[k] == "" {
					missing = append(missing, k)
				}
			}
		}
	}
	if len(missing) == 0 {
		return m
	}
	if _, err := exec.LookPath("tcpdump"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%d libpcap programs missing from %s and tcpdump is not installed", len(missing), oracleFile)
		}
		t.Skipf("%d libpcap programs missing from %s and tcpdump is not installed", len(missing), oracleFile)
	}
	dir := t.TempDir()
	for _, lt := range diffLinkTypes {
		hdr := make([]byte, 24)
		binary.NativeEndian.PutUint32(hdr, 0xa1b2c3d4)
		binary.NativeEndian.PutUint16(hdr[4:], 2)
		binary.NativeEndian.PutUint16(hdr[6:], 4)
		binary.NativeEndian.PutUint32(hdr[16:], snaplen)
		binary.NativeEndian.PutUint32(hdr[20:], uint32(lt))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("lt%d.pcap", lt)), hdr, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				parts := strings.SplitN(missing[i], "|", 3)
				lt, _ := strconv.Atoi(parts[0])
				res := tcpdumpProgram(dir, LinkType(lt), parts[1] == "true", parts[2], i)
				mu.Lock()
				m[missing[i]] = res
				mu.Unlock()
			}
		}()
	}
	for i := range missing {
		work <- i
	}
	close(work)
	wg.Wait()
	saveOracle(t, m)
	t.Logf("asked tcpdump for %d programs", len(missing))
	return m
}

// corpusPackets groups the corpus packets by link type, without duplicates.
func corpusPackets(t *testing.T) (map[LinkType][]capPacket, map[LinkType][]string) {
	pk := map[LinkType][]capPacket{}
	origin := map[LinkType][]string{}
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*"))
	if len(files) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no capture corpus at %s", corpusDir)
		}
		t.Logf("no capture corpus at %s; generated packets only", corpusDir)
	}
	seen := map[string]bool{}
	want := map[LinkType]bool{}
	for _, lt := range diffLinkTypes {
		want[lt] = true
	}
	for _, f := range files {
		lt, pkts, err := readCapture(f)
		if err != nil || !want[lt] {
			continue
		}
		for i, p := range pkts {
			k := fmt.Sprintf("%d|%d|%s", lt, p.wireLen, p.data)
			if seen[k] {
				continue
			}
			seen[k] = true
			pk[lt] = append(pk[lt], p)
			origin[lt] = append(origin[lt], fmt.Sprintf("%s#%d", filepath.Base(f), i))
		}
	}
	return pk, origin
}

type mismatch struct {
	lt        LinkType
	opt       bool
	expr, pkt string
	mine, lib uint32
}

// TestDifferential compares the verdicts of our programs with libpcap's on
// every packet, for optimised and unoptimised compilation.
func TestDifferential(t *testing.T) {
	exprs := allExprs()
	oracle := oraclePrograms(t, exprs)
	pk, origin := corpusPackets(t)
	for _, lt := range diffLinkTypes {
		for i, p := range generatedPackets(lt) {
			pk[lt] = append(pk[lt], p)
			origin[lt] = append(origin[lt], fmt.Sprintf("generated#%d", i))
		}
	}
	var (
		compared                         int
		programs, identical              = map[bool]int{}, map[bool]int{}
		mismatches                       []mismatch
		weRefuse, theyRefuse, bothRefuse int
		weRefuseList, theyRefuseList     []string
	)
	for _, lt := range diffLinkTypes {
		for _, opt := range []bool{true, false} {
			for _, e := range exprs {
				lib := oracle[oracleKey(lt, opt, e)]
				mine, err := compile(e, lt, snaplen, opt)
				libErr := strings.HasPrefix(lib, "ERR:")
				switch {
				case err != nil && libErr:
					bothRefuse++
					continue
				case err != nil:
					weRefuse++
					weRefuseList = append(weRefuseList, fmt.Sprintf("lt=%d opt=%t %q: %v", lt, opt, e, err))
					continue
				case libErr:
					theyRefuse++
					theyRefuseList = append(theyRefuseList, fmt.Sprintf("lt=%d opt=%t %q: %s", lt, opt, e, lib))
					continue
				}
				if verr := mine.Validate(); verr != nil {
					t.Errorf("lt=%d %q: invalid program: %v", lt, e, verr)
				}
				libProg, perr := parseProgram(lib)
				if perr != nil {
					t.Fatalf("lt=%d %q: %v", lt, e, perr)
				}
				programs[opt]++
				if strings.TrimSpace(mine.String()) == strings.TrimSpace(Program(libProg).String()) {
					identical[opt]++
				}
				for i, p := range pk[lt] {
					a, b := mine.Match(p.data, p.wireLen), libProg.Match(p.data, p.wireLen)
					compared++
					if (a != 0) != (b != 0) {
						mismatches = append(mismatches, mismatch{lt, opt, e, origin[lt][i], a, b})
					}
				}
			}
		}
	}
	sort.Strings(weRefuseList)
	t.Logf("expressions %d, link types %d, programs compared %d, packet verdicts compared %d, mismatches %d",
		len(exprs), len(diffLinkTypes), programs[true]+programs[false], compared, len(mismatches))
	t.Logf("programs identical to libpcap's, instruction for instruction: optimised %d of %d, unoptimised %d of %d",
		identical[true], programs[true], identical[false], programs[false])
	t.Logf("both refuse %d, only sonde refuses %d, only libpcap refuses %d", bothRefuse, weRefuse, theyRefuse)
	for i, s := range weRefuseList {
		if i < 40 {
			t.Logf("only sonde refuses: %s", s)
		}
	}
	// libpcap refusing what sonde compiles (including "expression rejects
	// all packets", which libpcap's optimizer decides) is a bug.
	for i, s := range theyRefuseList {
		if i < 20 {
			t.Errorf("only libpcap refuses: %s", s)
		}
	}
	byMode := map[bool]int{}
	byExpr := map[string]int{}
	for _, m := range mismatches {
		byMode[m.opt]++
		byExpr[fmt.Sprintf("lt=%d opt=%t %q", m.lt, m.opt, m.expr)]++
	}
	t.Logf("mismatches optimised %d, unoptimised %d, distinct (link type, mode, expression) %d", byMode[true], byMode[false], len(byExpr))
	if os.Getenv("BPF_DIFF_VERBOSE") != "" {
		for k, n := range byExpr {
			t.Logf("%6d %s", n, k)
		}
	}
	// Optimised and unoptimised, our verdicts must equal libpcap's on every
	// packet, truncated ones included: sonde compiles to libpcap's
	// intermediate form and runs a port of its optimizer (opt.go), so the
	// same loads run in the same order.
	for i, m := range mismatches {
		if i < 20 {
			t.Errorf("mismatch lt=%d opt=%t %q packet %s: sonde %d libpcap %d", m.lt, m.opt, m.expr, m.pkt, m.mine, m.lib)
		}
	}
}
