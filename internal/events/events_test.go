package events

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/sonde-project/sonde/analysis/anomaly"
)

func ev(i int, end time.Time) anomaly.Event {
	return anomaly.Event{Kind: anomaly.PortScan, Start: end.Add(-10 * time.Second), End: end,
		Source: fmt.Sprintf("198.18.0.%d", i), Target: "198.18.0.2", Evidence: map[string]float64{"targets": 150}}
}

func readEvents(t *testing.T, path string) []anomaly.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []anomaly.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e anomaly.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// TestSinkHoldsUntilFilesArePublished: an event is written only once Delay
// has passed since its end, with the files then looked up; on shutdown
// the held ones are written at once.
func TestSinkHoldsUntilFilesArePublished(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DefaultFileName)
	var asked []time.Time
	s, err := New(Config{Path: path, Delay: time.Hour}, func(e anomaly.Event) []string {
		from, to := e.Start, e.End
		asked = append(asked, from, to)
		return []string{"a.pcap"}
	}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.Emit([]anomaly.Event{ev(1, now.Add(-2*time.Hour)), ev(2, now)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if w, _, _ := s.Stats(); w == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("old event not written")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := readEvents(t, path); len(got) != 1 || got[0].Source != "198.18.0.1" || len(got[0].Files) != 1 {
		t.Fatalf("events %+v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := readEvents(t, path); len(got) != 2 || got[1].Source != "198.18.0.2" {
		t.Fatalf("after shutdown: %+v", got)
	}
	if len(asked) != 4 || !asked[1].Equal(now.Add(-2*time.Hour)) {
		t.Errorf("lookups %v", asked)
	}
}

func TestSinkRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DefaultFileName)
	s, err := New(Config{Path: path, MaxBytes: 1000, MaxFiles: 2}, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		s.write(ev(i, time.Unix(1e9, 0)))
	}
	s.f.Close()
	var total int
	for _, p := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 1000 {
			t.Errorf("%s: %d bytes", p, st.Size())
		}
		total += len(readEvents(t, p))
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("more than MaxFiles rotated files")
	}
	last := readEvents(t, path)
	if total == 0 || total >= 100 || last[len(last)-1].Source != "198.18.0.99" {
		t.Errorf("%d events kept, last %+v", total, last[len(last)-1])
	}
}

func TestEmitNeverBlocks(t *testing.T) {
	s, err := New(Config{Path: filepath.Join(t.TempDir(), "e.jsonl"), Queue: 2}, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	s.Emit([]anomaly.Event{ev(1, time.Now()), ev(2, time.Now()), ev(3, time.Now())})
	if _, dropped, _ := s.Stats(); dropped != 1 {
		t.Errorf("dropped %d, want 1", dropped)
	}
}
