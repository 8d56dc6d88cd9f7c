package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/netnstest"
)

// TestSIGHUPReload tightens retention in the configuration file and sends
// SIGHUP: the ring shrinks at once and capture loses nothing. A broken file
// then is refused with a clear log line, and the daemon goes on with the
// configuration it had.
func TestSIGHUPReload(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	conf := filepath.Join(t.TempDir(), "sonde.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(conf, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ring_max_files: 50\nfile_max_bytes: 64KiB\n")
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "1", "--config", conf)
	s := sender(t, p)
	var sent int
	send := func(stream uint32) {
		t.Helper()
		frames := p.Flow(stream).Frames(netnstest.MixedSizes(1500, uint64(stream)))
		if err := s.SendPaced(frames, chunk, pause); err != nil {
			t.Fatal(err)
		}
		sent += len(frames)
		d.waitCaptured(float64(sent), p.B.Iface)
	}
	send(40)
	waitUntil(t, 10*time.Second, "several files", func() bool { return len(publishedFiles(t, dir)) >= 5 })

	write("ring_max_files: 2\nfile_max_bytes: 64KiB\n")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "retention to shrink the ring to 2 files", func() bool { return len(publishedFiles(t, dir)) == 2 })
	if !strings.Contains(d.output(), "configuration reloaded") {
		t.Errorf("no 'configuration reloaded' log line")
	}

	write("ring_max_files: -3\nfile_max_bytes: 64KiB\n")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the bad configuration to be rejected", func() bool {
		return strings.Contains(d.output(), "configuration reload rejected") && strings.Contains(d.output(), "ring-max-files")
	})
	send(41)
	time.Sleep(1500 * time.Millisecond) // retention runs on publish and every second
	if n := len(publishedFiles(t, dir)); n > 2 {
		t.Errorf("%d files after the rejected reload: the running limit of 2 was lost", n)
	}
	m := d.metrics()
	if d.exited() {
		t.Fatal("sonde exited on a bad reload")
	}
	if kd, ud := m.sum("sonde_capture_kernel_drops_total"), m.sum("sonde_capture_user_drops_total"); kd+ud != 0 {
		t.Errorf("%v kernel and %v user drops across reloads, want none", kd, ud)
	}
	d.stop()
	checkIndexMatchesDisk(t, dir)
}
