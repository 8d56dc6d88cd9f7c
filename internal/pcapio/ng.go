package pcapio

import (
	"encoding/binary"
	"fmt"
	"math/bits"

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

// Interface describes one pcapng interface (an Interface Description Block).
type Interface struct {
	LinkType    capture.LinkType
	Snaplen     uint32
	Name        string // if_name, empty when absent
	Description string // if_description, empty when absent
	Time        TimeUnit
}

// TimeUnit is how an interface's packet timestamps count: units of 10^-Exp
// seconds, or 2^-Exp with Pow2 (if_tsresol; microseconds by default), from
// Offset seconds after the Unix epoch (if_tsoffset).
type TimeUnit struct {
	Exp    uint8
	Pow2   bool
	Offset int64
}

// Nanos converts a timestamp in u's units to Unix nanoseconds.
func (u TimeUnit) Nanos(ts uint64) int64 {
	var ns uint64
	switch {
	case u.Pow2:
		sec := ts >> u.Exp
		frac := ts & (1<<u.Exp - 1)
		hi, lo := bits.Mul64(frac, 1e9)
		// frac*1e9 / 2^exp in 128 bits; a shift by 64 yields 0 in Go.
		ns = sec*1e9 + (lo>>u.Exp | hi<<(64-u.Exp))
	case u.Exp <= 9:
		ns = ts * pow10(9-u.Exp)
	default:
		ns = ts / pow10(u.Exp-9)
	}
	return int64(ns) + u.Offset*1e9
}

func pow10(n uint8) uint64 {
	p := uint64(1)
	for ; n > 0; n-- {
		p *= 10
	}
	return p
}

// ParseIDB reads an Interface Description Block: b is the whole block, from
// its type to its trailing length, in byte order o. Options it does not use
// are skipped; a timestamp resolution it cannot convert is an error.
func ParseIDB(o binary.ByteOrder, b []byte) (Interface, error) {
	if len(b) < 20 {
		return Interface{}, fmt.Errorf("interface description of %d bytes, want at least 20", len(b))
	}
	ifc := Interface{
		LinkType: capture.LinkType(o.Uint16(b[8:])),
		Snaplen:  o.Uint32(b[12:]),
		Time:     TimeUnit{Exp: 6},
	}
	for opts := b[16 : len(b)-4]; len(opts) >= 4; {
		code, n := o.Uint16(opts), int(o.Uint16(opts[2:]))
		if code == optEndOfOpt || 4+n > len(opts) {
			break
		}
		v := opts[4 : 4+n]
		switch {
		case code == optIfTsresol && n >= 1:
			t := &ifc.Time
			t.Exp, t.Pow2 = v[0]&0x7f, v[0]&0x80 != 0
			if (!t.Pow2 && t.Exp > 19) || (t.Pow2 && t.Exp > 63) {
				return Interface{}, fmt.Errorf("unsupported if_tsresol %#x", v[0])
			}
		case code == optIfTsoffset && n >= 8:
			ifc.Time.Offset = int64(o.Uint64(v))
		case code == optIfName:
			ifc.Name = string(v)
		case code == optIfDescription:
			ifc.Description = string(v)
		}
		opts = opts[min(len(opts), 4+(n+3)&^3):]
	}
	return ifc, nil
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
	return r.ifaces[i], true
}
