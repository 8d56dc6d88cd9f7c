package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/netnstest"
	"github.com/sonde-project/sonde/internal/pcapio"
)

const apiToken = "e2e-token-0123456789abcdef"

type apiCapture struct {
	Name    string `json:"name"`
	First   string `json:"first"`
	Last    string `json:"last"`
	Packets uint64 `json:"packets"`
	Bytes   int64  `json:"bytes"`
	Pinned  bool   `json:"pinned"`
}

// call makes an API request to the daemon, with the token unless noAuth.
func (d *daemon) call(method, path, body string, noAuth bool) (*http.Response, []byte) {
	d.t.Helper()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+listenAddr+path, rb)
	if err != nil {
		d.t.Fatal(err)
	}
	if !noAuth {
		req.Header.Set("Authorization", "Bearer "+apiToken)
	}
	c := *d.client
	c.Timeout = 60 * time.Second
	res, err := c.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		d.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return res, b
}

func (d *daemon) captures() []apiCapture {
	d.t.Helper()
	res, body := d.call("GET", "/api/v1/captures", "", false)
	if res.StatusCode != 200 {
		d.t.Fatalf("captures: %d %s", res.StatusCode, body)
	}
	var v struct{ Captures []apiCapture }
	if err := json.Unmarshal(body, &v); err != nil {
		d.t.Fatal(err)
	}
	return v.Captures
}

type rec struct {
	ts   int64
	wire uint32
	data []byte
}

func records(t *testing.T, b []byte) []rec {
	t.Helper()
	rd, err := pcapio.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out []rec
	for {
		r, err := rd.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec{r.Timestamp, r.Length, slices.Clone(r.Data)})
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func epoch(ns int64) string { return fmt.Sprintf("%d.%09d", ns/1e9, ns%1e9) }

// TestAPI runs the daemon on a veth pair with real traffic and checks the
// capture API against the files on disk and Wireshark's own tools.
func TestAPI(t *testing.T) {
	for _, tool := range []string{"editcap", "tcpdump", "mergecap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	p := netnstest.New(t)
	dir := t.TempDir()
	work := t.TempDir()
	tokens := filepath.Join(work, "tokens")
	if err := os.WriteFile(tokens, []byte(apiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "2",
		"--file-max-bytes", "256KiB", "--file-max-duration", "1s", "--ring-max-bytes", "6MiB", "--pin-max-bytes", "1MiB",
		"--api-token-file", tokens)

	// Auth is required on /api/v1, not on health.
	if res, _ := d.call("GET", "/api/v1/captures", "", true); res.StatusCode != 401 || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no token: %d %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	if res, _ := d.call("GET", "/api/health", "", true); res.StatusCode != 200 {
		t.Fatalf("health without a token: %d", res.StatusCode)
	}

	// Four flows, interleaved, so both workers write files.
	s := sender(t, p)
	var frames [][]byte
	for i := range 4 {
		frames = append(frames, p.Flow(uint32(10+i)).Frames(netnstest.MixedSizes(1500, uint64(i)))...)
	}
	rng := frames[:0:0]
	for i := range 1500 {
		for f := range 4 {
			rng = append(rng, frames[f*1500+i])
		}
	}
	if err := s.SendPaced(rng, chunk, pause); err != nil {
		t.Fatal(err)
	}
	d.waitCaptured(float64(len(rng)), p.B.Iface)
	// Duration rotation publishes the last files within a second or two.
	var list []apiCapture
	waitUntil(t, 10*time.Second, "every packet in a published file", func() bool {
		list = d.captures()
		var n uint64
		for _, c := range list {
			n += c.Packets
		}
		return n == uint64(len(rng))
	})
	if len(list) < 6 {
		t.Fatalf("only %d files; the test wants several per worker", len(list))
	}

	// List and download: every file byte for byte as on disk.
	onDisk := publishedFiles(t, dir)
	if len(onDisk) != len(list) {
		t.Fatalf("%d files listed, %d on disk", len(list), len(onDisk))
	}
	for _, c := range list {
		want, err := os.ReadFile(filepath.Join(dir, c.Name))
		if err != nil {
			t.Fatal(err)
		}
		res, got := d.call("GET", "/api/v1/captures/"+c.Name, "", false)
		if res.StatusCode != 200 || !bytes.Equal(got, want) || int64(len(got)) != c.Bytes {
			t.Fatalf("download %s: %d, %d bytes, want %d identical bytes", c.Name, res.StatusCode, len(got), len(want))
		}
	}
	if res, _ := d.call("GET", "/api/v1/captures/..%2findex.jsonl", "", false); res.StatusCode != 404 {
		t.Fatalf("traversal: %d", res.StatusCode)
	}

	// Window extraction equals editcap + tcpdump + mergecap on the same files.
	all := records(t, mustRead(t, onDisk...))
	slices.SortFunc(all, func(a, b rec) int { return int(min(max(a.ts-b.ts, -1), 1)) })
	from, to := all[len(all)/5].ts, all[3*len(all)/5].ts+1
	flow := p.Flow(11)
	expr := "len > 300"
	flowSel := fmt.Sprintf("%s:%d-%s:%d/udp", flow.Dst, flow.DstPort, flow.Src, flow.SrcPort) // reversed ends: both directions
	flowExpr := fmt.Sprintf("udp and host %s and port %d and host %s and port %d", flow.Src, flow.SrcPort, flow.Dst, flow.DstPort)
	for _, c := range []struct{ name, query, expr string }{
		{"window", "", ""},
		{"filter", "&filter=" + strings.ReplaceAll(expr, " ", "+"), expr},
		{"flow", "&flow=" + flowSel, flowExpr},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, got := d.call("GET", "/api/v1/pcap?from="+epoch(from)+"&to="+epoch(to)+c.query, "", false)
			if res.StatusCode != 200 || res.Trailer.Get("Sonde-Truncated") != "false" {
				t.Fatalf("%d %s (trailers %v)", res.StatusCode, got[:min(len(got), 200)], res.Trailer)
			}
			var parts []string
			for i, f := range onDisk {
				cut := filepath.Join(work, fmt.Sprintf("%s-cut-%d.pcap", c.name, i))
				run(t, "editcap", "-F", "nsecpcap", "-A", epoch(from), "-B", epoch(to), f, cut)
				if c.expr != "" {
					filtered := cut + ".f"
					run(t, "tcpdump", "--time-stamp-precision=nano", "-r", cut, "-w", filtered, c.expr)
					cut = filtered
				}
				parts = append(parts, cut)
			}
			merged := filepath.Join(work, c.name+"-merged.pcap")
			run(t, "mergecap", append([]string{"-F", "nsecpcap", "-w", merged}, parts...)...)
			want := records(t, mustRead(t, merged))
			gotRecs := records(t, got)
			if len(want) == 0 || len(gotRecs) != len(want) {
				t.Fatalf("%d packets, editcap+tcpdump+mergecap %d", len(gotRecs), len(want))
			}
			// Equal times may be merged in either order; sonde and mergecap
			// then differ only in the order of equal-time packets.
			key := func(a, b rec) int {
				if a.ts != b.ts {
					return int(min(max(a.ts-b.ts, -1), 1))
				}
				return bytes.Compare(a.data, b.data)
			}
			slices.SortStableFunc(gotRecs, key)
			slices.SortStableFunc(want, key)
			for i := range want {
				if gotRecs[i].ts != want[i].ts || gotRecs[i].wire != want[i].wire || !bytes.Equal(gotRecs[i].data, want[i].data) {
					t.Fatalf("packet %d differs: ts %d/%d wire %d/%d", i, gotRecs[i].ts, want[i].ts, gotRecs[i].wire, want[i].wire)
				}
			}
			t.Logf("%s: %d packets equal to editcap+tcpdump+mergecap", c.name, len(want))
		})
	}

	// A pin keeps its files through retention pressure.
	first := list[0]
	res, body := d.call("POST", "/api/v1/snapshots", fmt.Sprintf(`{"from": %q, "to": %q, "reason": "e2e"}`, first.First, first.Last), false)
	if res.StatusCode != 201 {
		t.Fatalf("pin: %d %s", res.StatusCode, body)
	}
	var snap struct {
		ID    string
		Files []string
	}
	json.Unmarshal(body, &snap)
	if !slices.Contains(snap.Files, first.Name) {
		t.Fatalf("pin %+v lacks %s", snap, first.Name)
	}
	// Over budget: the whole ring is far more than 1MiB.
	if res, body := d.call("POST", "/api/v1/snapshots", fmt.Sprintf(`{"from": %q, "to": %q}`, list[0].First, list[len(list)-1].Last), false); res.StatusCode != 409 {
		t.Fatalf("pin over budget: %d %s", res.StatusCode, body)
	}
	more := p.Flow(20).Frames(slices.Repeat([]int{netnstest.MaxFrame}, 8000)) // ~12 MiB through a 6 MiB ring
	if err := s.SendPaced(more, chunk, pause); err != nil {
		t.Fatal(err)
	}
	d.waitCaptured(float64(len(rng)+len(more)), p.B.Iface)
	waitUntil(t, 10*time.Second, "retention to evict the unpinned files of the first burst", func() bool {
		now := d.captures()
		return !slices.ContainsFunc(list, func(old apiCapture) bool {
			return !slices.Contains(snap.Files, old.Name) && slices.ContainsFunc(now, func(c apiCapture) bool { return c.Name == old.Name })
		})
	})
	for _, name := range snap.Files {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("pinned file %s evicted: %v", name, err)
		}
	}
	l := d.captures()
	if i := slices.IndexFunc(l, func(c apiCapture) bool { return c.Name == first.Name }); i < 0 || !l[i].Pinned {
		t.Fatalf("pinned file %s missing or not marked pinned in the list", first.Name)
	}
	// Unpinned, it goes at the next retention pass.
	if res, body := d.call("DELETE", "/api/v1/snapshots/"+snap.ID, "", false); res.StatusCode != 204 {
		t.Fatalf("unpin: %d %s", res.StatusCode, body)
	}
	waitUntil(t, 5*time.Second, "the unpinned file to be evicted", func() bool {
		_, err := os.Stat(filepath.Join(dir, first.Name))
		return os.IsNotExist(err)
	})
	if !strings.Contains(d.output(), `"audit":true`) {
		t.Error("no audit line in the daemon's log")
	}
}

// mustRead concatenates the packets of pcap files into one pcap image: the
// first file's header, then every file's records.
func mustRead(t *testing.T, files ...string) []byte {
	t.Helper()
	var out []byte
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			b = b[24:]
		}
		out = append(out, b...)
	}
	return out
}
