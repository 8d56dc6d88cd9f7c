package netnstest

import (
	"errors"
	"fmt"
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sender writes exact Ethernet frames to one interface inside a namespace
// through an AF_PACKET socket that receives nothing.
type Sender struct {
	fd int
}

// NewSender opens a sender on iface inside ns.
func NewSender(ns, iface string) (*Sender, error) {
	fd := -1
	err := Do(ns, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return fmt.Errorf("looking up %s: %w", iface, err)
		}
		// Protocol 0: the socket is never hooked into receive, it only sends.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening AF_PACKET socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			fd = -1
			return fmt.Errorf("binding AF_PACKET socket to %s: %w", iface, err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Sender{fd: fd}, nil
}

// Close closes the socket.
func (s *Sender) Close() error { return unix.Close(s.fd) }

// Send sends each frame once, in order, with sendmmsg in batches. It retries
// when the socket buffer is momentarily full rather than losing a frame.
func (s *Sender) Send(frames [][]byte) error {
	const batch = 64
	iov := make([]unix.Iovec, batch)
	msgs := make([]unix.Mmsghdr, batch)
	for len(frames) > 0 {
		n := min(len(frames), batch)
		for i := 0; i < n; i++ {
			iov[i].Base = &frames[i][0]
			iov[i].SetLen(len(frames[i]))
			msgs[i] = unix.Mmsghdr{}
			msgs[i].Hdr.Iov = &iov[i]
			msgs[i].Hdr.SetIovlen(1)
		}
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd),
			uintptr(unsafe.Pointer(&msgs[0])), uintptr(n), 0, 0, 0)
		switch {
		case errno == unix.ENOBUFS || errno == unix.EAGAIN || errno == unix.EINTR:
			time.Sleep(100 * time.Microsecond)
			continue
		case errno != 0:
			return fmt.Errorf("sendmmsg: %w", errno)
		case r == 0:
			return errors.New("sendmmsg sent nothing")
		}
		frames = frames[r:]
	}
	return nil
}

// SendPaced sends frames in chunks of chunk frames with a pause between
// chunks, for tests that check correctness and must not depend on how fast
// the receiver drains its ring.
func (s *Sender) SendPaced(frames [][]byte, chunk int, pause time.Duration) error {
	for len(frames) > 0 {
		n := min(len(frames), chunk)
		if err := s.Send(frames[:n]); err != nil {
			return err
		}
		frames = frames[n:]
		if len(frames) > 0 {
			time.Sleep(pause)
		}
	}
	return nil
}

// LoopbackDatagrams sends n UDP datagrams carrying payload over ns's
// loopback, from one socket to another that is bound (so no ICMP port
// unreachable adds packets of its own): exactly n packets cross it.
func LoopbackDatagrams(ns string, payload []byte, n int) error {
	return Do(ns, func() error {
		l, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		s, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer s.Close()
		for range n {
			if _, err := s.WriteTo(payload, l.LocalAddr()); err != nil {
				return err
			}
		}
		return nil
	})
}
