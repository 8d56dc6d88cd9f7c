// Package anomaly finds suspicious patterns in sonde's analysis windows:
// port scans, SYN floods, traffic spikes and drops, DNS error surges, brute
// force logins, beaconing and exfiltration.
//
// Data enters once per window: the engine's OnWindow hook hands Detector.Window
// the merged window and its flow records (analysis.FlowRecord); the detector
// compares them with fixed thresholds and with an adaptive baseline (EWMA of
// earlier windows) and returns Events. It keeps only per-window baselines and
// a bounded table of connection times for beaconing; nothing runs per packet.
package anomaly

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sonde-project/sonde/analysis"
)

// Kind names an anomaly; the kinds are fixed, so they make a bounded metric
// label.
type Kind string

// The kinds of anomaly.
const (
	PortScan     Kind = "port_scan"
	SYNFlood     Kind = "syn_flood"
	TrafficSpike Kind = "traffic_spike"
	TrafficDrop  Kind = "traffic_drop"
	DNSErrors    Kind = "dns_errors"
	BruteForce   Kind = "brute_force"
	Beaconing    Kind = "beaconing"
	Exfiltration Kind = "exfiltration"
)

// Kinds lists every kind in a fixed order.
var Kinds = []Kind{PortScan, SYNFlood, TrafficSpike, TrafficDrop, DNSErrors, BruteForce, Beaconing, Exfiltration}

// Event is one anomaly: what, when (the window's bounds, or the span of the
// evidence for beaconing), who and how much. Files are the capture files
// holding its packets, filled in by whoever knows the ring.
type Event struct {
	Kind     Kind               `json:"kind"`
	Start    time.Time          `json:"start"`
	End      time.Time          `json:"end"`
	Source   string             `json:"source"`
	Target   string             `json:"target"`
	Evidence map[string]float64 `json:"evidence"`
	Files    []string           `json:"files"`
}

// Detector runs every detector on each window. Window is called from one
// goroutine at a time (the engine's hook); SetThresholds and Counts may be
// called from any goroutine.
type Detector struct {
	th atomic.Pointer[Thresholds]

	mu         sync.Mutex // guards the state below: Window may be called from more than one place
	windows    int        // windows seen, for warm-up
	bytesRate  ewma
	dnsErrRate ewma
	beacons    map[pairKey]*beacon

	counts     [8]atomic.Uint64 // events by kind, in Kinds order
	suppressed atomic.Uint64
}

// New returns a detector with thresholds th (validated by the caller).
func New(th Thresholds) *Detector {
	d := &Detector{beacons: make(map[pairKey]*beacon)}
	d.th.Store(&th)
	return d
}

// SetThresholds replaces the thresholds from the next window on; the
// baselines are kept.
func (d *Detector) SetThresholds(th Thresholds) { d.th.Store(&th) }

// Thresholds returns the thresholds in force.
func (d *Detector) Thresholds() Thresholds { return *d.th.Load() }

// Counts returns the events emitted so far by kind (Kinds order) and how
// many MaxEventsPerKind suppressed.
func (d *Detector) Counts() (byKind []uint64, suppressed uint64) {
	out := make([]uint64, len(Kinds))
	for i := range Kinds {
		out[i] = d.counts[i].Load()
	}
	return out, d.suppressed.Load()
}

// ewma is an exponentially weighted mean and variance.
type ewma struct {
	mean, variance float64
	n              int
}

func (e *ewma) update(x, alpha float64) {
	if e.n == 0 {
		e.mean = x
	} else {
		diff := x - e.mean
		incr := alpha * diff
		e.mean += incr
		e.variance = (1 - alpha) * (e.variance + diff*incr)
	}
	e.n++
}

// Window runs the detectors on one window and returns its events.
func (d *Detector) Window(w *analysis.Window, flows []analysis.FlowRecord) []Event {
	th := d.th.Load()
	d.mu.Lock()
	defer d.mu.Unlock()
	secs := w.End.Sub(w.Start).Seconds()
	if secs <= 0 {
		return nil
	}
	var evs []Event
	ev := func(k Kind, src, dst string, evidence map[string]float64) Event {
		return Event{Kind: k, Start: w.Start, End: w.End, Source: src, Target: dst, Evidence: evidence}
	}
	evs = append(evs, d.volume(th, w, secs, ev)...)
	evs = append(evs, portScans(th, flows, ev)...)
	evs = append(evs, synFloods(th, flows, secs, ev)...)
	evs = append(evs, bruteForce(th, flows, ev)...)
	evs = append(evs, exfiltration(th, flows, ev)...)
	evs = append(evs, d.beaconing(th, w, flows)...)
	d.windows++
	return d.limit(th, evs)
}

// limit keeps at most MaxEventsPerKind events of each kind (the strongest
// come first from each detector) and counts them.
func (d *Detector) limit(th *Thresholds, evs []Event) []Event {
	var per [8]int
	out := evs[:0]
	for _, e := range evs {
		i := slices.Index(Kinds, e.Kind)
		if per[i] >= th.MaxEventsPerKind {
			d.suppressed.Add(1)
			continue
		}
		per[i]++
		d.counts[i].Add(1)
		out = append(out, e)
	}
	return out
}

// volume: traffic_spike, traffic_drop and dns_errors against the baselines.
// An anomalous window moves its baseline at a quarter of the usual weight,
// so a sustained anomaly keeps firing for a while but a new normal is
// eventually learnt.
func (d *Detector) volume(th *Thresholds, w *analysis.Window, secs float64, ev func(Kind, string, string, map[string]float64) Event) []Event {
	var evs []Event
	warm := d.windows >= th.WarmupWindows
	rate := float64(w.Counters.Bytes) / secs
	base := d.bytesRate.mean
	sd := math.Max(math.Sqrt(d.bytesRate.variance), 0.1*base)
	alpha := th.EWMAAlpha
	if warm {
		z := 0.0
		if sd > 0 {
			z = (rate - base) / sd
		}
		switch {
		case rate >= th.SpikeRatio*base && rate-base >= th.SpikeMinBytesPerSecond && z >= th.SpikeZ:
			evs = append(evs, ev(TrafficSpike, "", "", map[string]float64{"bytes_per_second": rate, "baseline_bytes_per_second": base, "z_score": z, "ratio": rate / math.Max(base, 1)}))
		case base >= th.DropMinBytesPerSecond && rate <= base/th.DropRatio:
			evs = append(evs, ev(TrafficDrop, "", "", map[string]float64{"bytes_per_second": rate, "baseline_bytes_per_second": base, "z_score": z, "ratio": rate / base}))
		}
		if len(evs) > 0 {
			alpha /= 4
		}
	}
	d.bytesRate.update(rate, alpha)

	dns := &w.Counters.DNS
	nx, sf := dns.Rcodes[3], dns.Rcodes[2]
	errRate := float64(nx+sf) / secs
	alpha = th.EWMAAlpha
	// The baseline is floored at one error per window so that a quiet
	// network does not make every handful of errors a surge.
	dnsBase := math.Max(d.dnsErrRate.mean, 1/secs)
	if warm && int(nx+sf) >= th.DNSErrorsMin && errRate >= th.DNSErrorsRatio*dnsBase {
		evs = append(evs, ev(DNSErrors, "", "", map[string]float64{
			"nxdomain": float64(nx), "servfail": float64(sf), "responses": float64(dns.Responses),
			"errors_per_second": errRate, "baseline_errors_per_second": d.dnsErrRate.mean,
		}))
		alpha /= 4
	}
	d.dnsErrRate.update(errRate, alpha)
	return evs
}

type target struct {
	addr netip.Addr
	port uint16
}

func (t target) String() string { return netip.AddrPortFrom(t.addr, t.port).String() }

// portScans: per client, the distinct (host, port) it probed: flows of a
// few client packets that never completed a handshake.
func portScans(th *Thresholds, flows []analysis.FlowRecord, ev func(Kind, string, string, map[string]float64) Event) []Event {
	type scan struct {
		targets map[target]struct{}
		hosts   map[netip.Addr]int
		ports   map[uint16]struct{}
		packets uint64
		replied int
	}
	by := make(map[netip.Addr]*scan)
	for i := range flows {
		r := &flows[i]
		if r.Proto != 6 && r.Proto != 17 || r.Established || int(r.Packets[0]) > th.PortScanMaxPackets || r.Packets[0] == 0 {
			continue
		}
		s := by[r.Client]
		if s == nil {
			s = &scan{targets: map[target]struct{}{}, hosts: map[netip.Addr]int{}, ports: map[uint16]struct{}{}}
			by[r.Client] = s
		}
		s.targets[target{r.Server, r.ServerPort}] = struct{}{}
		s.hosts[r.Server]++
		s.ports[r.ServerPort] = struct{}{}
		s.packets += uint64(r.Packets[0])
		if r.SYNACK {
			s.replied++
		}
	}
	var evs []Event
	for src, s := range by {
		if len(s.targets) < th.PortScanTargets {
			continue
		}
		// The target is the most probed host, or "N hosts" for a sweep.
		var top netip.Addr
		for h, n := range s.hosts {
			if !top.IsValid() || n > s.hosts[top] || n == s.hosts[top] && h.Less(top) {
				top = h
			}
		}
		tgt := top.String()
		if len(s.hosts) > 1 && s.hosts[top]*2 < len(s.targets) {
			tgt = fmt.Sprintf("%d hosts", len(s.hosts))
		}
		evs = append(evs, ev(PortScan, src.String(), tgt, map[string]float64{
			"targets": float64(len(s.targets)), "hosts": float64(len(s.hosts)), "ports": float64(len(s.ports)),
			"probe_packets": float64(s.packets), "open_ports": float64(s.replied),
		}))
	}
	return strongest(evs, "targets")
}

// synFloods: per (host, port), SYN packets of connections that never
// completed.
func synFloods(th *Thresholds, flows []analysis.FlowRecord, secs float64, ev func(Kind, string, string, map[string]float64) Event) []Event {
	type flood struct {
		halfOpen, attempts int
		syns               uint64
		sources            map[netip.Addr]struct{}
	}
	by := make(map[target]*flood)
	for i := range flows {
		r := &flows[i]
		if r.Proto != 6 || !r.SYN {
			continue
		}
		t := target{r.Server, r.ServerPort}
		f := by[t]
		if f == nil {
			f = &flood{sources: map[netip.Addr]struct{}{}}
			by[t] = f
		}
		f.attempts++
		if r.HalfOpen() {
			f.halfOpen++
			f.syns += uint64(r.Packets[0])
			if len(f.sources) < 1024 {
				f.sources[r.Client] = struct{}{}
			}
		}
	}
	var evs []Event
	for t, f := range by {
		rate := float64(f.syns) / secs
		if rate < th.SYNFloodPerSecond || float64(f.halfOpen) < th.SYNFloodMinRatio*float64(f.attempts) {
			continue
		}
		src := fmt.Sprintf("%d sources", len(f.sources))
		if len(f.sources) == 1 {
			for a := range f.sources {
				src = a.String()
			}
		}
		evs = append(evs, ev(SYNFlood, src, t.String(), map[string]float64{
			"half_open_syns": float64(f.syns), "half_open_connections": float64(f.halfOpen),
			"attempts": float64(f.attempts), "syns_per_second": rate, "sources": float64(len(f.sources)),
		}))
	}
	return strongest(evs, "half_open_syns")
}

// bruteForce: per (client, host, login port), new short connections.
func bruteForce(th *Thresholds, flows []analysis.FlowRecord, ev func(Kind, string, string, map[string]float64) Event) []Event {
	type key struct {
		client netip.Addr
		t      target
	}
	type tries struct {
		conns, failed int
		packets       uint64
	}
	by := make(map[key]*tries)
	for i := range flows {
		r := &flows[i]
		n := uint64(r.Packets[0]) + uint64(r.Packets[1])
		if r.Proto != 6 || !r.New || !r.SYN || n > uint64(th.BruteForceMaxPackets) || !slices.Contains(th.BruteForcePorts, r.ServerPort) {
			continue
		}
		k := key{r.Client, target{r.Server, r.ServerPort}}
		t := by[k]
		if t == nil {
			t = &tries{}
			by[k] = t
		}
		t.conns++
		t.packets += n
		if r.Reset || !r.Established {
			t.failed++
		}
	}
	var evs []Event
	for k, t := range by {
		if t.conns < th.BruteForceConnections {
			continue
		}
		evs = append(evs, ev(BruteForce, k.client.String(), k.t.String(), map[string]float64{
			"connections": float64(t.conns), "failed": float64(t.failed), "mean_packets": float64(t.packets) / float64(t.conns),
		}))
	}
	return strongest(evs, "connections")
}

func internal(th *Thresholds, a netip.Addr) bool {
	for _, p := range th.InternalNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// exfiltration: per (internal client, external host), one-sided volume out.
func exfiltration(th *Thresholds, flows []analysis.FlowRecord, ev func(Kind, string, string, map[string]float64) Event) []Event {
	type pair struct{ src, dst netip.Addr }
	by := make(map[pair]*[2]uint64)
	for i := range flows {
		r := &flows[i]
		// Either side may have started the flow; what matters is which
		// side is inside.
		in, out, dir := r.Client, r.Server, 0
		if !internal(th, in) || internal(th, out) {
			in, out, dir = r.Server, r.Client, 1
			if !internal(th, in) || internal(th, out) {
				continue
			}
		}
		if !out.IsGlobalUnicast() {
			continue
		}
		p := pair{in, out}
		v := by[p]
		if v == nil {
			v = new([2]uint64)
			by[p] = v
		}
		v[0] += r.Bytes[dir]
		v[1] += r.Bytes[1-dir]
	}
	var evs []Event
	for p, v := range by {
		sent, recv := float64(v[0]), float64(v[1])
		if sent < th.ExfilMinBytes || sent < th.ExfilRatio*recv {
			continue
		}
		evs = append(evs, ev(Exfiltration, p.src.String(), p.dst.String(), map[string]float64{
			"bytes_out": sent, "bytes_in": recv, "ratio": sent / math.Max(recv, 1),
		}))
	}
	return strongest(evs, "bytes_out")
}

// strongest orders events by one evidence figure, largest first, then by
// source and target so the order is stable.
func strongest(evs []Event, by string) []Event {
	slices.SortFunc(evs, func(a, b Event) int {
		if c := cmp.Compare(b.Evidence[by], a.Evidence[by]); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Source, b.Source); c != 0 {
			return c
		}
		return cmp.Compare(a.Target, b.Target)
	})
	return evs
}
