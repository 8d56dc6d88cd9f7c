package exporter

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// Drop reasons of sonde_capture_user_drops_total.
const (
	dropQueueFull  = "queue_full"
	dropWriteError = "write_error"
)

// RingCollector exports the capture file ring: per-interface writer counters
// summed over workers, totals over the data directory, and the data volume.
type RingCollector struct {
	src RingSource

	userDrops, written, writtenBytes, published             *prometheus.Desc
	files, bytes, oldest, newest, writeErrors, vanished     *prometheus.Desc
	evictedFiles, evictedBytes, evictedPackets, free, total *prometheus.Desc
}

// NewRingCollector returns a collector reading src at scrape time.
func NewRingCollector(src RingSource) *RingCollector {
	d := func(sub, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, sub, name), help, labels, nil)
	}
	return &RingCollector{
		src:            src,
		userDrops:      d("capture", "user_drops_total", "Packets sonde read but could not write, by reason: queue_full (the disk writer fell behind) or write_error.", "interface", "reason"),
		written:        d("ring", "written_packets_total", "Packets written to capture files.", "interface"),
		writtenBytes:   d("ring", "written_bytes_total", "Captured bytes written to capture files.", "interface"),
		published:      d("ring", "files_published_total", "Capture files completed and published in the ring.", "interface"),
		files:          d("ring", "files", "Capture files in the ring."),
		bytes:          d("ring", "bytes", "Bytes of the capture files in the ring."),
		oldest:         d("ring", "oldest_packet_timestamp_seconds", "Time of the oldest packet in the ring, 0 when it is empty."),
		newest:         d("ring", "newest_packet_timestamp_seconds", "Time of the newest packet in the ring, 0 when it is empty."),
		writeErrors:    d("ring", "write_errors_total", "Failed writes, syncs or renames of capture files."),
		vanished:       d("ring", "files_vanished_total", "Published capture files deleted by something other than sonde, dropped from the index."),
		evictedFiles:   d("ring", "evicted_files_total", "Capture files deleted to respect a ring limit, by limit.", "reason"),
		evictedBytes:   d("ring", "evicted_bytes_total", "Bytes of capture files deleted to respect a ring limit, by limit.", "reason"),
		evictedPackets: d("ring", "evicted_packets_total", "Packets in capture files deleted to respect a ring limit, by limit.", "reason"),
		free:           d("data_volume", "free_bytes", "Bytes available to sonde on the volume of the data directory."),
		total:          d("data_volume", "size_bytes", "Size of the volume of the data directory in bytes."),
	}
}

// Describe implements prometheus.Collector.
func (c *RingCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.userDrops, c.written, c.writtenBytes, c.published,
		c.files, c.bytes, c.oldest, c.newest, c.writeErrors, c.vanished,
		c.evictedFiles, c.evictedBytes, c.evictedPackets, c.free, c.total,
	} {
		ch <- d
	}
}

type ifaceTotals struct {
	packets, bytes, files, dropsQueueFull, dropsWriteError uint64
}

// Collect implements prometheus.Collector.
func (c *RingCollector) Collect(ch chan<- prometheus.Metric) {
	// Workers are an implementation detail; the labels stay per interface.
	byIface := make(map[string]*ifaceTotals)
	var names []string
	for _, s := range c.src.StreamStats() {
		t, ok := byIface[s.Interface]
		if !ok {
			t = &ifaceTotals{}
			byIface[s.Interface] = t
			names = append(names, s.Interface)
		}
		t.packets += s.Packets
		t.bytes += s.Bytes
		t.files += s.Files
		t.dropsQueueFull += s.DropsQueueFull
		t.dropsWriteError += s.DropsWriteError
	}
	sort.Strings(names)
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, name := range names {
		t := byIface[name]
		counter(c.userDrops, t.dropsQueueFull, name, dropQueueFull)
		counter(c.userDrops, t.dropsWriteError, name, dropWriteError)
		counter(c.written, t.packets, name)
		counter(c.writtenBytes, t.bytes, name)
		counter(c.published, t.files, name)
	}

	st := c.src.Stats()
	gauge(c.files, float64(st.Files))
	gauge(c.bytes, float64(st.Bytes))
	gauge(c.oldest, nanosToSeconds(st.OldestPacket))
	gauge(c.newest, nanosToSeconds(st.NewestPacket))
	counter(c.writeErrors, st.WriteErrors)
	counter(c.vanished, st.Vanished)
	// Sum by reason, so a source listing a reason twice cannot make the
	// scrape fail with duplicate series.
	evict := make(map[EvictReason]*Eviction)
	var reasons []string
	for _, e := range st.Evictions {
		t, ok := evict[e.Reason]
		if !ok {
			t = &Eviction{Reason: e.Reason}
			evict[e.Reason] = t
			reasons = append(reasons, string(e.Reason))
		}
		t.Files += e.Files
		t.Bytes += e.Bytes
		t.Packets += e.Packets
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		e := evict[EvictReason(r)]
		counter(c.evictedFiles, e.Files, r)
		counter(c.evictedBytes, e.Bytes, r)
		counter(c.evictedPackets, e.Packets, r)
	}
	gauge(c.free, float64(st.FreeBytes))
	gauge(c.total, float64(st.TotalBytes))
}

func nanosToSeconds(ns int64) float64 {
	return float64(ns) / 1e9
}
