// Package pcapio encodes, reads and scans capture files in the classic pcap
// and the pcapng formats.
//
// Data enters the writing side as packets handed to AppendFileHeader and
// AppendRecord, which append the encoded bytes to a caller-owned buffer and
// never allocate when it has room, so they can run on the capture hot path.
// Data enters the reading side as an io.Reader (Reader) or an io.ReaderAt
// (Scan); Reader hands back one Record at a time and Scan only summarises a
// file, seeking over packet data, to recover files cut short by a crash.
// Both distrust every length a file claims and report damage with its byte
// offset instead of panicking or allocating what a corrupt header asks for.
package pcapio

import (
	"encoding/binary"
	"fmt"

	"github.com/sonde-project/sonde/capture"
)

// Format names a capture file format.
type Format string

// Formats sonde writes and reads.
const (
	// FormatPcap is classic pcap with nanosecond timestamps (magic
	// 0xa1b23c4d), version 2.4, little-endian.
	FormatPcap Format = "pcap"
	// FormatPcapng is pcapng with one section, one interface
	// (if_tsresol=9) and Enhanced Packet Blocks.
	FormatPcapng Format = "pcapng"
)

// Magic numbers and block types of the two formats.
const (
	magicMicros    = 0xa1b2c3d4
	magicNanos     = 0xa1b23c4d
	pcapHeaderLen  = 24
	pcapRecordLen  = 16
	blockSHB       = 0x0A0D0D0A
	blockIDB       = 1
	blockPB        = 2 // obsolete Packet Block, still found in old files
	blockSPB       = 3
	blockEPB       = 6
	byteOrderMagic = 0x1A2B3C4D
	epbOverhead    = 32 // block header, interface, timestamp, lengths, trailer
	optEndOfOpt    = 0
	optIfName      = 2
	optIfTsresol   = 9
	optIfTsoffset  = 14
)

// MaxRecordBytes is the largest captured length the reader accepts for one
// packet. It matches libpcap's MAXIMUM_SNAPLEN: anything larger in a file is
// damage, and trusting it would let a corrupt header make us allocate
// gigabytes.
const MaxRecordBytes = 256 << 10

// Valid reports whether f is a format this package writes.
func (f Format) Valid() bool { return f == FormatPcap || f == FormatPcapng }

// Ext returns the file name extension for f, with its dot.
func (f Format) Ext() string {
	if f == FormatPcapng {
		return ".pcapng"
	}
	return ".pcap"
}

// RecordOverhead is the most bytes AppendRecord adds to a packet's data, so
// a record of n data bytes needs at most n+RecordOverhead(f) bytes.
func RecordOverhead(f Format) int {
	if f == FormatPcapng {
		return epbOverhead + 3 // data padded to 4 bytes
	}
	return pcapRecordLen
}

// RecordLen is the exact encoded size of a record of n data bytes.
func RecordLen(f Format, n int) int {
	if f == FormatPcapng {
		return epbOverhead + (n+3)&^3
	}
	return pcapRecordLen + n
}

// AppendFileHeader appends the file header of f: the pcap global header, or
// a pcapng Section Header Block and one Interface Description Block naming
// iface (omitted when empty) with nanosecond timestamps.
func AppendFileHeader(dst []byte, f Format, lt capture.LinkType, snaplen int, iface string) []byte {
	le := binary.LittleEndian
	if f != FormatPcapng {
		dst = le.AppendUint32(dst, magicNanos)
		dst = le.AppendUint16(dst, 2)
		dst = le.AppendUint16(dst, 4)
		dst = le.AppendUint32(dst, 0) // thiszone
		dst = le.AppendUint32(dst, 0) // sigfigs
		dst = le.AppendUint32(dst, uint32(snaplen))
		return le.AppendUint32(dst, uint32(lt))
	}
	dst = le.AppendUint32(dst, blockSHB)
	dst = le.AppendUint32(dst, 28)
	dst = le.AppendUint32(dst, byteOrderMagic)
	dst = le.AppendUint16(dst, 1)
	dst = le.AppendUint16(dst, 0)
	dst = le.AppendUint64(dst, ^uint64(0)) // section length unknown
	dst = le.AppendUint32(dst, 28)

	idbLen := 20 + 8 + 4 // fixed part, if_tsresol, opt_endofopt
	if iface != "" {
		idbLen += 4 + (len(iface)+3)&^3
	}
	dst = le.AppendUint32(dst, blockIDB)
	dst = le.AppendUint32(dst, uint32(idbLen))
	dst = le.AppendUint16(dst, uint16(lt))
	dst = le.AppendUint16(dst, 0)
	dst = le.AppendUint32(dst, uint32(snaplen))
	if iface != "" {
		dst = le.AppendUint16(dst, optIfName)
		dst = le.AppendUint16(dst, uint16(len(iface)))
		dst = append(dst, iface...)
		dst = appendPad(dst, len(iface))
	}
	dst = le.AppendUint16(dst, optIfTsresol)
	dst = le.AppendUint16(dst, 1)
	dst = append(dst, 9, 0, 0, 0)
	dst = le.AppendUint32(dst, optEndOfOpt)
	return le.AppendUint32(dst, uint32(idbLen))
}

// AppendRecord appends one packet record: ts is the capture time in Unix
// nanoseconds, wireLen the length on the wire and data the captured bytes.
// It does not allocate when dst has RecordLen(f, len(data)) bytes spare.
func AppendRecord(dst []byte, f Format, ts int64, wireLen uint32, data []byte) []byte {
	le := binary.LittleEndian
	if f != FormatPcapng {
		dst = le.AppendUint32(dst, uint32(ts/1e9))
		dst = le.AppendUint32(dst, uint32(ts%1e9))
		dst = le.AppendUint32(dst, uint32(len(data)))
		dst = le.AppendUint32(dst, wireLen)
		return append(dst, data...)
	}
	n := uint32(RecordLen(f, len(data)))
	dst = le.AppendUint32(dst, blockEPB)
	dst = le.AppendUint32(dst, n)
	dst = le.AppendUint32(dst, 0) // interface id
	dst = le.AppendUint32(dst, uint32(uint64(ts)>>32))
	dst = le.AppendUint32(dst, uint32(ts))
	dst = le.AppendUint32(dst, uint32(len(data)))
	dst = le.AppendUint32(dst, wireLen)
	dst = append(dst, data...)
	dst = appendPad(dst, len(data))
	return le.AppendUint32(dst, n)
}

func appendPad(dst []byte, n int) []byte {
	for i := n & 3; i != 0 && i < 4; i++ {
		dst = append(dst, 0)
	}
	return dst
}

// ParseRecord decodes the header of a record written by AppendRecord at the
// start of b, so a writer can walk its own buffers without copying. size is
// the record's encoded length.
func ParseRecord(f Format, b []byte) (ts int64, wireLen uint32, size int, err error) {
	le := binary.LittleEndian
	if f != FormatPcapng {
		if len(b) < pcapRecordLen {
			return 0, 0, 0, fmt.Errorf("pcap record header needs %d bytes, have %d", pcapRecordLen, len(b))
		}
		caplen := int(le.Uint32(b[8:]))
		size = pcapRecordLen + caplen
		if caplen > MaxRecordBytes || size > len(b) {
			return 0, 0, 0, fmt.Errorf("pcap record of %d data bytes overruns buffer of %d", caplen, len(b))
		}
		ts = int64(le.Uint32(b[0:]))*1e9 + int64(le.Uint32(b[4:]))
		return ts, le.Uint32(b[12:]), size, nil
	}
	if len(b) < epbOverhead {
		return 0, 0, 0, fmt.Errorf("pcapng block header needs %d bytes, have %d", epbOverhead, len(b))
	}
	size = int(le.Uint32(b[4:]))
	if le.Uint32(b) != blockEPB || size < epbOverhead || size > len(b) {
		return 0, 0, 0, fmt.Errorf("pcapng block type %#x of %d bytes is no enhanced packet block within buffer of %d", le.Uint32(b), size, len(b))
	}
	ts = int64(uint64(le.Uint32(b[12:]))<<32 | uint64(le.Uint32(b[16:])))
	return ts, le.Uint32(b[24:]), size, nil
}
