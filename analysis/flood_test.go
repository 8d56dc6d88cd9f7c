package analysis

import (
	"bufio"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sonde-project/sonde/capture"
)

// vmRSS returns this process's resident set size in bytes.
func vmRSS(t testing.TB) uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// floodFrame writes an Ethernet/IPv4/UDP frame from src:sport to
// dst:dport carrying payload into buf and returns it. Checksums are left
// zero: analysis does not verify them.
func floodFrame(buf []byte, src, dst uint32, sport, dport uint16, payload []byte) []byte {
	b := buf[:42+len(payload)]
	copy(b[0:6], []byte{2, 0, 0x5e, 0x10, 0, 1})
	copy(b[6:12], []byte{2, 0, 0, 0, 0, 2})
	b[12], b[13] = 0x08, 0x00
	ip := b[14:]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], uint16(28+len(payload)))
	binary.BigEndian.PutUint32(ip[4:], 0)
	ip[8], ip[9] = 64, 17
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint32(ip[12:], src)
	binary.BigEndian.PutUint32(ip[16:], dst)
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	udp[6], udp[7] = 0, 0
	copy(udp[8:], payload)
	return b
}

// TestFlood feeds one Analyzer millions of distinct 5-tuples (every packet
// a new UDP flow between random addresses of 10.0.0.0/8) interleaved with a
// DNS flood of random names that are never answered, one packet per
// microsecond of capture time, and checks what issue 4 and 7 ask of a
// flood: resident memory stays under the configured bound (the flow and
// DNS tables, allocated up front, plus a fixed allowance), the flows that
// do not fit are counted, the DNS queries that overflow or time out are
// counted, and windows keep being published throughout.
//
// SONDE_FLOOD_PACKETS sets the size (default 2,000,000; a tenth under
// -short) and spends 10 µs of capture time per packet; the memory assertion is the same at any size.
func TestFlood(t *testing.T) {
	total := 2_000_000
	if testing.Short() {
		total /= 10
	}
	if v := os.Getenv("SONDE_FLOOD_PACKETS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("SONDE_FLOOD_PACKETS=%q: want a positive packet count", v)
		}
		total = n
	}
	const (
		maxFlows   = 1 << 18
		maxPending = 1 << 14
		dnsEvery   = 4 // one packet in four is a DNS query
		blockSize  = 1024
		spacing    = 10_000 // ns between packets: 100k packets a second
		// What is not a table: the top-K sketches, windows kept, the
		// block, the test's own buffers and the runtime's slack.
		allowance = 48 << 20
	)
	runtime.GC()
	base := vmRSS(t)
	cfg := Config{
		Workers: 1, Window: time.Second, MaxFlows: maxFlows, MaxDNSPending: maxPending,
		FlowIdleTimeout: 5 * time.Second, DNSTimeout: 2 * time.Second, KeepWindows: 60,
	}
	eng, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := eng.NewAnalyzer(0)
	if err != nil {
		t.Fatal(err)
	}
	bound := uint64(maxFlows*FlowEntryBytes) + uint64(maxPending)*2*16 + allowance

	rng := rand.New(rand.NewPCG(1, 2))
	arena := make([]byte, blockSize*128)
	blk := &capture.Block{LinkType: 1, Packets: make([]capture.Packet, blockSize)}
	var name [64]byte
	dnsQ := make([]byte, 0, 96)
	ts := int64(1_700_000_000e9)
	var peak uint64
	var lastEnd time.Time
	published := 0
	for sent := 0; sent < total; sent += blockSize {
		for i := range blk.Packets {
			buf := arena[i*128 : (i+1)*128]
			src, dst := 0x0a000000|rng.Uint32()&0xffffff, 0x0a000000|rng.Uint32()&0xffffff
			sport := uint16(1024 + rng.IntN(60000))
			var fr []byte
			if (sent+i)%dnsEvery == 0 {
				// A query for <random 20 letters>.flood.example.
				for j := range 20 {
					name[j] = 'a' + byte(rng.IntN(26))
				}
				dnsQ = binary.BigEndian.AppendUint16(dnsQ[:0], uint16(rng.Uint32()))
				dnsQ = append(dnsQ, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 20)
				dnsQ = append(dnsQ, name[:20]...)
				dnsQ = append(dnsQ, 5, 'f', 'l', 'o', 'o', 'd', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0, 1)
				fr = floodFrame(buf, src, dst, sport, 53, dnsQ)
			} else {
				fr = floodFrame(buf, src, dst, sport, uint16(rng.IntN(65536)), nil)
				fr = fr[:60] // padded to the Ethernet minimum
			}
			ts += spacing
			blk.Packets[i] = capture.Packet{Timestamp: ts, Length: uint32(len(fr)), Data: fr}
		}
		a.HandleBlock(blk)
		if (sent/blockSize)%64 == 0 {
			peak = max(peak, vmRSS(t)-base)
			if s := eng.Snapshot(); s.Last != nil && s.Last.End.After(lastEnd) {
				lastEnd = s.Last.End
				published++
			}
		}
	}
	peak = max(peak, vmRSS(t)-base)
	a.Close()
	s := eng.Snapshot()
	c := &s.Totals

	span := time.Duration(total * spacing)
	wantWindows := int(span/time.Second) - 1
	t.Logf("%d packets over %v of capture time: %d new flows, %d not tracked (table full, %d slots), %d expired; DNS %d queries, %d pending overflow, %d timeouts, %d unanswered; %d windows kept, %d seen published while feeding; RSS growth peak %.1f MiB, bound %.1f MiB",
		c.Packets, span, c.NewFlows, c.DroppedFlows, maxFlows, c.ExpiredFlows, c.DNS.Queries, c.DNS.PendingOverflow, c.DNS.Timeouts, c.DNS.Unanswered,
		len(s.Windows), published, float64(peak)/(1<<20), float64(bound)/(1<<20))
	if c.Packets != uint64((total+blockSize-1)/blockSize*blockSize) {
		t.Errorf("%d packets counted", c.Packets)
	}
	if peak > bound && !raceEnabled {
		t.Errorf("resident memory grew by %d MiB, over the bound of %d MiB", peak>>20, bound>>20)
	}
	if c.NewFlows+c.DroppedFlows != c.Packets {
		t.Errorf("every packet is a new flow: %d new + %d not tracked != %d packets", c.NewFlows, c.DroppedFlows, c.Packets)
	}
	if total > maxFlows*2 && c.DroppedFlows == 0 {
		t.Errorf("%d distinct flows into %d slots and none counted as not tracked", total, maxFlows)
	}
	if span > cfg.FlowIdleTimeout+2*time.Second && c.ExpiredFlows == 0 {
		t.Error("no flow expired in a flood longer than the idle timeout")
	}
	if q := (c.Packets + dnsEvery - 1) / dnsEvery; c.DNS.Queries != q {
		t.Errorf("%d DNS queries counted, sent %d", c.DNS.Queries, q)
	}
	if c.DNS.Queries > uint64(maxPending) && c.DNS.PendingOverflow+c.DNS.Timeouts == 0 {
		t.Error("DNS queries overflowed the pending table uncounted")
	}
	if wantWindows > 1 && (len(s.Windows) < min(wantWindows, cfg.KeepWindows) || published < wantWindows/2) {
		t.Errorf("%d windows kept and %d seen published for %v of traffic in 1 s windows", len(s.Windows), published, span)
	}
	if len(s.TopDNSNames) == 0 || len(s.TopDNSNames) > cfg.WithDefaults().TopK {
		t.Errorf("%d top DNS names", len(s.TopDNSNames))
	}
}
