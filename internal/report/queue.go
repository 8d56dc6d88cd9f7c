package report

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sonde-project/sonde/bpf"
	"github.com/sonde-project/sonde/internal/pcapio"
)

// Defaults of Config.
const (
	DefaultMaxQueue       = 8
	DefaultWorkers        = 1
	DefaultTTL            = 24 * time.Hour
	DefaultMaxUploadBytes = 100 << 20
	DefaultSweepInterval  = time.Minute
)

// Config configures a Queue.
type Config struct {
	// Dir holds the finished reports (DATA_DIR/reports) and uploads in
	// progress, under hidden names.
	Dir string
	// MaxQueue bounds the jobs uploading, waiting or running at once; past
	// it Submit returns ErrQueueFull.
	MaxQueue int
	// Workers is how many jobs run at once.
	Workers int
	// TTL is how long a finished report is kept.
	TTL time.Duration
	// MaxUploadBytes bounds an uploaded capture file.
	MaxUploadBytes int64
	// Window and MaxFlows configure each job's analysis (0: the engine's
	// defaults, those of `sonde analyze`).
	Window   time.Duration
	MaxFlows int
	// SweepInterval is how often expired reports are deleted.
	SweepInterval time.Duration
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.MaxQueue <= 0 {
		c.MaxQueue = DefaultMaxQueue
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.MaxUploadBytes <= 0 {
		c.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// State is where a report job is.
type State string

// States of a job.
const (
	StateQueued  State = "queued"
	StateRunning State = "running"
	StateDone    State = "done"
	StateFailed  State = "failed"
)

// Status is a report job as the API shows it.
type Status struct {
	ID       string     `json:"id"`
	Kind     string     `json:"kind"` // "ring" or "upload"
	Source   string     `json:"source"`
	State    State      `json:"state"`
	Percent  float64    `json:"percent"`
	Error    string     `json:"error,omitempty"`
	Packets  uint64     `json:"packets"`
	Created  time.Time  `json:"created"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	Expires  *time.Time `json:"expires,omitempty"`
	// Seq grows with every change, so a watcher can tell updates apart.
	Seq uint64 `json:"seq"`
}

// Errors of Submit, Upload and the lookups.
var (
	ErrQueueFull = errors.New("report queue is full")
	ErrNotFound  = errors.New("no such report")
	ErrNotReady  = errors.New("report is not done")
)

// TooLargeError is an upload past Config.MaxUploadBytes.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("upload exceeds the limit of %d bytes (MAX_UPLOAD_SIZE_MB)", e.Limit)
}

// CorruptError is an upload that is not a readable capture file; Err names
// the damage and its byte offset, Offset is the offset of the last whole
// record before it.
type CorruptError struct {
	Offset int64
	Err    error
}

func (e *CorruptError) Error() string { return e.Err.Error() }
func (e *CorruptError) Unwrap() error { return e.Err }

// FilterError is a filter expression the compiler refused.
type FilterError struct{ Err error }

func (e *FilterError) Error() string { return e.Err.Error() }
func (e *FilterError) Unwrap() error { return e.Err }

// Source is what a job analyses: a capture stream opened when the job runs.
type Source struct {
	Kind string // "ring" or "upload"
	// Name is the input as the document's files name it.
	Name string
	// Size is how many bytes Open's stream is expected to hold, for
	// progress (0: unknown).
	Size int64
	// Filter is a tcpdump expression applied during analysis.
	Filter string
	Open   func(ctx context.Context) (io.ReadCloser, error)
	// done, if set, runs once the job no longer needs the source.
	done func()
}

type job struct {
	st      Status
	src     Source
	changed chan struct{} // closed and replaced on every change
	cancel  context.CancelFunc
	active  bool // counts against MaxQueue
	gone    bool // deleted
	read    atomic.Int64
}

// Queue runs report jobs on a fixed number of workers, keeps their results
// as files under Config.Dir until they expire, and refuses work past
// Config.MaxQueue. Create it with New and run it with Run.
type Queue struct {
	cfg  Config
	log  *zap.Logger
	wake chan struct{} // a job was queued

	mu      sync.Mutex
	jobs    map[string]*job
	pending []*job // queued, oldest first
	active  int
}

// New prepares Dir: it removes what a previous process left half-written
// and takes back the finished reports that have not expired.
func New(cfg Config, log *zap.Logger) (*Queue, error) {
	cfg = cfg.withDefaults()
	if cfg.Dir == "" {
		return nil, errors.New("report: no directory")
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("report: create %s: %w", cfg.Dir, err)
	}
	q := &Queue{cfg: cfg, log: log, wake: make(chan struct{}, 1), jobs: map[string]*job{}}
	ents, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("report: read %s: %w", cfg.Dir, err)
	}
	now := cfg.Now()
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			os.Remove(filepath.Join(cfg.Dir, name))
			continue
		}
		id, ok := strings.CutSuffix(name, ".status.json")
		if !ok || !validID(id) {
			continue
		}
		var st Status
		b, err := os.ReadFile(filepath.Join(cfg.Dir, name))
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		if err != nil || st.ID != id || st.Expires == nil || !now.Before(*st.Expires) {
			q.removeFiles(id)
			continue
		}
		q.jobs[id] = &job{st: st, changed: make(chan struct{})}
	}
	// Result files without a status are from a job that never finished.
	for _, e := range ents {
		id, _, _ := strings.Cut(e.Name(), ".")
		if _, ok := q.jobs[id]; !ok && validID(id) {
			os.Remove(filepath.Join(cfg.Dir, e.Name()))
		}
	}
	return q, nil
}

// Config returns the queue's configuration with defaults applied.
func (q *Queue) Config() Config { return q.cfg }

// Run runs the workers and the expiry sweep until ctx ends; running jobs
// are cancelled then.
func (q *Queue) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range q.cfg.Workers {
		wg.Go(func() {
			for {
				if j, jctx, cancel := q.next(ctx); j != nil {
					q.run(jctx, j)
					cancel()
					continue
				}
				select {
				case <-ctx.Done():
					return
				case <-q.wake:
				}
			}
		})
	}
	t := time.NewTicker(q.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
			q.Sweep()
		}
	}
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// reserve takes a place in the queue for a job, before anything of it is
// read.
func (q *Queue) reserve(src Source) (*job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.active >= q.cfg.MaxQueue {
		return nil, ErrQueueFull
	}
	q.active++
	j := &job{src: src, changed: make(chan struct{}), active: true,
		st: Status{ID: newID(), Kind: src.Kind, Source: src.Name, State: StateQueued, Created: q.cfg.Now().UTC()}}
	return j, nil
}

// release gives back a reservation that never became a job.
func (q *Queue) release(j *job) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if j.active {
		j.active = false
		q.active--
	}
}

// enqueue publishes a reserved job and hands it to the workers.
func (q *Queue) enqueue(j *job) Status {
	q.mu.Lock()
	q.jobs[j.st.ID] = j
	q.pending = append(q.pending, j)
	st := j.st
	q.mu.Unlock()
	q.poke()
	return st
}

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// next takes the oldest queued job and marks it running, with a context
// that Delete cancels; it wakes another worker if more jobs wait.
func (q *Queue) next(parent context.Context) (*job, context.Context, context.CancelFunc) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) == 0 {
		return nil, nil, nil
	}
	j := q.pending[0]
	q.pending[0] = nil
	q.pending = q.pending[1:]
	if len(q.pending) > 0 {
		q.poke()
	}
	ctx, cancel := context.WithCancel(parent)
	now := q.cfg.Now().UTC()
	j.cancel = cancel
	j.st.State, j.st.Started = StateRunning, &now
	j.notifyLocked()
	return j, ctx, cancel
}

// Submit queues a report over src. It returns ErrQueueFull when MaxQueue
// jobs are already waiting or running.
func (q *Queue) Submit(src Source) (Status, error) {
	j, err := q.reserve(src)
	if err != nil {
		return Status{}, err
	}
	return q.enqueue(j), nil
}

// Upload queues a report over a capture file read from body. The queue
// place is taken before the first byte is read; the file is checked while
// it streams to disk, record by record, so a file past MaxUploadBytes
// (*TooLargeError), one that is not pcap or pcapng or is damaged
// (*CorruptError), or a filter its link type refuses (*FilterError) is
// refused with nothing of it kept, and no more than MaxUploadBytes+1 bytes
// of body are ever read.
func (q *Queue) Upload(body io.Reader, name, filter string) (Status, error) {
	if name == "" {
		name = "upload"
	}
	j, err := q.reserve(Source{Kind: "upload", Name: name, Filter: filter})
	if err != nil {
		return Status{}, err
	}
	path, size, err := q.receive(body, filter, j.st.ID)
	if err != nil {
		q.release(j)
		return Status{}, err
	}
	j.src.Size = size
	j.src.Open = func(context.Context) (io.ReadCloser, error) { return os.Open(path) }
	j.src.done = func() { os.Remove(path) }
	return q.enqueue(j), nil
}

var errTooLarge = errors.New("too large")

// limitReader reads at most n+1 bytes of r, then fails with errTooLarge:
// the one byte past the limit proves the body is too large.
type limitReader struct {
	r io.Reader
	n int64 // bytes still allowed
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return n, errTooLarge
	}
	return n, err
}

func (q *Queue) receive(body io.Reader, filter, id string) (path string, size int64, err error) {
	f, err := os.CreateTemp(q.cfg.Dir, ".upload-"+id+"-*")
	if err != nil {
		return "", 0, fmt.Errorf("report: store the upload: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("report: store the upload: %w", cerr)
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	lr := &limitReader{r: body, n: q.cfg.MaxUploadBytes}
	bw := bufio.NewWriterSize(f, 256<<10)
	cw := &countWriter{w: bw}
	r, err := pcapio.NewReader(io.TeeReader(lr, cw))
	if err != nil {
		return "", 0, q.uploadError(err, 0, cw.err)
	}
	if filter != "" {
		if _, err := bpf.Compile(filter, bpf.LinkType(r.LinkType()), pcapio.MaxRecordBytes); err != nil {
			return "", 0, &FilterError{err}
		}
	}
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", 0, q.uploadError(err, r.Offset(), cw.err)
		}
	}
	if err := bw.Flush(); err != nil {
		return "", 0, fmt.Errorf("report: store the upload: %w", err)
	}
	return tmp, cw.n, nil
}

func (q *Queue) uploadError(err error, off int64, werr error) error {
	switch {
	case errors.Is(err, errTooLarge):
		return &TooLargeError{Limit: q.cfg.MaxUploadBytes}
	case werr != nil:
		return fmt.Errorf("report: store the upload: %w", werr)
	case errors.Is(err, io.EOF):
		err = fmt.Errorf("pcapio: byte offset 0: empty body: %w", io.ErrUnexpectedEOF)
	}
	return &CorruptError{Offset: off, Err: err}
}

// countWriter counts and remembers the first write error, so a full disk
// is told apart from a corrupt upload.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// notifyLocked publishes a change of j's status to its watchers.
func (j *job) notifyLocked() {
	j.st.Seq++
	close(j.changed)
	j.changed = make(chan struct{})
}

func (q *Queue) update(j *job, fn func(*Status)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	fn(&j.st)
	j.notifyLocked()
}

// progressReader counts the bytes a job has read, publishes each whole
// percent, and stops the job when its context ends.
type progressReader struct {
	ctx  context.Context
	r    io.Reader
	q    *Queue
	j    *job
	last int
}

func (p *progressReader) Read(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := p.r.Read(b)
	total := p.j.read.Add(int64(n))
	if size := p.j.src.Size; size > 0 {
		// 99 at most until the report is written.
		if pc := int(min(99, total*100/size)); pc > p.last {
			p.last = pc
			p.q.update(p.j, func(s *Status) { s.Percent = float64(pc) })
		}
	}
	return n, err
}

// run runs j, which next has marked running.
func (q *Queue) run(ctx context.Context, j *job) {
	start := time.Now()
	packets, err := q.analyse(ctx, j)
	if j.src.done != nil {
		j.src.done()
	}
	// The analysis's flow table (MaxFlows slots, 672 MiB at the default)
	// is allocated whole but touched only as flows arrive. Handing it back
	// to the OS now means the next job gets fresh, untouched pages instead
	// of recycled ones the runtime must zero, which would make every report
	// cost the whole table in resident memory.
	debug.FreeOSMemory()
	q.mu.Lock()
	defer q.mu.Unlock()
	if j.active {
		j.active = false
		q.active--
	}
	if j.gone {
		q.removeFiles(j.st.ID)
		return
	}
	fin := q.cfg.Now().UTC()
	exp := fin.Add(q.cfg.TTL)
	j.st.Finished, j.st.Expires, j.st.Packets = &fin, &exp, packets
	if err != nil {
		j.st.State, j.st.Error = StateFailed, err.Error()
		q.log.Warn("report failed", zap.String("report", j.st.ID), zap.Error(err))
	} else {
		j.st.State, j.st.Percent = StateDone, 100
		q.log.Info("report done", zap.String("report", j.st.ID), zap.Uint64("packets", packets), zap.Duration("took", time.Since(start)))
	}
	if err := q.writeStatus(j.st); err != nil {
		q.log.Warn("report status not saved: it will not survive a restart", zap.String("report", j.st.ID), zap.Error(err))
	}
	j.notifyLocked()
}

// analyse runs j's analysis and writes its JSON, HTML and CSV files.
func (q *Queue) analyse(ctx context.Context, j *job) (uint64, error) {
	rc, err := j.src.Open(ctx)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	r, err := pcapio.NewReader(&progressReader{ctx: ctx, r: rc, q: q, j: j})
	if err != nil {
		return 0, fmt.Errorf("not a readable pcap or pcapng stream: %w", err)
	}
	x, err := NewAnalysis(q.cfg.Window, q.cfg.MaxFlows)
	if err != nil {
		return 0, err
	}
	n, err := x.Replay(r, j.src.Filter)
	doc := x.Document([]string{j.src.Name})
	if err != nil {
		return n, err
	}
	id := j.st.ID
	for _, out := range []struct {
		ext   string
		write func(io.Writer) error
	}{
		{"json", func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(doc)
		}},
		{"html", func(w io.Writer) error { return WriteHTML(w, doc, HTMLOptions{}) }},
		{"csv", func(w io.Writer) error { return WriteCSV(w, doc) }},
	} {
		if err := q.writeFile(id+"."+out.ext, out.write); err != nil {
			return n, err
		}
	}
	return n, nil
}

// writeFile writes name under a hidden name and publishes it by rename.
func (q *Queue) writeFile(name string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(q.cfg.Dir, "."+name+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	bw := bufio.NewWriter(f)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(q.cfg.Dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

func (q *Queue) writeStatus(st Status) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return q.writeFile(st.ID+".status.json", func(w io.Writer) error { _, err := w.Write(b); return err })
}

func (q *Queue) removeFiles(id string) {
	for _, ext := range []string{"json", "html", "csv", "status.json"} {
		os.Remove(filepath.Join(q.cfg.Dir, id+"."+ext))
	}
}

// lookupLocked returns the job id names, unless it has expired.
func (q *Queue) lookupLocked(id string) (*job, bool) {
	j, ok := q.jobs[id]
	if !ok || j.st.Expires != nil && !q.cfg.Now().Before(*j.st.Expires) {
		return nil, false
	}
	return j, true
}

// Status returns the status of report id.
func (q *Queue) Status(id string) (Status, error) {
	st, _, err := q.Watch(id)
	return st, err
}

// Watch returns the status of report id and a channel closed at its next
// change (or deletion).
func (q *Queue) Watch(id string) (Status, <-chan struct{}, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	j, ok := q.lookupLocked(id)
	if !ok {
		return Status{}, nil, ErrNotFound
	}
	return j.st, j.changed, nil
}

// Result returns the path of report id's result file of extension ext
// (json, html or csv). It is ErrNotReady until the report is done.
func (q *Queue) Result(id, ext string) (string, Status, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	j, ok := q.lookupLocked(id)
	if !ok || ext != "json" && ext != "html" && ext != "csv" {
		return "", Status{}, ErrNotFound
	}
	if j.st.State != StateDone {
		return "", j.st, ErrNotReady
	}
	return filepath.Join(q.cfg.Dir, id+"."+ext), j.st, nil
}

// Delete deletes report id now: a queued job never runs, a running one is
// cancelled, and the files go.
func (q *Queue) Delete(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	j, ok := q.lookupLocked(id)
	if !ok {
		return ErrNotFound
	}
	q.deleteLocked(j)
	return nil
}

func (q *Queue) deleteLocked(j *job) {
	delete(q.jobs, j.st.ID)
	j.gone = true
	switch j.st.State {
	case StateQueued:
		q.pending = slices.DeleteFunc(q.pending, func(p *job) bool { return p == j })
		if j.active {
			j.active = false
			q.active--
		}
		if j.src.done != nil {
			j.src.done()
		}
	case StateRunning:
		j.cancel() // the worker removes what it wrote
	default:
		q.removeFiles(j.st.ID)
	}
	close(j.changed)
	j.changed = make(chan struct{})
}

// Sweep deletes the reports whose time is up. Run calls it every
// SweepInterval.
func (q *Queue) Sweep() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.cfg.Now()
	n := 0
	for _, j := range q.jobs {
		if j.st.Expires != nil && !now.Before(*j.st.Expires) {
			q.deleteLocked(j)
			n++
		}
	}
	if n > 0 {
		q.log.Info("expired reports deleted", zap.Int("reports", n))
	}
	return n
}
