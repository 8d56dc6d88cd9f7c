package pcapio

import (
	"encoding/binary"

	"github.com/sonde-project/sonde/capture"
)

// pcapng pieces for streams of many interfaces: a section header with a
// comment, an interface block with a name and a description, and packet
// blocks that name their interface. AppendFileHeader and AppendRecord
// remain the one-interface shortcuts the ring writes.

const (
	optComment       = 1
	optIfDescription = 3
)

// AppendSectionHeader appends a pcapng Section Header Block (little-endian,
// section length unknown) carrying comment as shb_comment when not empty.
func AppendSectionHeader(dst []byte, comment string) []byte {
	le := binary.LittleEndian
	n := 28
	if comment != "" {
		n += optLen(comment) + 4 // the option and opt_endofopt
	}
	dst = le.AppendUint32(dst, blockSHB)
	dst = le.AppendUint32(dst, uint32(n))
	dst = le.AppendUint32(dst, byteOrderMagic)
	dst = le.AppendUint16(dst, 1)
	dst = le.AppendUint16(dst, 0)
	dst = le.AppendUint64(dst, ^uint64(0))
	if comment != "" {
		dst = appendOpt(dst, optComment, comment)
		dst = le.AppendUint32(dst, optEndOfOpt)
	}
	return le.AppendUint32(dst, uint32(n))
}

// AppendInterface appends an Interface Description Block of link type lt
// with nanosecond timestamps, if_name name and if_description description
// (each omitted when empty). Interfaces are numbered from 0 in the order
// their blocks appear in the section.
func AppendInterface(dst []byte, lt capture.LinkType, snaplen int, name, description string) []byte {
	le := binary.LittleEndian
	n := 20 + 8 + 4 // fixed part, if_tsresol, opt_endofopt
	if name != "" {
		n += optLen(name)
	}
	if description != "" {
		n += optLen(description)
	}
	dst = le.AppendUint32(dst, blockIDB)
	dst = le.AppendUint32(dst, uint32(n))
	dst = le.AppendUint16(dst, uint16(lt))
	dst = le.AppendUint16(dst, 0)
	dst = le.AppendUint32(dst, uint32(snaplen))
	if name != "" {
		dst = appendOpt(dst, optIfName, name)
	}
	if description != "" {
		dst = appendOpt(dst, optIfDescription, description)
	}
	dst = le.AppendUint16(dst, optIfTsresol)
	dst = le.AppendUint16(dst, 1)
	dst = append(dst, 9, 0, 0, 0)
	dst = le.AppendUint32(dst, optEndOfOpt)
	return le.AppendUint32(dst, uint32(n))
}

// AppendPacket appends an Enhanced Packet Block of interface iface (an
// interface with nanosecond timestamps). It does not allocate when dst has
// RecordLen(FormatPcapng, len(data)) bytes spare.
func AppendPacket(dst []byte, iface uint32, ts int64, wireLen uint32, data []byte) []byte {
	start := len(dst)
	dst = AppendRecord(dst, FormatPcapng, ts, wireLen, data)
	binary.LittleEndian.PutUint32(dst[start+8:], iface)
	return dst
}

// optLen is the encoded size of an option holding v: header and padded value.
func optLen(v string) int { return 4 + (len(v)+3)&^3 }

func appendOpt(dst []byte, code uint16, v string) []byte {
	v = v[:min(len(v), 0xffff&^3)]
	dst = binary.LittleEndian.AppendUint16(dst, code)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(v)))
	dst = append(dst, v...)
	return appendPad(dst, len(v))
}

// Interface describes one pcapng interface of the current section.
type Interface struct {
	LinkType    capture.LinkType
	Name        string // if_name, empty when absent
	Description string // if_description, empty when absent
}

// Interface returns interface i of the current pcapng section (the one
// Record.Interface names); for pcap, interface 0 is the file's link type.
func (r *Reader) Interface(i int) (Interface, bool) {
	if r.format == FormatPcap {
		return Interface{LinkType: r.linkType}, i == 0
	}
	if i < 0 || i >= len(r.ifaces) {
		return Interface{}, false
	}
	ifc := r.ifaces[i]
	return Interface{LinkType: ifc.linkType, Name: ifc.name, Description: ifc.description}, true
}
