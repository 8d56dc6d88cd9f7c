// Package offload copies the ring's published files, the snapshots' manifests
// and the report artifacts to S3-compatible object storage, and reads them
// back for windows local retention no longer holds.
//
// Data enters through the ring's hooks (ring.Offload: a file was published,
// or evicted) and a periodic scan of the pins and the reports directory; it
// leaves as objects under keys that sort by node, interface and time:
//
//	<prefix>/<node>/<interface>/<YYYY>/<MM>/<DD>/<ring file name>[.zst]
//	<prefix>/<node>/<interface>/<YYYY>/<MM>/<DD>/<ring file name>[.zst].json   (the index entry)
//	<prefix>/<node>/snapshots/<id>.json
//	<prefix>/<node>/reports/<id>/<id>.{json,html,csv}
//
// Every PUT carries the SHA-256 of its body, which the store verifies. What
// has been uploaded is recorded in DATA_DIR/offload/catalog.jsonl; anything
// the ring's index holds that the catalog does not is pending, so nothing is
// lost across restarts or store outages. Failed uploads are retried with
// capped exponential backoff and jitter. The catalog is also the remote
// index: Store lists uploaded files whose local copy is gone, and Opener
// reads them back from the store, verified against the recorded checksum.
package offload

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sonde-project/sonde/internal/ring"
)

// Config configures an Offloader.
type Config struct {
	// Endpoint is host[:port] or http(s)://host[:port]; a bare host uses
	// TLS unless Insecure.
	Endpoint  string
	Insecure  bool
	Bucket    string
	Prefix    string // key prefix, without leading or trailing '/'
	Region    string
	PathStyle bool   // path-style bucket addressing (MinIO)
	CAFile    string // PEM CA certificates to trust for the endpoint
	// Credentials. They are never logged.
	AccessKey, SecretKey, SessionToken string
	// Compress is "none" (or empty) or "zstd".
	Compress string
	Workers  int // uploads at once; default 2

	Node       string // this sensor's name, the first key segment
	DataDir    string // the ring's directory; state goes in DataDir/offload
	ReportsDir string // report artifacts to upload; empty: none

	// MinBackoff and MaxBackoff bound the wait before a failed upload is
	// tried again (defaults 1s and 5m); each failure doubles it, with
	// jitter.
	MinBackoff, MaxBackoff time.Duration
	// ScanInterval is how often pins and reports are looked for (default
	// 10s).
	ScanInterval time.Duration
	// MaxAge is remote retention: uploaded capture files whose last packet
	// is older than this are deleted from the store (object and sidecar)
	// and from the catalog, except files a snapshot pins and files still
	// on local disk. 0 keeps everything (a bucket lifecycle rule is the
	// alternative). Snapshot manifests and report artifacts are kept.
	MaxAge time.Duration
	// RetentionInterval is how often MaxAge is applied (default 1m).
	RetentionInterval time.Duration
	// Transport replaces the HTTP transport (tests).
	Transport http.RoundTripper
	Now       func() time.Time
}

// Source is what the Offloader reads from the ring: its index and pins.
type Source interface {
	Files() []ring.FileInfo
	Snapshots() []ring.Snapshot
}

// Defaults.
const (
	defaultWorkers      = 2
	defaultMinBackoff   = time.Second
	defaultMaxBackoff   = 5 * time.Minute
	defaultScanInterval = 10 * time.Second
	defaultRetention    = time.Minute
	failureLogEvery     = 10 * time.Second
)

// Validate fills defaults and checks the settings; errors name the field.
func (c *Config) Validate() error {
	if c.Workers == 0 {
		c.Workers = defaultWorkers
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = defaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = defaultMaxBackoff
	}
	if c.ScanInterval == 0 {
		c.ScanInterval = defaultScanInterval
	}
	if c.Compress == "" {
		c.Compress = "none"
	}
	if c.RetentionInterval == 0 {
		c.RetentionInterval = defaultRetention
	}
	if _, _, err := ParseEndpoint(c.Endpoint, c.Insecure); err != nil {
		return fmt.Errorf("offload: Endpoint %q: %w", c.Endpoint, err)
	}
	switch {
	case c.Bucket == "":
		return errors.New("offload: Bucket is empty")
	case c.Compress != "none" && c.Compress != "zstd":
		return fmt.Errorf("offload: Compress %q: want none or zstd", c.Compress)
	case c.Workers < 1 || c.Workers > 64:
		return fmt.Errorf("offload: Workers %d: want 1 to 64", c.Workers)
	case c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("offload: backoff %s to %s is invalid", c.MinBackoff, c.MaxBackoff)
	case c.MaxAge < 0:
		return fmt.Errorf("offload: MaxAge %s: want 0 (keep forever) or a positive duration", c.MaxAge)
	case c.RetentionInterval < 0:
		return fmt.Errorf("offload: RetentionInterval %s is negative", c.RetentionInterval)
	case c.DataDir == "":
		return errors.New("offload: DataDir is empty")
	case c.Node == "":
		return errors.New("offload: Node is empty")
	}
	c.Prefix = strings.Trim(c.Prefix, "/")
	return nil
}

// Offloader uploads and reads back. It is the ring's ring.Offload.
type Offloader struct {
	cfg    Config
	log    *zap.Logger
	client *minio.Client
	cat    *catalog

	mu          sync.Mutex
	tasks       map[string]*task // pending, by kind/name
	pausedUntil time.Time        // after a failure every worker waits
	failures    int              // consecutive failures, for the backoff
	lastLog     time.Time        // of a failure, for rate limiting
	wake        chan struct{}

	rebuildPending bool // the catalog is owed a rebuild from the store (see rebuildLate)

	m *metrics
}

// task is one pending upload.
type task struct {
	kind, name, key string
	path            string // the local file; empty for data
	data            []byte // a snapshot manifest
	fi              *ring.FileInfo
	size            int64
	queued          time.Time
	running         bool
	// evicted is set when the ring deleted the file while it was being
	// uploaded: if that upload fails, the file is lost.
	evicted ring.EvictReason
}

// New loads the catalog and builds the client. It contacts the store only
// when DataDir/offload/catalog.jsonl does not exist (a new or lost data
// directory): the catalog is then rebuilt from the node's objects and their
// sidecars first (see rebuildCatalog); when the store cannot be listed it
// starts empty and Run rebuilds it once the store answers. Metrics are
// registered on reg when it is not nil.
func New(cfg Config, log *zap.Logger, reg prometheus.Registerer) (*Offloader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client, err := newClient(&cfg)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.DataDir, "offload")
	ctx, cancel := context.WithTimeout(context.Background(), startRebuildTimeout)
	rb, rebuilt, rerr := rebuildCatalog(ctx, client, &cfg, dir)
	cancel()
	var later errRebuildLater
	if rerr != nil && !errors.As(rerr, &later) {
		return nil, rerr
	}
	cat, torn, err := openCatalog(dir)
	if err != nil {
		return nil, err
	}
	o := &Offloader{
		cfg: cfg, log: log.With(zap.String("component", "offload"), zap.String("bucket", cfg.Bucket)),
		client: client, cat: cat, tasks: map[string]*task{}, wake: make(chan struct{}, 1),
	}
	o.m = newMetrics(o)
	switch {
	case rebuilt:
		o.rebuilt(rb)
	case rerr != nil:
		o.log.Error("catalog.jsonl is missing and the store could not be listed within "+startRebuildTimeout.String()+" to rebuild it: the node's earlier uploads are not listed until the rebuild finishes in the background", zap.Error(rerr))
	}
	if _, err := os.Stat(filepath.Join(dir, rebuildMarker)); err == nil {
		o.rebuildPending = true
	}
	if torn > 0 {
		o.log.Warn("the catalog's last line was cut short (a crash while recording an upload); that object is uploaded again")
	}
	if reg != nil {
		if err := reg.Register(o.m); err != nil {
			return nil, fmt.Errorf("offload: registering metrics: %w", err)
		}
	}
	return o, nil
}

func (o *Offloader) now() time.Time {
	if o.cfg.Now != nil {
		return o.cfg.Now()
	}
	return time.Now()
}

// segment makes a name safe as one key segment.
func segment(s string) string {
	if s == "" {
		return "unknown"
	}
	return strings.NewReplacer("/", "_", "\\", "_").Replace(s)
}

func (o *Offloader) key(parts ...string) string {
	if o.cfg.Prefix != "" {
		parts = append([]string{o.cfg.Prefix}, parts...)
	}
	return path.Join(parts...)
}

// FileKey is the object key of a ring file.
func (o *Offloader) FileKey(fi ring.FileInfo) string {
	t := time.Unix(0, fi.First).UTC()
	node := fi.Node
	if node == "" {
		node = o.cfg.Node
	}
	k := o.key(segment(node), segment(fi.Interface), t.Format("2006"), t.Format("01"), t.Format("02"), fi.Name)
	if o.cfg.Compress == "zstd" {
		k += ".zst"
	}
	return k
}

// Uploaded reports whether name is in the store (ring.Offload).
func (o *Offloader) Uploaded(name string) bool { return o.cat.has(KindFile, name) }

// Published queues a newly published file (ring.Offload).
func (o *Offloader) Published(fi ring.FileInfo) { o.enqueueFile(fi) }

// Evicted is told of a deletion by local retention (ring.Offload). A file
// deleted before it was uploaded is lost: counted, and logged as an error
// naming it.
func (o *Offloader) Evicted(fi ring.FileInfo, reason ring.EvictReason, uploaded bool) {
	if uploaded {
		return
	}
	k := catalogKey(KindFile, fi.Name)
	o.mu.Lock()
	t := o.tasks[k]
	if t != nil && t.running {
		// The upload reads from an open file and may still succeed.
		t.evicted = reason
		o.mu.Unlock()
		return
	}
	delete(o.tasks, k)
	o.mu.Unlock()
	o.lost(fi, string(reason))
}

func (o *Offloader) lost(fi ring.FileInfo, reason string) {
	o.m.lostFiles.Add(1)
	o.m.lostBytes.Add(float64(fi.Bytes))
	o.log.Error("capture file deleted before it was uploaded: its packets are lost",
		zap.String("file", fi.Name), zap.String("reason", reason), zap.Uint64("packets", fi.Packets), zap.Int64("bytes", fi.Bytes))
}

func (o *Offloader) enqueueFile(fi ring.FileInfo) {
	if o.cat.has(KindFile, fi.Name) {
		return
	}
	f := fi
	o.enqueue(&task{kind: KindFile, name: fi.Name, key: o.FileKey(fi), path: filepath.Join(o.cfg.DataDir, fi.Name), fi: &f, size: fi.Bytes})
}

func (o *Offloader) enqueue(t *task) {
	k := catalogKey(t.kind, t.name)
	o.mu.Lock()
	if _, ok := o.tasks[k]; ok {
		o.mu.Unlock()
		return
	}
	t.queued = o.now()
	o.tasks[k] = t
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Run uploads until ctx is done. Every file of src's index that the catalog
// lacks is queued first; pins and reports are scanned every ScanInterval.
// An upload cut off by ctx is done again at the next start.
func (o *Offloader) Run(ctx context.Context, src Source) error {
	n := 0
	for _, fi := range src.Files() {
		if !o.cat.has(KindFile, fi.Name) {
			o.enqueueFile(fi)
			n++
		}
	}
	files, _ := o.cat.count()
	o.log.Info("offload started", zap.String("endpoint", o.cfg.Endpoint), zap.String("prefix", o.cfg.Prefix),
		zap.String("compress", o.cfg.Compress), zap.Int("pending_files", n), zap.Int("uploaded_objects", files))
	var wg sync.WaitGroup
	if o.rebuildPending {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.rebuildLate(ctx)
		}()
	}
	o.scan(src)
	for range o.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.work(ctx)
		}()
	}
	var expire <-chan time.Time
	if o.cfg.MaxAge > 0 {
		o.Expire(ctx, src)
		et := time.NewTicker(o.cfg.RetentionInterval)
		defer et.Stop()
		expire = et.C
	}
	t := time.NewTicker(o.cfg.ScanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return o.cat.close()
		case <-t.C:
			o.scan(src)
		case <-expire:
			o.Expire(ctx, src)
		}
	}
}

// Expire applies MaxAge once: it deletes from the store the uploaded
// capture files whose last packet is older than MaxAge, each object before
// its sidecar, and then drops them from the catalog. A file some snapshot
// of src pins, or that src still holds locally (deleting its copy would
// only have it uploaded again), is kept. A failed deletion is counted and
// tried again next time; a crash between the deletions and the catalog
// line leaves entries whose objects are gone, which the next pass deletes
// again (deleting a missing key succeeds). It returns how many files it
// deleted.
func (o *Offloader) Expire(ctx context.Context, src Source) int {
	if o.cfg.MaxAge <= 0 {
		return 0
	}
	cut := o.now().Add(-o.cfg.MaxAge).UnixNano()
	keep := map[string]bool{}
	for _, s := range src.Snapshots() {
		for _, name := range s.Files {
			keep[name] = true
		}
	}
	for _, fi := range src.Files() {
		keep[fi.Name] = true
	}
	var gone []Entry
	var bytes int64
	for _, fi := range o.cat.allFiles() {
		if fi.Last >= cut || keep[fi.Name] {
			continue
		}
		e, ok := o.cat.lookup(KindFile, fi.Name)
		if !ok {
			continue
		}
		err := o.client.RemoveObject(ctx, o.cfg.Bucket, e.Key, minio.RemoveObjectOptions{})
		if err == nil {
			err = o.client.RemoveObject(ctx, o.cfg.Bucket, e.Key+".json", minio.RemoveObjectOptions{})
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			o.m.deleteFailures.WithLabelValues(classify(err)).Inc()
			o.log.Warn("deleting an expired object failed; trying again at the next pass", zap.String("key", e.Key), zap.Error(err))
			break // the store is likely unreachable: the rest waits too
		}
		gone = append(gone, e)
		bytes += e.StoredBytes
	}
	if len(gone) == 0 {
		return 0
	}
	compacted, err := o.cat.remove(gone)
	if err != nil {
		o.log.Error("recording deleted objects in the catalog failed", zap.Error(err))
		return 0
	}
	o.m.expiredFiles.Add(float64(len(gone)))
	o.m.expiredBytes.Add(float64(bytes))
	if compacted {
		o.m.compactions.Inc()
	}
	o.log.Info("deleted expired capture files from the store", zap.Int("files", len(gone)), zap.Int64("bytes", bytes),
		zap.Duration("max_age", o.cfg.MaxAge), zap.Bool("catalog_compacted", compacted))
	return len(gone)
}

func (o *Offloader) work(ctx context.Context) {
	for ctx.Err() == nil {
		t, wait := o.next()
		if t == nil {
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-o.wake:
			case <-timer.C:
			}
			timer.Stop()
			continue
		}
		start := time.Now()
		e, err := o.upload(ctx, t)
		o.finish(ctx, t, e, err, time.Since(start))
	}
}

// next picks the pending upload to do now: ring files oldest first, then
// the rest in queue order. With none ready it says how long to wait.
func (o *Offloader) next() (*task, time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if wait := o.pausedUntil.Sub(o.now()); wait > 0 {
		return nil, wait
	}
	var best *task
	for _, t := range o.tasks {
		if t.running {
			continue
		}
		if best == nil || before(t, best) {
			best = t
		}
	}
	if best == nil {
		return nil, o.cfg.ScanInterval
	}
	best.running = true
	return best, 0
}

func before(a, b *task) bool {
	if (a.fi != nil) != (b.fi != nil) {
		return a.fi != nil
	}
	if a.fi != nil && a.fi.First != b.fi.First {
		return a.fi.First < b.fi.First
	}
	if !a.queued.Equal(b.queued) {
		return a.queued.Before(b.queued)
	}
	return a.name < b.name
}

// backoff is the wait after n consecutive failures: MinBackoff doubled
// n-1 times, capped at MaxBackoff, less up to a fifth at random so that
// sensors that lost the store together do not return in step.
func backoff(n int, lo, hi time.Duration, jitter float64) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d - time.Duration(float64(d)*0.2*jitter)
}

func (o *Offloader) finish(ctx context.Context, t *task, e Entry, err error, took time.Duration) {
	k := catalogKey(t.kind, t.name)
	if err == nil {
		err = o.cat.add(e)
		if err == nil {
			o.mu.Lock()
			delete(o.tasks, k)
			o.failures = 0
			o.mu.Unlock()
			o.m.uploads.WithLabelValues(kindLabel(t.kind)).Inc()
			o.m.uploadedBytes.Add(float64(e.StoredBytes))
			o.m.seconds.Observe(took.Seconds())
			o.log.Debug("uploaded", zap.String("key", e.Key), zap.Int64("bytes", e.StoredBytes), zap.Duration("took", took))
			return
		}
		err = localError{err}
	}
	o.mu.Lock()
	t.running = false
	evicted := t.evicted
	if ctx.Err() != nil {
		o.mu.Unlock()
		return // stopping: done again at the next start
	}
	gone := errors.Is(err, fs.ErrNotExist)
	if gone || evicted != "" {
		delete(o.tasks, k)
		o.mu.Unlock()
		switch {
		case t.kind != KindFile:
			o.log.Info("not uploaded: deleted locally first", zap.String("name", t.name), zap.Error(err))
		case evicted != "":
			o.lost(*t.fi, string(evicted))
		default:
			o.lost(*t.fi, "vanished")
		}
		return
	}
	reason := classify(err)
	o.failures++
	wait := backoff(o.failures, o.cfg.MinBackoff, o.cfg.MaxBackoff, rand.Float64())
	o.pausedUntil = o.now().Add(wait)
	logNow := o.now().Sub(o.lastLog) >= failureLogEvery
	if logNow {
		o.lastLog = o.now()
	}
	failures := o.failures
	o.mu.Unlock()
	o.m.failures.WithLabelValues(reason).Inc()
	if logNow {
		o.log.Warn("upload failed; retrying", zap.String("key", t.key), zap.String("reason", reason),
			zap.Int("consecutive_failures", failures), zap.Duration("retry_in", wait), zap.Error(err))
	}
}

func kindLabel(kind string) string {
	if kind == KindFile {
		return "file"
	}
	return kind
}

// upload puts one object and, for a ring file, its sidecar.
func (o *Offloader) upload(ctx context.Context, t *task) (Entry, error) {
	e := Entry{Kind: t.kind, Name: t.name, Key: t.key, File: t.fi}
	if t.path == "" {
		sum := sha256Sum(t.data)
		_, err := o.client.PutObject(ctx, o.cfg.Bucket, t.key, bytesReader(t.data), int64(len(t.data)), putOptions(sum, "application/json"))
		if err != nil {
			return e, err
		}
		e.StoredBytes, e.SHA256, e.Uploaded = int64(len(t.data)), hex.EncodeToString(sum), o.now().UTC()
		return e, nil
	}
	f, err := os.Open(t.path)
	if err != nil {
		return e, localError{err}
	}
	defer f.Close()
	compress := t.kind == KindFile && o.cfg.Compress == "zstd"
	d, err := digestFile(f, compress)
	if err != nil {
		return e, err
	}
	if _, err := f.Seek(0, 0); err != nil {
		return e, localError{err}
	}
	b := body(f, compress)
	defer b.Close()
	ctype := contentType(t.name, compress)
	if _, err := o.client.PutObject(ctx, o.cfg.Bucket, t.key, b, d.size, putOptions(d.sha, ctype)); err != nil {
		return e, err
	}
	e.StoredBytes, e.SHA256, e.RawSHA256, e.Uploaded = d.size, hex.EncodeToString(d.sha), hex.EncodeToString(d.raw), o.now().UTC()
	if compress {
		e.Compression = "zstd"
	}
	if t.kind == KindFile {
		side, err := json.Marshal(e)
		if err != nil {
			return e, err
		}
		sum := sha256Sum(side)
		if _, err := o.client.PutObject(ctx, o.cfg.Bucket, t.key+".json", bytesReader(side), int64(len(side)), putOptions(sum, "application/json")); err != nil {
			return e, err
		}
	}
	return e, nil
}

func contentType(name string, compressed bool) string {
	switch {
	case compressed:
		return "application/zstd"
	case strings.HasSuffix(name, ".pcap"):
		return "application/vnd.tcpdump.pcap"
	case strings.HasSuffix(name, ".html"):
		return "text/html; charset=utf-8"
	case strings.HasSuffix(name, ".json"):
		return "application/json"
	case strings.HasSuffix(name, ".csv"):
		return "text/csv"
	}
	return "application/octet-stream"
}

// scan queues the pins' manifests and the report artifacts not uploaded
// yet.
func (o *Offloader) scan(src Source) {
	for _, s := range src.Snapshots() {
		if o.cat.has(KindSnapshot, s.ID) {
			continue
		}
		if m, ok := o.manifest(s, src); ok {
			o.enqueue(&task{kind: KindSnapshot, name: s.ID, key: o.key(segment(o.cfg.Node), "snapshots", s.ID+".json"), data: m, size: int64(len(m))})
		}
	}
	if o.cfg.ReportsDir == "" {
		return
	}
	entries, err := os.ReadDir(o.cfg.ReportsDir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			o.log.Warn("listing reports failed", zap.Error(err))
		}
		return
	}
	for _, de := range entries {
		name := de.Name()
		id, ext, ok := reportArtifact(name)
		if !ok || !de.Type().IsRegular() || o.cat.has(KindReport, name) {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue
		}
		_ = ext
		o.enqueue(&task{kind: KindReport, name: name, key: o.key(segment(o.cfg.Node), "reports", id, name),
			path: filepath.Join(o.cfg.ReportsDir, name), size: info.Size()})
	}
}

// reportArtifact recognises the report queue's result files, <id>.json,
// .html and .csv; not its status files or temporary files.
func reportArtifact(name string) (id, ext string, ok bool) {
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".status.json") {
		return "", "", false
	}
	for _, x := range []string{".json", ".html", ".csv"} {
		if strings.HasSuffix(name, x) && len(name) > len(x) {
			return strings.TrimSuffix(name, x), x, true
		}
	}
	return "", "", false
}

// Manifest is the object a snapshot becomes: the pin and the keys of its
// files in the store.
type Manifest struct {
	Snapshot ring.Snapshot     `json:"snapshot"`
	Objects  map[string]string `json:"objects"` // file name → key
}

// manifest builds a snapshot's manifest once each of its files is uploaded
// or gone from the ring (a lost file is left out).
func (o *Offloader) manifest(s ring.Snapshot, src Source) ([]byte, bool) {
	m := Manifest{Snapshot: s, Objects: map[string]string{}}
	var local map[string]bool
	for _, name := range s.Files {
		if e, ok := o.cat.lookup(KindFile, name); ok {
			m.Objects[name] = e.Key
			continue
		}
		if local == nil {
			local = map[string]bool{}
			for _, fi := range src.Files() {
				local[fi.Name] = true
			}
		}
		if local[name] {
			return nil, false // still to be uploaded
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	return b, err == nil
}

// pending returns the queue's size, for the metrics.
func (o *Offloader) pending() (files int, bytes int64, oldest int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, t := range o.tasks {
		files++
		bytes += t.size
		if t.fi != nil && (oldest == 0 || t.fi.First < oldest) {
			oldest = t.fi.First
		}
	}
	return files, bytes, oldest
}

// Pending lists the names of what is still to be uploaded, sorted.
func (o *Offloader) Pending() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, t := range o.tasks {
		out = append(out, t.name)
	}
	slices.Sort(out)
	return out
}

// Entry returns the catalog entry of an uploaded ring file.
func (o *Offloader) Entry(name string) (Entry, bool) { return o.cat.lookup(KindFile, name) }
