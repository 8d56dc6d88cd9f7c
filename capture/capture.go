package capture

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Capture engines.
const (
	// EngineAFPacket is sonde's own TPACKET_V3 reader: the default, pure Go.
	EngineAFPacket = "afpacket"
	// EnginePcap reads through libpcap (gopacket/pcap, cgo), for filter
	// syntax outside sonde's compiler. Only in binaries built with -tags libpcap.
	EnginePcap = "pcap"
)

// ErrFilter marks a filter the engine refused, so the caller can report it as
// a configuration error.
var ErrFilter = errors.New("filter refused")

// Config selects what to capture and how the kernel rings are sized.
type Config struct {
	// Engine is EngineAFPacket (the default when empty) or EnginePcap.
	Engine string
	// Interfaces to capture on; at least one.
	Interfaces []string
	// Workers is the number of sockets per interface, joined in one fanout
	// group; 0 means one per CPU.
	Workers int
	// Promisc puts the interfaces in promiscuous mode while sonde runs.
	Promisc bool
	// Snaplen is the most bytes kept of each packet.
	Snaplen int
	// RingBytes is the size of each worker's kernel ring.
	RingBytes int64
	// BlockBytes is the size of one ring block: a power of two, at least a page.
	BlockBytes int
	// BlockTimeout is how long the kernel waits before handing over a block
	// that is not full, which bounds the latency from wire to consumer.
	BlockTimeout time.Duration
	// Filter, when set, decides which packets reach the rings (and how many
	// bytes of each). Without it every packet is accepted, cut to Snaplen.
	// AF_PACKET engine only.
	Filter Filter
	// PcapFilter is a filter expression libpcap compiles itself, with its
	// full syntax. Pcap engine only.
	PcapFilter string
}

// Filter is a socket filter: a classic BPF program, or an eBPF program with
// its own maps. Attach is called once per worker socket, after every socket of
// every interface has joined its fanout group and its ring has been drained,
// replacing the reject-all filter each socket was created with; so no packet
// reaches a ring unfiltered.
type Filter interface {
	Attach(iface string, fd int) error
}

// ClassicFilter is a classic BPF program (struct sock_filter entries), as a
// compiled tcpdump expression is; it must return the number of bytes to keep.
type ClassicFilter []unix.SockFilter

// Attach installs the program with SO_ATTACH_FILTER.
func (f ClassicFilter) Attach(_ string, fd int) error {
	if len(f) == 0 {
		return errors.New("empty classic BPF program")
	}
	return attachFilter(fd, f)
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	page := unix.Getpagesize()
	switch {
	case len(c.Interfaces) == 0:
		return errors.New("capture: no interface configured")
	case c.Workers < 0:
		return fmt.Errorf("capture: workers %d: want 0 (one per CPU) or more", c.Workers)
	case c.Snaplen < 1:
		return fmt.Errorf("capture: snaplen %d: want at least 1", c.Snaplen)
	case c.BlockBytes < page || c.BlockBytes&(c.BlockBytes-1) != 0:
		return fmt.Errorf("capture: block size %d: want a power of two of at least %d", c.BlockBytes, page)
	case c.RingBytes < 2*int64(c.BlockBytes):
		return fmt.Errorf("capture: ring size %d: want at least two blocks of %d bytes", c.RingBytes, c.BlockBytes)
	case c.BlockTimeout < time.Millisecond:
		return fmt.Errorf("capture: block timeout %s: want at least 1ms", c.BlockTimeout)
	case c.Engine != "" && c.Engine != EngineAFPacket && c.Engine != EnginePcap:
		return fmt.Errorf("capture: engine %q: want %s or %s", c.Engine, EngineAFPacket, EnginePcap)
	case c.Engine == EnginePcap && c.Filter != nil:
		return errors.New("capture: the pcap engine compiles its own filter: set PcapFilter, not Filter")
	case c.Engine != EnginePcap && c.PcapFilter != "":
		return errors.New("capture: PcapFilter needs the pcap engine")
	}
	return nil
}

// Worker describes one capture socket to the factory that builds its consumers.
type Worker struct {
	Interface string
	Index     int
	LinkType  LinkType
	Snaplen   int
	// KernelDrops returns the running total of packets the kernel dropped on
	// this worker's socket, read at most a second ago.
	KernelDrops func() uint64
}

// ConsumerFactory builds the consumers of one worker. It is called once per
// worker, from New or SetConsumers.
type ConsumerFactory func(w Worker) []Consumer

// Capture owns every capture socket of the daemon.
type Capture struct {
	cfg    Config
	log    *zap.Logger
	ifaces []*iface
	// netns is the network namespace the sockets were opened in, so that a
	// re-created interface is reopened there; -1 if it could not be read.
	netns int
}

type iface struct {
	name     string
	index    int // ifindex the sockets are bound to
	linkType LinkType
	workers  []*worker
	state    atomic.Value // State
	errMsg   atomic.Value // string
	// gone is set by the worker that finds the interface deleted (or its
	// name now on another device); every worker of the interface then stops
	// and the supervisor reopens the sockets when the interface is back.
	gone    atomic.Bool
	reopens atomic.Uint64
}

// workerStats are written by the worker and read by scrapes.
type workerStats struct {
	packets, bytes                  atomic.Uint64
	kernelPackets, kernelDrops, frz atomic.Uint64
}

type worker struct {
	sock      *socket     // AF_PACKET engine
	pcap      *pcapSource // pcap engine
	iface     *iface
	index     int
	snaplen   int
	consumers []Consumer
	stats     workerStats
	block     Block
}

// New opens every socket (this is the part that needs CAP_NET_RAW and
// CAP_NET_ADMIN), so that errors surface before the daemon reports itself
// started. Packets are not delivered until Run.
func New(cfg Config, log *zap.Logger, newConsumers ConsumerFactory) (*Capture, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.NumCPU()
	}
	c := &Capture{cfg: cfg, log: log, netns: -1}
	if fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		c.netns = fd
	}
	if err := c.openAll(); err != nil {
		c.closeAll()
		return nil, err
	}
	if newConsumers != nil {
		c.SetConsumers(newConsumers)
	}
	return c, nil
}

// SetConsumers builds each worker's consumers with newConsumers. New does it
// when given a factory; a caller that can build its consumers only after the
// sockets are open (sonde opens its data directory once it has dropped its
// privileges) passes nil to New and calls this before Run.
func (c *Capture) SetConsumers(newConsumers ConsumerFactory) {
	for _, ifc := range c.ifaces {
		for _, w := range ifc.workers {
			w.consumers = newConsumers(Worker{
				Interface: ifc.name, Index: w.index, LinkType: ifc.linkType, Snaplen: c.cfg.Snaplen,
				KernelDrops: w.stats.kernelDrops.Load,
			})
		}
	}
}

// Close releases the sockets of a Capture that will not Run.
func (c *Capture) Close() { c.closeAll() }

// openAll opens every worker socket of every interface and then, only once
// all have joined their fanout groups, lets packets in.
func (c *Capture) openAll() error {
	cfg := &c.cfg
	seen := map[string]bool{}
	for _, name := range cfg.Interfaces {
		if seen[name] {
			return fmt.Errorf("interface %q is configured twice", name)
		}
		seen[name] = true
		open := c.open
		if cfg.Engine == EnginePcap {
			open = c.openPcap
		}
		ifc, err := open(name)
		if err != nil {
			return err
		}
		c.ifaces = append(c.ifaces, ifc)
	}
	if cfg.Engine == EnginePcap {
		return nil // libpcap installed its filter itself, gap-free
	}
	// The real filter goes on only once every worker of every interface has
	// joined its group; until then the reject-all filter keeps the rings
	// empty, and whatever was queued before it is drained first.
	for _, ifc := range c.ifaces {
		socks := make([]*socket, len(ifc.workers))
		for i, w := range ifc.workers {
			socks[i] = w.sock
		}
		if err := c.attach(ifc.name, socks); err != nil {
			return err
		}
	}
	return nil
}

// attach drains each socket and installs the real filter on it.
func (c *Capture) attach(name string, socks []*socket) error {
	filter := c.cfg.Filter
	if filter == nil {
		filter = ClassicFilter{{Code: 0x06, K: uint32(c.cfg.Snaplen)}} // ret #snaplen: the kernel copies no more
	}
	for _, s := range socks {
		s.drain()
		f := filter
		if cf, ok := f.(ClassicFilter); ok && s.loopback {
			f = cf.skipOutgoing()
		}
		if err := f.Attach(name, s.fd); err != nil {
			return fmt.Errorf("interface %q: attach filter: %w", name, err)
		}
	}
	return nil
}

// skipOutgoing returns f behind a test that rejects a packet's outgoing
// copy, for loopback, where the tap sees each packet twice, going out and
// coming back in: rejected in the kernel, the copy is neither copied into
// the ring nor counted in tp_packets. (PACKET_IGNORE_OUTGOING would do it,
// but not for sockets in a fanout group.) A program too long for the three
// more instructions is left as it is; the walker drops the copy anyway.
func (f ClassicFilter) skipOutgoing() ClassicFilter {
	if len(f)+3 > maxClassicInsns {
		return f
	}
	return append(ClassicFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdOff + skfAdPktType}, // A = pkt_type
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.PACKET_OUTGOING},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},
	}, f...)
}

const (
	maxClassicInsns = 4096       // BPF_MAXINSNS
	skfAdOff        = 0xfffff000 // SKF_AD_OFF as a uint32
	skfAdPktType    = 4          // SKF_AD_PKTTYPE (linux/filter.h)
)

func (c *Capture) open(name string) (*iface, error) {
	idx, socks, err := c.openSockets(name)
	if err != nil {
		return nil, err
	}
	ifc := &iface{name: name, index: idx, linkType: socks[0].linkType}
	ifc.state.Store(StateStarting)
	ifc.errMsg.Store("")
	for i, s := range socks {
		w := &worker{sock: s, iface: ifc, index: i, snaplen: c.cfg.Snaplen}
		w.block = Block{Interface: name, Worker: i, LinkType: s.linkType}
		ifc.workers = append(ifc.workers, w)
	}
	return ifc, nil
}

// openSockets opens Workers sockets on the interface now called name, all in
// one new fanout group, still behind their reject-all filters.
func (c *Capture) openSockets(name string) (int, []*socket, error) {
	idx, err := interfaceIndex(name)
	if err != nil {
		return 0, nil, err
	}
	var (
		socks []*socket
		group uint16
	)
	fail := func(err error) (int, []*socket, error) {
		for _, s := range socks {
			s.close()
		}
		return 0, nil, fmt.Errorf("interface %q: %w", name, err)
	}
	for i := 0; i < c.cfg.Workers; i++ {
		s, err := openSocket(idx, &c.cfg)
		if err != nil {
			return fail(err)
		}
		socks = append(socks, s)
		if c.cfg.Workers > 1 {
			if group, err = s.joinFanout(group); err != nil {
				return fail(err)
			}
		}
	}
	return idx, socks, nil
}

func closeWorkers(ws []*worker) {
	for _, w := range ws {
		w.closeSource()
	}
}

// closeSource releases the worker's socket or pcap handle.
func (w *worker) closeSource() {
	if w.sock != nil {
		w.sock.close()
	}
	if w.pcap != nil {
		w.pcap.close()
	}
}

func (c *Capture) closeAll() {
	for _, ifc := range c.ifaces {
		closeWorkers(ifc.workers)
	}
	if c.netns >= 0 {
		unix.Close(c.netns)
		c.netns = -1
	}
}

// Run reads every worker's ring until ctx is done, then stops the workers,
// closes their consumers (so they flush), and releases the rings. Each worker
// unmaps its own ring after its last read, so no ring is unmapped under a
// live reader.
func (c *Capture) Run(ctx context.Context) error {
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		for _, ifc := range c.ifaces {
			for _, w := range ifc.workers {
				w.shutdown()
			}
		}
		return fmt.Errorf("create stop eventfd: %w", err)
	}
	defer unix.Close(stop)
	defer func() {
		if c.netns >= 0 {
			unix.Close(c.netns)
			c.netns = -1
		}
	}()
	var wg sync.WaitGroup
	for _, ifc := range c.ifaces {
		ifc.state.Store(StateCapturing)
		c.log.Info("capturing", zap.String("interface", ifc.name), zap.Int("workers", len(ifc.workers)),
			zap.Uint32("link_type", uint32(ifc.linkType)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.supervise(ctx, ifc, stop)
		}()
	}
	<-ctx.Done()
	// The eventfd stays readable once written, so every worker sees it.
	var one [8]byte
	ne.PutUint64(one[:], 1)
	_, _ = unix.Write(stop, one[:])
	wg.Wait()
	for _, ifc := range c.ifaces {
		ifc.state.Store(StateStopped)
	}
	return nil
}

// Interfaces reports each interface's state and running totals.
func (c *Capture) Interfaces() []InterfaceStatus {
	out := make([]InterfaceStatus, 0, len(c.ifaces))
	for _, ifc := range c.ifaces {
		st := InterfaceStatus{
			Name: ifc.name, State: ifc.state.Load().(State), Workers: len(ifc.workers),
			LinkType: ifc.linkType, Err: ifc.errMsg.Load().(string), Reopens: ifc.reopens.Load(),
		}
		for _, w := range ifc.workers {
			st.Packets += w.stats.packets.Load()
			st.Bytes += w.stats.bytes.Load()
			st.KernelPackets += w.stats.kernelPackets.Load()
			st.KernelDrops += w.stats.kernelDrops.Load()
			st.Freezes += w.stats.frz.Load()
		}
		out = append(out, st)
	}
	return out
}

const (
	pollInterval  = 100 * time.Millisecond // longest a worker sleeps, so Idle runs on quiet links
	statsInterval = pollInterval           // how often kernel counters are folded into totals
	linkInterval  = time.Second            // how often the link is checked for a delete or rename
)

// run is the hot loop of one worker. It is the only reader of its ring and
// returns after the stop signal (having read what the kernel had retired) or
// when it finds the interface gone; the supervisor then closes or reopens.
func (w *worker) run(stop int, blockTimeout time.Duration, log *zap.Logger) (gone bool) {
	runtime.LockOSThread() // poll(2) blocks this thread anyway; keep the ring walk cache-warm on it
	defer runtime.UnlockOSThread()
	log = log.With(zap.String("interface", w.iface.name), zap.Int("worker", w.index))
	defer w.readStats(log)
	fds := []unix.PollFd{{Fd: int32(w.sock.fd), Events: unix.POLLIN | unix.POLLERR}, {Fd: int32(stop), Events: unix.POLLIN}}
	if w.block.Packets == nil {
		w.block.Packets = make([]Packet, 0, w.sock.blockSize/64)
	}
	var (
		cur       int
		lastIdle  = time.Now()
		lastStats = lastIdle
		lastLink  = lastIdle
	)
	// periodic runs at least every pollInterval: consumers' Idle, kernel
	// counters, and once a second (or at once after POLLERR or while down)
	// the link check, which also catches a rename. It reports the interface
	// gone.
	periodic := func(now time.Time, pollErr bool) bool {
		lastIdle = now
		w.idle(now)
		if now.Sub(lastStats) >= statsInterval {
			lastStats = now
			w.readStats(log)
		}
		if w.iface.gone.Load() {
			return true
		}
		if pollErr || w.iface.state.Load() == StateDown || now.Sub(lastLink) >= linkInterval {
			lastLink = now
			return w.checkLink(log, pollErr)
		}
		return false
	}
	for {
		blk := w.sock.block(cur)
		if blockReady(blk) {
			w.consume(blk)
			cur = (cur + 1) % w.sock.numBlocks
			if now := time.Now(); now.Sub(lastIdle) >= pollInterval && periodic(now, false) {
				return true
			}
			continue
		}
		fds[0].Revents, fds[1].Revents = 0, 0
		_, err := unix.Poll(fds, int(pollInterval/time.Millisecond))
		if err != nil && err != unix.EINTR {
			log.Error("poll failed; stopping this worker", zap.Error(err))
			w.iface.state.Store(StateFailed)
			w.iface.errMsg.Store(err.Error())
			return false
		}
		if fds[1].Revents != 0 {
			w.finish(cur, blockTimeout)
			return false
		}
		pollErr := fds[0].Revents&unix.POLLERR != 0
		if pollErr {
			_ = w.sock.pendingError() // consumed so POLLERR clears; the link check says what happened
		}
		if periodic(time.Now(), pollErr) {
			return true
		}
	}
}

// checkLink looks at the interface behind the socket: gone (deleted, or its
// name now on another device), down, or up again. It reports gone.
func (w *worker) checkLink(log *zap.Logger, pollErr bool) bool {
	switch exists, up := w.sock.link(w.iface.name, w.iface.index); {
	case !exists:
		if !w.iface.gone.Swap(true) {
			log.Warn("interface deleted or renamed; capture resumes when an interface of that name is back")
		}
		return true
	case !up:
		// The reason first: whoever sees the state down sees why.
		w.iface.errMsg.Store("interface is down")
		if w.iface.state.Swap(StateDown) != StateDown {
			log.Warn("interface is down; capture resumes when it comes back up")
		}
		if pollErr {
			time.Sleep(pollInterval) // POLLERR stays set while down; don't spin
		}
	default:
		if w.iface.state.CompareAndSwap(StateDown, StateCapturing) {
			w.iface.errMsg.Store("")
			log.Info("interface is up again; capturing")
		}
	}
	return false
}

// shutdown closes the worker's consumers, which must see Close exactly once
// whatever happened, and then its socket.
func (w *worker) shutdown() {
	for _, c := range w.consumers {
		c.Close()
	}
	w.closeSource()
}

// consume hands one retired block to every consumer and gives it back to the
// kernel.
func (w *worker) consume(blk []byte) {
	var wire uint64
	w.block.Packets, wire = walkBlock(blk, w.iface.linkType == LinkTypeEthernet, w.sock.loopback, w.snaplen, w.block.Packets[:0])
	for _, c := range w.consumers {
		c.HandleBlock(&w.block)
	}
	releaseBlock(blk)
	w.stats.packets.Add(uint64(len(w.block.Packets)))
	w.stats.bytes.Add(wire)
}

// finish drains the ring once a stop was requested. The block the kernel is
// filling is retired by its timer within one block timeout, so waiting a little
// longer than that takes every packet that arrived before the stop.
func (w *worker) finish(cur int, blockTimeout time.Duration) {
	deadline := time.Now().Add(2*blockTimeout + 10*time.Millisecond)
	fds := []unix.PollFd{{Fd: int32(w.sock.fd), Events: unix.POLLIN}}
	for {
		for blk := w.sock.block(cur); blockReady(blk); blk = w.sock.block(cur) {
			w.consume(blk)
			cur = (cur + 1) % w.sock.numBlocks
		}
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		fds[0].Revents = 0
		_, _ = unix.Poll(fds, int(max(1, left.Milliseconds())))
	}
}

func (w *worker) idle(now time.Time) {
	ns := now.UnixNano()
	for _, c := range w.consumers {
		c.Idle(ns)
	}
}

func (w *worker) readStats(log *zap.Logger) {
	st, err := w.sock.stats()
	if err != nil {
		log.Warn("reading kernel capture statistics failed", zap.Error(err))
		return
	}
	// Under TPACKET_V3 the kernel already adds tp_drops into tp_packets, so
	// tp_packets is everything it offered the socket.
	w.stats.kernelPackets.Add(uint64(st.Packets))
	w.stats.kernelDrops.Add(uint64(st.Drops))
	w.stats.frz.Add(uint64(st.Freeze_q_cnt))
}
