// Package events records anomaly events: one log line each and one JSON
// line each in DATA_DIR/events.jsonl, rotated by size with a bounded number
// of old files kept.
//
// Events enter through Sink.Emit, from the analysis engine's window hook,
// which must never block: a full queue drops the event and counts it. The
// Sink's Run goroutine holds each event until the capture files of its time
// range have had time to be published (Config.Delay), looks their names up,
// and writes the event out.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sonde-project/sonde/analysis/anomaly"
)

// Defaults.
const (
	DefaultFileName = "events.jsonl"
	DefaultMaxBytes = 16 << 20
	DefaultMaxFiles = 5
	DefaultQueue    = 1024
)

// Config configures a Sink.
type Config struct {
	// Path is the events file; rotated files are Path.1 (newest) to
	// Path.MaxFiles.
	Path     string
	MaxBytes int64
	MaxFiles int
	// Delay is how long after an event's end its files are looked up: at
	// least the capture file's maximum duration, so that the files holding
	// the event's last packets are published.
	Delay time.Duration
	Queue int
}

// FileLookup names the capture files holding the packets of an event (from
// its Start to its End); it may also pin them (--snapshot-on-anomaly).
type FileLookup func(e anomaly.Event) []string

// Sink writes events out. Emit may be called from any goroutine.
type Sink struct {
	cfg     Config
	files   FileLookup
	log     *zap.Logger
	queue   chan anomaly.Event
	dropped atomic.Uint64
	written atomic.Uint64
	errors  atomic.Uint64

	f    *os.File
	size int64
	now  func() time.Time
}

// New opens (or creates) the events file for appending.
func New(cfg Config, files FileLookup, log *zap.Logger) (*Sink, error) {
	if cfg.Path == "" {
		return nil, errors.New("events: no file path")
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxFiles <= 0 {
		cfg.MaxFiles = DefaultMaxFiles
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	s := &Sink{cfg: cfg, files: files, log: log, queue: make(chan anomaly.Event, cfg.Queue), now: time.Now}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sink) open() error {
	f, err := os.OpenFile(s.cfg.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open the events file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open the events file: %w", err)
	}
	s.f, s.size = f, st.Size()
	return nil
}

// Emit queues events without blocking; what does not fit is dropped and
// counted.
func (s *Sink) Emit(evs []anomaly.Event) {
	for _, e := range evs {
		select {
		case s.queue <- e:
		default:
			s.dropped.Add(1)
		}
	}
}

// Stats returns the events written, dropped because the queue was full,
// and lost to write errors.
func (s *Sink) Stats() (written, dropped, writeErrors uint64) {
	return s.written.Load(), s.dropped.Load(), s.errors.Load()
}

// Run writes events out until ctx is cancelled, then writes the ones still
// held (with the files published so far) and closes the file.
func (s *Sink) Run(ctx context.Context) error {
	defer s.f.Close()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var held []anomaly.Event
	for {
		select {
		case e := <-s.queue:
			held = append(held, e)
		case <-tick.C:
			held = s.flush(held, s.now().Add(-s.cfg.Delay))
		case <-ctx.Done():
			for {
				select {
				case e := <-s.queue:
					held = append(held, e)
					continue
				default:
				}
				break
			}
			s.flush(held, time.Unix(1<<40, 0))
			return nil
		}
	}
}

// flush writes the held events that ended before cutoff and returns the
// rest.
func (s *Sink) flush(held []anomaly.Event, cutoff time.Time) []anomaly.Event {
	rest := held[:0]
	for _, e := range held {
		if e.End.After(cutoff) {
			rest = append(rest, e)
			continue
		}
		if s.files != nil {
			e.Files = s.files(e)
		}
		if e.Files == nil {
			e.Files = []string{}
		}
		s.write(e)
	}
	return rest
}

func (s *Sink) write(e anomaly.Event) {
	s.log.Warn("anomaly", zap.String("kind", string(e.Kind)), zap.Time("start", e.Start), zap.Time("end", e.End),
		zap.String("source", e.Source), zap.String("target", e.Target), zap.Any("evidence", e.Evidence), zap.Strings("files", e.Files))
	line, err := json.Marshal(e)
	if err != nil {
		s.errors.Add(1)
		return
	}
	line = append(line, '\n')
	if s.size > 0 && s.size+int64(len(line)) > s.cfg.MaxBytes {
		if err := s.rotate(); err != nil {
			s.errors.Add(1)
			s.log.Error("rotate the events file", zap.Error(err))
		}
	}
	n, err := s.f.Write(line)
	s.size += int64(n)
	if err != nil {
		s.errors.Add(1)
		s.log.Error("write the events file", zap.Error(err))
		return
	}
	s.written.Add(1)
}

// rotate shifts Path.i to Path.i+1 (dropping the oldest), Path to Path.1,
// and starts a new Path.
func (s *Sink) rotate() error {
	s.f.Close()
	os.Remove(fmt.Sprintf("%s.%d", s.cfg.Path, s.cfg.MaxFiles))
	for i := s.cfg.MaxFiles - 1; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d", s.cfg.Path, i), fmt.Sprintf("%s.%d", s.cfg.Path, i+1)) //nolint:errcheck // gaps are fine
	}
	if err := os.Rename(s.cfg.Path, s.cfg.Path+".1"); err != nil {
		return errors.Join(err, s.open())
	}
	if d, err := os.Open(filepath.Dir(s.cfg.Path)); err == nil {
		d.Sync() //nolint:errcheck // best effort
		d.Close()
	}
	return s.open()
}
