package exporter

// These mirror the statistics types of internal/ring, which is being written
// alongside this package; they are replaced by ring.Stats and
// ring.StreamStats once it builds.

// RingStats are totals over the data directory.
type RingStats struct {
	Files                      int
	Bytes                      int64
	OldestPacket, NewestPacket int64 // unix ns, 0 if empty
	WriteErrors                uint64
	Evictions                  []Eviction
	FreeBytes, TotalBytes      uint64
}

// EvictReason says why files were evicted.
type EvictReason string

// Eviction counts files evicted for one reason since start.
type Eviction struct {
	Reason                EvictReason
	Files, Bytes, Packets uint64
}

// StreamStats are one writer stream's counters.
type StreamStats struct {
	Interface                       string
	Worker                          int
	Packets, Bytes                  uint64
	Files                           uint64
	DropsQueueFull, DropsWriteError uint64
}
