// Package privilege gives up root once sonde's privileged setup is done, as
// tcpdump -Z does: capture sockets and eBPF programs stay open, and the
// process goes on as a plain user with no capabilities at all.
package privilege

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ParseUser parses "UID" or "UID:GID" (numeric only: a container image or a
// read-only root filesystem may have no passwd database to look names up in).
// Without a GID the group is the UID's number.
func ParseUser(s string) (uid, gid int, err error) {
	u, g, hasGID := strings.Cut(s, ":")
	if uid, err = strconv.Atoi(u); err != nil || uid < 0 {
		return 0, 0, fmt.Errorf("user %q: want a numeric UID or UID:GID", s)
	}
	gid = uid
	if hasGID {
		if gid, err = strconv.Atoi(g); err != nil || gid < 0 {
			return 0, 0, fmt.Errorf("user %q: want a numeric UID or UID:GID", s)
		}
	}
	return uid, gid, nil
}

// PrepareDir hands dir and everything in it to uid:gid, so the process can
// still write, rotate and delete there after Drop. A directory that already
// belongs to uid:gid is not entered: it was made by that user (an earlier
// run), and root may not even be allowed to list it without
// CAP_DAC_READ_SEARCH, which containers do not grant. Symbolic links are left
// alone (never followed).
func PrepareDir(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("give %s to %d:%d: %w", p, uid, gid, err)
		}
		if d.Type()&os.ModeSymlink != 0 {
			return nil
		}
		if d.IsDir() {
			if fi, err := d.Info(); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid && int(st.Gid) == gid {
					return filepath.SkipDir
				}
			}
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("give %s to %d:%d: %w", p, uid, gid, err)
		}
		return nil
	})
}

// Drop switches every thread of the process to uid:gid with no supplementary
// groups. Going from uid 0 to another uid clears the permitted, effective and
// ambient capability sets (sonde never sets SECBIT_KEEP_CAPS), and
// no_new_privs keeps an exec from gaining any back. Go applies set*id to all
// threads. Drop then checks that no thread holds a capability.
func Drop(uid, gid int) error {
	// no_new_privs is per thread: set it on every thread the runtime has
	// (threads made later inherit it). AllThreadsSyscall is refused in cgo
	// builds; there it goes on this thread and the ones cloned from it.
	allThreads := true
	if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); errno == syscall.ENOTSUP {
		allThreads = false
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	} else if errno != 0 {
		return fmt.Errorf("set no_new_privs on every thread: %w", errno)
	}
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("drop supplementary groups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	return verify(uid, allThreads)
}

// verify reads every thread's status: all must run as uid, with no
// capability left when uid is not root, and with no_new_privs when it was set
// on all threads.
func verify(uid int, noNewPrivs bool) error {
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(tasks) == 0 {
		return fmt.Errorf("list threads to verify the privilege drop: %v", err)
	}
	for _, t := range tasks {
		st, err := ReadStatus(t)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread exited meanwhile
			}
			return err
		}
		if st.UID != uid {
			return fmt.Errorf("privilege drop: thread %s still runs as uid %d", t, st.UID)
		}
		if noNewPrivs && !st.NoNewPrivs {
			return fmt.Errorf("privilege drop: thread %s lacks no_new_privs", t)
		}
		if uid != 0 && (st.CapEff != 0 || st.CapPrm != 0 || st.CapAmb != 0) {
			return fmt.Errorf("privilege drop: thread %s still holds capabilities (eff %016x prm %016x amb %016x)", t, st.CapEff, st.CapPrm, st.CapAmb)
		}
	}
	return nil
}

// Status is what /proc/<pid>/status says of a process's identity and
// capability sets.
type Status struct {
	UID, GID                       int // effective
	CapEff, CapPrm, CapInh, CapAmb uint64
	NoNewPrivs                     bool
}

// Self reads the calling process's status.
func Self() (Status, error) { return ReadStatus("/proc/self/status") }

// ReadStatus parses a /proc status file.
func ReadStatus(path string) (Status, error) {
	f, err := os.Open(path)
	if err != nil {
		return Status{}, err
	}
	defer f.Close()
	var st Status
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			continue
		}
		hex := func() uint64 { v, _ := strconv.ParseUint(fields[0], 16, 64); return v }
		switch key {
		case "Uid":
			if len(fields) > 1 {
				st.UID, _ = strconv.Atoi(fields[1])
			}
		case "Gid":
			if len(fields) > 1 {
				st.GID, _ = strconv.Atoi(fields[1])
			}
		case "CapEff":
			st.CapEff = hex()
		case "CapPrm":
			st.CapPrm = hex()
		case "CapInh":
			st.CapInh = hex()
		case "CapAmb":
			st.CapAmb = hex()
		case "NoNewPrivs":
			st.NoNewPrivs = fields[0] == "1"
		}
	}
	if err := sc.Err(); err != nil {
		return Status{}, fmt.Errorf("read %s: %w", path, err)
	}
	return st, nil
}
