package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Route flags from <linux/route.h> and <linux/ipv6_route.h>.
const (
	rtfUp     = 0x0001
	rtfReject = 0x0200
)

// ErrNoDefaultRoute is returned by DefaultRouteInterface when neither the
// IPv4 nor the IPv6 routing table has a usable default route.
var ErrNoDefaultRoute = errors.New("no default route: set --interface")

// DefaultRouteInterface returns the interface of the default route with the
// lowest metric, from /proc/net/route and, if that has none, from
// /proc/net/ipv6_route. It is what an empty interfaces setting means.
func DefaultRouteInterface() (string, error) {
	return defaultRouteInterface("/proc/net/route", "/proc/net/ipv6_route")
}

func defaultRouteInterface(v4path, v6path string) (string, error) {
	var errs []error
	for _, p := range []struct {
		path  string
		parse func(io.Reader) (string, error)
	}{{v4path, parseRouteV4}, {v6path, parseRouteV6}} {
		f, err := os.Open(p.path)
		if err != nil {
			errs = append(errs, fmt.Errorf("find default route: %w", err))
			continue
		}
		name, err := p.parse(f)
		f.Close()
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, ErrNoDefaultRoute) {
			errs = append(errs, fmt.Errorf("find default route in %s: %w", p.path, err))
		}
	}
	if len(errs) > 0 {
		return "", errors.Join(append(errs, ErrNoDefaultRoute)...)
	}
	return "", ErrNoDefaultRoute
}

// parseRouteV4 reads the /proc/net/route format:
//
//	Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT
//
// with hexadecimal Destination, Flags and Mask.
func parseRouteV4(r io.Reader) (string, error) {
	best, bestMetric := "", uint64(0)
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if first {
			first = false
			if len(f) > 0 && f[0] == "Iface" {
				continue
			}
		}
		if len(f) < 8 {
			continue
		}
		flags, err1 := strconv.ParseUint(f[3], 16, 32)
		metric, err2 := strconv.ParseUint(f[6], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		if f[1] != "00000000" || f[7] != "00000000" || flags&rtfUp == 0 || flags&rtfReject != 0 {
			continue
		}
		if best == "" || metric < bestMetric {
			best, bestMetric = f[0], metric
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if best == "" {
		return "", ErrNoDefaultRoute
	}
	return best, nil
}

// parseRouteV6 reads the /proc/net/ipv6_route format:
//
//	dest dest_plen src src_plen nexthop metric refcnt use flags dev
//
// all hexadecimal. The kernel lists an unreachable default route on lo; it
// carries RTF_REJECT and is skipped.
func parseRouteV6(r io.Reader) (string, error) {
	best, bestMetric := "", uint64(0)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		metric, err1 := strconv.ParseUint(f[5], 16, 32)
		flags, err2 := strconv.ParseUint(f[8], 16, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		if f[0] != strings.Repeat("0", 32) || f[1] != "00" || flags&rtfUp == 0 || flags&rtfReject != 0 || f[9] == "lo" {
			continue
		}
		if best == "" || metric < bestMetric {
			best, bestMetric = f[9], metric
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if best == "" {
		return "", ErrNoDefaultRoute
	}
	return best, nil
}
