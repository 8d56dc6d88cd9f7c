package ring

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"
)

// Pinning: a Snapshot holds the published files that cover a time window
// out of retention until it expires or is removed. Pins live in pins.json in
// the data directory (rewritten whole through a temporary file and rename,
// like the index), so they survive a restart.
//
// Pinned files do not count against MaxBytes, MaxFiles, MaxAge or the
// free-space floor; they count against their own budget, PinMaxBytes, and a
// pin that would take the pinned total above it is refused. That way pins can
// never starve the ring: whatever is pinned, retention still has the
// unpinned bytes to work with.

const pinsName = "pins.json"

// Snapshot is one pin.
type Snapshot struct {
	ID      string    `json:"id"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Reason  string    `json:"reason"`
	Created time.Time `json:"created"`
	// Expires is when the pin lapses; zero means never (until Unpin).
	Expires time.Time `json:"expires,omitzero"`
	Files   []string  `json:"files"`
	// Bytes is the size of Files.
	Bytes int64 `json:"bytes"`
}

// Errors of Pin and Unpin.
var (
	ErrNoFiles    = errors.New("ring: no published capture file overlaps the window")
	ErrNoSnapshot = errors.New("ring: no such snapshot")
)

// PinBudgetError is returned by Pin when the pin would take the pinned bytes
// above the budget.
type PinBudgetError struct {
	Pinned int64 // bytes pinned now
	Adding int64 // bytes the new pin would add (files not pinned already)
	Budget int64 // PinMaxBytes in effect
}

func (e *PinBudgetError) Error() string {
	return fmt.Sprintf("ring: pin refused: %d bytes are pinned and this window adds %d, above the pin budget of %d bytes",
		e.Pinned, e.Adding, e.Budget)
}

// pinBudget is the pinned-bytes limit in effect, -1 for none. r.mu is held.
func (r *Ring) pinBudget() int64 {
	switch {
	case r.cfg.PinMaxBytes > 0:
		return r.cfg.PinMaxBytes
	case r.cfg.MaxBytes > 0:
		return r.cfg.MaxBytes / 10
	}
	return -1
}

// Pin pins the published files whose packets overlap [from, to) for ttl
// (0: until Unpin). Files still being written are not pinned: only what is
// published when Pin is called.
func (r *Ring) Pin(from, to time.Time, ttl time.Duration, reason string) (Snapshot, error) {
	if !from.Before(to) {
		return Snapshot{}, fmt.Errorf("ring: pin window from %s to %s is empty", from, to)
	}
	if ttl < 0 {
		return Snapshot{}, fmt.Errorf("ring: pin ttl %s is negative", ttl)
	}
	var idb [8]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return Snapshot{}, fmt.Errorf("ring: making a snapshot id: %w", err)
	}
	now := r.now()
	snap := Snapshot{ID: hex.EncodeToString(idb[:]), From: from.UTC(), To: to.UTC(), Reason: reason, Created: now.UTC(), Files: []string{}}
	if ttl > 0 {
		snap.Expires = now.Add(ttl).UTC()
	}
	r.mu.Lock()
	fromNs, toNs := from.UnixNano(), to.UnixNano()
	var adding int64
	for _, f := range r.files {
		if f.First >= toNs {
			break // sorted by First
		}
		if f.Last < fromNs {
			continue
		}
		snap.Files = append(snap.Files, f.Name)
		snap.Bytes += f.Bytes
		if r.pinned[f.Name] == 0 {
			adding += f.Bytes
		}
	}
	if len(snap.Files) == 0 {
		r.mu.Unlock()
		return Snapshot{}, ErrNoFiles
	}
	if b := r.pinBudget(); b >= 0 && r.pinnedBytes+adding > b {
		err := &PinBudgetError{Pinned: r.pinnedBytes, Adding: adding, Budget: b}
		r.mu.Unlock()
		return Snapshot{}, err
	}
	r.snapshots = append(r.snapshots, snap)
	r.pinLocked(snap, +1)
	r.mu.Unlock()
	if err := r.persistPins(); err != nil {
		// Not persisted means it would silently vanish at restart: undo.
		r.mu.Lock()
		r.removeSnapshotLocked(snap.ID)
		r.mu.Unlock()
		return Snapshot{}, err
	}
	r.log.Info("snapshot pinned", zap.String("id", snap.ID), zap.Int("files", len(snap.Files)), zap.Int64("bytes", snap.Bytes),
		zap.Time("from", snap.From), zap.Time("to", snap.To), zap.String("reason", reason), zap.Duration("ttl", ttl))
	return snap, nil
}

// Unpin removes a snapshot; its files are then subject to retention again.
func (r *Ring) Unpin(id string) error {
	r.mu.Lock()
	ok := r.removeSnapshotLocked(id)
	r.mu.Unlock()
	if !ok {
		return ErrNoSnapshot
	}
	if err := r.persistPins(); err != nil {
		return err
	}
	r.log.Info("snapshot unpinned", zap.String("id", id))
	r.enforce(r.now())
	return nil
}

// Snapshots returns the pins in effect, oldest first.
func (r *Ring) Snapshots() []Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Snapshot, len(r.snapshots))
	for i, s := range r.snapshots {
		s.Files = slices.Clone(s.Files)
		out[i] = s
	}
	return out
}

// PinnedFiles returns the names of the files some snapshot pins.
func (r *Ring) PinnedFiles() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]bool, len(r.pinned))
	for name := range r.pinned {
		out[name] = true
	}
	return out
}

// PinnedBytes returns the bytes pinned now and the budget (-1: none).
func (r *Ring) PinnedBytes() (pinned, budget int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pinnedBytes, r.pinBudget()
}

// pinLocked adds (delta +1) or removes (-1) one snapshot's references to
// its files and keeps pinnedBytes the size of the distinct pinned files
// still in the index. r.mu is held.
func (r *Ring) pinLocked(s Snapshot, delta int) {
	if r.pinned == nil {
		r.pinned = map[string]int{}
	}
	for _, name := range s.Files {
		before := r.pinned[name]
		after := before + delta
		if after <= 0 {
			delete(r.pinned, name)
		} else {
			r.pinned[name] = after
		}
		if (before == 0) != (after <= 0) {
			if i := r.indexOf(name); i >= 0 {
				r.pinnedBytes += int64(delta) * r.files[i].Bytes
				r.pinnedCount += delta
			}
		}
	}
}

// recountPinsLocked recomputes the pinned bytes and files from the index,
// so files that left it by any path (a file deleted under the ring's feet,
// say) stop counting against the budget and the limits. r.mu is held.
func (r *Ring) recountPinsLocked() {
	r.pinnedBytes, r.pinnedCount = 0, 0
	if len(r.pinned) == 0 {
		return
	}
	for i := range r.files {
		if r.pinned[r.files[i].Name] > 0 {
			r.pinnedBytes += r.files[i].Bytes
			r.pinnedCount++
		}
	}
}

func (r *Ring) indexOf(name string) int {
	for i := range r.files {
		if r.files[i].Name == name {
			return i
		}
	}
	return -1
}

func (r *Ring) removeSnapshotLocked(id string) bool {
	i := slices.IndexFunc(r.snapshots, func(s Snapshot) bool { return s.ID == id })
	if i < 0 {
		return false
	}
	r.pinLocked(r.snapshots[i], -1)
	r.snapshots = slices.Delete(r.snapshots, i, i+1)
	return true
}

// expireLocked drops the snapshots whose TTL has passed, reporting whether
// there were any. r.mu is held.
func (r *Ring) expireLocked(now time.Time) bool {
	var expired []string
	for _, s := range r.snapshots {
		if !s.Expires.IsZero() && !now.Before(s.Expires) {
			expired = append(expired, s.ID)
		}
	}
	for _, id := range expired {
		r.removeSnapshotLocked(id)
		r.log.Info("snapshot expired", zap.String("id", id))
	}
	return len(expired) > 0
}

// oldestUnpinned is the index of the oldest file retention may delete, -1
// when every file is pinned. r.mu is held.
func (r *Ring) oldestUnpinned() int {
	for i := range r.files {
		if r.pinned[r.files[i].Name] == 0 {
			return i
		}
	}
	return -1
}

// persistPins rewrites pins.json through a temporary file and rename.
func (r *Ring) persistPins() error {
	r.pinPersistMu.Lock()
	defer r.pinPersistMu.Unlock()
	snaps := r.Snapshots()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(snaps); err != nil {
		return fmt.Errorf("ring: encoding pins: %w", err)
	}
	path := filepath.Join(r.cfg.Dir, pinsName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o640); err != nil {
		return fmt.Errorf("ring: writing %s: %w", tmp, err)
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("ring: fsync of %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("ring: publishing %s: %w", path, err)
	}
	return syncDir(r.cfg.Dir)
}

// loadPins reads pins.json after the index is loaded. Files a pin names that
// are gone are dropped from it, and a pin left with none is dropped. A
// damaged pins.json is an error: silently forgetting pins could let
// retention delete evidence someone asked to keep.
func (r *Ring) loadPins() error {
	b, err := os.ReadFile(filepath.Join(r.cfg.Dir, pinsName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ring: reading %s: %w", pinsName, err)
	}
	var snaps []Snapshot
	if err := json.Unmarshal(b, &snaps); err != nil {
		return fmt.Errorf("ring: %s is damaged (%w): fix or remove it to start without pins", filepath.Join(r.cfg.Dir, pinsName), err)
	}
	r.mu.Lock()
	for _, s := range snaps {
		s.Files = slices.DeleteFunc(s.Files, func(n string) bool { return r.indexOf(n) < 0 })
		if len(s.Files) == 0 {
			continue
		}
		s.Bytes = 0
		for _, n := range s.Files {
			s.Bytes += r.files[r.indexOf(n)].Bytes
		}
		r.snapshots = append(r.snapshots, s)
		r.pinLocked(s, +1)
	}
	r.mu.Unlock()
	return nil
}
