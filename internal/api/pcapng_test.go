package api

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
)

// TestV1PcapPcapng: format=pcapng serves a window of mixed link types
// (which pcap refuses) with one interface per (node, interface), every
// packet on its interface, the filter compiled per link type, and the
// Sonde-Node header naming the sensor.
func TestV1PcapPcapng(t *testing.T) {
	r, dir, _ := v1Ring(t, 1, true)
	const window = "from=2026-03-01T12:00:00Z&to=2026-03-01T12:00:01Z"
	for _, node := range []string{"", "sensor-7"} {
		s, _ := v1Server(t, r, dir, Options{Node: node})
		res, body := call(t, s, req{method: "GET", target: "/api/v1/pcap?" + window})
		wantError(t, res, body, http.StatusBadRequest, "mixed_link_types")
		res, body = call(t, s, req{method: "GET", target: "/api/v1/pcap?format=pcapng2&" + window})
		wantError(t, res, body, http.StatusBadRequest, "bad_parameter", "format")

		for _, c := range []struct {
			filter  string
			packets map[string]int
		}{
			{"", map[string]int{"eth0": 200, "tun0": 10}},
			{"&filter=udp", map[string]int{"eth0": 200, "tun0": 10}},
			// Only Ethernet frames carry port 53 (tun0's UDP headers are zero).
			{"&filter=port+53", map[string]int{"eth0": 100}},
		} {
			res, body = call(t, s, req{method: "GET", target: "/api/v1/pcap?format=pcapng&" + window + c.filter})
			if res.StatusCode != http.StatusOK {
				t.Fatalf("%s: status %d: %s", c.filter, res.StatusCode, body)
			}
			wantNode := node
			if node == "" {
				wantNode = "node1"
			}
			if got := res.Header.Get("Sonde-Node"); got != wantNode {
				t.Fatalf("Sonde-Node %q, want %q", got, wantNode)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/x-pcapng" {
				t.Fatalf("Content-Type %q", ct)
			}
			rd, err := pcapio.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			var last int64
			for {
				rec, err := rd.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if rec.Timestamp < last {
					t.Fatalf("out of time order at packet %d", len(got))
				}
				last = rec.Timestamp
				ifc, _ := rd.Interface(rec.Interface)
				if ifc.Description != "sonde node node1" {
					t.Fatalf("interface %d: description %q", rec.Interface, ifc.Description)
				}
				if want := map[string]capture.LinkType{"eth0": capture.LinkTypeEthernet, "tun0": capture.LinkTypeRaw}[ifc.Name]; ifc.LinkType != want {
					t.Fatalf("interface %s: link type %d", ifc.Name, ifc.LinkType)
				}
				got[ifc.Name]++
			}
			if len(got) != len(c.packets) || got["eth0"] != c.packets["eth0"] || got["tun0"] != c.packets["tun0"] {
				t.Fatalf("filter %q: packets per interface %v, want %v", c.filter, got, c.packets)
			}
			if tr := res.Trailer.Get("Sonde-Packets"); tr == "" {
				t.Fatalf("no Sonde-Packets trailer")
			}
		}
	}
}
