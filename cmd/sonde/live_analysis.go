package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/sonde-project/sonde/analysis"
	"github.com/sonde-project/sonde/analysis/anomaly"
	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/config"
	"github.com/sonde-project/sonde/internal/events"
	"github.com/sonde-project/sonde/internal/ring"
)

// flowRecordsPerWorker bounds the flow summaries each analysis worker hands
// the anomaly detectors per window (about 100 bytes each).
const flowRecordsPerWorker = 1 << 15

// liveAnalysis is the analysis engine with its anomaly detector and event
// sink, as the daemon runs them: one Analyzer per capture worker, the
// detector on every window the engine publishes, events out through the
// sink.
type liveAnalysis struct {
	eng  *analysis.Engine
	det  *anomaly.Detector
	sink *events.Sink
	cfg  *config.Config
	log  *zap.Logger
}

func newLiveAnalysis(cfg *config.Config, rg *ring.Ring, log *zap.Logger) (*liveAnalysis, error) {
	th, err := anomaly.Parse(cfg.Anomaly)
	if err != nil {
		return nil, err
	}
	la := &liveAnalysis{det: anomaly.New(th), cfg: cfg, log: log}
	// An event's files are looked up once the capture files of its time
	// range have been published: after the longest a file stays open.
	delay := cfg.FileMaxDuration + 2*time.Second
	if cfg.FileMaxDuration == 0 {
		delay = time.Minute
	}
	delay += cfg.SnapshotOnAnomaly // the widened window's files too
	la.sink, err = events.New(events.Config{Path: filepath.Join(cfg.DataDir, events.DefaultFileName), Delay: delay},
		func(e anomaly.Event) []string {
			var names []string
			for _, f := range rg.Window(e.Start.UnixNano(), e.End.UnixNano()) {
				names = append(names, f.Name)
			}
			if pad := cfg.SnapshotOnAnomaly; pad > 0 {
				reason := fmt.Sprintf("anomaly %s from %s to %s", e.Kind, e.Source, e.Target)
				if snap, err := rg.Pin(e.Start.Add(-pad), e.End.Add(pad), cfg.SnapshotTTL, reason); err != nil {
					log.Warn("could not pin the files of an anomaly", zap.String("kind", string(e.Kind)), zap.Error(err))
				} else {
					log.Info("pinned the files of an anomaly", zap.String("kind", string(e.Kind)), zap.String("snapshot", snap.ID))
				}
			}
			return names
		}, log)
	if err != nil {
		return nil, err
	}
	la.eng, err = analysis.NewEngine(analysis.Config{
		Workers:     cfg.WorkerCount() * len(cfg.Interfaces),
		Window:      cfg.Window,
		MaxFlows:    cfg.MaxFlows,
		FlowRecords: flowRecordsPerWorker,
		OnWindow: func(w *analysis.Window, flows []analysis.FlowRecord, omitted uint64) {
			la.sink.Emit(la.det.Window(w, flows))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("analysis: %w", err)
	}
	return la, nil
}

// consumer returns the Analyzer of capture worker w: each (interface,
// worker) pair has its own engine slot. It is nil when w is unknown.
func (la *liveAnalysis) consumer(w capture.Worker) capture.Consumer {
	slot := slices.Index(la.cfg.Interfaces, w.Interface)*la.cfg.WorkerCount() + w.Index
	a, err := la.eng.NewAnalyzer(slot)
	if err != nil {
		la.log.Error("no analysis for this capture worker", zap.String("interface", w.Interface), zap.Int("worker", w.Index), zap.Error(err))
		return nil
	}
	a.SetDropCounter(w.KernelDrops)
	a.SetLogger(la.log.With(zap.String("interface", w.Interface), zap.Int("worker", w.Index)))
	return a
}

// Run runs the event sink until ctx is cancelled.
func (la *liveAnalysis) Run(ctx context.Context) error { return la.sink.Run(ctx) }

// reload applies next's anomaly thresholds (already validated).
func (la *liveAnalysis) reload(next *config.Config) {
	th, err := anomaly.Parse(next.Anomaly)
	if err != nil {
		la.log.Error("anomaly thresholds not reloaded", zap.Error(err))
		return
	}
	la.det.SetThresholds(th)
}
