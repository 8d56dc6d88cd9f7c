// Package capture reads packets from Linux network interfaces through
// AF_PACKET TPACKET_V3 memory-mapped rings and hands them to consumers a
// whole kernel block at a time.
//
// Data enters through one or more worker sockets per interface, joined in a
// PACKET_FANOUT group so that a flow always lands on the same worker. Each
// worker walks the blocks the kernel retires, normalises every packet once
// (VLAN tag restored from the ring header, snaplen applied), and calls every
// Consumer of that worker with the same Block. Data leaves when the consumers
// return: the block is given back to the kernel, so a consumer must copy
// whatever it keeps.
package capture

// LinkType is a pcap LINKTYPE_* value describing the first header of
// Packet.Data.
type LinkType uint32

// Link types sonde captures as.
const (
	LinkTypeEthernet LinkType = 1   // LINKTYPE_ETHERNET
	LinkTypeRaw      LinkType = 101 // LINKTYPE_RAW: packets start at the IPv4 or IPv6 header
)

// Packet is one captured frame. Data aliases kernel ring memory and is valid
// only until the consumer's HandleBlock returns.
type Packet struct {
	// Timestamp is the kernel receive time in nanoseconds since the Unix epoch.
	Timestamp int64
	// Length is the frame's length on the wire, including a restored VLAN tag.
	Length uint32
	// Data is the captured part of the frame (at most the snaplen).
	Data []byte
}

// Block is one kernel ring block worth of packets, in receive order.
type Block struct {
	// Interface is the name of the interface the block was read from.
	Interface string
	// Worker is the index of the fanout worker that read it (0-based).
	Worker int
	// LinkType describes Packet.Data.
	LinkType LinkType
	// Packets are the block's packets; the slice is reused for the next block.
	Packets []Packet
}

// Consumer receives blocks from one capture worker. All methods are called
// from that worker's goroutine only, so a Consumer needs no locking for its
// own state. A Consumer must never block for long: it runs on the capture hot
// path, and while it runs the kernel ring is not being drained.
type Consumer interface {
	// HandleBlock is called once per retired kernel block. It must not retain
	// b or any Packet.Data after it returns.
	HandleBlock(b *Block)
	// Idle is called when the worker found no block to read within its poll
	// interval (and at least every 100 ms under load), with the current wall
	// clock time in Unix nanoseconds, so consumers can flush partial batches.
	Idle(now int64)
	// Close is called once when the worker stops, after its last block.
	Close()
}
