package netnstest

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Tcpdump is a running tcpdump writing a pcap file inside a namespace, used
// as the reference capturer.
type Tcpdump struct {
	cmd    *exec.Cmd
	stderr strings.Builder
	done   chan error
}

// StartTcpdump starts `tcpdump --immediate-mode -i iface -w file`
// with a 2048-byte snaplen (immediate mode gives every packet a ring slot of
// snaplen bytes, so a large snaplen means a tiny ring and kernel drops) (plus extra arguments,
// which may end in a filter) inside ns and returns once tcpdump says it is
// listening.
func StartTcpdump(ns, iface, file string, extra ...string) (*Tcpdump, error) {
	args := append([]string{"tcpdump", "-n", "-U", "--immediate-mode", "-s", "2048", "-B", "16384", "-i", iface, "-w", file}, extra...)
	td := &Tcpdump{cmd: Command(ns, args...), done: make(chan error, 1)}
	pr, err := td.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := td.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting tcpdump: %w", err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		signalled := false
		for sc.Scan() {
			td.stderr.WriteString(sc.Text() + "\n")
			if !signalled && strings.Contains(sc.Text(), "listening on") {
				close(ready)
				signalled = true
			}
		}
		io.Copy(io.Discard, pr)
		td.done <- td.cmd.Wait()
		if !signalled {
			close(ready)
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		td.cmd.Process.Kill()
		return nil, fmt.Errorf("tcpdump did not start listening within 10s")
	}
	if td.cmd.ProcessState != nil {
		return nil, fmt.Errorf("tcpdump exited early: %s", td.stderr.String())
	}
	return td, nil
}

// Stop interrupts tcpdump, waits for it to write its file and exit, and
// returns what it printed on standard error (its packet counts).
func (td *Tcpdump) Stop() (string, error) {
	// ip netns exec execs tcpdump, so the signal reaches tcpdump itself.
	td.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-td.done:
		if err != nil {
			return td.stderr.String(), fmt.Errorf("tcpdump: %w: %s", err, td.stderr.String())
		}
	case <-time.After(10 * time.Second):
		td.cmd.Process.Kill()
		return td.stderr.String(), fmt.Errorf("tcpdump did not exit within 10s of SIGINT")
	}
	return td.stderr.String(), nil
}
