package ring

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sonde-project/sonde/internal/pcapio"
)

const indexName = "index.jsonl"

// persist rewrites index.jsonl through a temporary file, fsync and rename.
// The index holds one short line per file of megabytes, so rewriting it
// whole costs little next to the data it describes, and a reader (or a
// crash) only ever sees the old or the new index, never a torn one: the
// append-only alternative would need tombstones for every eviction and a
// compaction step for no gain at this size.
func (r *Ring) persist() error {
	r.persistMu.Lock()
	defer r.persistMu.Unlock()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, fi := range r.Files() {
		if err := enc.Encode(fi); err != nil {
			return fmt.Errorf("ring: encoding index entry %s: %w", fi.Name, err)
		}
	}
	path := filepath.Join(r.cfg.Dir, indexName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("ring: creating %s: %w", tmp, err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("ring: writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("ring: fsync of %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ring: closing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("ring: publishing index %s: %w", path, err)
	}
	return syncDir(r.cfg.Dir)
}

// isCapture reports whether a directory entry is a published capture file.
func isCapture(name string) bool {
	return !strings.HasPrefix(name, ".") && (strings.HasSuffix(name, ".pcap") || strings.HasSuffix(name, ".pcapng"))
}

// recoverParts publishes every file a crash left under its temporary name,
// cut back to its last whole record, so every packet that reached the disk
// is kept; one without a whole packet is removed.
func (r *Ring) recoverParts() error {
	entries, err := os.ReadDir(r.cfg.Dir)
	if err != nil {
		return fmt.Errorf("ring: listing data directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".part") {
			continue
		}
		final := strings.TrimSuffix(strings.TrimPrefix(name, "."), ".part")
		if err := r.recoverPart(name, final); err != nil {
			// One bad file must not keep the sensor from recording.
			r.log.Error("recovering half-written capture file failed; leaving it", zap.String("file", name), zap.Error(err))
		}
	}
	return nil
}

func (r *Ring) recoverPart(name, final string) error {
	path := filepath.Join(r.cfg.Dir, name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	res, scanErr := pcapio.Scan(f, st.Size())
	if res.Packets == 0 {
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("removing file without a whole packet: %w", err)
		}
		r.log.Info("removed half-written capture file without a whole packet", zap.String("file", name), zap.NamedError("scan", scanErr))
		return nil
	}
	if res.ValidBytes < st.Size() {
		if err := f.Truncate(res.ValidBytes); err != nil {
			return fmt.Errorf("truncating to %d bytes: %w", res.ValidBytes, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	if _, err := os.Lstat(filepath.Join(r.cfg.Dir, final)); err == nil {
		ext := filepath.Ext(final)
		final = strings.TrimSuffix(final, ext) + "-recovered-" + strconv.FormatInt(time.Now().UnixNano(), 10) + ext
	}
	if err := os.Rename(path, filepath.Join(r.cfg.Dir, final)); err != nil {
		return fmt.Errorf("publishing: %w", err)
	}
	if err := syncDir(r.cfg.Dir); err != nil {
		return err
	}
	r.log.Info("recovered half-written capture file",
		zap.String("file", final), zap.Uint64("packets", res.Packets),
		zap.Int64("bytes_cut", st.Size()-res.ValidBytes), zap.NamedError("scan", scanErr))
	return nil
}

// loadIndex reads index.jsonl and reconciles it with the directory: entries
// whose file is gone are dropped, files the index lacks are scanned in. A
// missing or damaged index is rebuilt from the files alone.
func (r *Ring) loadIndex() error {
	entries, err := os.ReadDir(r.cfg.Dir)
	if err != nil {
		return fmt.Errorf("ring: listing data directory: %w", err)
	}
	onDisk := map[string]os.DirEntry{}
	for _, e := range entries {
		if e.Type().IsRegular() && isCapture(e.Name()) {
			onDisk[e.Name()] = e
		}
	}
	indexed, err := readIndex(filepath.Join(r.cfg.Dir, indexName))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("index damaged; rebuilding it from the capture files", zap.Error(err))
		} else if len(onDisk) > 0 {
			r.log.Info("index missing; rebuilding it from the capture files")
		}
		indexed = nil
	}
	var files []FileInfo
	seen := map[string]bool{}
	var dropped, added int
	for _, fi := range indexed {
		if onDisk[fi.Name] == nil || seen[fi.Name] {
			dropped++
			continue
		}
		seen[fi.Name] = true
		files = append(files, fi)
	}
	for name := range onDisk {
		if seen[name] {
			continue
		}
		fi, err := r.scanFile(name)
		if err != nil {
			r.log.Warn("capture file unreadable; leaving it out of the index", zap.String("file", name), zap.Error(err))
			continue
		}
		files = append(files, fi)
		added++
	}
	if dropped > 0 || added > 0 {
		r.log.Info("index reconciled with the data directory", zap.Int("dropped_missing", dropped), zap.Int("added_scanned", added))
	}
	slices.SortFunc(files, func(a, b FileInfo) int {
		if a.First != b.First {
			return int(min(max(a.First-b.First, -1), 1))
		}
		return strings.Compare(a.Name, b.Name)
	})
	r.mu.Lock()
	r.files = files
	r.bytes = 0
	for _, f := range files {
		r.bytes += f.Bytes
		r.maxSpan = max(r.maxSpan, f.Last-f.First)
	}
	r.mu.Unlock()
	return nil
}

// readIndex parses index.jsonl; any damaged line fails the whole index,
// since a rebuild is cheap and a half-trusted index is not.
func readIndex(path string) ([]FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []FileInfo
	br := bufio.NewReader(f)
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if err == io.EOF && len(b) == 0 {
			return out, nil
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if err == io.EOF {
			return nil, fmt.Errorf("%s line %d: no final newline, the index was cut short", path, line)
		}
		var fi FileInfo
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fi); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		if fi.Name == "" || filepath.Base(fi.Name) != fi.Name || !isCapture(fi.Name) {
			return nil, fmt.Errorf("%s line %d: invalid file name %q", path, line, fi.Name)
		}
		out = append(out, fi)
	}
}

// scanFile builds an index entry from a file and its name. Drops are
// unknown for such files and reported as 0.
func (r *Ring) scanFile(name string) (FileInfo, error) {
	f, err := os.Open(filepath.Join(r.cfg.Dir, name))
	if err != nil {
		return FileInfo{}, fmt.Errorf("opening: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return FileInfo{}, fmt.Errorf("stat: %w", err)
	}
	res, err := pcapio.Scan(f, st.Size())
	if err != nil && res.Packets == 0 {
		return FileInfo{}, fmt.Errorf("scanning: %w", err)
	}
	fi := FileInfo{
		Name:      name,
		LinkType:  res.LinkType,
		Format:    res.Format,
		First:     res.FirstTS,
		Last:      res.LastTS,
		Packets:   res.Packets,
		Bytes:     st.Size(),
		WireBytes: res.WireBytes,
	}
	// <time>_<node>_<iface>_<worker>[-n].<ext>; sanitised parts hold no '_'.
	parts := strings.Split(strings.TrimSuffix(name, filepath.Ext(name)), "_")
	if len(parts) == 4 {
		fi.Node, fi.Interface = parts[1], parts[2]
		w, _, _ := strings.Cut(parts[3], "-")
		fi.Worker, _ = strconv.Atoi(w)
	}
	return fi, nil
}
