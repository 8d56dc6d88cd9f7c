//go:build libpcap

package capture_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/netnstest"
)

// TestLivePcapEngine captures through libpcap with a filter only libpcap's
// own compiler accepts ("igmp" is outside sonde's): exactly the frames to
// port 9 arrive, byte for byte, in order, with nanosecond timestamps.
func TestLivePcapEngine(t *testing.T) {
	p := netnstest.New(t)
	cfg := capture.Config{
		Engine: capture.EnginePcap, Interfaces: []string{p.B.Iface}, Promisc: true, Snaplen: 262144,
		RingBytes: 8 << 20, BlockBytes: 1 << 20, BlockTimeout: 10 * time.Millisecond,
		PcapFilter: "udp dst port 9 and not igmp",
	}
	stop, frames, closed := startCapture(t, p, cfg)
	keep := p.Flow(1)
	skip := p.Flow(2)
	skip.DstPort = 10
	sizes := netnstest.MixedSizes(2000, 3)
	want := keep.Frames(sizes)
	var mixed [][]byte
	for i, f := range skip.Frames(sizes) {
		mixed = append(mixed, want[i], f)
	}
	s, err := netnstest.NewSender(p.A.NS, p.A.Iface)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SendPaced(mixed, 256, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	st := stop()
	got := frames()
	if len(got) != len(want) {
		t.Fatalf("captured %d frames, want the %d to port 9", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d differs:\n got %x\nwant %x", i, got[i], want[i])
		}
	}
	if n := closed(); n != 1 {
		t.Errorf("%d consumers closed, want 1", n)
	}
	if len(st) != 1 || st[0].Packets != uint64(len(want)) || st[0].KernelDrops != 0 || st[0].LinkType != capture.LinkTypeEthernet {
		t.Errorf("status %+v", st)
	}
}

func TestPcapEngineRefusesBadFilter(t *testing.T) {
	netnstest.Root(t)
	_, err := capture.New(capture.Config{
		Engine: capture.EnginePcap, Interfaces: []string{"lo"}, Snaplen: 100,
		RingBytes: 2 << 20, BlockBytes: 1 << 20, BlockTimeout: time.Millisecond, PcapFilter: "tcp and and",
	}, nil, nil)
	if !errors.Is(err, capture.ErrFilter) || !strings.Contains(err.Error(), `"tcp and and"`) {
		t.Fatalf("error %v is not a filter error quoting the expression", err)
	}
}
