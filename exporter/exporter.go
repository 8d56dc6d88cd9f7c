// Package exporter publishes sonde's state as Prometheus metrics.
//
// The collectors hold no counters of their own: on every scrape they ask the
// capture and ring components for their running totals through the small
// CaptureSource and RingSource interfaces and build constant metrics from
// them, like node_exporter's collectors. They register on a registry the
// caller owns, never on the global one.
package exporter

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sonde-project/sonde/capture"
)

const namespace = "sonde"

// CaptureSource reports the configured interfaces, one entry each.
type CaptureSource interface {
	Interfaces() []capture.InterfaceStatus
}

// RingSource reports the capture file ring: totals over the data directory
// and per-stream (interface, worker) writer counters.
type RingSource interface {
	Stats() RingStats
	StreamStats() []StreamStats
}

// BuildInfo labels sonde_build_info.
type BuildInfo struct {
	Version, Revision, GoVersion string
}

// ReadBuildInfo fills BuildInfo from the module and VCS data the Go
// toolchain embedded in the binary, with version as given by the linker
// (empty means the module version, or "devel").
func ReadBuildInfo(version string) BuildInfo {
	b := BuildInfo{Version: version, Revision: "unknown", GoVersion: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				b.Revision = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	return b
}

// Register adds sonde's collectors, sonde_build_info and the standard Go and
// process collectors to reg. Either source may be nil when that component is
// not running; its metrics are then absent.
func Register(reg prometheus.Registerer, build BuildInfo, cap CaptureSource, ring RingSource) error {
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newBuildInfoCollector(build),
	}
	if cap != nil {
		cs = append(cs, NewCaptureCollector(cap))
	}
	if ring != nil {
		cs = append(cs, NewRingCollector(ring))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func newBuildInfoCollector(b BuildInfo) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   namespace,
		Name:        "build_info",
		Help:        "A metric with a constant '1' value labeled by version, revision and goversion from which sonde was built.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
	})
	g.Set(1)
	return g
}
