package analysis

import "time"

// Health is a 0–100 score of how well the network served the traffic of a
// window (100 is perfect), with the measures and penalties it came from.
//
// Each signal takes up to its weight off 100, linearly between a "good"
// threshold (no penalty) and a "bad" one (the whole weight). A signal with
// too little evidence in the window takes nothing off.
//
//	signal            measure                                       good     bad     weight  evidence needed
//	retransmissions   TCP retransmitted / data segments             1 %      10 %    30      20 data segments
//	latency           p95 TCP handshake RTT (data RTT if none)      100 ms   1 s     15      1 sample
//	DNS errors        (SERVFAIL+REFUSED+timeouts) / queries         1 %      20 %    20      10 queries
//	jitter            p95 UDP interarrival jitter                   30 ms    100 ms  10      1 flow direction
//	drops             kernel drops / (packets + drops)              0.1 %    5 %     15      1 packet
//	resets            connections reset / connections opened        5 %      50 %    10      10 connections
//
// NXDOMAIN is not an error here: it is a correct answer, and hosts that
// probe search domains produce it in bulk.
type Health struct {
	Score float64

	RetransmissionRate float64
	LatencyP95         time.Duration
	DNSErrorRate       float64
	JitterP95          time.Duration
	DropRate           float64
	ResetRate          float64

	// Penalties in score points, in the order of the table above.
	RetransmissionPenalty float64
	LatencyPenalty        float64
	DNSPenalty            float64
	JitterPenalty         float64
	DropPenalty           float64
	ResetPenalty          float64
}

// Health weights and thresholds; see Health.
const (
	WeightRetransmissions = 30
	WeightLatency         = 15
	WeightDNS             = 20
	WeightJitter          = 10
	WeightDrops           = 15
	WeightResets          = 10
)

func ramp(v, good, bad, weight float64) float64 {
	switch {
	case v <= good:
		return 0
	case v >= bad:
		return weight
	}
	return weight * (v - good) / (bad - good)
}

// Score computes the health of c.
func Score(c *Counters) Health {
	var h Health
	t := &c.TCP
	if t.DataSegments >= 20 {
		h.RetransmissionRate = float64(t.Retransmissions) / float64(t.DataSegments)
		h.RetransmissionPenalty = ramp(h.RetransmissionRate, 0.01, 0.10, WeightRetransmissions)
	}
	switch {
	case t.HandshakeRTT.Count > 0:
		h.LatencyP95 = t.HandshakeRTT.Quantile(0.95)
	case t.DataRTT.Count > 0:
		h.LatencyP95 = t.DataRTT.Quantile(0.95)
	}
	h.LatencyPenalty = ramp(h.LatencyP95.Seconds(), 0.1, 1, WeightLatency)
	d := &c.DNS
	if d.Queries >= 10 {
		errs := d.Rcodes[2] + d.Rcodes[5] + d.Timeouts
		h.DNSErrorRate = float64(errs) / float64(d.Queries)
		h.DNSPenalty = ramp(h.DNSErrorRate, 0.01, 0.20, WeightDNS)
	}
	if c.Jitter.Count > 0 {
		h.JitterP95 = c.Jitter.Quantile(0.95)
		h.JitterPenalty = ramp(h.JitterP95.Seconds(), 0.03, 0.1, WeightJitter)
	}
	if c.Packets+c.Drops > 0 {
		h.DropRate = float64(c.Drops) / float64(c.Packets+c.Drops)
		h.DropPenalty = ramp(h.DropRate, 0.001, 0.05, WeightDrops)
	}
	if t.Opened >= 10 {
		h.ResetRate = float64(t.ConnResets) / float64(t.Opened)
		h.ResetPenalty = ramp(h.ResetRate, 0.05, 0.5, WeightResets)
	}
	h.Score = 100 - h.RetransmissionPenalty - h.LatencyPenalty - h.DNSPenalty - h.JitterPenalty - h.DropPenalty - h.ResetPenalty
	return h
}
