package e2e

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/netnstest"
)

// ifaceHealth is one interface of /api/health.
type ifaceHealth struct {
	Name    string `json:"name"`
	State   string `json:"state"`
	Error   string `json:"error"`
	Packets uint64 `json:"packets"`
	Reopens uint64 `json:"reopens"`
}

func (d *daemon) iface(name string) ifaceHealth {
	d.t.Helper()
	code, body, err := d.get("/api/health")
	if err != nil || code != 200 {
		d.t.Fatalf("/api/health: %d %v", code, err)
	}
	var h struct {
		Interfaces []ifaceHealth `json:"interfaces"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		d.t.Fatal(err)
	}
	for _, i := range h.Interfaces {
		if i.Name == name {
			return i
		}
	}
	d.t.Fatalf("/api/health has no interface %q: %s", name, body)
	return ifaceHealth{}
}

func (d *daemon) waitState(name, state string, what string) ifaceHealth {
	d.t.Helper()
	var last ifaceHealth
	waitUntil(d.t, 15*time.Second, what, func() bool {
		last = d.iface(name)
		return last.State == state
	})
	return last
}

// TestInterfaceFaults takes the captured interface down and up (quietly: no
// traffic tells sonde it is back), deletes and re-creates it, and renames it
// away and back: capture resumes by itself each time, health shows each
// state, and every frame sent while the link was up is on disk, in order.
func TestInterfaceFaults(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "2")
	var sent [][]byte
	stream := uint32(30)
	send := func() {
		t.Helper()
		s, err := netnstest.NewSender(p.A.NS, p.A.Iface) // a fresh socket: the old device may be gone
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		f := p.Flow(stream)
		stream++
		frames := f.Frames(netnstest.MixedSizes(500, uint64(stream)))
		if err := s.SendPaced(frames, chunk, pause); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, frames...)
		d.waitCaptured(float64(len(sent)), p.B.Iface)
	}
	ip := func(ns string, args ...string) {
		t.Helper()
		if out, err := netnstest.Run(ns, append([]string{"ip"}, args...)...); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	send()

	// Down, then up with no traffic at all: health must follow the link.
	ip(p.B.NS, "link", "set", p.B.Iface, "down")
	if h := d.waitState(p.B.Iface, "down", "state down"); h.Error == "" {
		t.Errorf("down interface reported with no reason: %+v", h)
	}
	ip(p.B.NS, "link", "set", p.B.Iface, "up")
	d.waitState(p.B.Iface, "capturing", "state capturing after link up, with no traffic")
	send()

	// Deleted (both veth ends go) and re-created under the same names.
	ip(p.B.NS, "link", "del", p.B.Iface)
	if h := d.waitState(p.B.Iface, "down", "state down after delete"); !strings.Contains(h.Error, "deleted") {
		t.Errorf("deleted interface reported as %+v", h)
	}
	if _, err := netnstest.Run(p.B.NS, "ip", "link", "add", p.B.Iface, "type", "veth", "peer", "name", p.A.Iface, "netns", p.A.NS); err != nil {
		t.Fatal(err)
	}
	ip(p.A.NS, "link", "set", p.A.Iface, "up")
	ip(p.B.NS, "link", "set", p.B.Iface, "up")
	if h := d.waitState(p.B.Iface, "capturing", "capture reopened on the re-created interface"); h.Reopens != 1 {
		t.Errorf("reopens = %d after one delete, want 1", h.Reopens)
	}
	send()

	// Renamed away (capture follows the name, not the device), then back.
	ip(p.B.NS, "link", "set", p.B.Iface, "down")
	ip(p.B.NS, "link", "set", p.B.Iface, "name", "svrenamed")
	waitUntil(t, 15*time.Second, "sonde to notice the rename", func() bool {
		return strings.Contains(d.iface(p.B.Iface).Error, "renamed")
	})
	ip(p.B.NS, "link", "set", "svrenamed", "name", p.B.Iface)
	ip(p.B.NS, "link", "set", p.B.Iface, "up")
	if h := d.waitState(p.B.Iface, "capturing", "capture back on the renamed-back interface"); h.Reopens != 2 {
		t.Errorf("reopens = %d after a delete and a rename, want 2", h.Reopens)
	}
	send()
	m := d.metrics()
	if r := m.sum("sonde_capture_reopens_total"); r != 2 {
		t.Errorf("sonde_capture_reopens_total = %v, want 2", r)
	}
	d.stop()
	// Each flow is read by one worker; files of the two workers interleave in
	// time, so frames are compared flow by flow.
	want, got := map[uint32][][]byte{}, map[uint32][]capRecord{}
	for _, f := range sent {
		s, _, _ := netnstest.Parse(f)
		want[s] = append(want[s], f)
	}
	for _, r := range ringRecords(t, dir, p.A.MAC, false) {
		s, _, err := netnstest.Parse(r.Data)
		if err != nil {
			t.Fatalf("record in %s: %v", r.file, err)
		}
		got[s] = append(got[s], r)
	}
	if len(got) != len(want) {
		t.Errorf("%d flows on disk, %d sent", len(got), len(want))
	}
	for s := range want {
		compareFrames(t, "flow "+strconv.Itoa(int(s)), want[s], got[s])
	}
	checkIndexMatchesDisk(t, dir)
}
