package anomaly

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sonde-project/sonde/analysis"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

const win = 10 * time.Second

func window(i int, bytes uint64) *analysis.Window {
	s := t0.Add(time.Duration(i) * win)
	return &analysis.Window{Start: s, End: s.Add(win), Counters: analysis.Counters{Bytes: bytes}}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func hostN(n int) netip.Addr { return netip.AddrFrom4([4]byte{198, 19, byte(n >> 8), byte(n)}) }

// probe is a SYN answered by nothing or a RST: a half-open attempt.
func probe(src, dst netip.Addr, sport, dport uint16, at time.Time) analysis.FlowRecord {
	return analysis.FlowRecord{Client: src, Server: dst, ClientPort: sport, ServerPort: dport, Proto: 6,
		First: at.UnixNano(), Last: at.UnixNano(), New: true, Packets: [2]uint32{1, 1}, Bytes: [2]uint64{60, 54}, SYN: true, Reset: true}
}

// conn is a completed TCP connection with n packets each way.
func conn(src, dst netip.Addr, sport, dport uint16, at time.Time, n uint32, bytes uint64) analysis.FlowRecord {
	return analysis.FlowRecord{Client: src, Server: dst, ClientPort: sport, ServerPort: dport, Proto: 6,
		First: at.UnixNano(), Last: at.UnixNano(), New: true, Packets: [2]uint32{n, n}, Bytes: [2]uint64{bytes, bytes},
		SYN: true, SYNACK: true, Established: true, Closed: true}
}

func kinds(evs []Event) map[Kind][]Event {
	m := map[Kind][]Event{}
	for _, e := range evs {
		m[e.Kind] = append(m[e.Kind], e)
	}
	return m
}

// quiet is an ordinary window's flows: a few web exchanges with a handful
// of servers at irregular times.
func quiet(i int) []analysis.FlowRecord {
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	at := t0.Add(time.Duration(i) * win)
	var fs []analysis.FlowRecord
	for j := range 8 {
		fs = append(fs, conn(addr("198.18.0.1"), hostN(rng.IntN(5)), uint16(40000+j), 443, at.Add(time.Duration(rng.IntN(10000))*time.Millisecond), 20, 20000))
	}
	return fs
}

func TestPortScan(t *testing.T) {
	scanner, victim := addr("198.18.0.66"), addr("198.18.0.2")
	cases := []struct {
		name   string
		flows  func() []analysis.FlowRecord
		target string // "" for no event
	}{
		{"vertical scan", func() []analysis.FlowRecord {
			var fs []analysis.FlowRecord
			for p := range 150 {
				fs = append(fs, probe(scanner, victim, 50000, uint16(1+p), t0))
			}
			return fs
		}, "198.18.0.2"},
		{"horizontal sweep", func() []analysis.FlowRecord {
			var fs []analysis.FlowRecord
			for h := range 150 {
				fs = append(fs, probe(scanner, hostN(h), 50000, 22, t0))
			}
			return fs
		}, "150 hosts"},
		{"99 ports: below threshold", func() []analysis.FlowRecord {
			var fs []analysis.FlowRecord
			for p := range 99 {
				fs = append(fs, probe(scanner, victim, 50000, uint16(1+p), t0))
			}
			return fs
		}, ""},
		{"crawler: completed connections", func() []analysis.FlowRecord {
			var fs []analysis.FlowRecord
			for h := range 300 {
				fs = append(fs, conn(scanner, hostN(h), uint16(30000+h), 443, t0, 10, 5000))
			}
			return fs
		}, ""},
		{"quiet", func() []analysis.FlowRecord { return quiet(0) }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			evs := kinds(New(DefaultThresholds()).Window(window(0, 1e6), c.flows()))
			got := evs[PortScan]
			if c.target == "" {
				if len(got) != 0 {
					t.Fatalf("fired: %+v", got)
				}
				return
			}
			if len(got) != 1 || got[0].Source != scanner.String() || got[0].Target != c.target || got[0].Evidence["targets"] != 150 {
				t.Fatalf("port_scan = %+v, want one from %v to %s with 150 targets", got, scanner, c.target)
			}
			if len(evs) != 1 {
				t.Errorf("other kinds fired too: %v", evs)
			}
		})
	}
}

func TestSYNFlood(t *testing.T) {
	victim := addr("198.18.0.2")
	flood := func(n, established int, spoofed bool) []analysis.FlowRecord {
		var fs []analysis.FlowRecord
		for i := range n {
			src := addr("198.18.0.66")
			if spoofed {
				src = hostN(i)
			}
			if i < established {
				fs = append(fs, conn(src, victim, uint16(1024+i), 80, t0, 5, 500))
			} else {
				fs = append(fs, probe(src, victim, uint16(1024+i), 80, t0))
			}
		}
		return fs
	}
	cases := []struct {
		name   string
		flows  []analysis.FlowRecord
		source string
	}{
		{"one source", flood(1000, 0, false), "198.18.0.66"},
		{"spoofed sources", flood(1000, 0, true), "1000 sources"},
		{"40/s: below threshold", flood(400, 0, false), ""},
		{"busy server: most handshakes complete", flood(2000, 1000, true), ""},
		{"quiet", quiet(0), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := kinds(New(DefaultThresholds()).Window(window(0, 1e6), c.flows))[SYNFlood]
			if c.source == "" {
				if len(got) != 0 {
					t.Fatalf("fired: %+v", got)
				}
				return
			}
			if len(got) != 1 || got[0].Source != c.source || got[0].Target != "198.18.0.2:80" {
				t.Fatalf("syn_flood = %+v, want one from %s to 198.18.0.2:80", got, c.source)
			}
		})
	}
}

// run feeds windows of the given byte counts, with the given DNS error
// counts, and returns the events of the last window.
func run(th Thresholds, bytes []uint64, dnsErrors []uint64) []Event {
	d := New(th)
	var evs []Event
	for i, b := range bytes {
		w := window(i, b)
		if dnsErrors != nil {
			w.Counters.DNS.Rcodes[3] = dnsErrors[i]
			w.Counters.DNS.Responses = dnsErrors[i] + 100
		}
		evs = d.Window(w, nil)
	}
	return evs
}

func baseline(n int, bytes uint64, last ...uint64) []uint64 {
	rng := rand.New(rand.NewPCG(1, 2))
	var out []uint64
	for range n {
		out = append(out, bytes*9/10+uint64(rng.IntN(int(bytes/5))))
	}
	return append(out, last...)
}

func TestTrafficSpikeDrop(t *testing.T) {
	const mb = 1 << 20
	cases := []struct {
		name  string
		bytes []uint64
		want  Kind
	}{
		{"spike 10x", baseline(10, 10*mb, 100*mb), TrafficSpike},
		{"2x: not a spike", baseline(10, 10*mb, 20*mb), ""},
		{"10x but under the floor", baseline(10, 100_000, 1_000_000), ""},
		{"spike during warm-up", baseline(3, 10*mb, 100*mb), ""},
		{"drop to a tenth", baseline(10, 10*mb, mb), TrafficDrop},
		{"drop to zero", baseline(10, 10*mb, 0), TrafficDrop},
		{"half: not a drop", baseline(10, 10*mb, 5*mb), ""},
		{"drop of a trickle", baseline(10, 100_000, 0), ""},
		{"steady", baseline(20, 10*mb), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			evs := run(DefaultThresholds(), c.bytes, nil)
			if c.want == "" {
				if len(evs) != 0 {
					t.Fatalf("fired: %+v", evs)
				}
				return
			}
			if len(evs) != 1 || evs[0].Kind != c.want {
				t.Fatalf("events %+v, want one %s", evs, c.want)
			}
		})
	}
}

func TestDNSErrors(t *testing.T) {
	steady := func(n int, last uint64) []uint64 {
		out := make([]uint64, n, n+1)
		for i := range out {
			out[i] = uint64(i % 3)
		}
		return append(out, last)
	}
	bytes := func(n int) []uint64 { return baseline(n, 1<<20) }
	cases := []struct {
		name string
		errs []uint64
		want bool
	}{
		{"surge", steady(10, 300), true},
		{"under the minimum", steady(10, 40), false},
		{"during warm-up", steady(2, 300), false},
		{"high but usual", append(make([]uint64, 0, 11), 400, 420, 380, 410, 400, 390, 405, 395, 400, 410, 600), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			evs := run(DefaultThresholds(), bytes(len(c.errs)), c.errs)
			if got := len(kinds(evs)[DNSErrors]) == 1; got != c.want {
				t.Fatalf("events %+v, want dns_errors %v", evs, c.want)
			}
		})
	}
}

func TestBruteForce(t *testing.T) {
	attacker, server := addr("198.18.0.66"), addr("198.18.0.2")
	tries := func(n int, port uint16, packets uint32) []analysis.FlowRecord {
		var fs []analysis.FlowRecord
		for i := range n {
			fs = append(fs, conn(attacker, server, uint16(40000+i), port, t0.Add(time.Duration(i)*300*time.Millisecond), packets, 3000))
		}
		return fs
	}
	cases := []struct {
		name  string
		flows []analysis.FlowRecord
		want  bool
	}{
		{"ssh", tries(30, 22, 12), true},
		{"rdp", tries(25, 3389, 20), true},
		{"web: not a login port", tries(30, 80, 12), false},
		{"19 tries", tries(19, 22, 12), false},
		{"long sessions", tries(30, 22, 500), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := kinds(New(DefaultThresholds()).Window(window(0, 1e6), c.flows))[BruteForce]
			if (len(got) == 1) != c.want {
				t.Fatalf("brute_force = %+v, want %v", got, c.want)
			}
			if c.want && (got[0].Source != attacker.String() || !strings.HasPrefix(got[0].Target, "198.18.0.2:")) {
				t.Errorf("event %+v", got[0])
			}
		})
	}
}

func TestBeaconing(t *testing.T) {
	implant, c2 := addr("198.18.0.5"), addr("198.19.9.9")
	// feed spreads connections at the given offsets over windows.
	feed := func(offsets []time.Duration) []Event {
		d := New(DefaultThresholds())
		var all []Event
		last := offsets[len(offsets)-1]
		for i := 0; time.Duration(i)*win <= last; i++ {
			fs := quiet(i)
			for j, o := range offsets {
				if o >= time.Duration(i)*win && o < time.Duration(i+1)*win {
					fs = append(fs, conn(implant, c2, uint16(50000+j), 443, t0.Add(o), 6, 400))
				}
			}
			all = append(all, d.Window(window(i, 1e6), fs)...)
		}
		return all
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var regular, random, burst []time.Duration
	for i := range 12 {
		regular = append(regular, time.Duration(i)*5*time.Second+time.Duration(rng.IntN(100))*time.Millisecond)
	}
	at := time.Duration(0)
	for range 12 {
		at += time.Duration(500+rng.IntN(9500)) * time.Millisecond
		random = append(random, at)
	}
	for i := range 12 {
		burst = append(burst, time.Duration(i)*100*time.Millisecond) // regular, but 10/s in one window
	}
	if got := kinds(feed(regular))[Beaconing]; len(got) != 1 || got[0].Source != implant.String() || got[0].Target != "198.19.9.9:443" {
		t.Errorf("every 5s: beaconing = %+v, want one", got)
	}
	if got := kinds(feed(random))[Beaconing]; len(got) != 0 {
		t.Errorf("random intervals: %+v", got)
	}
	if got := kinds(feed(burst))[Beaconing]; len(got) != 0 {
		t.Errorf("burst in one window: %+v", got)
	}
}

func TestExfiltration(t *testing.T) {
	in, out := addr("10.1.2.3"), addr("203.0.113.9")
	flow := func(src, dst netip.Addr, up, down uint64) []analysis.FlowRecord {
		r := conn(src, dst, 40000, 443, t0, 1000, 0)
		r.Bytes = [2]uint64{up, down}
		return append(quiet(0), r)
	}
	cases := []struct {
		name  string
		flows []analysis.FlowRecord
		want  bool
	}{
		{"upload 60MB", flow(in, out, 60e6, 1e6), true},
		{"external client pulls 60MB", func() []analysis.FlowRecord { // the internal side is the server
			fs := flow(out, in, 1e6, 60e6)
			return fs
		}(), true},
		{"two-sided", flow(in, out, 60e6, 30e6), false},
		{"10MB", flow(in, out, 10e6, 0), false},
		{"internal to internal", flow(in, addr("10.9.9.9"), 60e6, 0), false},
		{"download", flow(in, out, 1e6, 60e6), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := kinds(New(DefaultThresholds()).Window(window(0, 1e6), c.flows))[Exfiltration]
			if (len(got) == 1) != c.want {
				t.Fatalf("exfiltration = %+v, want %v", got, c.want)
			}
			if c.want && (got[0].Source != in.String() || got[0].Target != out.String()) {
				t.Errorf("event %+v", got[0])
			}
		})
	}
}

// TestQuietBaseline runs an hour of ordinary windows through every
// detector: nothing fires.
func TestQuietBaseline(t *testing.T) {
	d := New(DefaultThresholds())
	bytes := baseline(360, 1<<20)
	for i, b := range bytes {
		w := window(i, b)
		w.Counters.DNS.Rcodes[3] = uint64(i % 4)
		if evs := d.Window(w, quiet(i)); len(evs) != 0 {
			t.Fatalf("window %d: %+v", i, evs)
		}
	}
}

func TestLimit(t *testing.T) {
	th := DefaultThresholds()
	th.MaxEventsPerKind = 3
	d := New(th)
	var fs []analysis.FlowRecord
	for s := range 5 {
		for p := range 120 {
			fs = append(fs, probe(hostN(s), addr("198.18.0.2"), 50000, uint16(1+p), t0))
		}
	}
	if evs := d.Window(window(0, 1e6), fs); len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
	byKind, suppressed := d.Counts()
	if byKind[0] != 3 || suppressed != 2 {
		t.Errorf("counts %v suppressed %d", byKind, suppressed)
	}
}

func TestParse(t *testing.T) {
	th, err := Parse("port_scan_targets=50; brute_force_ports=22,2222; internal_nets=198.18.0.0/15; beacon_min_interval=2s")
	if err != nil {
		t.Fatal(err)
	}
	if th.PortScanTargets != 50 || len(th.BruteForcePorts) != 2 || th.InternalNets[0].String() != "198.18.0.0/15" || th.BeaconMinInterval != 2*time.Second {
		t.Errorf("%+v", th)
	}
	for in, want := range map[string]string{
		"port_scan_targets=1":  "port_scan_targets=1: want at least 2",
		"nope=3":               `anomaly setting "nope=3": want key=value`,
		"spike_ratio=x":        "want a number",
		"brute_force_ports=0":  "ports 1-65535",
		"internal_nets=10.0.0": "CIDR",
		"ewma_alpha=0":         "ewma_alpha=0: want more than 0",
	} {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want %q", in, err, want)
		}
	}
	if _, err := Parse(""); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
