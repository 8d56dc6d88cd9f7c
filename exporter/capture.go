package exporter

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sonde-project/sonde/capture"
)

// CaptureCollector exports per-interface capture counters.
type CaptureCollector struct {
	src CaptureSource

	packets, bytes, kernelPackets, kernelDrops, freezes, reopens *prometheus.Desc
	up, workers                                                  *prometheus.Desc
}

// NewCaptureCollector returns a collector reading src at scrape time.
func NewCaptureCollector(src CaptureSource) *CaptureCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "capture", name), help, []string{"interface"}, nil)
	}
	return &CaptureCollector{
		src:           src,
		packets:       d("packets_total", "Packets sonde read from the kernel ring."),
		bytes:         d("bytes_total", "Wire bytes of the packets sonde read from the kernel ring."),
		kernelPackets: d("kernel_packets_total", "Packets the kernel offered the capture sockets, including dropped ones (tp_packets)."),
		kernelDrops:   d("kernel_drops_total", "Packets the kernel dropped because the capture ring was full (tp_drops)."),
		freezes:       d("kernel_freezes_total", "Times the capture ring froze because no block was free (tp_freeze_q_cnt)."),
		reopens:       d("reopens_total", "Times the interface was deleted or renamed and capture reopened it when it came back."),
		up:            d("up", "1 if the interface is being captured, 0 otherwise."),
		workers:       d("workers", "Capture worker sockets of the interface."),
	}
}

// Describe implements prometheus.Collector.
func (c *CaptureCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.packets, c.bytes, c.kernelPackets, c.kernelDrops, c.freezes, c.reopens, c.up, c.workers} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *CaptureCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.src.Interfaces() {
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), s.Name)
		}
		counter(c.packets, s.Packets)
		counter(c.bytes, s.Bytes)
		counter(c.kernelPackets, s.KernelPackets)
		counter(c.kernelDrops, s.KernelDrops)
		counter(c.freezes, s.Freezes)
		counter(c.reopens, s.Reopens)
		up := 0.0
		if s.State == capture.StateCapturing {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, s.Name)
		ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(s.Workers), s.Name)
	}
}
