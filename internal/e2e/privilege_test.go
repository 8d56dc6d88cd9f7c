package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sonde-project/sonde/internal/netnstest"
	"github.com/sonde-project/sonde/internal/privilege"
)

// TestRunsAsUserWithoutCapabilities starts sonde as root with --user: once
// capturing, every thread of the daemon runs as that user with no capability,
// /api/health says so, files keep rotating into the data directory (owned by
// that user), every frame still arrives, and `sonde healthcheck` agrees.
func TestRunsAsUserWithoutCapabilities(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	// The data directory sits in a test temp dir the user must be able to
	// reach: open its parents for traversal only.
	for d := filepath.Dir(dir); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "2",
		"--user", "65534:65534", "--file-max-bytes", "256KiB")

	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(d.cmd.Process.Pid) + "/task/*/status")
	if err != nil || len(tasks) < 2 {
		t.Fatalf("threads of the daemon: %v %v", tasks, err)
	}
	for _, task := range tasks {
		st, err := privilege.ReadStatus(task)
		if err != nil {
			t.Fatal(err)
		}
		if st.UID != 65534 || st.GID != 65534 || st.CapEff != 0 || st.CapPrm != 0 || st.CapAmb != 0 || !st.NoNewPrivs {
			t.Errorf("%s: %+v; want uid/gid 65534, no capabilities, no_new_privs", task, st)
		}
	}
	code, body, err := d.get("/api/health")
	if err != nil || code != 200 {
		t.Fatalf("/api/health: %d %v", code, err)
	}
	var h struct {
		Process struct {
			UID                   int    `json:"uid"`
			CapabilitiesEffective string `json:"capabilities_effective"`
		} `json:"process"`
	}
	if err := json.Unmarshal(body, &h); err != nil || h.Process.UID != 65534 || h.Process.CapabilitiesEffective != "0000000000000000" {
		t.Errorf("/api/health process = %+v (%v): want uid 65534 and no capabilities\n%s", h.Process, err, body)
	}

	sent := p.Flow(20).Frames(netnstest.MixedSizes(3000, 20))
	if err := sender(t, p).SendPaced(sent, chunk, pause); err != nil {
		t.Fatal(err)
	}
	d.waitCaptured(float64(len(sent)), p.B.Iface)
	out, err := netnstest.Run(p.B.NS, sondeBinary(t), "healthcheck", "--listen", listenAddr)
	if err != nil || !strings.Contains(string(out), `"status":"ok"`) {
		t.Errorf("sonde healthcheck: %v\n%s", err, out)
	}
	d.stop()

	files := publishedFiles(t, dir)
	if len(files) < 3 {
		t.Fatalf("%d files published; rotation after the drop should have made several", len(files))
	}
	for _, f := range append(files, filepath.Join(dir, "index.jsonl")) {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 {
			t.Errorf("%s belongs to %d:%d, want 65534:65534", f, st.Uid, st.Gid)
		}
	}
	compareFrames(t, "as user 65534", sent, ringRecords(t, dir, p.A.MAC, false))

	// A restart on the same, now user-owned, data directory must not need
	// root's override of file permissions: the ring is opened only after
	// the drop, as the user. (Containers run without CAP_DAC_OVERRIDE.)
	d2 := startDaemonWrapped(t, p.B.NS, dir,
		[]string{"setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--inh-caps", "-all"},
		"--interface", p.B.Iface, "--workers", "2", "--user", "65534:65534", "--file-max-bytes", "256KiB")
	more := p.Flow(21).Frames(netnstest.MixedSizes(500, 21))
	if err := sender(t, p).SendPaced(more, chunk, pause); err != nil {
		t.Fatal(err)
	}
	d2.waitCaptured(float64(len(more)), p.B.Iface)
	d2.stop()
	checkIndexMatchesDisk(t, dir)
}
