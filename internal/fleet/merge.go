package fleet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sonde-project/sonde/internal/mergeheap"
	"github.com/sonde-project/sonde/internal/pcapio"
)

// pcapng block types and options the merge reads or writes.
const (
	blockSHB       = 0x0A0D0D0A
	blockIDB       = 1
	blockEPB       = 6
	byteOrderMagic = 0x1A2B3C4D

	// maxBlock bounds any block a member sends: a packet block of the
	// largest snaplen with room for options, or an interface block.
	maxBlock = pcapio.MaxRecordBytes + 64<<10
	// readBytes is each member's read window; outBytes the output batch.
	readBytes = 1 << 20
	outBytes  = 1 << 20
)

// Input is one member's pcapng stream (/api/v1/pcap?format=pcapng).
type Input struct {
	// Member names the member in results and errors.
	Member string
	// Node attributes the member's interfaces when their if_description
	// does not name a sonde node (the Sonde-Node header, or Member).
	Node string
	R    io.Reader
}

// MergeOptions bound and annotate a merge.
type MergeOptions struct {
	// MaxBytes bounds the output, header included (0: none); it then ends
	// at the last whole block that fits.
	MaxBytes int64
	// Comment is the output section's shb_comment (empty: none).
	Comment string
}

// MergeResult says what a merge wrote and how each input ended.
type MergeResult struct {
	Packets   uint64
	Bytes     int64
	Truncated bool
	// Inputs is one entry per Input, in order: its packets in the output
	// and, for an input that failed while it was read, why. Its packets up
	// to the failure are in the output.
	Inputs []InputResult
}

// InputResult is how one input fared.
type InputResult struct {
	Packets uint64
	Err     error
}

// iface is one of an input's interfaces: where its packets go and how its
// timestamps convert.
type iface struct {
	out  uint32 // interface id in the output
	time pcapio.TimeUnit
}

// reader walks one member's pcapng blocks in a large window of its own,
// so a packet block is copied once: from the window into the output.
type reader struct {
	in         Input
	idx        int
	buf        []byte
	start, end int
	eof        bool
	rerr       error

	ifaces []iface
	// The current packet: its time and its block, aliasing buf.
	ts    int64
	blk   []byte
	ifc   *iface
	count uint64
}

// fill makes at least n bytes available, or fewer only at the end.
func (r *reader) fill(n int) {
	if r.end-r.start >= n || r.eof || r.rerr != nil {
		return
	}
	if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	for r.end < n && !r.eof && r.rerr == nil {
		m, err := r.in.R.Read(r.buf[r.end:])
		r.end += m
		if err == io.EOF {
			r.eof = true
		} else if err != nil {
			r.rerr = err
		}
	}
}

// block returns the next whole block, nil at a clean end of stream.
func (r *reader) block() ([]byte, error) {
	r.fill(8)
	avail := r.end - r.start
	if avail == 0 && r.eof {
		return nil, nil
	}
	if avail < 8 {
		return nil, r.cut("a block header")
	}
	b := r.buf[r.start:]
	n := int(binary.LittleEndian.Uint32(b[4:]))
	if binary.LittleEndian.Uint32(b) == blockSHB && binary.LittleEndian.Uint32(b[8:]) != byteOrderMagic && avail >= 12 {
		return nil, errors.New("big-endian pcapng section: not from a sonde sensor")
	}
	if n < 12 || n%4 != 0 || n > maxBlock {
		return nil, fmt.Errorf("invalid pcapng block length %d", n)
	}
	r.fill(n)
	if r.end-r.start < n {
		return nil, r.cut(fmt.Sprintf("a block of %d bytes", n))
	}
	b = r.buf[r.start : r.start+n]
	r.start += n
	if binary.LittleEndian.Uint32(b[n-4:]) != uint32(n) {
		return nil, fmt.Errorf("pcapng block trailing length differs from its leading length %d", n)
	}
	return b, nil
}

func (r *reader) cut(what string) error {
	if r.rerr != nil {
		return r.rerr
	}
	return fmt.Errorf("stream ends inside %s: %w", what, io.ErrUnexpectedEOF)
}

// merger writes the output and numbers the interfaces.
type merger struct {
	w       io.Writer
	buf     []byte
	n       int64
	max     int64
	nifaces uint32
	full    bool
}

func (m *merger) flush() error {
	if len(m.buf) == 0 {
		return nil
	}
	_, err := m.w.Write(m.buf)
	m.buf = m.buf[:0]
	return err
}

// fits reserves room for n bytes under MaxBytes.
func (m *merger) fits(n int) bool {
	if m.max > 0 && m.n+int64(n) > m.max {
		m.full = true
		return false
	}
	m.n += int64(n)
	return true
}

// next advances r to its next packet; false at its end (r.in's error, if
// any, is returned). Interface blocks on the way are numbered and written.
func (r *reader) next(m *merger) (bool, error) {
	le := binary.LittleEndian
	for {
		b, err := r.block()
		if err != nil || b == nil {
			return false, err
		}
		switch le.Uint32(b) {
		case blockSHB:
			if len(b) < 28 || le.Uint16(b[12:]) != 1 {
				return false, errors.New("unsupported pcapng section header")
			}
			r.ifaces = r.ifaces[:0] // a new section numbers its interfaces anew
		case blockIDB:
			if err := r.idb(m, b); err != nil {
				return false, err
			}
		case blockEPB:
			if len(b) < 32 {
				return false, fmt.Errorf("packet block of %d bytes", len(b))
			}
			id := le.Uint32(b[8:])
			if int(id) >= len(r.ifaces) {
				return false, fmt.Errorf("packet block of interface %d, which the stream did not describe", id)
			}
			caplen := le.Uint32(b[20:])
			if caplen > pcapio.MaxRecordBytes || int(caplen+3)&^3 > len(b)-32 {
				return false, fmt.Errorf("packet block: captured length %d does not fit its block of %d bytes", caplen, len(b))
			}
			r.ifc = &r.ifaces[id]
			raw := uint64(le.Uint32(b[12:]))<<32 | uint64(le.Uint32(b[16:]))
			r.ts = r.ifc.time.Nanos(raw)
			r.blk = b
			return true, nil
		}
		// Anything else (statistics, name resolution, custom) is not kept.
	}
}

// idb numbers an interface block of r's section in the output and writes
// it there, renamed NODE/IFACE so a reader tells the nodes apart.
func (r *reader) idb(m *merger, b []byte) error {
	in, err := pcapio.ParseIDB(binary.LittleEndian, b)
	if err != nil {
		return err
	}
	node, name := r.in.Node, in.Name
	if n, ok := strings.CutPrefix(in.Description, "sonde node "); ok && n != "" {
		node = n
	}
	if name == "" {
		name = fmt.Sprintf("if%d", len(r.ifaces))
	}
	r.ifaces = append(r.ifaces, iface{out: m.nifaces, time: in.Time})
	m.nifaces++
	// Interface blocks are written whatever the byte bound: a reader needs
	// every one a written packet names, and they are small.
	out := pcapio.AppendInterface(nil, in.LinkType, int(in.Snaplen), node+"/"+name, "sonde node "+node)
	m.n += int64(len(out))
	m.buf = append(m.buf, out...)
	return nil
}

// Merge writes the packets of every input to w as one pcapng section, in
// time order (ties in input order), each packet on an interface of its
// own (node, interface): interface blocks are renamed NODE/IFACE with the
// description "sonde node NODE", and packet blocks are copied whole with
// only their interface id (and, for non-nanosecond inputs, their time)
// rewritten. An input that fails is dropped where it failed and the merge
// goes on with the others; MergeResult.Inputs says which and why. Merge
// returns an error only when w fails or ctx ends.
func Merge(ctx context.Context, w io.Writer, in []Input, opts MergeOptions) (MergeResult, error) {
	res := MergeResult{Inputs: make([]InputResult, len(in))}
	m := &merger{w: w, buf: make([]byte, 0, outBytes+maxBlock), max: opts.MaxBytes}
	m.buf = pcapio.AppendSectionHeader(m.buf, opts.Comment)
	m.n = int64(len(m.buf))
	rs := make([]*reader, 0, len(in))
	drop := func(r *reader, err error) {
		res.Inputs[r.idx].Err = err
	}
	for i, input := range in {
		r := &reader{in: input, idx: i, buf: make([]byte, readBytes+maxBlock)}
		ok, err := r.next(m)
		if err != nil {
			drop(r, err)
		}
		if ok {
			rs = append(rs, r)
		}
	}
	// Ties go to the earlier input, so equal times keep the inputs' order.
	h := mergeheap.New(rs, func(a, b *reader) bool { return a.ts < b.ts || a.ts == b.ts && a.idx < b.idx })
	le := binary.LittleEndian
	for h.Len() > 0 {
		r := h.Min()
		b := r.blk
		if !m.fits(len(b)) {
			break
		}
		off := len(m.buf)
		m.buf = append(m.buf, b...)
		le.PutUint32(m.buf[off+8:], r.ifc.out)
		if t := r.ifc.time; t.Exp != 9 || t.Pow2 || t.Offset != 0 {
			le.PutUint32(m.buf[off+12:], uint32(uint64(r.ts)>>32))
			le.PutUint32(m.buf[off+16:], uint32(r.ts))
		}
		r.count++
		res.Packets++
		if len(m.buf) >= outBytes {
			if err := ctx.Err(); err != nil {
				return res.finish(h, m), err
			}
			if err := m.flush(); err != nil {
				return res.finish(h, m), err
			}
		}
		ok, err := r.next(m)
		switch {
		case ok:
			h.Fix()
		default:
			if err != nil {
				drop(r, err)
			}
			res.Inputs[r.idx].Packets = r.count
			h.Pop()
		}
	}
	res.Truncated = m.full
	res = res.finish(h, m)
	return res, m.flush()
}

// finish records the packets of the inputs still in h and the bytes.
func (res MergeResult) finish(h *mergeheap.Heap[*reader], m *merger) MergeResult {
	for _, r := range h.Items() {
		res.Inputs[r.idx].Packets = r.count
	}
	res.Bytes = m.n
	return res
}
