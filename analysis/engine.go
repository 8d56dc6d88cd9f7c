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
	flows       []FlowRecord
	omitted     uint64 // flows left out of flows by Config.FlowRecords
}

func newPart(cfg Config, start, end int64) *part {
	k := cfg.TopK * 4
	return &part{start: start, end: end, talkers: newTopK[[16]byte](k), convs: newTopK[convKey](k), ports: newTopK[portKey](k)}
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
// publishes every window all workers have moved past.
func (e *Engine) report(worker int, pt *part, watermark int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if pt != nil && pt.end != 0 {
		if acc, ok := e.pending[pt.start]; ok {
			acc.merge(pt)
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
		e.cfg.OnWindow(w, p.flows, p.omitted)
	}
	e.windows = append(e.windows, w)
	if len(e.windows) > e.cfg.KeepWindows {
		e.windows = append(e.windows[:0:0], e.windows[len(e.windows)-e.cfg.KeepWindows:]...)
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
