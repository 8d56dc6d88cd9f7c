// Package analysis is sonde's streaming traffic analysis: per-window
// packet, protocol, flow, TCP, DNS and jitter statistics with a health score,
// in bounded memory, from live capture or from capture files.
//
// Data enters through Analyzers, one per capture worker, each a
// capture.Consumer that decodes every packet of a block (package decode),
// updates its own flow table and counters, and at each window boundary
// (Config.Window, aligned to the clock) hands its window to the Engine. The
// Engine merges the workers' windows once every worker has moved past one,
// computes rates, top-K lists and the health score, and publishes an
// immutable Snapshot that Engine.Snapshot returns without locking. Workers
// never lock per packet: the only lock is taken once per worker per window.
package analysis

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Engine merges its Analyzers' windows and publishes Snapshots.
type Engine struct {
	cfg Config

	mu         sync.Mutex
	watermarks []int64 // per worker: every window before this was reported
	pending    map[int64]*part
	totals     Counters
	first      int64
	windows    []*Window
	talkers    *topK[[16]byte]
	convs      *topK[convKey]
	ports      *topK[portKey]
	names      *topK[string]
	snap       atomic.Pointer[Snapshot]

	// Flow-record buffers are reused across windows, never reallocated:
	// recFree holds the workers' buffers between windows (a worker takes
	// one back each time it reports) and recMerged is the merge of a
	// window's buffers handed to OnWindow. They are bounded by FlowRecords
	// per worker, and are what a window of many flows would otherwise
	// leave behind as garbage (tens of MB at the daemon's bound).
	recFree   [][]FlowRecord
	recMerged []FlowRecord
	// partFree holds merged and published parts for the workers' next
	// windows, so a window's counters are not reallocated per worker.
	partFree []*part
}

// NewEngine validates cfg (after defaults) and returns an engine with no
// windows yet.
func NewEngine(cfg Config) (*Engine, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:        cfg,
		watermarks: make([]int64, cfg.Workers),
		pending:    make(map[int64]*part),
		talkers:    newTopK[[16]byte](cfg.TopK * 4),
		convs:      newTopK[convKey](cfg.TopK * 4),
		ports:      newTopK[portKey](cfg.TopK * 4),
		names:      newTopK[string](cfg.TopK * 4),
	}
	e.snap.Store(&Snapshot{})
	return e, nil
}

// Config returns the engine's configuration with defaults applied.
func (e *Engine) Config() Config { return e.cfg }

// NewAnalyzer returns the Analyzer of worker (0 to Workers-1), with its
// flow table (MaxFlows/Workers slots) and DNS table allocated.
func (e *Engine) NewAnalyzer(worker int) (*Analyzer, error) {
	if worker < 0 || worker >= e.cfg.Workers {
		return nil, fmt.Errorf("analysis worker %d: want 0 to %d", worker, e.cfg.Workers-1)
	}
	max := e.cfg.MaxFlows / e.cfg.Workers
	return &Analyzer{
		eng:     e,
		worker:  worker,
		window:  e.cfg.Window.Nanoseconds(),
		flows:   newFlowTable(max),
		touched: make([]int32, 0, max),
		dns:     newDNSPending(e.cfg.MaxDNSPending),
	}, nil
}

// Snapshot returns the latest published snapshot; it never blocks and the
// result must not be modified.
func (e *Engine) Snapshot() *Snapshot { return e.snap.Load() }

type convKey struct{ A, B [16]byte }

type portKey struct {
	Proto uint8
	Port  uint16
}

// part is one worker's contribution to one window, or the merge of several.
type part struct {
	start, end  int64
	c           Counters
	activeFlows uint64
	talkers     *topK[[16]byte]
	convs       *topK[convKey]
	ports       *topK[portKey]
	names       []TopItem[string]
	flows       [][]FlowRecord // one buffer per worker that had records
	omitted     uint64         // flows left out of flows by Config.FlowRecords
}

func newPart(cfg Config, start, end int64) *part {
	k := cfg.TopK * 4
	return &part{start: start, end: end, talkers: newTopK[[16]byte](k), convs: newTopK[convKey](k), ports: newTopK[portKey](k)}
}

// reuse empties p (a part the engine gave back) for the window from start
// to end.
func (p *part) reuse(start, end int64) *part {
	p.start, p.end = start, end
	p.c = Counters{}
	p.activeFlows = 0
	p.talkers.reset()
	p.convs.reset()
	p.ports.reset()
	p.names = nil
	clear(p.flows)
	p.flows = p.flows[:0]
	p.omitted = 0
	return p
}

func (p *part) merge(o *part) {
	p.c.Add(&o.c)
	p.activeFlows += o.activeFlows
	for _, it := range o.talkers.items {
		p.talkers.addItem(it)
	}
	for _, it := range o.convs.items {
		p.convs.addItem(it)
	}
	for _, it := range o.ports.items {
		p.ports.addItem(it)
	}
	p.names = append(p.names, o.names...)
	p.flows = append(p.flows, o.flows...)
	p.omitted += o.omitted
}

// report takes worker's part (nil for none) and its new watermark, and
// publishes every window all workers have moved past. When pt is not nil it
// returns a spare part for the worker's next window (nil for none), and
// when pt hands over flow records, a spare buffer (length 0) for the next
// window's records (nil for none).
func (e *Engine) report(worker int, pt *part, watermark int64) (spare *part, recs []FlowRecord) {
	e.mu.Lock()
	defer e.mu.Unlock()
	gave := pt != nil && len(pt.flows) > 0
	e.merge(worker, pt, watermark)
	if n := len(e.recFree); gave && n > 0 {
		recs = e.recFree[n-1]
		e.recFree[n-1] = nil
		e.recFree = e.recFree[:n-1]
	}
	if n := len(e.partFree); pt != nil && n > 0 {
		spare = e.partFree[n-1]
		e.partFree[n-1] = nil
		e.partFree = e.partFree[:n-1]
	}
	return spare, recs
}

// merge is report's work under the lock.
func (e *Engine) merge(worker int, pt *part, watermark int64) {
	if pt != nil && pt.end != 0 {
		if acc, ok := e.pending[pt.start]; ok {
			acc.merge(pt)
			clear(pt.flows) // acc has them now
			pt.flows = pt.flows[:0]
			e.freePart(pt)
		} else {
			e.pending[pt.start] = pt
		}
	}
	if watermark > e.watermarks[worker] {
		e.watermarks[worker] = watermark
	}
	low := e.watermarks[0]
	for _, w := range e.watermarks[1:] {
		low = min(low, w)
	}
	var ready []int64
	for start := range e.pending {
		if start < low {
			ready = append(ready, start)
		}
	}
	if len(ready) == 0 {
		return
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i] < ready[j] })
	for _, start := range ready {
		e.finalize(e.pending[start])
		delete(e.pending, start)
	}
	e.publish()
}

func (e *Engine) finalize(p *part) {
	if e.first == 0 || p.start < e.first {
		e.first = p.start
	}
	names := newTopK[string](e.cfg.TopK * 4)
	for _, it := range p.names {
		names.addItem(it)
	}
	w := &Window{
		Start:       time.Unix(0, p.start).UTC(),
		End:         time.Unix(0, p.end).UTC(),
		Counters:    p.c,
		ActiveFlows: p.activeFlows,
	}
	w.TopTalkers = talkers(p.talkers.sorted(), e.cfg.TopK)
	w.TopConversations = conversations(p.convs.sorted(), e.cfg.TopK)
	w.TopPorts = ports(p.ports.sorted(), e.cfg.TopK)
	w.TopDNSNames = dnsNames(names.sorted(), e.cfg.TopK)
	secs := float64(p.end-p.start) / 1e9
	w.PacketsPerSecond = float64(p.c.Packets) / secs
	w.BitsPerSecond = float64(p.c.Bytes) * 8 / secs
	w.NewFlowsPerSecond = float64(p.c.NewFlows) / secs
	w.Health = Score(&p.c)

	e.totals.Add(&p.c)
	for _, it := range p.talkers.items {
		e.talkers.addItem(it)
	}
	for _, it := range p.convs.items {
		e.convs.addItem(it)
	}
	for _, it := range p.ports.items {
		e.ports.addItem(it)
	}
	for _, it := range names.items {
		e.names.addItem(it)
	}
	if e.cfg.OnWindow != nil {
		var flows []FlowRecord
		switch len(p.flows) {
		case 0:
		case 1:
			flows = p.flows[0]
		default:
			n := 0
			for _, fl := range p.flows {
				n += len(fl)
			}
			flows = e.recMerged[:0]
			if cap(flows) < n {
				flows = make([]FlowRecord, 0, n)
			}
			for _, fl := range p.flows {
				flows = append(flows, fl...)
			}
			e.recMerged = flows
		}
		e.cfg.OnWindow(w, flows, p.omitted)
	}
	e.recycle(p)
	e.freePart(p)
	e.windows = append(e.windows, w)
	if len(e.windows) > e.cfg.KeepWindows {
		e.windows = append(e.windows[:0:0], e.windows[len(e.windows)-e.cfg.KeepWindows:]...)
	}
}

// recycle keeps p's flow-record buffers for the workers' next windows. At
// most two per worker are kept; a worker lagging behind the others can have
// a few more in flight, and those go to the garbage collector.
func (e *Engine) recycle(p *part) {
	for i, fl := range p.flows {
		if len(e.recFree) < 2*e.cfg.Workers {
			e.recFree = append(e.recFree, fl[:0])
		}
		p.flows[i] = nil
	}
}

// freePart keeps p for a worker's next window; like the record buffers, at
// most two per worker.
func (e *Engine) freePart(p *part) {
	if len(e.partFree) < 2*e.cfg.Workers {
		e.partFree = append(e.partFree, p)
	}
}

func (e *Engine) publish() {
	last := e.windows[len(e.windows)-1]
	s := &Snapshot{
		Start:            time.Unix(0, e.first).UTC(),
		End:              last.End,
		Totals:           e.totals,
		Windows:          append([]*Window(nil), e.windows...),
		Last:             last,
		TopTalkers:       talkers(e.talkers.sorted(), e.cfg.TopK),
		TopConversations: conversations(e.convs.sorted(), e.cfg.TopK),
		TopPorts:         ports(e.ports.sorted(), e.cfg.TopK),
		TopDNSNames:      dnsNames(e.names.sorted(), e.cfg.TopK),
		Health:           Score(&e.totals),
	}
	e.snap.Store(s)
}

// Snapshot is the engine's published state: running totals since the
// first window, the recent windows, and whole-run top-K lists. It is
// immutable once published.
type Snapshot struct {
	// Start is the start of the first window; End the end of the last
	// published one. Both are zero before the first window closes.
	Start, End time.Time
	// Totals are cumulative counters and histograms over every published
	// window: what Prometheus counters and histograms export.
	Totals Counters
	// Windows are the most recent windows (Config.KeepWindows), oldest
	// first; Last is the newest, nil before the first.
	Windows []*Window
	Last    *Window
	// Top lists over the whole run (merged sketches: approximate once more
	// keys were seen than a sketch holds; Err bounds the over-estimate).
	TopTalkers       []Talker
	TopConversations []Conversation
	TopPorts         []Port
	TopDNSNames      []DNSName
	// Health scores the Totals.
	Health Health
}

// Window is one closed reporting window, merged over all workers.
type Window struct {
	Start, End        time.Time
	Counters          Counters
	ActiveFlows       uint64 // flows in the tables when the window closed
	PacketsPerSecond  float64
	BitsPerSecond     float64
	NewFlowsPerSecond float64
	TopTalkers        []Talker
	TopConversations  []Conversation
	TopPorts          []Port
	TopDNSNames       []DNSName
	Health            Health
}

// Talker is an address with the packets and bytes it sent and received.
type Talker struct {
	Address netip.Addr
	Packets uint64
	Bytes   uint64
	Err     uint64 // bytes over-estimate bound
}

// Conversation is an address pair with its packets and bytes, both ways.
type Conversation struct {
	A, B    netip.Addr
	Packets uint64
	Bytes   uint64
	Err     uint64
}

// Port is a service port (the side that was connected to, or the lower
// port) with its flows' packets and bytes.
type Port struct {
	Protocol uint8 // IP protocol number
	Port     uint16
	Packets  uint64
	Bytes    uint64
	Err      uint64
}

// DNSName is a queried name with its query count.
type DNSName struct {
	Name    string
	Queries uint64
	Err     uint64
}

func unmap(a [16]byte) netip.Addr { return netip.AddrFrom16(a).Unmap() }

func talkers(items []TopItem[[16]byte], k int) []Talker {
	out := make([]Talker, 0, min(k, len(items)))
	for _, it := range items[:min(k, len(items))] {
		out = append(out, Talker{Address: unmap(it.Key), Packets: it.Packets, Bytes: it.Bytes, Err: it.Err})
	}
	return out
}

func conversations(items []TopItem[convKey], k int) []Conversation {
	out := make([]Conversation, 0, min(k, len(items)))
	for _, it := range items[:min(k, len(items))] {
		out = append(out, Conversation{A: unmap(it.Key.A), B: unmap(it.Key.B), Packets: it.Packets, Bytes: it.Bytes, Err: it.Err})
	}
	return out
}

func ports(items []TopItem[portKey], k int) []Port {
	out := make([]Port, 0, min(k, len(items)))
	for _, it := range items[:min(k, len(items))] {
		out = append(out, Port{Protocol: it.Key.Proto, Port: it.Key.Port, Packets: it.Packets, Bytes: it.Bytes, Err: it.Err})
	}
	return out
}

func dnsNames(items []TopItem[string], k int) []DNSName {
	out := make([]DNSName, 0, min(k, len(items)))
	for _, it := range items[:min(k, len(items))] {
		out = append(out, DNSName{Name: it.Key, Queries: it.Packets, Err: it.Err})
	}
	return out
}
