package ring

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/sonde-project/sonde/internal/pcapio"
)

// writer is the state of one stream's writer goroutine: the file being
// written and the run of records of the current buffer not yet written.
type writer struct {
	s   *Stream
	cfg *Config

	f          *os.File // nil until the first packet of a file is written
	name       string   // final name of f
	size       int64    // bytes of f known to be on disk
	first      int64
	last       int64
	packets    uint64
	wire       uint64
	windowEnd  int64 // first packet time past this file's duration window
	dropsAtOpn uint64

	// The pending run of the current buffer: records [runStart, runEnd).
	runStart, runEnd int
	runFirst         int64
	runLast          int64
	runPackets       uint64
	runWire          uint64

	lastWarn   time.Time
	warnDrops  uint64
	warnErrors uint64
}

// run is the writer goroutine: it writes buffers as they come, publishes
// files whose duration window has passed on a ticker, and publishes the
// last file when the capture worker closes the stream.
func (w *writer) run() {
	defer close(w.s.done)
	tick := time.Second
	if d := w.cfg.FileMaxDuration; d > 0 && d/10 < tick {
		tick = max(d/10, 100*time.Millisecond)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	// Packets stamped before a window's end can still sit in a partial
	// buffer for FlushInterval, plus the worker's idle poll period.
	grace := w.cfg.FlushInterval + 100*time.Millisecond
	for {
		select {
		case b, ok := <-w.s.full:
			if !ok {
				w.publish()
				return
			}
			w.writeBuffer(b)
			w.s.free <- b
		case now := <-t.C:
			if w.f != nil && w.cfg.FileMaxDuration > 0 && now.Add(-grace).UnixNano() >= w.windowEnd {
				w.publish()
			}
		}
	}
}

// writeBuffer writes a buffer with one write call when it all belongs to one
// file, and otherwise splits it into runs that each belong to one file.
func (w *writer) writeBuffer(buf *buffer) {
	b := buf.b
	if w.fits(buf) {
		w.runStart, w.runEnd = 0, len(b)
		w.runFirst, w.runLast, w.runPackets, w.runWire = buf.first, buf.last, buf.packets, buf.wire
		w.flushRun(b)
		return
	}
	w.runStart, w.runEnd = 0, 0
	for w.runEnd < len(b) {
		ts, wire, n, err := pcapio.ParseRecord(w.cfg.Format, b[w.runEnd:])
		if err != nil {
			// Only our own HandleBlock fills buffers, so this is a bug; losing
			// the rest of the buffer beats writing a corrupt file.
			w.s.log.Error("corrupt write buffer, dropping its tail", zap.Int("offset", w.runEnd), zap.Error(err))
			break
		}
		if w.rotateBefore(ts, n) {
			w.flushRun(b)
			w.publish()
		}
		if w.runPackets == 0 {
			w.runFirst = ts
			if w.f == nil {
				w.windowEnd = windowEnd(ts, w.cfg.FileMaxDuration)
			}
		}
		w.runEnd += n
		w.runLast = ts
		w.runPackets++
		w.runWire += uint64(wire)
	}
	w.flushRun(b)
}

// fits reports whether no size or duration boundary falls inside buf, for
// the file open now or the one buf's first packet would open.
func (w *writer) fits(buf *buffer) bool {
	size, end := w.size, w.windowEnd
	if w.f == nil || w.packets == 0 {
		size, end = int64(len(w.s.header)), windowEnd(buf.first, w.cfg.FileMaxDuration)
	}
	if m := w.cfg.FileMaxBytes; m > 0 && size+int64(len(buf.b)) > m {
		return false
	}
	return w.cfg.FileMaxDuration <= 0 || buf.maxTS < end
}

// windowEnd is the first wall-clock-aligned boundary after ts.
func windowEnd(ts int64, d time.Duration) int64 {
	if d <= 0 {
		return 1<<63 - 1
	}
	start := ts - ((ts%int64(d))+int64(d))%int64(d)
	return start + int64(d)
}

// rotateBefore reports whether a record of n bytes at ts must start a new
// file. A file never exceeds FileMaxBytes unless its only record does.
func (w *writer) rotateBefore(ts int64, n int) bool {
	packets := w.packets + w.runPackets
	if packets == 0 {
		return false
	}
	if max := w.cfg.FileMaxBytes; max > 0 {
		size := w.size + int64(w.runEnd-w.runStart)
		if w.f == nil {
			size = int64(len(w.s.header)) + int64(w.runEnd-w.runStart)
		}
		if size+int64(n) > max {
			return true
		}
	}
	return w.cfg.FileMaxDuration > 0 && ts >= w.windowEnd
}

// flushRun writes the pending run to the current file, opening it first if
// needed. A failed write is undone, space is made by evicting the oldest
// file, and the write is tried once more; if that fails too the run's
// packets are dropped and counted.
func (w *writer) flushRun(b []byte) {
	if w.runPackets == 0 {
		w.runStart = w.runEnd
		return
	}
	data := b[w.runStart:w.runEnd]
	err := w.tryWrite(data)
	if err != nil && w.s.ring.evictOldest(EvictDiskFull) {
		err = w.tryWrite(data)
	}
	if err != nil {
		w.s.dropsWrite.Add(w.runPackets)
		w.warn(err, w.runPackets)
		if w.f != nil && w.packets == 0 {
			// Never leave a file that holds no packet; the next run
			// starts afresh, named after its own first packet.
			w.discard()
		}
	} else {
		if w.packets == 0 {
			w.first = w.runFirst
		}
		w.last = w.runLast
		w.packets += w.runPackets
		w.wire += w.runWire
		w.s.packets.Add(w.runPackets)
	}
	w.runStart, w.runPackets, w.runWire = w.runEnd, 0, 0
}

// tryWrite opens the file if needed and appends data, truncating the file
// back to its last good size on failure so it stays a valid capture.
func (w *writer) tryWrite(data []byte) error {
	if w.f == nil {
		if err := w.open(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(data)
	if err == nil {
		w.size += int64(n)
		w.s.bytes.Add(uint64(n))
		return nil
	}
	err = fmt.Errorf("writing %d bytes to %s: %w", len(data), w.f.Name(), err)
	w.s.ring.writeFailed(err)
	if terr := w.f.Truncate(w.size); terr != nil {
		terr = fmt.Errorf("truncating %s back to %d bytes: %w", w.f.Name(), w.size, terr)
		w.s.ring.writeFailed(terr)
		return errors.Join(err, terr)
	}
	if _, serr := w.f.Seek(w.size, 0); serr != nil {
		return errors.Join(err, fmt.Errorf("seeking %s to %d: %w", w.f.Name(), w.size, serr))
	}
	return err
}

// open creates the next file under its hidden temporary name and writes
// the file header.
func (w *writer) open() error {
	name := w.s.ring.fileName(w.runFirst, w.s.iface, w.s.worker)
	tmp := filepath.Join(w.cfg.Dir, partName(name))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		err = fmt.Errorf("creating %s: %w", tmp, err)
		w.s.ring.writeFailed(err)
		return err
	}
	if _, err := f.Write(w.s.header); err != nil {
		f.Close()
		os.Remove(tmp)
		err = fmt.Errorf("writing file header to %s: %w", tmp, err)
		w.s.ring.writeFailed(err)
		return err
	}
	w.f, w.name, w.size = f, name, int64(len(w.s.header))
	w.s.bytes.Add(uint64(len(w.s.header)))
	w.first, w.last, w.packets, w.wire = w.runFirst, w.runFirst, 0, 0
	w.windowEnd = windowEnd(w.runFirst, w.cfg.FileMaxDuration)
	w.dropsAtOpn = w.s.kernelDrops() + w.s.userDrops()
	return nil
}

// discard removes the current file without publishing it.
func (w *writer) discard() {
	if w.f == nil {
		return
	}
	w.f.Close()
	os.Remove(w.f.Name())
	w.f, w.packets, w.size = nil, 0, 0
}

// publish makes the current file visible under its final name: fsync,
// rename, fsync the directory, so a published name always has its data.
func (w *writer) publish() {
	if w.f == nil {
		return
	}
	if w.packets == 0 {
		w.discard()
		return
	}
	f := w.f
	w.f = nil
	defer func() { w.packets, w.size = 0, 0 }()
	tmp := f.Name()
	if err := f.Sync(); err != nil {
		// The data may not be durable, but it is all we have: publish it
		// anyway rather than lose it.
		w.s.ring.writeFailed(fmt.Errorf("fsync of %s: %w", tmp, err))
		w.s.log.Warn("fsync of capture file failed", zap.String("file", tmp), zap.Error(err))
	}
	if err := f.Close(); err != nil {
		w.s.ring.writeFailed(fmt.Errorf("closing %s: %w", tmp, err))
		w.s.log.Warn("closing capture file failed", zap.String("file", tmp), zap.Error(err))
	}
	final := filepath.Join(w.cfg.Dir, w.name)
	if err := os.Rename(tmp, final); err != nil {
		// Left as .part it is recovered at the next Open.
		w.s.ring.writeFailed(fmt.Errorf("publishing %s: %w", tmp, err))
		w.s.log.Error("publishing capture file failed", zap.String("file", tmp), zap.Error(err))
		return
	}
	if err := syncDir(w.cfg.Dir); err != nil {
		w.s.ring.writeFailed(err)
		w.s.log.Warn("fsync of data directory failed", zap.Error(err))
	}
	w.s.files.Add(1)
	w.s.ring.add(FileInfo{
		Name:      w.name,
		Interface: w.s.iface,
		Node:      w.s.ring.cfg.Node,
		Worker:    w.s.worker,
		LinkType:  w.s.lt,
		Format:    w.cfg.Format,
		First:     w.first,
		Last:      w.last,
		Packets:   w.packets,
		Bytes:     w.size,
		WireBytes: w.wire,
		Drops:     w.s.kernelDrops() + w.s.userDrops() - w.dropsAtOpn,
	})
}

// warn logs write failures at most once per 10 s per stream, with what was
// lost since the last message.
func (w *writer) warn(err error, dropped uint64) {
	w.warnDrops += dropped
	w.warnErrors++
	if now := time.Now(); now.Sub(w.lastWarn) >= 10*time.Second {
		w.s.log.Warn("capture data lost: cannot write to the data directory",
			zap.Uint64("dropped_packets", w.warnDrops), zap.Uint64("failed_buffers", w.warnErrors), zap.Error(err))
		w.lastWarn, w.warnDrops, w.warnErrors = now, 0, 0
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s to fsync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync of %s: %w", dir, err)
	}
	return nil
}

// partName is the hidden name a file is written under until published.
func partName(name string) string { return "." + name + ".part" }

// sanitize keeps [A-Za-z0-9.-] so names parse back and never hold a '_'.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

const timeLayout = "20060102T150405.000000000Z"

// fileName names a file after its first packet so names sort by time, and
// after node, interface and worker so they never collide across writers.
// Should a stream start two files in the same nanosecond, a counter keeps
// them apart.
func (r *Ring) fileName(first int64, iface string, worker int) string {
	base := time.Unix(0, first).UTC().Format(timeLayout) + "_" + sanitize(r.cfg.Node) + "_" + sanitize(iface) + "_" + strconv.Itoa(worker)
	name := base + r.cfg.Format.Ext()
	for i := 1; r.exists(name); i++ {
		name = base + "-" + strconv.Itoa(i) + r.cfg.Format.Ext()
	}
	return name
}

func (r *Ring) exists(name string) bool {
	_, err := os.Lstat(filepath.Join(r.cfg.Dir, name))
	if err == nil {
		return true
	}
	_, err = os.Lstat(filepath.Join(r.cfg.Dir, partName(name)))
	return err == nil
}
