package analysis

import (
	"fmt"
	"time"
	"unsafe"
)

// Config configures an Engine and its per-worker Analyzers.
type Config struct {
	// Workers is how many Analyzers (capture workers) feed the engine; a
	// window is published once every worker has moved past it.
	Workers int
	// Window is the length of a reporting window; windows are aligned to
	// multiples of Window since the Unix epoch.
	Window time.Duration
	// MaxFlows bounds the flow table of all workers together; each worker
	// gets MaxFlows/Workers slots, all allocated up front.
	MaxFlows int
	// FlowIdleTimeout forgets a flow that saw no packet for this long.
	FlowIdleTimeout time.Duration
	// MaxDNSPending bounds the outstanding DNS queries each worker remembers.
	MaxDNSPending int
	// DNSTimeout is how long a query may wait for its answer before it
	// counts as timed out.
	DNSTimeout time.Duration
	// TopK is how many top talkers, conversations, ports and DNS names a
	// window keeps.
	TopK int
	// KeepWindows is how many recent windows a Snapshot carries.
	KeepWindows int
	// JitterMinPackets is how many packets a UDP flow direction must have
	// carried before its jitter is reported.
	JitterMinPackets int
	// FlowRecords, when positive, makes each worker summarise up to this many
	// flows per window (FlowRecord) for OnWindow; 0 keeps no records.
	FlowRecords int
	// OnWindow, when set, is called once per published window, oldest
	// first, with the window and its flow records (merged over workers) and
	// how many flows the FlowRecords bound left out. It runs under the
	// engine's lock: it must return quickly and must not call the engine.
	// flows is only valid during the call: its memory is reused for later
	// windows, so keep copies of what is needed, never the slice.
	OnWindow func(w *Window, flows []FlowRecord, omitted uint64)
}

// Defaults.
const (
	DefaultWindow           = 10 * time.Second
	DefaultMaxFlows         = 1 << 21
	DefaultFlowIdleTimeout  = 2 * time.Minute
	DefaultMaxDNSPending    = 1 << 16
	DefaultDNSTimeout       = 5 * time.Second
	DefaultTopK             = 20
	DefaultKeepWindows      = 60
	DefaultJitterMinPackets = 10
)

// FlowEntryBytes is the memory one flow slot costs (entry plus its share of
// the index), so MaxFlows*FlowEntryBytes bounds the flow tables. With the
// default MaxFlows that is under 1 GiB for all workers together.
const FlowEntryBytes = int(unsafe.Sizeof(flow{})) + 2*4

// WithDefaults returns c with every zero setting replaced by its default.
func (c Config) WithDefaults() Config {
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.MaxFlows == 0 {
		c.MaxFlows = DefaultMaxFlows
	}
	if c.FlowIdleTimeout == 0 {
		c.FlowIdleTimeout = DefaultFlowIdleTimeout
	}
	if c.MaxDNSPending == 0 {
		c.MaxDNSPending = DefaultMaxDNSPending
	}
	if c.DNSTimeout == 0 {
		c.DNSTimeout = DefaultDNSTimeout
	}
	if c.TopK == 0 {
		c.TopK = DefaultTopK
	}
	if c.KeepWindows == 0 {
		c.KeepWindows = DefaultKeepWindows
	}
	if c.JitterMinPackets == 0 {
		c.JitterMinPackets = DefaultJitterMinPackets
	}
	return c
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	switch {
	case c.Workers < 1 || c.Workers > 1024:
		return fmt.Errorf("analysis workers %d: want 1 to 1024", c.Workers)
	case c.Window < time.Second || c.Window > time.Hour:
		return fmt.Errorf("analysis window %v: want 1s to 1h", c.Window)
	case c.MaxFlows < c.Workers*16 || c.MaxFlows > 1<<26:
		return fmt.Errorf("analysis max flows %d: want %d to %d", c.MaxFlows, c.Workers*16, 1<<26)
	case c.FlowIdleTimeout < time.Second:
		return fmt.Errorf("analysis flow idle timeout %v: want at least 1s", c.FlowIdleTimeout)
	case c.MaxDNSPending < 8 || c.MaxDNSPending > 1<<24:
		return fmt.Errorf("analysis max DNS pending %d: want 8 to %d", c.MaxDNSPending, 1<<24)
	case c.DNSTimeout < 10*time.Millisecond || c.DNSTimeout > time.Minute:
		return fmt.Errorf("analysis DNS timeout %v: want 10ms to 1m", c.DNSTimeout)
	case c.TopK < 1 || c.TopK > 10000:
		return fmt.Errorf("analysis top-K %d: want 1 to 10000", c.TopK)
	case c.KeepWindows < 1 || c.KeepWindows > 100000:
		return fmt.Errorf("analysis kept windows %d: want 1 to 100000", c.KeepWindows)
	case c.FlowRecords < 0 || c.FlowRecords > 1<<22:
		return fmt.Errorf("analysis flow records %d: want 0 to %d", c.FlowRecords, 1<<22)
	case c.JitterMinPackets < 3:
		return fmt.Errorf("analysis jitter minimum packets %d: want at least 3", c.JitterMinPackets)
	}
	return nil
}
