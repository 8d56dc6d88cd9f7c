package anomaly

import (
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/sonde-project/sonde/analysis"
)

type pairKey struct {
	client netip.Addr
	t      target
}

// beaconSamples bounds the connection times kept per pair.
const beaconSamples = 32

// beacon is the recent connection start times of one pair, oldest first.
type beacon struct {
	starts   []int64
	lastSeen int64 // end of the last window with a connection
	reported int64 // newest start already reported (0: never)
}

// beaconing tracks new connections per (client, host, port) across windows
// and reports a pair whose intervals are regular: coefficient of variation
// at most BeaconMaxCV over at least BeaconMinConnections connections
// spanning BeaconMinWindows windows. The table holds at most
// BeaconMaxPairs pairs; pairs idle for 64 windows are forgotten first, and
// new pairs are not tracked while it is full.
func (d *Detector) beaconing(th *Thresholds, w *analysis.Window, flows []analysis.FlowRecord) []Event {
	win := w.End.Sub(w.Start).Nanoseconds()
	end := w.End.UnixNano()
	touched := make(map[pairKey]bool)
	for i := range flows {
		r := &flows[i]
		if !r.New || (r.Proto != 6 && r.Proto != 17) {
			continue
		}
		k := pairKey{r.Client, target{r.Server, r.ServerPort}}
		b := d.beacons[k]
		if b == nil {
			if len(d.beacons) >= th.BeaconMaxPairs {
				d.forget(end - 64*win)
				if len(d.beacons) >= th.BeaconMaxPairs {
					continue
				}
			}
			b = &beacon{}
			d.beacons[k] = b
		}
		b.starts = append(b.starts, r.First)
		b.lastSeen = end
		touched[k] = true
	}
	var evs []Event
	for k := range touched {
		b := d.beacons[k]
		// Records arrive in table order, not time order.
		slices.Sort(b.starts)
		if len(b.starts) > beaconSamples {
			b.starts = append(b.starts[:0], b.starts[len(b.starts)-beaconSamples:]...)
		}
		n := len(b.starts)
		if n < th.BeaconMinConnections || b.starts[n-1]-b.starts[0] < int64(th.BeaconMinWindows-1)*win {
			continue
		}
		var sum, sq float64
		for i := 1; i < n; i++ {
			iv := float64(b.starts[i] - b.starts[i-1])
			sum += iv
			sq += iv * iv
		}
		mean := sum / float64(n-1)
		cv := math.Sqrt(math.Max(sq/float64(n-1)-mean*mean, 0)) / mean
		if mean < float64(th.BeaconMinInterval.Nanoseconds()) || cv > th.BeaconMaxCV {
			continue
		}
		// Report a pair again only once a fresh set of connections has
		// been seen since the last report.
		if b.reported != 0 && b.starts[0] <= b.reported {
			continue
		}
		b.reported = b.starts[n-1]
		evs = append(evs, Event{
			Kind: Beaconing, Start: time.Unix(0, b.starts[0]).UTC(), End: w.End,
			Source: k.client.String(), Target: k.t.String(),
			Evidence: map[string]float64{"connections": float64(n), "interval_seconds": mean / 1e9, "cv": cv},
		})
	}
	return strongest(evs, "connections")
}

func (d *Detector) forget(before int64) {
	for k, b := range d.beacons {
		if b.lastSeen < before {
			delete(d.beacons, k)
		}
	}
}
