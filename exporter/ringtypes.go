package exporter

import "github.com/sonde-project/sonde/internal/ring"

// The ring's statistics types, under the names this package's interfaces
// use; *ring.Ring satisfies RingSource directly.
type (
	RingStats   = ring.Stats
	StreamStats = ring.StreamStats
	Eviction    = ring.Eviction
	EvictReason = ring.EvictReason
)

var _ RingSource = (*ring.Ring)(nil)
