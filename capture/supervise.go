package capture

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Reopen backoff: a deleted interface is looked for again after 100 ms, then
// twice as long each time up to 5 s.
const (
	reopenFirst = 100 * time.Millisecond
	reopenMax   = 5 * time.Second
)

// supervise runs the workers of one interface until ctx is done. When the
// interface is deleted (or its name moves to another device), the workers
// stop, their sockets close, and the supervisor reopens sockets on the
// interface of that name when it is back, with backoff; the consumers are
// kept, so the files and counters go on. The consumers are closed once, at
// the end.
func (c *Capture) supervise(ctx context.Context, ifc *iface, stop int) {
	log := c.log.With(zap.String("interface", ifc.name))
	defer func() {
		for _, w := range ifc.workers {
			w.shutdown()
		}
	}()
	for {
		done := make(chan bool, len(ifc.workers))
		for _, w := range ifc.workers {
			go func() {
				if w.pcap != nil {
					w.runPcap(ctx.Done(), c.cfg.BlockTimeout, c.log)
					done <- false
					return
				}
				done <- w.run(stop, c.cfg.BlockTimeout, c.log)
			}()
		}
		for range ifc.workers {
			<-done
		}
		if !ifc.gone.Load() || ctx.Err() != nil {
			return
		}
		for _, w := range ifc.workers {
			w.closeSource()
		}
		ifc.state.Store(StateDown)
		ifc.errMsg.Store("interface deleted or renamed; waiting for it to come back")
		for backoff := reopenFirst; ; backoff = min(2*backoff, reopenMax) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			err := c.reopen(ifc)
			if err == nil {
				break
			}
			msg := "interface deleted or renamed; reopening: " + err.Error()
			if errors.Is(err, unix.EPERM) {
				// After a privilege drop (--user) no new capture socket can be
				// opened: only a restart brings capture back.
				msg += " (sonde dropped its privileges: restart it to capture this interface again)"
			}
			ifc.errMsg.Store(msg)
			log.Debug("interface not back yet", zap.Error(err), zap.Duration("retry_in", min(2*backoff, reopenMax)))
		}
		ifc.reopens.Add(1)
		ifc.gone.Store(false)
		ifc.errMsg.Store("")
		ifc.state.Store(StateCapturing)
		log.Info("interface is back; capturing again", zap.Int("ifindex", ifc.index))
	}
}

// reopen opens new sockets on the interface now called ifc.name, in the
// namespace capture started in, and gives them to the workers.
func (c *Capture) reopen(ifc *iface) error {
	var (
		idx   int
		socks []*socket
	)
	err := c.inNetns(func() (err error) {
		idx, socks, err = c.openSockets(ifc.name)
		return err
	})
	if err != nil {
		return err
	}
	fail := func(err error) error {
		for _, s := range socks {
			s.close()
		}
		return err
	}
	if socks[0].linkType != ifc.linkType {
		return fail(fmt.Errorf("the interface came back with link type %d, not %d", socks[0].linkType, ifc.linkType))
	}
	if err := c.attach(ifc.name, socks); err != nil {
		return fail(err)
	}
	ifc.index = idx
	for i, w := range ifc.workers {
		w.sock = socks[i]
	}
	return nil
}

// inNetns runs fn on a thread in the network namespace capture was started
// in. The daemon lives in that namespace already; a program (or test) that
// opened capture from inside another namespace needs the switch, which takes
// CAP_SYS_ADMIN.
func (c *Capture) inNetns(fn func() error) error {
	if c.netns < 0 {
		return fn()
	}
	runtime.LockOSThread()
	cur, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("read the current network namespace: %w", err)
	}
	defer unix.Close(cur)
	var a, b unix.Stat_t
	if unix.Fstat(cur, &a) == nil && unix.Fstat(c.netns, &b) == nil && a.Ino == b.Ino && a.Dev == b.Dev {
		defer runtime.UnlockOSThread()
		return fn()
	}
	if err := unix.Setns(c.netns, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter the capture's network namespace: %w", err)
	}
	ferr := fn()
	if err := unix.Setns(cur, unix.CLONE_NEWNET); err == nil {
		runtime.UnlockOSThread()
	} // else: the thread stays locked and dies with this goroutine, never reused in the wrong namespace
	return ferr
}
