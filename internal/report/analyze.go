package report

import (
	"errors"
	"fmt"
	"time"

	"github.com/sonde-project/sonde/analysis"
	"github.com/sonde-project/sonde/analysis/anomaly"
	"github.com/sonde-project/sonde/bpf"
	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
)

// Analysis is one offline analysis: capture streams replayed, in order, as
// one capture through the live engine (one worker with the whole flow table)
// and the anomaly detectors with their default thresholds. It is what
// `sonde analyze` and every report job run, so their documents agree.
type Analysis struct {
	eng    *analysis.Engine
	a      *analysis.Analyzer
	found  []Anomaly
	snap   *analysis.Snapshot
	closed bool
}

// NewAnalysis returns an analysis with reporting window window and a flow
// table of maxFlows slots (0 for either: the engine's default). The table is
// allocated up front: analysis.FlowEntryBytes each.
func NewAnalysis(window time.Duration, maxFlows int) (*Analysis, error) {
	if window == 0 {
		window = analysis.DefaultWindow
	}
	if maxFlows == 0 {
		maxFlows = analysis.DefaultMaxFlows
	}
	x := &Analysis{found: []Anomaly{}}
	det := anomaly.New(anomaly.DefaultThresholds())
	eng, err := analysis.NewEngine(analysis.Config{
		Workers:     1,
		Window:      window,
		KeepWindows: 100000,
		MaxFlows:    maxFlows,
		FlowRecords: 1 << 20,
		OnWindow: func(w *analysis.Window, flows []analysis.FlowRecord, _ uint64) {
			for _, e := range det.Window(w, flows) {
				if e.Evidence == nil {
					e.Evidence = map[string]float64{}
				}
				x.found = append(x.found, Anomaly{Kind: string(e.Kind), Start: e.Start, End: e.End,
					Source: e.Source, Target: e.Target, Evidence: e.Evidence})
			}
		},
	})
	if err != nil {
		return nil, err
	}
	a, err := eng.NewAnalyzer(0)
	if err != nil {
		return nil, err
	}
	x.eng, x.a = eng, a
	return x, nil
}

// Replay analyses every packet of r that filter (a tcpdump expression,
// compiled for the link type of each packet's interface; empty: all)
// accepts. A filter the compiler refuses is a *bpf.SyntaxError. A stream
// damaged midway returns an error naming the byte offset; what came before
// it has been analysed.
func (x *Analysis) Replay(r *pcapio.Reader, filter string) (uint64, error) {
	var compile func(capture.LinkType) (bpf.Program, error)
	if filter != "" {
		compile = func(lt capture.LinkType) (bpf.Program, error) {
			return bpf.Compile(filter, bpf.LinkType(lt), pcapio.MaxRecordBytes)
		}
		// The first interface's link type up front, so a bad filter is
		// refused before anything is analysed.
		if _, err := compile(r.LinkType()); err != nil {
			return 0, err
		}
	}
	n, err := analysis.Replay(r, x.a, compile)
	var se *bpf.SyntaxError
	if err != nil && !errors.As(err, &se) {
		return n, fmt.Errorf("damaged after %d bytes: %w", r.Offset(), err)
	}
	return n, err
}

// Snapshot ends the analysis (publishing the last, partial window) and
// returns the engine's final state. Later calls return the same snapshot.
func (x *Analysis) Snapshot() *analysis.Snapshot {
	if !x.closed {
		x.a.Close()
		x.closed = true
		x.snap = x.eng.Snapshot()
	}
	return x.snap
}

// Document ends the analysis and returns its report, naming files as its
// input.
func (x *Analysis) Document(files []string) *Document {
	return Build(x.Snapshot(), files, x.found)
}
