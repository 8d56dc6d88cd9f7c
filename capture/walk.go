package capture

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offsets into struct tpacket_block_desc (hdr is tpacket_hdr_v1) and struct
// tpacket3_hdr, from include/uapi/linux/if_packet.h. Reading fields by offset
// keeps the walker free of unsafe struct casts over ring memory.
const (
	bdBlockStatus = 8
	bdNumPkts     = 12
	bdFirstPkt    = 16

	phNextOffset = 0
	phSec        = 4
	phNsec       = 8
	phSnaplen    = 12
	phLen        = 16
	phStatus     = 20
	phMac        = 24
	phVlanTCI    = 32
	phVlanTPID   = 36

	tpacket3HdrLen = 48 // sizeof(struct tpacket3_hdr)
	// The struct sockaddr_ll that follows the header: its sll_pkttype.
	phPktType   = tpacket3HdrLen + 10
	vlanTagLen  = 4
	macAddrsLen = 12
)

var ne = binary.NativeEndian

// blockStatus is the status word of a block, which the kernel hands over with a
// release store; it must be read and written atomically.
func blockStatus(block []byte) *uint32 {
	return (*uint32)(unsafe.Pointer(&block[bdBlockStatus]))
}

func blockReady(block []byte) bool {
	return atomic.LoadUint32(blockStatus(block))&unix.TP_STATUS_USER != 0
}

func releaseBlock(block []byte) {
	atomic.StoreUint32(blockStatus(block), unix.TP_STATUS_KERNEL)
}

// walkBlock appends every packet of a retired block to pkts and returns it,
// with its wire and captured byte totals. It rewrites the ring in place where a
// packet's VLAN tag was stripped by offload: the two MAC addresses move four
// bytes into the headroom sonde reserved (PACKET_RESERVE) and the tag is
// written back between them, as libpcap does, so Data is the frame as it was on
// the wire. Data is then cut to snaplen. Malformed offsets from the kernel would
// be a kernel bug, but the walker still stops rather than read outside the block.
//
// With skipOutgoing (loopback), the outgoing copy of each packet is left out:
// the tap sees every loopback packet twice, going out and coming back in, and
// keeps the incoming one, as libpcap does. sonde's filters already reject
// the copy in the kernel (ClassicFilter.skipOutgoing, and the eBPF
// prefilter); this catches what another filter lets through.
func walkBlock(block []byte, ethernet, skipOutgoing bool, snaplen int, pkts []Packet) (out []Packet, wireBytes uint64) {
	n := int(ne.Uint32(block[bdNumPkts:]))
	off := int(ne.Uint32(block[bdFirstPkt:]))
	for i := 0; i < n; i++ {
		if off < 0 || off+tpacket3HdrLen > len(block) {
			break
		}
		h := block[off : off+tpacket3HdrLen]
		caplen := int(ne.Uint32(h[phSnaplen:]))
		wire := ne.Uint32(h[phLen:])
		mac := off + int(ne.Uint16(h[phMac:]))
		if mac+caplen > len(block) {
			break
		}
		if skipOutgoing && off+phPktType < len(block) && block[off+phPktType] == unix.PACKET_OUTGOING {
			if next := int(ne.Uint32(h[phNextOffset:])); next != 0 {
				off += next
				continue
			}
			break
		}
		if ethernet && caplen >= macAddrsLen {
			status := ne.Uint32(h[phStatus:])
			tci := ne.Uint32(h[phVlanTCI:])
			if (status&unix.TP_STATUS_VLAN_VALID != 0 || tci != 0) && mac-vlanTagLen >= off+tpacket3HdrLen {
				tpid := uint16(0x8100)
				if status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
					tpid = ne.Uint16(h[phVlanTPID:])
				}
				copy(block[mac-vlanTagLen:], block[mac:mac+macAddrsLen])
				mac -= vlanTagLen
				binary.BigEndian.PutUint16(block[mac+macAddrsLen:], tpid)
				binary.BigEndian.PutUint16(block[mac+macAddrsLen+2:], uint16(tci))
				caplen += vlanTagLen
				wire += vlanTagLen
			}
		}
		if caplen > snaplen {
			caplen = snaplen
		}
		pkts = append(pkts, Packet{
			Timestamp: int64(ne.Uint32(h[phSec:]))*1e9 + int64(ne.Uint32(h[phNsec:])),
			Length:    wire,
			Data:      block[mac : mac+caplen : mac+caplen],
		})
		wireBytes += uint64(wire)
		next := int(ne.Uint32(h[phNextOffset:]))
		if next == 0 {
			break
		}
		off += next
	}
	return pkts, wireBytes
}
