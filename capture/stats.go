package capture

// Stats are running totals for one interface, summed over its workers. The
// kernel's PACKET_STATISTICS are reset by every read, so sonde accumulates them.
type Stats struct {
	// Packets and Bytes count what sonde read from the ring. Bytes are wire
	// lengths (Packet.Length).
	Packets uint64
	Bytes   uint64
	// KernelPackets is tp_packets: every packet the kernel offered the sockets,
	// including the ones it dropped.
	KernelPackets uint64
	// KernelDrops is tp_drops: packets lost because the ring was full.
	KernelDrops uint64
	// Freezes is tp_freeze_q_cnt: how often the ring froze because no block was free.
	Freezes uint64
}

// State is the life-cycle state of an interface's capture.
type State string

// Capture states reported by Interfaces.
const (
	StateStarting  State = "starting"
	StateCapturing State = "capturing"
	// StateDown means the interface went down; capture resumes when it comes back up.
	StateDown    State = "down"
	StateFailed  State = "failed"
	StateStopped State = "stopped"
)

// InterfaceStatus describes one configured interface.
type InterfaceStatus struct {
	Name     string
	State    State
	Workers  int
	LinkType LinkType
	// Err is the reason for StateFailed or StateDown.
	Err string
	// Reopens counts how often the interface was deleted and capture
	// reopened it when it came back.
	Reopens uint64
	Stats
}
