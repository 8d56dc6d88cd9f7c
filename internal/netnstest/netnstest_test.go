package netnstest

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFrameFormat(t *testing.T) {
	f := Flow{
		SrcMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 1},
		Src:    mustAddr("198.18.0.1"), Dst: mustAddr("198.18.0.2"),
		SrcPort: 40000, DstPort: 9, Stream: 7,
	}
	for _, vlan := range []uint16{0, 0x2064} {
		f.VLAN = vlan
		for _, size := range []int{MinFrame, 61, 100, MaxFrame} {
			if vlan != 0 {
				size += 4
			}
			b := f.Frame(123456789, size)
			if len(b) != size {
				t.Fatalf("vlan %#x size %d: got %d bytes", vlan, size, len(b))
			}
			stream, seq, err := Parse(b)
			if err != nil || stream != 7 || seq != 123456789 {
				t.Fatalf("vlan %#x size %d: Parse = %d, %d, %v", vlan, size, stream, seq, err)
			}
			o := 14
			if vlan != 0 {
				o += 4
				if got := binary.BigEndian.Uint16(b[14:]); got != vlan {
					t.Fatalf("TCI %#x, want %#x", got, vlan)
				}
			}
			if c := checksum(b[o:o+20], 0); c != 0 {
				t.Fatalf("vlan %#x size %d: IPv4 header checksum does not verify (%#x)", vlan, size, c)
			}
			if got := int(binary.BigEndian.Uint16(b[o+2:])); got != size-o {
				t.Fatalf("IPv4 total length %d, want %d", got, size-o)
			}
		}
	}
}

func TestTsharkAcceptsChecksums(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark not installed")
	}
	f := Flow{SrcMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 1}, Src: mustAddr("198.18.3.1"), Dst: mustAddr("198.18.3.2"), SrcPort: 1, DstPort: 9}
	path := filepath.Join(t.TempDir(), "f.pcap")
	var file []byte
	file = binary.LittleEndian.AppendUint32(file, 0xa1b2c3d4)
	file = append(file, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0)
	sizes := []int{60, 61, 333, 1514}
	for _, vlan := range []uint16{0, 100} {
		f.VLAN = vlan
		for i, b := range f.Frames(sizes) {
			for _, v := range []uint32{uint32(i), 0, uint32(len(b)), uint32(len(b))} {
				file = binary.LittleEndian.AppendUint32(file, v)
			}
			file = append(file, b...)
		}
	}
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("tshark", "-r", path, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
		"-Y", "ip.checksum.status != 1 || udp.checksum.status != 1", "-T", "fields", "-e", "frame.number").Output()
	if err != nil {
		t.Fatalf("tshark: %v: %s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Fatalf("frames with a bad or unverified checksum: %s", s)
	}
}

// TestSendSeenByTcpdump checks the sender and the namespaces together: a
// capture of the whole interface, without a filter, holds exactly the frames
// sent, byte for byte, and nothing else (no ND, MLD or replies).
func TestSendSeenByTcpdump(t *testing.T) {
	p := New(t)
	file := filepath.Join(t.TempDir(), "b.pcap")
	td, err := StartTcpdump(p.B.NS, p.B.Iface, file)
	if err != nil {
		t.Fatal(err)
	}
	frames := p.Flow(1).Frames(MixedSizes(1000, 1))
	s, err := NewSender(p.A.NS, p.A.Iface)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SendPaced(frames, 100, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if out, err := td.Stop(); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("tcpdump: %s", strings.TrimSpace(out))
	}
	got := readPcap(t, file)
	if len(got) != len(frames) {
		t.Fatalf("tcpdump captured %d frames, sent %d", len(got), len(frames))
	}
	for i := range frames {
		if !bytes.Equal(got[i], frames[i]) {
			t.Fatalf("frame %d differs: sent %x, captured %x", i, frames[i], got[i])
		}
	}
	rx, err := Stat(p.B.NS, p.B.Iface, "rx_packets")
	if err != nil || rx != uint64(len(frames)) {
		t.Fatalf("rx_packets = %d (%v), want %d", rx, err, len(frames))
	}
}

// TestVLANTagReachesCapture checks that tagged frames arrive tagged at a
// capture that restores tags (tcpdump does, from the AF_PACKET auxiliary
// data), so e2e tests of sonde's own restoring mean something.
func TestVLANTagReachesCapture(t *testing.T) {
	p := New(t)
	// Best effort: ask the receiver to strip tags in "hardware" too; veth
	// strips them in software on receive anyway.
	Run(p.B.NS, "ethtool", "-K", p.B.Iface, "rxvlan", "on")
	file := filepath.Join(t.TempDir(), "v.pcap")
	td, err := StartTcpdump(p.B.NS, p.B.Iface, file)
	if err != nil {
		t.Fatal(err)
	}
	f := p.Flow(2)
	f.VLAN = 0x6000 | 42 // priority 3, VLAN 42
	frames := f.Frames(MixedSizes(50, 2))
	s, err := NewSender(p.A.NS, p.A.Iface)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Send(frames); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := td.Stop(); err != nil {
		t.Fatal(err)
	}
	got := readPcap(t, file)
	if len(got) != len(frames) {
		t.Fatalf("captured %d frames, sent %d", len(got), len(frames))
	}
	for i := range frames {
		if !bytes.Equal(got[i], frames[i]) {
			t.Fatalf("tagged frame %d differs: sent %x, captured %x", i, frames[i][:18], got[i][:min(18, len(got[i]))])
		}
	}
}

func TestHTTPClientDialsInsideNamespace(t *testing.T) {
	ns := Namespace(t, "sndH")
	var ln net.Listener
	if err := Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "inside") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	resp, err := HTTPClient(ns).Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "inside" {
		t.Fatalf("body %q", body)
	}
	// The listener is in ns only: the host's loopback must not reach it.
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatalf("listener in %s reachable from the host namespace", ns)
	}
}

func TestTmpFS(t *testing.T) {
	dir := TmpFS(t, "1m")
	big := make([]byte, 2<<20)
	err := os.WriteFile(filepath.Join(dir, "x"), big, 0o644)
	if err == nil {
		t.Fatal("wrote 2 MiB to a 1 MiB tmpfs")
	}
}

func readPcap(t *testing.T, path string) [][]byte {
	t.Helper()
	pf, err := ReadPcap(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(pf.Records))
	for i, r := range pf.Records {
		out[i] = r.Data
	}
	return out
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
