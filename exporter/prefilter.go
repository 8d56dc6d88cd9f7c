package exporter

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sonde-project/sonde/bpf/prefilter"
)

// PrefilterSource is the eBPF prefilter's per-interface counters, read from
// its per-CPU maps at scrape time.
type PrefilterSource interface {
	Stats() []prefilter.InterfaceStats
}

// PrefilterCollector exports what the eBPF prefilter counted in the kernel,
// before any filtering: exact traffic figures even when sonde copies only a
// fraction of the packets.
type PrefilterCollector struct {
	src                                    PrefilterSource
	seenPackets, seenBytes                 *prometheus.Desc
	l3Packets, l3Bytes, l4Packets, l4Bytes *prometheus.Desc
	tcpFlags                               *prometheus.Desc
	dropped, droppedBytes                  *prometheus.Desc
	runSeconds, runs                       *prometheus.Desc
}

// NewPrefilterCollector returns the collector for src.
func NewPrefilterCollector(src PrefilterSource) *PrefilterCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("sonde_prefilter_"+name, help, append([]string{"interface"}, labels...), nil)
	}
	return &PrefilterCollector{
		src:          src,
		seenPackets:  d("packets_total", "Packets the eBPF prefilter saw, before filtering."),
		seenBytes:    d("bytes_total", "Bytes of the packets the eBPF prefilter saw, before filtering."),
		l3Packets:    d("network_packets_total", "Packets seen by network protocol.", "protocol"),
		l3Bytes:      d("network_bytes_total", "Bytes seen by network protocol.", "protocol"),
		l4Packets:    d("transport_packets_total", "Packets seen by transport protocol (icmp includes ICMPv6).", "protocol"),
		l4Bytes:      d("transport_bytes_total", "Bytes seen by transport protocol.", "protocol"),
		tcpFlags:     d("tcp_flag_packets_total", "TCP segments seen with the flag set (syn includes SYN-ACK).", "flag"),
		dropped:      d("excluded_packets_total", "Packets the prefilter kept from the ring, by reason.", "reason"),
		droppedBytes: d("excluded_bytes_total", "Bytes of the packets the prefilter kept from the ring, by reason.", "reason"),
		runSeconds:   d("run_seconds_total", "Time the kernel spent running the prefilter (only while BPF run-time statistics are on)."),
		runs:         d("runs_total", "Times the kernel ran the prefilter (only while BPF run-time statistics are on)."),
	}
}

// Describe implements prometheus.Collector.
func (c *PrefilterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.seenPackets, c.seenBytes, c.l3Packets, c.l3Bytes, c.l4Packets, c.l4Bytes,
		c.tcpFlags, c.dropped, c.droppedBytes, c.runSeconds, c.runs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *PrefilterCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.src.Stats() {
		counter := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append([]string{s.Interface}, labels...)...)
		}
		pair := func(p, b *prometheus.Desc, v prefilter.Counter, label string) {
			counter(p, float64(v.Packets), label)
			counter(b, float64(v.Bytes), label)
		}
		counter(c.seenPackets, float64(s.Packets))
		counter(c.seenBytes, float64(s.Bytes))
		pair(c.l3Packets, c.l3Bytes, s.L3.IPv4, "ipv4")
		pair(c.l3Packets, c.l3Bytes, s.L3.IPv6, "ipv6")
		pair(c.l3Packets, c.l3Bytes, s.L3.ARP, "arp")
		pair(c.l3Packets, c.l3Bytes, s.L3.Other, "other")
		pair(c.l4Packets, c.l4Bytes, s.L4.TCP, "tcp")
		pair(c.l4Packets, c.l4Bytes, s.L4.UDP, "udp")
		pair(c.l4Packets, c.l4Bytes, s.L4.ICMP, "icmp")
		pair(c.l4Packets, c.l4Bytes, s.L4.Other, "other")
		counter(c.tcpFlags, float64(s.TCPSyn.Packets), "syn")
		counter(c.tcpFlags, float64(s.TCPRst.Packets), "rst")
		counter(c.tcpFlags, float64(s.TCPFin.Packets), "fin")
		pair(c.dropped, c.droppedBytes, s.FilteredOut, "filter")
		pair(c.dropped, c.droppedBytes, s.FlowsCutOff, "flow_cutoff")
		pair(c.dropped, c.droppedBytes, s.SampledOut, "sampled_out")
		counter(c.runSeconds, s.RunTime.Seconds())
		counter(c.runs, float64(s.RunCount))
	}
}
