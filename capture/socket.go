package capture

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// headroom reserved before each frame (PACKET_RESERVE) so walkBlock can
// re-insert a stripped VLAN tag in place.
const headroom = vlanTagLen

// socket is one TPACKET_V3 receive ring bound to one interface.
type socket struct {
	fd        int
	ring      []byte
	blockSize int
	numBlocks int
	linkType  LinkType
	loopback  bool // the walker drops the outgoing copy of each packet
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openSocket creates an AF_PACKET socket with a TPACKET_V3 ring bound to
// ifindex. The socket is created with protocol 0 so it receives nothing until
// bind, and a reject-all classic BPF filter is attached before bind so that no
// packet lands in the ring before every worker of the fanout group has joined
// and the caller installs the real filter.
func openSocket(ifindex int, cfg *Config) (s *socket, err error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("create AF_PACKET socket: %w", err)
	}
	sock := &socket{fd: fd}
	s = sock
	defer func() {
		if err != nil {
			sock.close() // s is nil by now: every error returns nil, err
		}
	}()
	if err := attachFilter(fd, []unix.SockFilter{{Code: 0x06, K: 0}}); err != nil { // ret #0
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return nil, fmt.Errorf("select TPACKET_V3: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_RESERVE, headroom); err != nil {
		return nil, fmt.Errorf("set PACKET_RESERVE: %w", err)
	}
	s.blockSize = cfg.BlockBytes
	s.numBlocks = int(cfg.RingBytes / int64(cfg.BlockBytes))
	const frameSize = 1 << 11 // only used by the kernel to validate frame_nr under V3
	req := unix.TpacketReq3{
		Block_size:     uint32(s.blockSize),
		Block_nr:       uint32(s.numBlocks),
		Frame_size:     frameSize,
		Frame_nr:       uint32(s.blockSize / frameSize * s.numBlocks),
		Retire_blk_tov: uint32(max(1, cfg.BlockTimeout.Milliseconds())),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("allocate %d ring blocks of %d bytes (lower the capture ring size if memory is short): %w",
			s.numBlocks, s.blockSize, err)
	}
	s.ring, err = unix.Mmap(fd, 0, s.blockSize*s.numBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("map the capture ring: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("read the bound address: %w", err)
	}
	ll, ok := sa.(*unix.SockaddrLinklayer)
	if !ok {
		return nil, fmt.Errorf("read the bound address: unexpected %T", sa)
	}
	if s.linkType, err = linkTypeOf(ll.Hatype); err != nil {
		return nil, err
	}
	s.loopback = ll.Hatype == unix.ARPHRD_LOOPBACK
	if cfg.Promisc {
		mreq := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return nil, fmt.Errorf("enable promiscuous mode: %w", err)
		}
	}
	return s, nil
}

// linkTypeOf maps the device's ARPHRD type to the pcap link type its frames
// start with on a SOCK_RAW packet socket, as libpcap does.
func linkTypeOf(hatype uint16) (LinkType, error) {
	switch hatype {
	case unix.ARPHRD_ETHER, unix.ARPHRD_LOOPBACK:
		return LinkTypeEthernet, nil
	case unix.ARPHRD_NONE:
		return LinkTypeRaw, nil
	}
	return 0, fmt.Errorf("link type ARPHRD %d is not supported (supported: Ethernet, loopback, raw IP such as tun or WireGuard)", hatype)
}

// joinFanout adds the socket to fanout group id (hash of the flow, with IP
// defragmentation so all fragments of a datagram reach one worker). id 0 asks
// the kernel for a fresh unique group id, which is returned.
func (s *socket) joinFanout(id uint16) (uint16, error) {
	arg := int(id) | (unix.PACKET_FANOUT_HASH|unix.PACKET_FANOUT_FLAG_DEFRAG)<<16
	if id == 0 {
		arg |= unix.PACKET_FANOUT_FLAG_UNIQUEID << 16
	}
	if err := unix.SetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_FANOUT, arg); err != nil {
		return 0, fmt.Errorf("join fanout group %d: %w", id, err)
	}
	if id != 0 {
		return id, nil
	}
	v, err := unix.GetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_FANOUT)
	if err != nil {
		return 0, fmt.Errorf("read fanout group id: %w", err)
	}
	return uint16(v), nil
}

// stats reads and resets the kernel's counters for this socket.
func (s *socket) stats() (unix.TpacketStatsV3, error) {
	st, err := unix.GetsockoptTpacketStatsV3(s.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return unix.TpacketStatsV3{}, fmt.Errorf("read PACKET_STATISTICS: %w", err)
	}
	return *st, nil
}

func (s *socket) block(i int) []byte {
	return s.ring[i*s.blockSize : (i+1)*s.blockSize : (i+1)*s.blockSize]
}

// pendingError reads and clears the socket's pending error (ENETDOWN when the
// interface went down).
func (s *socket) pendingError() error {
	v, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if v == 0 {
		return nil
	}
	return unix.Errno(v)
}

// close unmaps the ring and closes the socket. Only the worker that reads the
// ring may call it, after its last read.
func (s *socket) close() {
	if s.ring != nil {
		_ = unix.Munmap(s.ring)
		s.ring = nil
	}
	if s.fd >= 0 {
		_ = unix.Close(s.fd)
		s.fd = -1
	}
}

// attachFilter installs a classic BPF program on the socket.
func attachFilter(fd int, prog []unix.SockFilter) error {
	p := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &p); err != nil {
		return fmt.Errorf("attach socket filter: %w", err)
	}
	return nil
}

// drain discards whatever the ring already holds, so that packets queued under
// an earlier filter never reach consumers.
func (s *socket) drain() {
	for i := 0; i < s.numBlocks; i++ {
		if b := s.block(i); blockReady(b) {
			releaseBlock(b)
		}
	}
}

// interfaceIndex resolves an interface name, with an error that says what was
// looked for.
func interfaceIndex(name string) (int, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("interface %q: %w", name, err)
	}
	return ifi.Index, nil
}

// LinkTypeOf reports the link type sonde captures iface as, so a filter can
// be compiled for it before capture starts. It needs CAP_NET_RAW: it binds a
// packet socket with protocol 0, which receives nothing, and reads the
// device type back.
func LinkTypeOf(iface string) (LinkType, error) {
	idx, err := interfaceIndex(iface)
	if err != nil {
		return 0, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("create AF_PACKET socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: idx}); err != nil {
		return 0, fmt.Errorf("interface %q: bind: %w", iface, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, fmt.Errorf("interface %q: read the bound address: %w", iface, err)
	}
	ll, ok := sa.(*unix.SockaddrLinklayer)
	if !ok {
		return 0, fmt.Errorf("interface %q: unexpected address %T", iface, sa)
	}
	lt, err := linkTypeOf(ll.Hatype)
	if err != nil {
		return 0, fmt.Errorf("interface %q: %w", iface, err)
	}
	return lt, nil
}

// link reports whether the interface called name in the socket's network
// namespace is still the device with index idx, and whether it is up. The
// ioctls answer in the socket's own namespace, whatever thread asks.
func (s *socket) link(name string, idx int) (exists, up bool) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return false, false
	}
	if err := unix.IoctlIfreq(s.fd, unix.SIOCGIFINDEX, ifr); err != nil || int(ifr.Uint32()) != idx {
		return false, false
	}
	ifr, _ = unix.NewIfreq(name)
	if err := unix.IoctlIfreq(s.fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return true, false
	}
	flags := ifr.Uint16()
	return true, flags&unix.IFF_UP != 0 && flags&unix.IFF_RUNNING != 0
}
