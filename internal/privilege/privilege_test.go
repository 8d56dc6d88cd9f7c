package privilege

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseUser(t *testing.T) {
	for _, tc := range []struct {
		in       string
		uid, gid int
		ok       bool
	}{
		{"65532", 65532, 65532, true},
		{"1000:2000", 1000, 2000, true},
		{"0:0", 0, 0, true},
		{"nobody", 0, 0, false},
		{"1000:", 0, 0, false},
		{"-1", 0, 0, false},
		{"", 0, 0, false},
	} {
		uid, gid, err := ParseUser(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (uid != tc.uid || gid != tc.gid)) {
			t.Errorf("ParseUser(%q) = %d, %d, %v", tc.in, uid, gid, err)
		}
	}
}

// TestDrop runs the drop in a child process (it cannot be undone): a packet
// socket opened before the drop keeps working, a new one is refused, and
// every thread runs as the new user with no capability.
func TestDrop(t *testing.T) {
	if os.Getenv("SONDE_PRIVILEGE_CHILD") == "1" {
		if err := dropChild(); err != nil {
			fmt.Println("FAIL:", err)
			os.Exit(1)
		}
		fmt.Println("OK")
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root, and CI=true requires it to run")
		}
		t.Skip("needs root to drop privileges")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestDrop$")
	cmd.Env = append(os.Environ(), "SONDE_PRIVILEGE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func dropChild() error {
	// In cgo builds (-race among them) no_new_privs can be set only on the
	// calling thread, so check it on the thread that dropped: this one.
	runtime.LockOSThread()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		return fmt.Errorf("open a packet socket as root: %w", err)
	}
	dir, err := os.MkdirTemp("", "sonde-priv")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(dir+"/index.jsonl", nil, 0o600); err != nil {
		return err
	}
	if err := os.MkdirAll(dir+"/reports/r1", 0o700); err != nil {
		return err
	}
	if err := PrepareDir(dir, 65534, 65534); err != nil {
		return err
	}
	if err := Drop(65534, 65534); err != nil {
		return err
	}
	st, err := ReadStatus("/proc/thread-self/status")
	if err != nil {
		return err
	}
	if st.UID != 65534 || st.GID != 65534 || st.CapEff != 0 || st.CapPrm != 0 || !st.NoNewPrivs {
		return fmt.Errorf("after the drop: %+v", st)
	}
	if _, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil {
		return fmt.Errorf("socket opened before the drop no longer usable: %w", err)
	}
	if _, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0); !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("a new packet socket after the drop: got %v, want EPERM", err)
	}
	// The prepared directory is writable by the new user.
	if err := os.WriteFile(dir+"/new.pcap", []byte("x"), 0o600); err != nil {
		return fmt.Errorf("write into the prepared directory: %w", err)
	}
	if err := os.WriteFile(dir+"/index.jsonl", []byte("x"), 0o600); err != nil {
		return fmt.Errorf("rewrite a file handed over: %w", err)
	}
	if err := os.WriteFile(dir+"/reports/r1/report.json", []byte("x"), 0o600); err != nil {
		return fmt.Errorf("write in a subdirectory handed over: %w", err)
	}
	return nil
}
