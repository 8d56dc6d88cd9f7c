package offload

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics is the offload collector: counters kept here, queue gauges read
// from the Offloader at scrape time.
type metrics struct {
	o              *Offloader
	uploads        *prometheus.CounterVec
	uploadedBytes  prometheus.Counter
	failures       *prometheus.CounterVec
	seconds        prometheus.Histogram
	lostFiles      prometheus.Counter
	lostBytes      prometheus.Counter
	remoteReads    prometheus.Counter
	expiredFiles   prometheus.Counter
	expiredBytes   prometheus.Counter
	deleteFailures *prometheus.CounterVec
	compactions    prometheus.Counter
	rebuiltFiles   prometheus.Gauge
	rebuiltBytes   prometheus.Gauge
	rebuildSkipped prometheus.Gauge

	queueFiles, queueBytes, oldest, catalogObjects, catalogBytes *prometheus.Desc
}

func newMetrics(o *Offloader) *metrics {
	m := &metrics{
		o: o,
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sonde_offload_uploads_total",
			Help: "Objects uploaded to object storage, by kind (file, snapshot, report)."}, []string{"kind"}),
		uploadedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "sonde_offload_uploaded_bytes_total",
			Help: "Bytes uploaded to object storage (after compression)."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sonde_offload_failures_total",
			Help: "Failed uploads, by reason (network, auth, checksum, bucket, local, other); each is retried."}, []string{"reason"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sonde_offload_upload_seconds",
			Help: "Time to upload one object (and its sidecar), successful uploads only.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 12)}),
		lostFiles: prometheus.NewCounter(prometheus.CounterOpts{Name: "sonde_offload_lost_files_total",
			Help: "Capture files deleted locally (byte budget, free-space floor, full disk, or by hand) before they were uploaded."}),
		lostBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "sonde_offload_lost_bytes_total",
			Help: "Bytes of the capture files in sonde_offload_lost_files_total."}),
		remoteReads: prometheus.NewCounter(prometheus.CounterOpts{Name: "sonde_offload_remote_reads_total",
			Help: "Capture files read back from object storage for a window local disk no longer holds."}),
		expiredFiles: prometheus.NewCounter(prometheus.CounterOpts{Name: "sonde_offload_expired_files_total",
			Help: "Capture files deleted from object storage (object and sidecar) by --s3-max-age."}),
		expiredBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "sonde_offload_expired_bytes_total",
			Help: "Stored bytes of the capture files in sonde_offload_expired_files_total."}),
		deleteFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sonde_offload_delete_failures_total",
			Help: "Failed deletions of expired objects, by reason; each is tried again at the next pass."}, []string{"reason"}),
		compactions: prometheus.NewCounter(prometheus.CounterOpts{Name: "sonde_offload_catalog_compactions_total",
			Help: "Rewrites of catalog.jsonl without its dead lines, done when they outnumber the live ones."}),
		rebuiltFiles: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sonde_offload_catalog_rebuilt_files",
			Help: "Capture files recovered from the store's sidecars when this process rebuilt a missing catalog.jsonl; 0 when it did not."}),
		rebuiltBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sonde_offload_catalog_rebuilt_bytes",
			Help: "Stored bytes of sonde_offload_catalog_rebuilt_files."}),
		rebuildSkipped: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sonde_offload_catalog_rebuild_skipped_sidecars",
			Help: "Sidecars skipped by the catalog rebuild as not valid index entries (each logged with its key); their files are not listed."}),
		queueFiles:     prometheus.NewDesc("sonde_offload_queue_files", "Objects waiting to be uploaded.", nil, nil),
		queueBytes:     prometheus.NewDesc("sonde_offload_queue_bytes", "Bytes waiting to be uploaded (before compression).", nil, nil),
		oldest:         prometheus.NewDesc("sonde_offload_oldest_pending_timestamp_seconds", "First packet time of the oldest capture file not yet uploaded; 0 when none is waiting.", nil, nil),
		catalogObjects: prometheus.NewDesc("sonde_offload_catalog_objects", "Objects this sensor has uploaded and still lists.", nil, nil),
		catalogBytes:   prometheus.NewDesc("sonde_offload_catalog_bytes", "Stored bytes of sonde_offload_catalog_objects.", nil, nil),
	}
	for _, r := range reasons {
		m.failures.WithLabelValues(r)
		m.deleteFailures.WithLabelValues(r)
	}
	for _, k := range []string{"file", KindSnapshot, KindReport} {
		m.uploads.WithLabelValues(k)
	}
	return m
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.uploads.Describe(ch)
	m.uploadedBytes.Describe(ch)
	m.failures.Describe(ch)
	m.seconds.Describe(ch)
	m.lostFiles.Describe(ch)
	m.lostBytes.Describe(ch)
	m.remoteReads.Describe(ch)
	m.expiredFiles.Describe(ch)
	m.expiredBytes.Describe(ch)
	m.deleteFailures.Describe(ch)
	m.compactions.Describe(ch)
	m.rebuiltFiles.Describe(ch)
	m.rebuiltBytes.Describe(ch)
	m.rebuildSkipped.Describe(ch)
	ch <- m.queueFiles
	ch <- m.queueBytes
	ch <- m.oldest
	ch <- m.catalogObjects
	ch <- m.catalogBytes
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.uploads.Collect(ch)
	m.uploadedBytes.Collect(ch)
	m.failures.Collect(ch)
	m.seconds.Collect(ch)
	m.lostFiles.Collect(ch)
	m.lostBytes.Collect(ch)
	m.remoteReads.Collect(ch)
	m.expiredFiles.Collect(ch)
	m.expiredBytes.Collect(ch)
	m.deleteFailures.Collect(ch)
	m.compactions.Collect(ch)
	m.rebuiltFiles.Collect(ch)
	m.rebuiltBytes.Collect(ch)
	m.rebuildSkipped.Collect(ch)
	files, bytes, oldest := m.o.pending()
	ch <- prometheus.MustNewConstMetric(m.queueFiles, prometheus.GaugeValue, float64(files))
	ch <- prometheus.MustNewConstMetric(m.queueBytes, prometheus.GaugeValue, float64(bytes))
	ch <- prometheus.MustNewConstMetric(m.oldest, prometheus.GaugeValue, float64(oldest)/1e9)
	objs, stored := m.o.cat.count()
	ch <- prometheus.MustNewConstMetric(m.catalogObjects, prometheus.GaugeValue, float64(objs))
	ch <- prometheus.MustNewConstMetric(m.catalogBytes, prometheus.GaugeValue, float64(stored))
}

// Collector returns the offload metrics, for a registry New was not given.
func (o *Offloader) Collector() prometheus.Collector { return o.m }
