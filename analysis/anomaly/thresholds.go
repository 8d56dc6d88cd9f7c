package anomaly

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Thresholds are the detectors' settings. Counts are per window unless the
// name says per second; "baseline" is the EWMA of earlier windows.
type Thresholds struct {
	// Baseline: the EWMA weight of a new window, and how many windows the
	// baseline-based detectors (traffic_spike, traffic_drop, dns_errors)
	// wait before they may fire.
	EWMAAlpha     float64
	WarmupWindows int

	// port_scan: one client probing at least PortScanTargets distinct
	// (host, port) pairs in a window, each with at most PortScanMaxPackets
	// client packets and no completed handshake.
	PortScanTargets    int
	PortScanMaxPackets int

	// syn_flood: half-open SYN packets toward one (host, port) at or above
	// SYNFloodPerSecond, and at least SYNFloodMinRatio of the connection
	// attempts to it never completing.
	SYNFloodPerSecond float64
	SYNFloodMinRatio  float64

	// traffic_spike: window bytes/s at least SpikeRatio times the baseline,
	// SpikeZ standard deviations above it, and SpikeMinBytesPerSecond above it.
	// traffic_drop: bytes/s at most the baseline divided by DropRatio, with
	// a baseline of at least DropMinBytesPerSecond.
	SpikeRatio             float64
	SpikeZ                 float64
	SpikeMinBytesPerSecond float64
	DropRatio              float64
	DropMinBytesPerSecond  float64

	// dns_errors: NXDOMAIN+SERVFAIL responses at least DNSErrorsMin in the
	// window and at least DNSErrorsRatio times the baseline rate.
	DNSErrorsMin   int
	DNSErrorsRatio float64

	// brute_force: at least BruteForceConnections new connections from one
	// client to one service port of BruteForcePorts in a window, each of
	// at most BruteForceMaxPackets packets.
	BruteForceConnections int
	BruteForceMaxPackets  int
	BruteForcePorts       []uint16

	// beaconing: connections from one client to one (host, port) whose
	// intervals have a coefficient of variation at most BeaconMaxCV, with
	// at least BeaconMinConnections connections spanning BeaconMinWindows
	// windows and a mean interval of at least BeaconMinInterval.
	// BeaconMaxPairs bounds the pairs tracked.
	BeaconMaxCV          float64
	BeaconMinConnections int
	BeaconMinWindows     int
	BeaconMinInterval    time.Duration
	BeaconMaxPairs       int

	// exfiltration: at least ExfilMinBytes in a window from an address in
	// InternalNets to one outside them, at least ExfilRatio times what came
	// back.
	ExfilMinBytes float64
	ExfilRatio    float64
	InternalNets  []netip.Prefix

	// MaxEventsPerKind bounds the events of one kind in one window; the
	// rest are counted as suppressed.
	MaxEventsPerKind int
}

// DefaultThresholds are the documented defaults.
func DefaultThresholds() Thresholds {
	return Thresholds{
		EWMAAlpha:              0.2,
		WarmupWindows:          5,
		PortScanTargets:        100,
		PortScanMaxPackets:     4,
		SYNFloodPerSecond:      50,
		SYNFloodMinRatio:       0.8,
		SpikeRatio:             4,
		SpikeZ:                 4,
		SpikeMinBytesPerSecond: 1 << 20,
		DropRatio:              4,
		DropMinBytesPerSecond:  128 << 10,
		DNSErrorsMin:           50,
		DNSErrorsRatio:         5,
		BruteForceConnections:  20,
		BruteForceMaxPackets:   100,
		BruteForcePorts:        []uint16{21, 22, 23, 110, 143, 445, 1433, 3306, 3389, 5432, 5900},
		BeaconMaxCV:            0.1,
		BeaconMinConnections:   6,
		BeaconMinWindows:       3,
		BeaconMinInterval:      time.Second,
		BeaconMaxPairs:         10000,
		ExfilMinBytes:          50e6,
		ExfilRatio:             10,
		InternalNets: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
			netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("100.64.0.0/10"),
			netip.MustParsePrefix("fc00::/7"),
		},
		MaxEventsPerKind: 10,
	}
}

// keys maps each setting's name in Parse to its field.
func (t *Thresholds) keys() map[string]any {
	return map[string]any{
		"ewma_alpha": &t.EWMAAlpha, "warmup_windows": &t.WarmupWindows,
		"port_scan_targets": &t.PortScanTargets, "port_scan_max_packets": &t.PortScanMaxPackets,
		"syn_flood_per_second": &t.SYNFloodPerSecond, "syn_flood_min_ratio": &t.SYNFloodMinRatio,
		"spike_ratio": &t.SpikeRatio, "spike_z": &t.SpikeZ, "spike_min_bytes_per_second": &t.SpikeMinBytesPerSecond,
		"drop_ratio": &t.DropRatio, "drop_min_bytes_per_second": &t.DropMinBytesPerSecond,
		"dns_errors_min": &t.DNSErrorsMin, "dns_errors_ratio": &t.DNSErrorsRatio,
		"brute_force_connections": &t.BruteForceConnections, "brute_force_max_packets": &t.BruteForceMaxPackets,
		"brute_force_ports": &t.BruteForcePorts,
		"beacon_max_cv":     &t.BeaconMaxCV, "beacon_min_connections": &t.BeaconMinConnections,
		"beacon_min_windows": &t.BeaconMinWindows, "beacon_min_interval": &t.BeaconMinInterval,
		"beacon_max_pairs": &t.BeaconMaxPairs,
		"exfil_min_bytes":  &t.ExfilMinBytes, "exfil_ratio": &t.ExfilRatio, "internal_nets": &t.InternalNets,
		"max_events_per_kind": &t.MaxEventsPerKind,
	}
}

// Keys lists the setting names Parse accepts.
func Keys() []string {
	var t Thresholds
	var out []string
	for k := range t.keys() {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Parse returns the defaults overridden by s, a list of key=value
// separated by ';' (lists inside a value, such as brute_force_ports=22,3389
// or internal_nets=10.0.0.0/8,198.18.0.0/15, are comma-separated), and
// validated.
func Parse(s string) (Thresholds, error) {
	t := DefaultThresholds()
	keys := t.keys()
	for _, kv := range strings.Split(s, ";") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		p, known := keys[k]
		if !ok || !known {
			return t, fmt.Errorf("anomaly setting %q: want key=value with key one of %s", kv, strings.Join(Keys(), ", "))
		}
		if err := set(p, v); err != nil {
			return t, fmt.Errorf("anomaly setting %s=%q: %w", k, v, err)
		}
	}
	return t, t.Validate()
}

func set(p any, v string) error {
	switch p := p.(type) {
	case *float64:
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return errors.New("want a number")
		}
		*p = f
	case *int:
		n, err := strconv.Atoi(v)
		if err != nil {
			return errors.New("want a whole number")
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(v)
		if err != nil {
			return errors.New("want a duration such as 1s")
		}
		*p = d
	case *[]uint16:
		*p = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
			if err != nil || n == 0 {
				return errors.New("want a comma-separated list of ports 1-65535")
			}
			*p = append(*p, uint16(n))
		}
	case *[]netip.Prefix:
		*p = nil
		for _, f := range strings.Split(v, ",") {
			pf, err := netip.ParsePrefix(strings.TrimSpace(f))
			if err != nil {
				return errors.New("want a comma-separated list of CIDR prefixes")
			}
			*p = append(*p, pf.Masked())
		}
	}
	return nil
}

// Validate reports every setting out of range.
func (t Thresholds) Validate() error {
	var errs []error
	bad := func(ok bool, key string, v any, want string) {
		if !ok {
			errs = append(errs, fmt.Errorf("anomaly setting %s=%v: want %s", key, v, want))
		}
	}
	bad(t.EWMAAlpha > 0 && t.EWMAAlpha <= 1, "ewma_alpha", t.EWMAAlpha, "more than 0, at most 1")
	bad(t.WarmupWindows >= 1, "warmup_windows", t.WarmupWindows, "at least 1")
	bad(t.PortScanTargets >= 2, "port_scan_targets", t.PortScanTargets, "at least 2")
	bad(t.PortScanMaxPackets >= 1, "port_scan_max_packets", t.PortScanMaxPackets, "at least 1")
	bad(t.SYNFloodPerSecond > 0, "syn_flood_per_second", t.SYNFloodPerSecond, "more than 0")
	bad(t.SYNFloodMinRatio >= 0 && t.SYNFloodMinRatio <= 1, "syn_flood_min_ratio", t.SYNFloodMinRatio, "0 to 1")
	bad(t.SpikeRatio > 1, "spike_ratio", t.SpikeRatio, "more than 1")
	bad(t.SpikeZ >= 0, "spike_z", t.SpikeZ, "at least 0")
	bad(t.SpikeMinBytesPerSecond >= 0, "spike_min_bytes_per_second", t.SpikeMinBytesPerSecond, "at least 0")
	bad(t.DropRatio > 1, "drop_ratio", t.DropRatio, "more than 1")
	bad(t.DropMinBytesPerSecond > 0, "drop_min_bytes_per_second", t.DropMinBytesPerSecond, "more than 0")
	bad(t.DNSErrorsMin >= 1, "dns_errors_min", t.DNSErrorsMin, "at least 1")
	bad(t.DNSErrorsRatio >= 1, "dns_errors_ratio", t.DNSErrorsRatio, "at least 1")
	bad(t.BruteForceConnections >= 2, "brute_force_connections", t.BruteForceConnections, "at least 2")
	bad(t.BruteForceMaxPackets >= 1, "brute_force_max_packets", t.BruteForceMaxPackets, "at least 1")
	bad(t.BeaconMaxCV > 0 && t.BeaconMaxCV < 1, "beacon_max_cv", t.BeaconMaxCV, "between 0 and 1")
	bad(t.BeaconMinConnections >= 3, "beacon_min_connections", t.BeaconMinConnections, "at least 3")
	bad(t.BeaconMinWindows >= 1, "beacon_min_windows", t.BeaconMinWindows, "at least 1")
	bad(t.BeaconMinInterval > 0, "beacon_min_interval", t.BeaconMinInterval, "more than 0")
	bad(t.BeaconMaxPairs >= 1 && t.BeaconMaxPairs <= 1<<20, "beacon_max_pairs", t.BeaconMaxPairs, "1 to 1048576")
	bad(t.ExfilMinBytes > 0, "exfil_min_bytes", t.ExfilMinBytes, "more than 0")
	bad(t.ExfilRatio >= 1, "exfil_ratio", t.ExfilRatio, "at least 1")
	bad(t.MaxEventsPerKind >= 1, "max_events_per_kind", t.MaxEventsPerKind, "at least 1")
	return errors.Join(errs...)
}
