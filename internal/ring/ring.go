// Package ring records captured packets to a directory of pcap or pcapng
// files that it rotates, indexes and prunes, in the disk discipline of
// google/stenographer.
//
// Data enters through a Stream per capture worker (a capture.Consumer):
// the worker's goroutine serialises each packet into a large buffer and
// hands whole buffers to the stream's writer goroutine, which writes them
// with large write calls to a hidden ".<name>.part" file. Data leaves as
// published files: when a file is complete (size or time limit, or
// shutdown) it is fsynced, renamed to its final name, the directory is
// fsynced, and the file is added to the index (Files, and index.jsonl in
// the directory). Retention deletes the oldest published files; Open
// recovers .part files left by a crash and reconciles the index with the
// directory.
package ring

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
)

// EvictReason says why retention deleted a file.
type EvictReason string

// Eviction reasons, in the order Stats reports them.
const (
	EvictMaxBytes EvictReason = "max_bytes"
	EvictMaxFiles EvictReason = "max_files"
	EvictMaxAge   EvictReason = "max_age"
	EvictMinFree  EvictReason = "min_free"
	EvictDiskFull EvictReason = "disk_full"
)

var evictReasons = [...]EvictReason{EvictMaxBytes, EvictMaxFiles, EvictMaxAge, EvictMinFree, EvictDiskFull}

// Eviction counts the files retention deleted for one reason.
type Eviction struct {
	Reason                EvictReason
	Files, Bytes, Packets uint64
}

// Stats describe the ring as a whole.
type Stats struct {
	Files                      int
	Bytes                      int64
	OldestPacket, NewestPacket int64  // unix ns over published files, 0 when empty
	WriteErrors                uint64 // failed write/create/fsync/rename calls
	Vanished                   uint64 // published files deleted by someone else
	// LastWriteError is the last failure behind WriteErrors and when it
	// happened (unix ns; 0 if never).
	LastWriteError        string
	LastWriteErrorAt      int64
	Evictions             []Eviction
	FreeBytes, TotalBytes uint64 // the data volume (statfs)
}

// StreamStats describe one stream.
type StreamStats struct {
	Interface                       string
	Worker                          int
	Packets, Bytes                  uint64 // packets and file bytes written to disk
	Files                           uint64 // files published
	DropsQueueFull, DropsWriteError uint64 // packets lost in user space, by reason
}

// FileInfo describes one published file. It is also the index record.
type FileInfo struct {
	Name      string           `json:"name"`
	Interface string           `json:"interface"`
	Node      string           `json:"node"`
	Worker    int              `json:"worker"`
	LinkType  capture.LinkType `json:"link_type"`
	Format    pcapio.Format    `json:"format"`
	First     int64            `json:"first"`
	Last      int64            `json:"last"`
	Packets   uint64           `json:"packets"`
	Bytes     int64            `json:"bytes"`
	WireBytes uint64           `json:"wire_bytes"`
	// Drops are the kernel and user-space drops of the file's worker while
	// the file was open.
	Drops uint64 `json:"drops"`
}

// Ring is the directory of capture files.
type Ring struct {
	cfg Config
	log *zap.Logger

	mu        sync.Mutex
	files     []FileInfo // published, sorted by First
	bytes     int64
	maxSpan   int64 // at least the largest Last-First of files (see Window)
	evictions [len(evictReasons)]Eviction
	streams   []*Stream
	pending   sync.WaitGroup // one per stream whose writer still runs

	persistMu   sync.Mutex // serialises index writes
	writeErrors atomic.Uint64
	vanished    atomic.Uint64 // published files that disappeared from under the ring
	errMu       sync.Mutex
	lastErr     string // the last failed create/write/fsync/rename/index save
	lastErrAt   time.Time

	// Pins (pin.go), under mu: the snapshots, how many of them pin each
	// file, and the size of the distinct pinned files.
	snapshots    []Snapshot
	pinned       map[string]int
	pinnedBytes  int64
	pinnedCount  int        // files of the index that are pinned
	pinPersistMu sync.Mutex // serialises pins.json writes
}

// Open prepares the data directory: it creates it, recovers files a crash
// left half-written, loads and repairs the index and applies retention.
func Open(cfg Config, log *zap.Logger) (*Ring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Ring{cfg: cfg, log: log.With(zap.String("component", "ring"), zap.String("dir", cfg.Dir))}
	for i, reason := range evictReasons {
		r.evictions[i].Reason = reason
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("ring: creating data directory: %w", err)
	}
	if err := r.recoverParts(); err != nil {
		return nil, err
	}
	if err := r.loadIndex(); err != nil {
		return nil, err
	}
	if err := r.loadPins(); err != nil {
		return nil, err
	}
	r.enforce(r.now())
	if err := r.persist(); err != nil {
		return nil, err
	}
	return r, nil
}

// NewStream returns the consumer for one capture worker and starts its
// writer goroutine. The worker must Close it; Run waits for that.
func (r *Ring) NewStream(iface string, worker int, lt capture.LinkType, snaplen int, kernelDrops func() uint64) *Stream {
	// A record must fit in one buffer.
	if limit := r.cfg.BufferBytes - pcapio.RecordOverhead(r.cfg.Format); snaplen <= 0 || snaplen > limit {
		snaplen = min(limit, pcapio.MaxRecordBytes)
	}
	nbuf := max(1, int(r.cfg.QueueBytes/int64(r.cfg.BufferBytes)))
	s := &Stream{
		ring:    r,
		log:     r.log.With(zap.String("interface", iface), zap.Int("worker", worker)),
		iface:   iface,
		worker:  worker,
		lt:      lt,
		snaplen: snaplen,
		format:  r.cfg.Format,
		header:  pcapio.AppendFileHeader(nil, r.cfg.Format, lt, snaplen, iface),
		kdrops:  kernelDrops,
		nbuf:    nbuf,
		flushNs: int64(r.cfg.FlushInterval),
		full:    make(chan *buffer, nbuf),
		free:    make(chan *buffer, nbuf),
		done:    make(chan struct{}),
	}
	r.mu.Lock()
	r.streams = append(r.streams, s)
	r.pending.Add(1)
	r.mu.Unlock()
	w := &writer{s: s, cfg: &r.cfg}
	go func() {
		defer r.pending.Done()
		w.run()
	}()
	return s
}

// Run applies retention every second. After ctx is done it waits until
// every stream has been closed by its worker and its writer has published
// everything, persists the index and returns nil.
func (r *Ring) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	drained := make(chan struct{})
	stopping := ctx.Done()
	ticks := 0
	for {
		select {
		case <-stopping:
			stopping = nil
			go func() {
				r.pending.Wait()
				close(drained)
			}()
		case <-drained:
			r.enforce(r.now())
			if err := r.persist(); err != nil {
				r.log.Error("saving index at shutdown failed; it will be rebuilt at the next start", zap.Error(err))
			}
			return nil
		case <-t.C:
			r.enforce(r.now())
			if ticks++; ticks%reconcileEvery == 0 {
				r.reconcile()
			}
		}
	}
}

func (r *Ring) now() time.Time {
	if r.cfg.Now != nil {
		return r.cfg.Now()
	}
	return time.Now()
}

// add indexes a newly published file and applies retention.
func (r *Ring) add(fi FileInfo) {
	r.mu.Lock()
	i := sort.Search(len(r.files), func(i int) bool {
		return r.files[i].First > fi.First || r.files[i].First == fi.First && r.files[i].Name > fi.Name
	})
	r.files = slices.Insert(r.files, i, fi)
	r.bytes += fi.Bytes
	r.maxSpan = max(r.maxSpan, fi.Last-fi.First)
	r.mu.Unlock()
	if r.cfg.Offload != nil {
		r.cfg.Offload.Published(fi)
	}
	// In a full ring every publish evicts, and enforce then saves the index
	// with the new file in it: save it here only when it did not.
	if r.enforce(r.now()) {
		return
	}
	if err := r.persist(); err != nil {
		r.writeFailed(err)
		r.log.Warn("saving index failed; it is rebuilt from the files at the next start", zap.Error(err))
	}
}

// enforce drops expired pins, then deletes the oldest unpinned files while
// any retention limit is exceeded.
func (r *Ring) enforce(now time.Time) (saved bool) {
	r.mu.Lock()
	expired := r.expireLocked(now)
	r.recountPinsLocked()
	r.mu.Unlock()
	if expired {
		if err := r.persistPins(); err != nil {
			r.log.Warn("saving pins failed", zap.Error(err))
		}
	}
	changed := false
	var gone []evicted
	for {
		r.mu.Lock()
		i, reason := r.victimLocked(now)
		if i >= 0 {
			gone = append(gone, r.evictLocked(i, reason))
			changed = true
		}
		r.mu.Unlock()
		if i < 0 {
			break
		}
	}
	r.notifyEvicted(gone)
	if changed {
		if err := r.persist(); err != nil {
			r.writeFailed(err)
			r.log.Warn("saving index failed; it is rebuilt from the files at the next start", zap.Error(err))
		}
	}
	return changed
}

// evictOldest deletes the oldest unpinned published file (with offload, the
// oldest uploaded one first), reporting whether there was one. Writers call
// it when the disk is full.
func (r *Ring) evictOldest(reason EvictReason) bool {
	r.mu.Lock()
	i := r.budgetVictim()
	var ev evicted
	if i >= 0 {
		ev = r.evictLocked(i, reason)
	}
	r.mu.Unlock()
	if i < 0 {
		return false
	}
	r.notifyEvicted([]evicted{ev})
	if err := r.persist(); err != nil {
		r.log.Warn("saving index failed; it is rebuilt from the files at the next start", zap.Error(err))
	}
	return true
}

// evictLocked deletes files[i]. r.mu is held. The entry goes even when the
// file cannot be removed, or a stuck file would stall retention forever.
func (r *Ring) evictLocked(i int, reason EvictReason) evicted {
	fi := r.files[i]
	uploaded := r.uploadedLocked(i)
	if err := os.Remove(filepath.Join(r.cfg.Dir, fi.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Error("deleting capture file failed; dropping it from the index", zap.String("file", fi.Name), zap.Error(err))
	}
	r.files = slices.Delete(r.files, i, i+1)
	r.bytes -= fi.Bytes
	for i := range r.evictions {
		if e := &r.evictions[i]; e.Reason == reason {
			e.Files++
			e.Bytes += uint64(fi.Bytes)
			e.Packets += fi.Packets
		}
	}
	r.log.Debug("evicted capture file", zap.String("file", fi.Name), zap.String("reason", string(reason)))
	return evicted{fi: fi, reason: reason, uploaded: uploaded}
}

func (r *Ring) statfs() (free, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(r.cfg.Dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs of %s: %w", r.cfg.Dir, err)
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// Stats returns totals over the ring.
func (r *Ring) Stats() Stats {
	r.mu.Lock()
	st := Stats{
		Files:       len(r.files),
		Bytes:       r.bytes,
		WriteErrors: r.writeErrors.Load(),
		Vanished:    r.vanished.Load(),
		Evictions:   slices.Clone(r.evictions[:]),
	}
	for _, f := range r.files {
		if st.OldestPacket == 0 || f.First < st.OldestPacket {
			st.OldestPacket = f.First
		}
		st.NewestPacket = max(st.NewestPacket, f.Last)
	}
	r.mu.Unlock()
	r.errMu.Lock()
	st.LastWriteError = r.lastErr
	if !r.lastErrAt.IsZero() {
		st.LastWriteErrorAt = r.lastErrAt.UnixNano()
	}
	r.errMu.Unlock()
	st.FreeBytes, st.TotalBytes, _ = r.statfs()
	return st
}

// StreamStats returns one entry per stream, in creation order.
func (r *Ring) StreamStats() []StreamStats {
	r.mu.Lock()
	streams := slices.Clone(r.streams)
	r.mu.Unlock()
	out := make([]StreamStats, len(streams))
	for i, s := range streams {
		out[i] = s.stats()
	}
	return out
}

// Files returns the index, oldest first.
func (r *Ring) Files() []FileInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.files)
}

// Writable checks that files can be created in the data directory.
func (r *Ring) Writable() error {
	f, err := os.CreateTemp(r.cfg.Dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("ring: creating a probe file in %s: %w", r.cfg.Dir, err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("ring: removing probe file %s: %w", name, err)
	}
	return nil
}

// Retention is the part of Config that may change while the ring runs
// (SIGHUP): the limits on what published files are kept.
type Retention struct {
	MaxBytes       int64
	MaxFiles       int
	MaxAge         time.Duration
	MinFreePercent float64
}

// SetRetention replaces the retention limits and applies them at once.
// Writers are not touched, so no packet waits for it; an invalid set is
// refused and the old one kept.
func (r *Ring) SetRetention(ret Retention) error {
	probe := r.cfg // Validate fills defaults in place: check a copy
	probe.MaxBytes, probe.MaxFiles, probe.MaxAge, probe.MinFreePercent = ret.MaxBytes, ret.MaxFiles, ret.MaxAge, ret.MinFreePercent
	if err := probe.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	r.cfg.MaxBytes, r.cfg.MaxFiles, r.cfg.MaxAge, r.cfg.MinFreePercent = ret.MaxBytes, ret.MaxFiles, ret.MaxAge, ret.MinFreePercent
	r.mu.Unlock()
	r.enforce(r.now())
	return nil
}

// Lookup returns the index entry of the published file named name.
func (r *Ring) Lookup(name string) (FileInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := r.indexOf(name); i >= 0 {
		return r.files[i], true
	}
	return FileInfo{}, false
}

// Window returns the published files holding packets in [from, to) (unix
// ns), ordered by first packet. The index is sorted by first packet, and
// maxSpan bounds how long before from a file that still reaches into the
// window can start, so two binary searches bound the candidates:
// O(log files + matches) however large the index is.
func (r *Ring) Window(from, to int64) []FileInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return window(r.files, r.maxSpan, from, to)
}

func window(files []FileInfo, maxSpan, from, to int64) []FileInfo {
	lo := sort.Search(len(files), func(i int) bool { return files[i].First >= from-maxSpan })
	hi := sort.Search(len(files), func(i int) bool { return files[i].First >= to })
	var out []FileInfo
	for _, f := range files[lo:max(lo, hi)] {
		if f.Last >= from {
			out = append(out, f)
		}
	}
	return out
}

// reconcileEvery is how many retention ticks (seconds) pass between checks
// that the indexed files are still there.
const reconcileEvery = 10

// writeFailed counts a failed create, write, fsync, rename or index save and
// keeps it for health, so an operator sees what is wrong with the volume.
func (r *Ring) writeFailed(err error) {
	r.writeErrors.Add(1)
	r.errMu.Lock()
	r.lastErr, r.lastErrAt = err.Error(), time.Now()
	r.errMu.Unlock()
}

// reconcile drops from the index the files someone deleted under the ring's
// feet, so the index, retention and the API never speak of files that are
// gone.
func (r *Ring) reconcile() {
	entries, err := os.ReadDir(r.cfg.Dir)
	if err != nil {
		r.writeFailed(fmt.Errorf("listing the data directory: %w", err))
		return
	}
	present := make(map[string]bool, len(entries))
	for _, e := range entries {
		present[e.Name()] = true
	}
	r.mu.Lock()
	kept := r.files[:0]
	var gone []string
	for _, f := range r.files {
		if present[f.Name] {
			kept = append(kept, f)
			continue
		}
		gone = append(gone, f.Name)
		r.bytes -= f.Bytes
	}
	clear(r.files[len(kept):])
	r.files = kept
	r.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	r.vanished.Add(uint64(len(gone)))
	r.log.Warn("published capture files vanished from the data directory; dropped from the index",
		zap.Int("files", len(gone)), zap.String("first", gone[0]))
	if err := r.persist(); err != nil {
		r.writeFailed(err)
	}
}
