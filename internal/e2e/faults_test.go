package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
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
	// A veth going away is seen down by one worker before another finds it
	// gone, so "down: interface is down" may come first; what stays is the
	// deletion.
	var h ifaceHealth
	waitUntil(t, 15*time.Second, "state down, deleted, after delete", func() bool {
		h = d.iface(p.B.Iface)
		return h.State == "down" && strings.Contains(h.Error, "deleted")
	})
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

// TestDiskFaults puts the data volume through faults while sonde captures:
// remounted read-only (health turns degraded with the error, readiness
// fails, the packets that could not be written are counted), back to
// read-write (writing resumes by itself, health recovers), published files
// deleted by hand (dropped from the index and counted), and the index file
// overwritten with garbage (rewritten whole at the next publish). Through all
// of it the accounting adds up: packets read = in files + evicted + deleted
// by hand + dropped in user space.
func TestDiskFaults(t *testing.T) {
	p := netnstest.New(t)
	dir := netnstest.TmpFS(t, "16m")
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "1",
		"--file-max-bytes", "128KiB", "--file-max-duration", "1s", "--min-free-percent", "0", "--ring-max-bytes", "1GiB",
		// The events log of the analysis stays open for writing, and Linux
		// refuses a read-only remount while any file is: this test is about
		// the ring, so analysis is off.
		"--analysis=false")
	s := sender(t, p)
	sent := 0
	send := func(stream uint32, n int) {
		t.Helper()
		frames := p.Flow(stream).Frames(netnstest.MixedSizes(n, uint64(stream)))
		if err := s.SendPaced(frames, chunk, pause); err != nil {
			t.Fatal(err)
		}
		sent += n
		d.waitCaptured(float64(sent), p.B.Iface)
	}
	health := func() (status, diskErr string) {
		t.Helper()
		code, body, err := d.get("/api/health")
		if err != nil || code != 200 {
			t.Fatalf("/api/health: %d %v", code, err)
		}
		var h struct {
			Status string `json:"status"`
			Disk   struct {
				Error string `json:"error"`
			} `json:"disk"`
		}
		if err := json.Unmarshal(body, &h); err != nil {
			t.Fatal(err)
		}
		return h.Status, h.Disk.Error
	}
	// The kernel refuses a read-only remount while a file is open for
	// writing: with 1 s files and no traffic the open file is published
	// within a couple of seconds, so retry until it is.
	mount := func(opts string) {
		t.Helper()
		var out []byte
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if out, err = exec.Command("mount", "-o", "remount,"+opts, dir).CombinedOutput(); err == nil {
				return
			}
		}
		t.Fatalf("remount %s: %v: %s", opts, err, out)
	}
	send(50, 1000)

	mount("ro")
	t.Cleanup(func() { exec.Command("mount", "-o", "remount,rw", dir).Run() })
	send(51, 1000)
	waitUntil(t, 10*time.Second, "health degraded on a read-only volume", func() bool {
		st, e := health()
		return st == "degraded" && strings.Contains(e, "read-only")
	})
	if code, _, _ := d.get("/api/ready"); code != 503 {
		t.Errorf("/api/ready = %d on a read-only volume, want 503", code)
	}
	mount("rw")
	send(52, 1000)
	waitUntil(t, 20*time.Second, "health ok again once the volume is writable", func() bool {
		st, _ := health()
		return st == "ok"
	})
	if code, _, _ := d.get("/api/ready"); code != 200 {
		t.Errorf("/api/ready = %d after the volume recovered, want 200", code)
	}

	// Files deleted by hand, and the index damaged.
	idx := readIndex(t, dir)
	var deletedPackets uint64
	for _, e := range idx[:2] {
		deletedPackets += e.Packets
		if err := os.Remove(filepath.Join(dir, e.Name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "index.jsonl"), []byte("{garbage\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "the vanished files to be dropped from the index", func() bool {
		return d.metrics().sum("sonde_ring_files_vanished_total") == 2
	})
	send(53, 1000)
	time.Sleep(500 * time.Millisecond)
	m := d.metrics()
	d.stop()

	onDisk := 0
	for _, fn := range publishedFiles(t, dir) {
		onDisk += capinfosPackets(t, fn)
	}
	read := m.sum("sonde_capture_packets_total")
	evicted := m.sum("sonde_ring_evicted_packets_total")
	userDrops := m.sum("sonde_capture_user_drops_total")
	t.Logf("read %v = %d on disk + %v evicted + %d deleted by hand + %v user drops (write errors %v)",
		read, onDisk, evicted, deletedPackets, userDrops, m.sum("sonde_ring_write_errors_total"))
	if userDrops == 0 {
		t.Errorf("no user-space drops counted while the volume was read-only")
	}
	if read != float64(onDisk)+evicted+float64(deletedPackets)+userDrops {
		t.Errorf("accounting does not add up")
	}
	checkIndexMatchesDisk(t, dir)
}
