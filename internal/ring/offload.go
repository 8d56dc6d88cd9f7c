package ring

import "time"

// Offload is told what the ring publishes and deletes, and says which files
// have a safe copy elsewhere (object storage). With one set (Config.Offload),
// retention changes in one way: the count and age limits (MaxFiles, MaxAge)
// only delete files that are uploaded, so the ring holds the rest until the
// upload catches up; the byte limits (MaxBytes, the free-space floor and a
// full disk) still delete, uploaded files first, and only then the oldest
// file that is not uploaded, which Evicted reports as not uploaded: that
// data is lost.
//
// Uploaded is called with the ring's lock held: it must be cheap and must
// not call back into the ring. Published and Evicted are called without it,
// after the index has changed.
type Offload interface {
	Uploaded(name string) bool
	Published(fi FileInfo)
	Evicted(fi FileInfo, reason EvictReason, uploaded bool)
}

// uploadedLocked reports whether files[i] may go without losing data.
// Without offload every file may. r.mu is held.
func (r *Ring) uploadedLocked(i int) bool {
	return r.cfg.Offload == nil || r.cfg.Offload.Uploaded(r.files[i].Name)
}

// budgetVictim is the file the byte limits delete next: the oldest unpinned
// file that is uploaded, else the oldest unpinned file; -1 when all are
// pinned. r.mu is held.
func (r *Ring) budgetVictim() int {
	if r.cfg.Offload != nil {
		for i := range r.files {
			if r.pinned[r.files[i].Name] == 0 && r.uploadedLocked(i) {
				return i
			}
		}
	}
	return r.oldestUnpinned()
}

// ageVictim is the oldest unpinned, uploaded file whose last packet is
// before cut (unix ns), -1 if none. Files are sorted by first packet, so the
// scan stops at the first file that starts at or after cut.
func (r *Ring) ageVictim(cut int64) int {
	for i := range r.files {
		f := &r.files[i]
		if f.First >= cut {
			break
		}
		if f.Last < cut && r.pinned[f.Name] == 0 && r.uploadedLocked(i) {
			return i
		}
	}
	return -1
}

// victimLocked picks the file retention deletes next and why: -1 when no
// limit is exceeded or the limit that is may not delete anything now.
// Pinned files count against the pin budget, not these limits. r.mu is
// held.
func (r *Ring) victimLocked(now time.Time) (int, EvictReason) {
	if r.oldestUnpinned() < 0 {
		return -1, ""
	}
	c := &r.cfg
	if c.MaxBytes > 0 && r.bytes-r.pinnedBytes > c.MaxBytes {
		return r.budgetVictim(), EvictMaxBytes
	}
	if c.MaxFiles > 0 && len(r.files)-r.pinnedCount > c.MaxFiles {
		if i := r.ageVictim(int64(^uint64(0) >> 1)); i >= 0 {
			return i, EvictMaxFiles
		}
	}
	if c.MaxAge > 0 {
		if i := r.ageVictim(now.Add(-c.MaxAge).UnixNano()); i >= 0 {
			return i, EvictMaxAge
		}
	}
	if c.MinFreePercent > 0 {
		free, total, err := r.statfs()
		if err == nil && total > 0 && float64(free)*100/float64(total) < c.MinFreePercent {
			return r.budgetVictim(), EvictMinFree
		}
	}
	return -1, ""
}

// evicted is one deletion to report to Offload once r.mu is released.
type evicted struct {
	fi       FileInfo
	reason   EvictReason
	uploaded bool
}

func (r *Ring) notifyEvicted(ev []evicted) {
	if r.cfg.Offload == nil {
		return
	}
	for _, e := range ev {
		r.cfg.Offload.Evicted(e.fi, e.reason, e.uploaded)
	}
}
