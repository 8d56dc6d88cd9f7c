package ring

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

func names(files []FileInfo) []string {
	out := make([]string, len(files))
	for i, f := range files {
		out[i] = f.Name
	}
	return out
}

// pinRing writes 10 one-second files ending at end and reopens the ring on
// a settable clock.
func pinRing(t *testing.T, cfg Config, end int64) (*Ring, *clock) {
	t.Helper()
	cfg.Dir = t.TempDir()
	writeFiles(t, cfg, 10, end)
	clk := &clock{t: time.Unix(0, end)}
	cfg.Now = clk.now
	cfg.FileMaxDuration = time.Second
	r, err := Open(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.Files()); n != 10 {
		t.Fatalf("%d files, want 10", n)
	}
	return r, clk
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func reopen(t *testing.T, r *Ring) *Ring {
	t.Helper()
	r2, err := Open(r.cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return r2
}

func TestPinSurvivesRetentionAndRestart(t *testing.T) {
	end := time.Now().Truncate(time.Second).UnixNano()
	r, _ := pinRing(t, Config{}, end)
	all := r.Files()
	// Files i cover [end-(10-i)s, end-(9-i)s); pin files 2, 3 and 4.
	from := time.Unix(0, all[2].First)
	to := time.Unix(0, all[4].Last+1)
	snap, err := r.Pin(from, to, 0, "incident 42")
	if err != nil {
		t.Fatal(err)
	}
	want := names(all[2:5])
	if !slices.Equal(snap.Files, want) {
		t.Fatalf("pinned %v, want %v", snap.Files, want)
	}
	if snap.Bytes != all[2].Bytes+all[3].Bytes+all[4].Bytes {
		t.Fatalf("snapshot bytes %d", snap.Bytes)
	}

	if err := r.SetRetention(Retention{MaxFiles: 2}); err != nil {
		t.Fatal(err)
	}
	got := names(r.Files())
	if wantLeft := append(slices.Clone(want), names(all[8:])...); !slices.Equal(got, wantLeft) {
		t.Fatalf("after MaxFiles 2: %v, want the 3 pinned and the 2 newest %v", got, wantLeft)
	}
	pinned := r.PinnedFiles()
	if len(pinned) != 3 || !pinned[all[3].Name] {
		t.Fatalf("PinnedFiles %v", pinned)
	}

	// A restart keeps the pin: retention still spares the files.
	r2 := reopen(t, r)
	if err := r2.SetRetention(Retention{MaxFiles: 1}); err != nil {
		t.Fatal(err)
	}
	if got := names(r2.Files()); !slices.Equal(got, append(slices.Clone(want), all[9].Name)) {
		t.Fatalf("after restart and MaxFiles 1: %v", got)
	}
	snaps := r2.Snapshots()
	if len(snaps) != 1 || snaps[0].ID != snap.ID || snaps[0].Reason != "incident 42" || !slices.Equal(snaps[0].Files, want) {
		t.Fatalf("snapshots after restart: %+v", snaps)
	}

	// Unpinning hands the files back to retention at once.
	if err := r2.Unpin(snap.ID); err != nil {
		t.Fatal(err)
	}
	if got := names(r2.Files()); !slices.Equal(got, []string{all[9].Name}) {
		t.Fatalf("after unpin: %v", got)
	}
	if err := r2.Unpin(snap.ID); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("second Unpin: %v, want ErrNoSnapshot", err)
	}
	if p, _ := r2.PinnedBytes(); p != 0 {
		t.Fatalf("pinned bytes %d after unpin", p)
	}
}

func TestPinBudget(t *testing.T) {
	end := time.Now().Truncate(time.Second).UnixNano()
	r, _ := pinRing(t, Config{}, end)
	all := r.Files()
	r.cfg.PinMaxBytes = all[0].Bytes + all[1].Bytes + all[2].Bytes/2

	if _, err := r.Pin(time.Unix(0, all[0].First), time.Unix(0, all[1].Last+1), 0, "a"); err != nil {
		t.Fatalf("pin of two files within budget: %v", err)
	}
	// Overlapping pins count a file once: re-pinning file 1 costs nothing.
	if _, err := r.Pin(time.Unix(0, all[1].First), time.Unix(0, all[1].Last), 0, "b"); err != nil {
		t.Fatalf("pin of an already pinned file: %v", err)
	}
	_, err := r.Pin(time.Unix(0, all[2].First), time.Unix(0, all[2].Last), 0, "c")
	var be *PinBudgetError
	if !errors.As(err, &be) {
		t.Fatalf("pin above budget: %v, want PinBudgetError", err)
	}
	if be.Pinned != all[0].Bytes+all[1].Bytes || be.Adding != all[2].Bytes || be.Budget != r.cfg.PinMaxBytes {
		t.Fatalf("budget error %+v", be)
	}
	if n := len(r.Snapshots()); n != 2 {
		t.Fatalf("%d snapshots, want the refused one absent", n)
	}

	// Default budget: a tenth of MaxBytes.
	r.cfg.PinMaxBytes, r.cfg.MaxBytes = 0, 1000
	if _, b := r.PinnedBytes(); b != 100 {
		t.Fatalf("default budget %d, want 100", b)
	}
}

func TestPinTTL(t *testing.T) {
	end := time.Now().Truncate(time.Second).UnixNano()
	r, clk := pinRing(t, Config{}, end)
	all := r.Files()
	snap, err := r.Pin(time.Unix(0, all[0].First), time.Unix(0, all[0].Last+1), time.Minute, "ttl")
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Expires.Equal(clk.now().Add(time.Minute)) {
		t.Fatalf("expires %v", snap.Expires)
	}
	if err := r.SetRetention(Retention{MaxFiles: 5}); err != nil {
		t.Fatal(err)
	}
	if got := names(r.Files()); got[0] != all[0].Name || len(got) != 6 {
		t.Fatalf("before expiry: %v", got)
	}
	clk.add(time.Minute)
	r.enforce(clk.now())
	if got := names(r.Files()); !slices.Equal(got, names(all[5:])) {
		t.Fatalf("after expiry: %v", got)
	}
	if n := len(r.Snapshots()); n != 0 {
		t.Fatalf("%d snapshots after expiry", n)
	}
	// The expiry is persisted: a restart does not bring the pin back.
	if n := len(reopen(t, r).Snapshots()); n != 0 {
		t.Fatalf("%d snapshots after restart", n)
	}
}

func TestPinErrors(t *testing.T) {
	end := time.Now().Truncate(time.Second).UnixNano()
	r, _ := pinRing(t, Config{}, end)
	if _, err := r.Pin(time.Unix(0, end+int64(time.Hour)), time.Unix(0, end+2*int64(time.Hour)), 0, ""); !errors.Is(err, ErrNoFiles) {
		t.Fatalf("pin of an empty window: %v, want ErrNoFiles", err)
	}
	if _, err := r.Pin(time.Unix(0, end), time.Unix(0, end-1), 0, ""); err == nil {
		t.Fatal("reversed window accepted")
	}
	if _, err := r.Pin(time.Unix(0, end-int64(time.Second)), time.Unix(0, end), -time.Second, ""); err == nil {
		t.Fatal("negative ttl accepted")
	}
	// A damaged pins.json stops Open rather than dropping pins silently.
	if err := os.WriteFile(filepath.Join(r.cfg.Dir, pinsName), []byte("{"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(r.cfg, zaptest.NewLogger(t)); err == nil {
		t.Fatal("Open accepted a damaged pins.json")
	}
}

// TestPinDiskFullSkipsPinned: the disk-full path evicts only unpinned files.
func TestPinDiskFullSkipsPinned(t *testing.T) {
	end := time.Now().Truncate(time.Second).UnixNano()
	r, _ := pinRing(t, Config{}, end)
	all := r.Files()
	if _, err := r.Pin(time.Unix(0, all[0].First), time.Unix(0, all[9].Last+1), 0, "all"); err != nil {
		t.Fatal(err)
	}
	if r.evictOldest(EvictDiskFull) {
		t.Fatal("evictOldest deleted a pinned file")
	}
	if n := len(r.Files()); n != 10 {
		t.Fatalf("%d files", n)
	}
}
