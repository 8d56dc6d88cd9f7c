package pcapio

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/sonde-project/sonde/capture"
)

// Record is one packet read from a file.
type Record struct {
	// Timestamp is the capture time in Unix nanoseconds.
	Timestamp int64
	// Length is the packet's length on the wire.
	Length uint32
	// Data is the captured part; it is valid until the next call to Next.
	Data []byte
	// Interface is the pcapng interface index within its section; 0 for pcap.
	Interface int
}

// Limits on what a pcapng file may claim. Blocks we skip may be larger than
// the ones we hold in memory, but not absurdly so: libpcap uses the same
// 16 MiB ceiling, and a larger length is almost surely garbage.
const (
	maxSkipBlock = 16 << 20
	maxMetaBlock = 1 << 20
)

// Reader reads packets from a pcap or pcapng stream.
type Reader struct {
	src    source
	format Format
	order  binary.ByteOrder
	skip   bool // Scan mode: seek over packet data

	// pcap
	nanos    bool
	snaplen  uint32
	linkType capture.LinkType

	// pcapng: interfaces of the current section.
	ifaces  []Interface
	firstLT bool
	good    int64 // offset just past the last whole record or block
	err     error // sticky: after damage every call returns it
}

// NewReader reads the file header of a pcap or pcapng stream. For pcapng it
// also reads the Interface Description Blocks that directly follow, so that
// LinkType is known before the first packet.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{src: source{r: r}}
	if err := rd.readHeader(); err != nil {
		return nil, err
	}
	return rd, nil
}

// Format reports which format the stream is in.
func (r *Reader) Format() Format { return r.format }

// LinkType is the link type of the pcap file, or of the first interface of a
// pcapng file (0 when it has none yet).
func (r *Reader) LinkType() capture.LinkType { return r.linkType }

// Offset is the byte offset just past the last whole record or block read.
func (r *Reader) Offset() int64 { return r.good }

func (r *Reader) readHeader() error {
	b, err := r.src.peek(4)
	if err != nil {
		return fmt.Errorf("pcapio: reading file magic at byte offset 0: %w", noEOF(err))
	}
	switch {
	case binary.LittleEndian.Uint32(b) == blockSHB:
		r.format = FormatPcapng
		if err := r.readSHB(); err != nil {
			return err
		}
		r.good = r.src.pos
		// Take in the interfaces that precede the first packet.
		for {
			b, err := r.src.peek(4)
			if err != nil || r.order.Uint32(b) != blockIDB {
				return nil
			}
			if _, err := r.nextBlock(); err != nil {
				return err
			}
			r.good = r.src.pos
		}
	default:
		return r.readPcapHeader()
	}
}

func (r *Reader) readPcapHeader() error {
	b, err := r.src.next(pcapHeaderLen)
	if err != nil {
		return fmt.Errorf("pcapio: reading pcap file header at byte offset 0: %w", noEOF(err))
	}
	r.format = FormatPcap
	switch {
	case binary.LittleEndian.Uint32(b) == magicMicros:
		r.order = binary.LittleEndian
	case binary.BigEndian.Uint32(b) == magicMicros:
		r.order = binary.BigEndian
	case binary.LittleEndian.Uint32(b) == magicNanos:
		r.order, r.nanos = binary.LittleEndian, true
	case binary.BigEndian.Uint32(b) == magicNanos:
		r.order, r.nanos = binary.BigEndian, true
	default:
		return fmt.Errorf("pcapio: byte offset 0: unknown file magic %#08x: neither pcap nor pcapng", binary.BigEndian.Uint32(b))
	}
	if major := r.order.Uint16(b[4:]); major != 2 {
		return fmt.Errorf("pcapio: byte offset 4: unsupported pcap major version %d", major)
	}
	r.snaplen = r.order.Uint32(b[16:])
	// The upper bits of the link type field carry FCS flags.
	r.linkType = capture.LinkType(r.order.Uint32(b[20:]) & 0x0fffffff)
	r.good = r.src.pos
	return nil
}

// Next returns the next packet. It returns io.EOF at a clean end of the
// file, and an error naming the damage and its byte offset otherwise; a file
// cut inside a record yields io.ErrUnexpectedEOF wrapped with the offset.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	var rec Record
	var err error
	if r.format == FormatPcap {
		rec, err = r.nextPcap()
	} else {
		for rec, err = r.nextBlock(); err == nil && rec.Interface < 0; rec, err = r.nextBlock() {
			r.good = r.src.pos
		}
	}
	if err != nil {
		r.err = err
		return Record{}, err
	}
	r.good = r.src.pos
	return rec, nil
}

func (r *Reader) nextPcap() (Record, error) {
	off := r.src.pos
	h, err := r.src.next(pcapRecordLen)
	if err == io.EOF {
		return Record{}, io.EOF
	}
	if err != nil {
		return Record{}, fmt.Errorf("pcapio: record header at byte offset %d: %w", off, err)
	}
	sec, frac := r.order.Uint32(h), r.order.Uint32(h[4:])
	caplen, wire := r.order.Uint32(h[8:]), r.order.Uint32(h[12:])
	if caplen > MaxRecordBytes {
		return Record{}, fmt.Errorf("pcapio: record at byte offset %d: captured length %d exceeds the limit of %d", off, caplen, MaxRecordBytes)
	}
	ts := int64(sec) * 1e9
	if r.nanos {
		ts += int64(frac)
	} else {
		ts += int64(frac) * 1e3
	}
	rec := Record{Timestamp: ts, Length: wire}
	if r.skip {
		err = r.src.skip(int64(caplen))
	} else {
		rec.Data, err = r.src.next(int(caplen))
	}
	if err != nil {
		return Record{}, fmt.Errorf("pcapio: record at byte offset %d: reading %d data bytes: %w", off, caplen, noEOF(err))
	}
	return rec, nil
}

// noEOF turns a clean end into an unexpected one, for reads that started a
// record and so cannot legitimately end the file.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readSHB reads a Section Header Block, which fixes the byte order of the
// section, and forgets the interfaces of the previous section.
func (r *Reader) readSHB() error {
	off := r.src.pos
	b, err := r.src.next(12)
	if err != nil {
		return fmt.Errorf("pcapio: section header at byte offset %d: %w", off, noEOF(err))
	}
	switch binary.LittleEndian.Uint32(b[8:]) {
	case byteOrderMagic:
		r.order = binary.LittleEndian
	case 0x4D3C2B1A:
		r.order = binary.BigEndian
	default:
		return fmt.Errorf("pcapio: section header at byte offset %d: bad byte-order magic %#08x", off, binary.BigEndian.Uint32(b[8:]))
	}
	length := r.order.Uint32(b[4:])
	if length < 28 || length%4 != 0 || length > maxSkipBlock {
		return fmt.Errorf("pcapio: section header at byte offset %d: invalid block length %d", off, length)
	}
	v, err := r.src.next(4)
	if err != nil {
		return fmt.Errorf("pcapio: section header at byte offset %d: %w", off, noEOF(err))
	}
	if major := r.order.Uint16(v); major != 1 {
		return fmt.Errorf("pcapio: section header at byte offset %d: unsupported pcapng major version %d", off, major)
	}
	if err := r.src.skip(int64(length) - 20); err != nil {
		return fmt.Errorf("pcapio: section header at byte offset %d: %w", off, noEOF(err))
	}
	r.ifaces = r.ifaces[:0]
	return r.checkTrailer(off, length)
}

func (r *Reader) checkTrailer(off int64, length uint32) error {
	t, err := r.src.next(4)
	if err != nil {
		return fmt.Errorf("pcapio: block at byte offset %d: reading trailing length: %w", off, noEOF(err))
	}
	if got := r.order.Uint32(t); got != length {
		return fmt.Errorf("pcapio: block at byte offset %d: trailing length %d differs from leading length %d", off, got, length)
	}
	return nil
}

// nextBlock reads one pcapng block. It returns a packet, or a Record with
// Interface -1 for a block that carried none, or an error.
func (r *Reader) nextBlock() (Record, error) {
	none := Record{Interface: -1}
	off := r.src.pos
	h, err := r.src.peek(8)
	if err == io.EOF {
		return Record{}, io.EOF
	}
	if err != nil {
		return Record{}, fmt.Errorf("pcapio: block header at byte offset %d: %w", off, err)
	}
	typ := r.order.Uint32(h)
	if typ == blockSHB {
		return none, r.readSHB()
	}
	length := r.order.Uint32(h[4:])
	if length < 12 || length%4 != 0 {
		return Record{}, fmt.Errorf("pcapio: block type %#x at byte offset %d: invalid block length %d", typ, off, length)
	}
	if length > maxSkipBlock {
		return Record{}, fmt.Errorf("pcapio: block type %#x at byte offset %d: block length %d exceeds the limit of %d", typ, off, length, maxSkipBlock)
	}
	switch typ {
	case blockIDB:
		return none, r.readIDB(off, length)
	case blockEPB, blockPB:
		return r.readPacketBlock(off, typ, length)
	case blockSPB:
		return r.readSPB(off, length)
	}
	if err := r.src.skip(int64(length) - 4); err != nil {
		return Record{}, fmt.Errorf("pcapio: block type %#x at byte offset %d: %w", typ, off, noEOF(err))
	}
	return none, r.checkTrailer(off, length)
}

func (r *Reader) readIDB(off int64, length uint32) error {
	if length < 20 || length > maxMetaBlock {
		return fmt.Errorf("pcapio: interface description at byte offset %d: invalid block length %d", off, length)
	}
	b, err := r.src.next(int(length))
	if err != nil {
		return fmt.Errorf("pcapio: interface description at byte offset %d: %w", off, noEOF(err))
	}
	if got := r.order.Uint32(b[length-4:]); got != length {
		return fmt.Errorf("pcapio: interface description at byte offset %d: trailing length %d differs from leading length %d", off, got, length)
	}
	ifc, err := ParseIDB(r.order, b)
	if err != nil {
		return fmt.Errorf("pcapio: interface description at byte offset %d: %w", off, err)
	}
	if len(r.ifaces) > 1<<16 {
		return fmt.Errorf("pcapio: interface description at byte offset %d: more than %d interfaces in one section", off, 1<<16)
	}
	r.ifaces = append(r.ifaces, ifc)
	if !r.firstLT {
		r.linkType, r.firstLT = ifc.LinkType, true
	}
	return nil
}

// readPacketBlock reads an Enhanced Packet Block or an obsolete Packet Block;
// their fixed parts differ only in the width of the interface id.
func (r *Reader) readPacketBlock(off int64, typ, length uint32) (Record, error) {
	if length < epbOverhead {
		return Record{}, fmt.Errorf("pcapio: packet block at byte offset %d: block length %d is below the minimum of %d", off, length, epbOverhead)
	}
	h, err := r.src.next(28)
	if err != nil {
		return Record{}, fmt.Errorf("pcapio: packet block at byte offset %d: %w", off, noEOF(err))
	}
	id := r.order.Uint32(h[8:])
	if typ == blockPB {
		id = uint32(r.order.Uint16(h[8:]))
	}
	ts := uint64(r.order.Uint32(h[12:]))<<32 | uint64(r.order.Uint32(h[16:]))
	caplen, wire := r.order.Uint32(h[20:]), r.order.Uint32(h[24:])
	if id >= uint32(len(r.ifaces)) {
		return Record{}, fmt.Errorf("pcapio: packet block at byte offset %d: interface %d not described in this section (%d known)", off, id, len(r.ifaces))
	}
	if caplen > MaxRecordBytes {
		return Record{}, fmt.Errorf("pcapio: packet block at byte offset %d: captured length %d exceeds the limit of %d", off, caplen, MaxRecordBytes)
	}
	if uint64(caplen+3)&^3 > uint64(length-epbOverhead) {
		return Record{}, fmt.Errorf("pcapio: packet block at byte offset %d: captured length %d does not fit in block length %d", off, caplen, length)
	}
	rec := Record{Timestamp: r.ifaces[id].Time.Nanos(ts), Length: wire, Interface: int(id)}
	return rec, r.readBody(off, &rec, int(caplen), length, 28)
}

// readBody reads the caplen data bytes and the rest of a block of length
// bytes of which done are consumed: data, padding, options and trailer. In
// Scan mode it seeks over all of it but the trailer.
func (r *Reader) readBody(off int64, rec *Record, caplen int, length, done uint32) error {
	rest := length - done
	if r.skip {
		if err := r.src.skip(int64(rest) - 4); err != nil {
			return fmt.Errorf("pcapio: packet block at byte offset %d: %w", off, noEOF(err))
		}
		return r.checkTrailer(off, length)
	}
	if rest > maxWindow {
		return fmt.Errorf("pcapio: packet block at byte offset %d: block of %d bytes exceeds the limit of %d", off, length, maxWindow)
	}
	// One read for the whole rest keeps Data valid while the trailer is
	// checked.
	b, err := r.src.next(int(rest))
	if err != nil {
		return fmt.Errorf("pcapio: packet block at byte offset %d: %w", off, noEOF(err))
	}
	if got := r.order.Uint32(b[rest-4:]); got != length {
		return fmt.Errorf("pcapio: block at byte offset %d: trailing length %d differs from leading length %d", off, got, length)
	}
	rec.Data = b[:caplen:caplen]
	return nil
}

func (r *Reader) readSPB(off int64, length uint32) (Record, error) {
	if length < 16 {
		return Record{}, fmt.Errorf("pcapio: simple packet block at byte offset %d: block length %d is below the minimum of 16", off, length)
	}
	if len(r.ifaces) == 0 {
		return Record{}, fmt.Errorf("pcapio: simple packet block at byte offset %d: no interface described in this section", off)
	}
	h, err := r.src.next(12)
	if err != nil {
		return Record{}, fmt.Errorf("pcapio: simple packet block at byte offset %d: %w", off, noEOF(err))
	}
	wire := r.order.Uint32(h[8:])
	caplen := min(wire, length-16)
	if s := r.ifaces[0].Snaplen; s != 0 {
		caplen = min(caplen, s)
	}
	if caplen > MaxRecordBytes {
		return Record{}, fmt.Errorf("pcapio: simple packet block at byte offset %d: captured length %d exceeds the limit of %d", off, caplen, MaxRecordBytes)
	}
	rec := Record{Length: wire}
	return rec, r.readBody(off, &rec, int(caplen), length, 12)
}
