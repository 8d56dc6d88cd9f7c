package offload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sonde-project/sonde/internal/ring"
)

// Kinds of uploaded objects.
const (
	KindFile     = ""         // a ring file (and its index entry, as a sidecar)
	KindSnapshot = "snapshot" // a pin's manifest
	KindReport   = "report"   // a report artifact (JSON, HTML, CSV)
)

// Entry is one uploaded object: what the catalog records and, for ring
// files, what the sidecar object next to it holds.
type Entry struct {
	Kind string `json:"kind,omitempty"`
	// Name is the ring file's name, the snapshot's ID or the report file's
	// name.
	Name string `json:"name"`
	Key  string `json:"key"`
	// StoredBytes and SHA256 (hex) describe the object as stored, after
	// compression; RawSHA256 the file as it was on disk.
	StoredBytes int64     `json:"stored_bytes"`
	SHA256      string    `json:"sha256"`
	RawSHA256   string    `json:"raw_sha256,omitempty"`
	Compression string    `json:"compression,omitempty"`
	Uploaded    time.Time `json:"uploaded"`
	// File is the ring's index entry of a ring file.
	File *ring.FileInfo `json:"file,omitempty"`
	// Deleted marks a catalog line that removes the object (remote
	// retention deleted it); only Kind, Name and Key are set.
	Deleted bool `json:"deleted,omitempty"`
}

const catalogName = "catalog.jsonl"

// catalog is the persistent record of what is uploaded: an append-only
// JSON-lines file in the offload directory, one line per upload, fsynced
// before the upload counts. Nothing else is persisted: whatever the ring's
// index (or pins, or reports directory) holds that the catalog lacks is
// pending, so a restart or a crash at any point loses nothing: at worst an
// object whose line was not yet written is uploaded again, to the same key
// with the same bytes.
type catalog struct {
	path string

	mu      sync.RWMutex
	entries map[string]Entry // by kind/name
	files   []ring.FileInfo  // ring files, sorted by First then Name
	maxSpan int64
	writeMu sync.Mutex // serialises appends to f and compaction
	f       *os.File   // append handle
	lines   int        // lines in the file; those beyond len(entries) are dead
}

func catalogKey(kind, name string) string { return kind + "/" + name }

// openCatalog loads dir/catalog.jsonl. A damaged last line (a crash while
// appending) is dropped: that upload is simply done again. Any other
// damaged line is an error, since a half-trusted catalog could let
// retention delete a file that is not in the store.
func openCatalog(dir string) (*catalog, int, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, 0, fmt.Errorf("offload: creating %s: %w", dir, err)
	}
	c := &catalog{path: filepath.Join(dir, catalogName), entries: map[string]Entry{}}
	b, err := os.ReadFile(c.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, 0, fmt.Errorf("offload: reading %s: %w", c.path, err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	torn := 0
	var order []string
	for i, line := range lines {
		if len(line) == 0 {
			continue
		}
		var e Entry
		err := json.Unmarshal(line, &e)
		if err == nil && (e.Name == "" || e.Key == "" || (e.Kind == KindFile && e.File == nil && !e.Deleted)) {
			err = errors.New("entry without name, key or file")
		}
		if err != nil || !bytes.HasSuffix(line, []byte("\n")) {
			if i == len(lines)-1 {
				torn++
				continue
			}
			return nil, 0, fmt.Errorf("offload: %s line %d is damaged (%v): fix or remove it (the store then gets everything again)", c.path, i+1, err)
		}
		k := catalogKey(e.Kind, e.Name)
		if e.Deleted {
			delete(c.entries, k)
			continue
		}
		if _, ok := c.entries[k]; !ok {
			order = append(order, k)
		}
		c.entries[k] = e
	}
	order = slices.DeleteFunc(order, func(k string) bool { _, ok := c.entries[k]; return !ok })
	c.lines = bytes.Count(b, []byte("\n"))
	// Rewrite a torn line away, and compact when dead lines (replaced or
	// deleted entries, and the deletions) outnumber live ones.
	if torn > 0 || c.lines-len(c.entries) > len(c.entries) {
		if err := c.rewrite(order); err != nil {
			return nil, 0, err
		}
	}
	for _, e := range c.entries {
		if e.Kind == KindFile {
			c.files = append(c.files, *e.File)
			c.maxSpan = max(c.maxSpan, e.File.Last-e.File.First)
		}
	}
	sortFiles(c.files)
	c.f, err = os.OpenFile(c.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, fmt.Errorf("offload: opening %s: %w", c.path, err)
	}
	return c, torn, nil
}

// rewrite replaces the file with one line per live entry, in order (all of
// them when order is nil): a temporary file, fsync, rename, fsync of the
// directory, so a crash leaves the old file or the new one, whole. It
// does not touch f.
func (c *catalog) rewrite(order []string) error {
	if order == nil {
		for k := range c.entries {
			order = append(order, k)
		}
		slices.Sort(order)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, k := range order {
		if err := enc.Encode(c.entries[k]); err != nil {
			return err
		}
	}
	if err := writeAtomic(c.path, buf.Bytes()); err != nil {
		return err
	}
	c.lines = len(order)
	return nil
}

// remove records the deletion of uploaded objects durably (one line each,
// fsynced), drops them, and compacts the file when its dead lines outnumber
// the live ones. It reports whether it compacted.
func (c *catalog) remove(es []Entry) (compacted bool, err error) {
	if len(es) == 0 {
		return false, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range es {
		if err := enc.Encode(Entry{Kind: e.Kind, Name: e.Name, Key: e.Key, Deleted: true}); err != nil {
			return false, err
		}
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if _, err := c.f.Write(buf.Bytes()); err != nil {
		return false, fmt.Errorf("offload: appending to %s: %w", c.path, err)
	}
	if err := c.f.Sync(); err != nil {
		return false, fmt.Errorf("offload: fsync of %s: %w", c.path, err)
	}
	c.lines += len(es)
	c.mu.Lock()
	gone := map[string]bool{}
	for _, e := range es {
		k := catalogKey(e.Kind, e.Name)
		if _, ok := c.entries[k]; ok && e.Kind == KindFile {
			gone[e.Name] = true
		}
		delete(c.entries, k)
	}
	c.files = slices.DeleteFunc(c.files, func(f ring.FileInfo) bool { return gone[f.Name] })
	live := len(c.entries)
	c.mu.Unlock()
	if c.lines-live <= live {
		return false, nil
	}
	// Compact. Appends wait on writeMu; readers go on from memory.
	c.mu.RLock()
	err = c.rewrite(nil)
	c.mu.RUnlock()
	if err != nil {
		return false, err
	}
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return true, fmt.Errorf("offload: opening %s: %w", c.path, err)
	}
	c.f.Close()
	c.f = f
	return true, nil
}

func sortFiles(files []ring.FileInfo) {
	slices.SortFunc(files, func(a, b ring.FileInfo) int {
		if a.First != b.First {
			return int(min(max(a.First-b.First, -1), 1))
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// add records an upload durably: the line is written and fsynced before
// add returns, and only then does the entry count as uploaded.
func (c *catalog) add(e Entry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("offload: encoding catalog entry %s: %w", e.Name, err)
	}
	line = append(line, '\n')
	// The append and fsync run outside mu: readers (the ring's retention
	// among them) never wait for the disk.
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if _, err := c.f.Write(line); err != nil {
		return fmt.Errorf("offload: appending to %s: %w", c.path, err)
	}
	if err := c.f.Sync(); err != nil {
		return fmt.Errorf("offload: fsync of %s: %w", c.path, err)
	}
	c.lines++
	c.mu.Lock()
	defer c.mu.Unlock()
	k := catalogKey(e.Kind, e.Name)
	_, had := c.entries[k]
	c.entries[k] = e
	if e.Kind == KindFile && !had {
		i := sort.Search(len(c.files), func(i int) bool {
			return c.files[i].First > e.File.First || c.files[i].First == e.File.First && c.files[i].Name > e.Name
		})
		c.files = slices.Insert(c.files, i, *e.File)
		c.maxSpan = max(c.maxSpan, e.File.Last-e.File.First)
	}
	return nil
}

func (c *catalog) lookup(kind, name string) (Entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.entries[catalogKey(kind, name)]
	return e, ok
}

func (c *catalog) has(kind, name string) bool {
	_, ok := c.lookup(kind, name)
	return ok
}

// window returns the uploaded ring files holding packets in [from, to),
// by the same two binary searches as ring.Window.
func (c *catalog) window(from, to int64) []ring.FileInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	lo := sort.Search(len(c.files), func(i int) bool { return c.files[i].First >= from-c.maxSpan })
	hi := sort.Search(len(c.files), func(i int) bool { return c.files[i].First >= to })
	var out []ring.FileInfo
	for _, f := range c.files[lo:max(lo, hi)] {
		if f.Last >= from {
			out = append(out, f)
		}
	}
	return out
}

func (c *catalog) allFiles() []ring.FileInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.files)
}

func (c *catalog) count() (files int, bytes int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, e := range c.entries {
		files++
		bytes += e.StoredBytes
	}
	return files, bytes
}

func (c *catalog) close() error { return c.f.Close() }

// writeAtomic writes path through a temporary file, fsync and rename.
func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("offload: creating %s: %w", tmp, err)
	}
	_, err = io.Copy(f, bytes.NewReader(b))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("offload: writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("offload: replacing %s: %w", path, err)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
