package ring

import (
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// fakeOffload marks chosen files uploaded and records what it is told.
type fakeOffload struct {
	mu        sync.Mutex
	uploaded  map[string]bool
	published []string
	evicted   []evicted
}

func (f *fakeOffload) Uploaded(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.uploaded[name]
}

func (f *fakeOffload) Published(fi FileInfo) {
	f.mu.Lock()
	f.published = append(f.published, fi.Name)
	f.mu.Unlock()
}

func (f *fakeOffload) Evicted(fi FileInfo, reason EvictReason, uploaded bool) {
	f.mu.Lock()
	f.evicted = append(f.evicted, evicted{fi: fi, reason: reason, uploaded: uploaded})
	f.mu.Unlock()
}

func (f *fakeOffload) mark(names ...string) {
	f.mu.Lock()
	for _, n := range names {
		f.uploaded[n] = true
	}
	f.mu.Unlock()
}

func (f *fakeOffload) gone() (names []string, lost []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.evicted {
		names = append(names, e.fi.Name)
		if !e.uploaded {
			lost = append(lost, e.fi.Name)
		}
	}
	return names, lost
}

// TestOffloadGate: with offload, the count and age limits delete only
// uploaded files and otherwise wait; the byte budget deletes uploaded files
// first and then the oldest ones that are not, reported as lost.
func TestOffloadGate(t *testing.T) {
	end := time.Now().Truncate(time.Second).UnixNano()
	dir := t.TempDir()
	writeFiles(t, Config{Dir: dir}, 10, end)
	base, err := Open(Config{Dir: dir, FileMaxDuration: time.Second}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	all := names(base.Files())
	var fileBytes int64
	for _, f := range base.Files() {
		fileBytes = max(fileBytes, f.Bytes)
	}

	cases := []struct {
		name     string
		cfg      Config
		uploaded []string
		kept     []string // by name, after the first enforce
		lost     []string
		then     []string // marked uploaded next
		keptThen []string
	}{
		{"max_files waits for upload", Config{MaxFiles: 4}, all[:3],
			all[3:], nil, all[3:6], all[6:]},
		{"max_age waits for upload", Config{MaxAge: 5500 * time.Millisecond}, all[1:2],
			slices.Concat(all[:1], all[2:]), nil, all[:5], all[4:]},
		{"max_bytes evicts uploaded first, then loses the oldest", Config{MaxBytes: 4 * fileBytes}, all[5:7],
			slices.Concat(all[7:], all[4:5]), all[:4], nil, slices.Concat(all[7:], all[4:5])},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := t.TempDir()
			copyDir(t, dir, d)
			off := &fakeOffload{uploaded: map[string]bool{}}
			off.mark(c.uploaded...)
			clk := &clock{t: time.Unix(0, end)}
			c.cfg.Dir, c.cfg.FileMaxDuration, c.cfg.Now, c.cfg.Offload = d, time.Second, clk.now, off
			r, err := Open(c.cfg, zaptest.NewLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			sameNames(t, "kept", names(r.Files()), c.kept)
			_, lost := off.gone()
			sameNames(t, "lost", lost, c.lost)
			off.mark(c.then...)
			r.enforce(clk.now())
			sameNames(t, "kept after more uploads", names(r.Files()), c.keptThen)
			gone, lost := off.gone()
			sameNames(t, "lost after more uploads", lost, c.lost)
			if len(gone)+len(c.keptThen) != len(all) {
				t.Fatalf("%d evictions reported and %d files kept, want %d in all", len(gone), len(c.keptThen), len(all))
			}
		})
	}
}

func sameNames(t *testing.T, what string, got, want []string) {
	t.Helper()
	got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Fatalf("%s: %q, want %q", what, got, want)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}
