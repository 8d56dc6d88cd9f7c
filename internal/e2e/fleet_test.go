package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/netnstest"
	"github.com/sonde-project/sonde/internal/pcapio"
)

const (
	fleetToken  = "e2e-fleet-token-0123456789abcdef"
	fleetListen = "127.0.0.1:9751" // inside the fleet's namespace
	memberPort  = "9464"
)

// fleetMember is one sensor of the fleet test: its namespaces, its daemon
// and the frames it saw.
type fleetMember struct {
	node   string
	pair   *netnstest.Pair // A sends, B captures (on pair.B.Iface)
	d      *daemon
	addr   string // host:port the fleet reaches it at
	frames [][]byte
}

// mergedPacket is a packet of the fleet's answer with its interface name.
type mergedPacket struct {
	ts    int64
	iface string
	data  []byte
}

func readMergedPcapng(t *testing.T, b []byte) []mergedPacket {
	t.Helper()
	rd, err := pcapio.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if rd.Format() != pcapio.FormatPcapng {
		t.Fatalf("fleet answered %s, want pcapng", rd.Format())
	}
	var out []mergedPacket
	for {
		r, err := rd.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading the fleet's pcapng after %d packets: %v", len(out), err)
		}
		ifc, _ := rd.Interface(r.Interface)
		out = append(out, mergedPacket{r.Timestamp, ifc.Name, slices.Clone(r.Data)})
	}
}

// TestFleet: three sensors in their own namespaces, each capturing its own
// traffic, and one `sonde fleet` in a fourth namespace linked to the three.
// A window query returns every packet of all three, byte for byte as each
// member serves it and as it was sent, in time order, each on its node's
// interface (checked with pcapio and with tshark's frame.interface_name);
// with one member stopped, the answer names it in Sonde-Missing-Members
// and still holds the others' packets exactly.
func TestFleet(t *testing.T) {
	for _, tool := range []string{"tshark", "capinfos"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	work := t.TempDir()
	tokens := filepath.Join(work, "tokens")
	if err := os.WriteFile(tokens, []byte(apiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fleetTokens := filepath.Join(work, "fleet-tokens")
	if err := os.WriteFile(fleetTokens, []byte(fleetToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var members []*fleetMember
	for i := range 3 {
		m := &fleetMember{node: fmt.Sprintf("sensor-%d", i), pair: netnstest.New(t)}
		members = append(members, m)
	}
	fleetNS := netnstest.Namespace(t, "sndF")
	start := time.Now()
	for i, m := range members {
		link := netnstest.Link(t, fleetNS, m.pair.B.NS)
		m.addr = link.B.Addr.Addr().String() + ":" + memberPort
		// One worker: a member's packets are then in the order sent.
		m.d = startDaemon(t, m.pair.B.NS, t.TempDir(), "--interface", m.pair.B.Iface, "--workers", "1",
			"--listen", ":"+memberPort, "--node-name", m.node, "--file-max-duration", "1s", "--api-token-file", tokens)
		m.frames = m.pair.Flow(uint32(100 + i)).Frames(netnstest.MixedSizes(600+200*i, uint64(i)))
	}
	// The three send at once, so their packets interleave in time.
	errs := make(chan error, len(members))
	for _, m := range members {
		s := sender(t, m.pair)
		go func() { errs <- s.SendPaced(m.frames, 50, 2*time.Millisecond) }()
	}
	for range members {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range members {
		m.d.waitCaptured(float64(len(m.frames)), m.pair.B.Iface)
		waitUntil(t, 10*time.Second, m.node+": every packet in a published file", func() bool {
			var n uint64
			for _, c := range m.d.captures() {
				n += c.Packets
			}
			return n == uint64(len(m.frames))
		})
	}
	window := fmt.Sprintf("/api/v1/pcap?from=%s&to=%s", epoch(start.Add(-time.Second).UnixNano()), epoch(time.Now().Add(time.Second).UnixNano()))

	// What each member serves alone, and that it is what was sent.
	own := map[string][]mergedPacket{}
	for _, m := range members {
		res, body := m.d.call("GET", window+"&format=pcapng", "", false)
		if res.StatusCode != 200 || res.Header.Get("Sonde-Node") != m.node {
			t.Fatalf("%s: %d, Sonde-Node %q: %.200s", m.node, res.StatusCode, res.Header.Get("Sonde-Node"), body)
		}
		pkts := readMergedPcapng(t, body)
		if len(pkts) != len(m.frames) {
			t.Fatalf("%s serves %d packets, sent %d", m.node, len(pkts), len(m.frames))
		}
		for i, p := range pkts {
			if !bytes.Equal(p.data, m.frames[i]) || p.iface != m.pair.B.Iface {
				t.Fatalf("%s: packet %d on %q differs from frame %d sent", m.node, i, p.iface, i)
			}
		}
		own[m.node] = pkts
	}

	var addrs []string
	for _, m := range members {
		addrs = append(addrs, m.addr)
	}
	fleet := startFleet(t, fleetNS, "--members", strings.Join(addrs, ","), "--member-token-file", tokens,
		"--api-token-file", fleetTokens, "--data-dir", t.TempDir(), "--member-timeout", "3s")

	check := func(up []*fleetMember, down []*fleetMember) {
		t.Helper()
		res, body := fleet.call(window)
		if res.StatusCode != 200 {
			t.Fatalf("fleet: %d %.300s", res.StatusCode, body)
		}
		missing := res.Header.Values("Sonde-Missing-Members")
		if len(missing) != len(down) {
			t.Fatalf("Sonde-Missing-Members %q, want %d members", missing, len(down))
		}
		for i, m := range down {
			if !strings.HasPrefix(missing[i], m.addr+`; reason="`) {
				t.Fatalf("Sonde-Missing-Members %q does not name %s (%s) with a reason", missing, m.node, m.addr)
			}
		}
		got := readMergedPcapng(t, body)
		perNode := map[string][]mergedPacket{}
		total := 0
		for i, p := range got {
			if i > 0 && p.ts < got[i-1].ts {
				t.Fatalf("packet %d (%s) at %d is before packet %d at %d", i, p.iface, p.ts, i-1, got[i-1].ts)
			}
			node, iface, _ := strings.Cut(p.iface, "/")
			p.iface = iface
			perNode[node] = append(perNode[node], p)
		}
		for _, m := range up {
			want := own[m.node]
			total += len(want)
			have := perNode[m.node]
			if len(have) != len(want) {
				t.Fatalf("%s: %d packets in the fleet's window, the member serves %d", m.node, len(have), len(want))
			}
			for i := range want {
				if have[i].ts != want[i].ts || have[i].iface != want[i].iface || !bytes.Equal(have[i].data, want[i].data) {
					t.Fatalf("%s: packet %d differs from the member's own", m.node, i)
				}
			}
		}
		if len(got) != total || len(perNode) != len(up) {
			t.Fatalf("%d packets from nodes %v, want %d from %d nodes", len(got), keys(perNode), total, len(up))
		}
		if p := res.Trailer.Get("Sonde-Packets"); p != fmt.Sprint(total) {
			t.Fatalf("Sonde-Packets %q, want %d", p, total)
		}
		// Wireshark's tools read it and attribute every packet alike.
		file := filepath.Join(work, fmt.Sprintf("fleet-%d.pcapng", len(up)))
		if err := os.WriteFile(file, body, 0o600); err != nil {
			t.Fatal(err)
		}
		if n := capinfosPackets(t, file); n != total {
			t.Fatalf("capinfos counts %d packets, want %d", n, total)
		}
		cmd := exec.Command("tshark", "-r", file, "-T", "fields", "-e", "frame.interface_name")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("tshark: %v: %s", err, stderr.Bytes())
		}
		names := strings.Split(strings.TrimSpace(string(out)), "\n")
		for _, m := range up {
			want := m.node + "/" + m.pair.B.Iface
			if n := countOf(names, want); n != len(own[m.node]) {
				t.Fatalf("tshark: %d packets on %s, want %d", n, want, len(own[m.node]))
			}
		}
	}
	check(members, nil)

	members[1].d.stop()
	check([]*fleetMember{members[0], members[2]}, []*fleetMember{members[1]})
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func countOf(list []string, v string) int {
	n := 0
	for _, s := range list {
		if s == v {
			n++
		}
	}
	return n
}

type fleetProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	client *http.Client
	log    *bytes.Buffer
}

// startFleet runs `sonde fleet` in ns and waits for its /api/health.
func startFleet(t *testing.T, ns string, flags ...string) *fleetProc {
	t.Helper()
	args := append([]string{sondeBinary(t), "fleet", "--listen", fleetListen}, flags...)
	f := &fleetProc{t: t, cmd: netnstest.Command(ns, args...), client: netnstest.HTTPClient(ns), log: new(bytes.Buffer)}
	w := lockedWriter{new(sync.Mutex), f.log}
	f.cmd.Stdout, f.cmd.Stderr = w, w
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := f.cmd.Start(); err != nil {
		t.Fatalf("starting sonde fleet: %v", err)
	}
	done := make(chan struct{})
	go func() { f.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-f.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			w.mu.Lock()
			t.Logf("sonde fleet output:\n%s", f.log.String())
			w.mu.Unlock()
		}
	})
	waitUntil(t, 10*time.Second, "sonde fleet healthy", func() bool {
		res, err := f.client.Get("http://" + fleetListen + "/api/health")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
	return f
}

func (f *fleetProc) call(path string) (*http.Response, []byte) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+fleetListen+path, nil)
	req.Header.Set("Authorization", "Bearer "+fleetToken)
	c := *f.client
	c.Timeout = 60 * time.Second
	res, err := c.Do(req)
	if err != nil {
		f.t.Fatalf("fleet %s: %v", path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		f.t.Fatalf("fleet %s: reading: %v", path, err)
	}
	return res, b
}
