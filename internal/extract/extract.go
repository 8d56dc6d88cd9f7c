// Package extract cuts a time window out of the capture ring as one pcap
// or pcapng stream.
//
// Data enters as the ring's index entries of the files overlapping the
// window (ring.Window) and an Opener they are opened through; it leaves as
// a single nanosecond pcap, or a pcapng with one interface per (node,
// interface) of the window, written to an io.Writer while the files are
// read. Each capture worker's files are in time order,
// so the files are grouped into one sequence per worker and the sequences
// are merged by a k-way heap merge on packet time: memory is one read
// window per worker and one output buffer, whatever the window's length.
package extract

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/sonde-project/sonde/bpf"
	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/mergeheap"
	"github.com/sonde-project/sonde/internal/pcapio"
	"github.com/sonde-project/sonde/internal/ring"
)

// Snaplen is the snaplen written in the output header: the largest any
// sonde file can hold, so no packet of the ring is longer.
const Snaplen = pcapio.MaxRecordBytes

// Request is one extraction.
type Request struct {
	From, To int64 // [From, To) in unix ns
	// Match, if set, keeps only the packets it accepts (see Compile).
	Match bpf.Program
	// Format is the output format: pcap (the default) holds one link
	// type; pcapng holds any mix, with one Interface Description Block per
	// (node, interface) of the window, so every packet keeps its origin.
	Format pcapio.Format
	// Matches, used instead of Match when set, gives the program for each
	// link type of a pcapng window (a missing link type: keep all).
	Matches map[capture.LinkType]bpf.Program
	// MaxBytes bounds the bytes written, header included (0: no bound). The
	// output then ends at the last whole record that fits.
	MaxBytes int64
}

// Result says what an extraction wrote.
type Result struct {
	Packets uint64
	Bytes   int64
	Files   int // files read
	// Missing counts files of the window evicted before they could be
	// opened; their packets are not in the output.
	Missing int
	// Truncated is set when MaxBytes stopped the output early.
	Truncated bool
}

// MixedLinkTypesError is returned when the window's files have different
// link types, which one pcap stream cannot hold.
type MixedLinkTypesError struct {
	LinkTypes map[capture.LinkType][]string // link type -> interfaces
}

func (e *MixedLinkTypesError) Error() string {
	var parts []string
	for lt, ifs := range e.LinkTypes {
		parts = append(parts, fmt.Sprintf("link type %d (%s)", lt, strings.Join(ifs, ", ")))
	}
	slices.Sort(parts)
	return fmt.Sprintf("the window spans interfaces of different link types: %s; one pcap holds one link type, so select interfaces of one link type with interface=NAME",
		strings.Join(parts, " and "))
}

// LinkType returns the link type shared by files, or a MixedLinkTypesError.
// It is Ethernet when files is empty.
func LinkType(files []ring.FileInfo) (capture.LinkType, error) {
	if len(files) == 0 {
		return capture.LinkTypeEthernet, nil
	}
	byLT := map[capture.LinkType][]string{}
	for _, f := range files {
		if !slices.Contains(byLT[f.LinkType], f.Interface) {
			byLT[f.LinkType] = append(byLT[f.LinkType], f.Interface)
		}
	}
	if len(byLT) > 1 {
		return 0, &MixedLinkTypesError{LinkTypes: byLT}
	}
	return files[0].LinkType, nil
}

// Opener opens one file of the window for reading. A file that no longer
// exists anywhere is reported with an error that wraps fs.ErrNotExist; the
// extraction then counts it in Result.Missing and goes on.
type Opener interface {
	Open(ctx context.Context, fi ring.FileInfo) (io.ReadCloser, error)
}

// Dir opens the files of a local ring directory.
func Dir(root *os.Root) Opener { return dirOpener{root} }

type dirOpener struct{ root *os.Root }

func (d dirOpener) Open(_ context.Context, fi ring.FileInfo) (io.ReadCloser, error) {
	return d.root.Open(fi.Name)
}

// stream is one worker's files, read one after the other.
type stream struct {
	files []ring.FileInfo
	next  int    // index of the next file to open
	name  string // of the open file
	f     io.ReadCloser
	rd    *pcapio.Reader
	rec   pcapio.Record
	iface uint32      // pcapng interface id in the output
	match bpf.Program // nil: keep all
}

// Extract writes the packets of files (the ring's entries overlapping the
// window, all of one link type) in [req.From, req.To) to w as one pcap,
// in time order. It stops at the first error of w or when ctx ends.
func Extract(ctx context.Context, w io.Writer, src Opener, files []ring.FileInfo, req Request) (Result, error) {
	var res Result
	out := &output{w: w, buf: make([]byte, 0, outBufBytes), max: req.MaxBytes, format: pcapio.FormatPcap}
	streams := group(files)
	if req.Format == pcapio.FormatPcapng {
		out.format = pcapio.FormatPcapng
		out.buf = pcapio.AppendSectionHeader(out.buf, "")
		for i, ifc := range Interfaces(files) {
			out.buf = pcapio.AppendInterface(out.buf, ifc.LinkType, Snaplen, ifc.Interface, ifc.Description())
			for _, s := range streams {
				if s.files[0].Node == ifc.Node && s.files[0].Interface == ifc.Interface {
					s.iface = uint32(i)
					s.match = req.Match
					if req.Matches != nil {
						s.match = req.Matches[ifc.LinkType]
					}
				}
			}
		}
	} else {
		lt, err := LinkType(files)
		if err != nil {
			return Result{}, err
		}
		out.buf = pcapio.AppendFileHeader(out.buf, pcapio.FormatPcap, lt, Snaplen, "")
		for _, s := range streams {
			s.match = req.Match
		}
	}
	out.n = int64(len(out.buf))

	defer func() {
		for _, s := range streams {
			s.close()
		}
	}()
	live := make([]*stream, 0, len(streams))
	for _, s := range streams {
		ok, err := s.advance(ctx, src, req.From, req.To, &res)
		if err != nil {
			return res, err
		}
		if ok {
			live = append(live, s)
		}
	}
	// Ordered by the current packet's time; equal times come out in the
	// heap's order, the same for the same ring and request.
	h := mergeheap.New(live, func(a, b *stream) bool { return a.rec.Timestamp < b.rec.Timestamp })
	for h.Len() > 0 {
		s := h.Min()
		r := &s.rec
		if s.match == nil || s.match.Match(r.Data, int(r.Length)) != 0 {
			if !out.record(s.iface, r) {
				res.Truncated = true
				break
			}
			res.Packets++
			if len(out.buf) >= flushBytes {
				if err := ctx.Err(); err != nil {
					return res, err
				}
				if err := out.flush(); err != nil {
					return res, err
				}
			}
		}
		ok, err := s.advance(ctx, src, req.From, req.To, &res)
		if err != nil {
			return res, err
		}
		if ok {
			h.Fix()
		} else {
			h.Pop()
		}
	}
	err := out.flush()
	res.Bytes = out.n
	return res, err
}

// Interface is one interface of a window in pcapng output, in the order
// of its interface id.
type Interface struct {
	Node, Interface string
	LinkType        capture.LinkType
}

// Description is the if_description sonde writes: the node the interface
// belongs to, which a reader of a merged capture needs to tell equally
// named interfaces of different nodes apart.
func (i Interface) Description() string { return "sonde node " + i.Node }

// Interfaces returns the (node, interface) pairs of files sorted by node
// then interface: the interfaces of a pcapng extraction, id by id.
func Interfaces(files []ring.FileInfo) []Interface {
	var out []Interface
	for _, f := range files {
		i := Interface{Node: f.Node, Interface: f.Interface, LinkType: f.LinkType}
		if !slices.ContainsFunc(out, func(o Interface) bool { return o.Node == i.Node && o.Interface == i.Interface }) {
			out = append(out, i)
		}
	}
	slices.SortFunc(out, func(a, b Interface) int {
		return cmp.Or(strings.Compare(a.Node, b.Node), strings.Compare(a.Interface, b.Interface))
	})
	return out
}

// group splits files into one time-ordered sequence per capture worker.
func group(files []ring.FileInfo) []*stream {
	type key struct {
		node, iface string
		worker      int
	}
	byKey := map[key]*stream{}
	var out []*stream
	for _, f := range files {
		k := key{f.Node, f.Interface, f.Worker}
		s := byKey[k]
		if s == nil {
			s = &stream{}
			byKey[k] = s
			out = append(out, s)
		}
		s.files = append(s.files, f)
	}
	for _, s := range out {
		slices.SortStableFunc(s.files, func(a, b ring.FileInfo) int { return int(min(max(a.First-b.First, -1), 1)) })
	}
	return out
}

// advance moves s to its next packet in [from, to), opening the stream's
// next file as needed, and reports whether there is one. A worker's packets
// are in time order, so the first at or after to ends the stream.
func (s *stream) advance(ctx context.Context, src Opener, from, to int64, res *Result) (bool, error) {
	for {
		if s.rd == nil {
			if s.next == len(s.files) {
				return false, nil
			}
			fi := s.files[s.next]
			s.next++
			f, err := src.Open(ctx, fi)
			if errors.Is(err, fs.ErrNotExist) {
				res.Missing++ // evicted since the lookup
				continue
			}
			if err != nil {
				return false, fmt.Errorf("extract: opening %s: %w", fi.Name, err)
			}
			rd, err := pcapio.NewReader(f)
			if err != nil {
				f.Close()
				return false, fmt.Errorf("extract: reading %s: %w", fi.Name, err)
			}
			s.f, s.rd, s.name = f, rd, fi.Name
			res.Files++
		}
		rec, err := s.rd.Next()
		if err == nil && rec.Timestamp >= to {
			s.close()
			s.next = len(s.files)
			return false, nil
		}
		if err == nil && rec.Timestamp >= from {
			s.rec = rec
			return true, nil
		}
		if err == nil {
			continue
		}
		name := s.name
		s.close()
		if err != io.EOF {
			return false, fmt.Errorf("extract: reading %s: %w", name, err)
		}
	}
}

func (s *stream) close() {
	if s.f != nil {
		s.f.Close()
	}
	s.f, s.rd = nil, nil
}

const (
	outBufBytes = 1<<20 + pcapio.MaxRecordBytes + 64
	flushBytes  = 1 << 20
)

// output batches records into large writes and counts what it wrote.
type output struct {
	w      io.Writer
	buf    []byte
	n      int64 // bytes written or buffered
	max    int64
	format pcapio.Format
}

// record appends one record of interface iface (pcapng) unless it would
// pass the byte bound.
func (o *output) record(iface uint32, r *pcapio.Record) bool {
	size := int64(pcapio.RecordLen(o.format, len(r.Data)))
	if o.max > 0 && o.n+size > o.max {
		return false
	}
	if o.format == pcapio.FormatPcapng {
		o.buf = pcapio.AppendPacket(o.buf, iface, r.Timestamp, r.Length, r.Data)
	} else {
		o.buf = pcapio.AppendRecord(o.buf, pcapio.FormatPcap, r.Timestamp, r.Length, r.Data)
	}
	o.n += size
	return true
}

func (o *output) flush() error {
	if len(o.buf) == 0 {
		return nil
	}
	_, err := o.w.Write(o.buf)
	o.buf = o.buf[:0]
	return err
}
