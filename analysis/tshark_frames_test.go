package analysis

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/sonde-project/sonde/analysis/decode"
	"github.com/sonde-project/sonde/internal/pcapio"
)

// tcpFlag is one of the per-segment classes that are compared with
// tshark's tcp.analysis flags.
type tcpFlag uint16

const (
	flagRetrans tcpFlag = 1 << iota // any retransmission: tshark sets tcp.analysis.retransmission with fast and spurious too
	flagFast
	flagSpurious
	flagOOO
	flagDupAck
	flagWindowFull
	flagZeroWindow
	flagKeepAlive
)

var tcpFlagNames = []struct {
	f     tcpFlag
	name  string
	field string
}{
	{flagRetrans, "retransmission", "tcp.analysis.retransmission"},
	{flagFast, "fast retransmission", "tcp.analysis.fast_retransmission"},
	{flagSpurious, "spurious retransmission", "tcp.analysis.spurious_retransmission"},
	{flagOOO, "out of order", "tcp.analysis.out_of_order"},
	{flagDupAck, "duplicate ACK", "tcp.analysis.duplicate_ack"},
	{flagWindowFull, "window full", "tcp.analysis.window_full"},
	{flagZeroWindow, "zero window", "tcp.analysis.zero_window"},
	{flagKeepAlive, "keep-alive", "tcp.analysis.keep_alive"},
}

func (f tcpFlag) String() string {
	var s []string
	for _, n := range tcpFlagNames {
		if f&n.f != 0 {
			s = append(s, n.name)
		}
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ", ")
}

// sondeFrameFlags replays file packet by packet through one Analyzer and
// returns, by frame number (from 1, as tshark numbers them), the classes
// sonde gave each TCP segment, read from the change of its counters.
func sondeFrameFlags(t testing.TB, file string) map[int]tcpFlag {
	t.Helper()
	eng, err := NewEngine(Config{Workers: 1, Window: 3600e9, KeepWindows: 10, MaxFlows: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	a, err := eng.NewAnalyzer(0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapio.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]tcpFlag{}
	for n := 1; ; n++ {
		rec, err := r.Next()
		if err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		lt := r.LinkType()
		if ifc, ok := r.Interface(rec.Interface); ok {
			lt = ifc.LinkType
		}
		var before TCPCounters
		if a.winEnd == 0 || rec.Timestamp < a.winEnd {
			before = a.c.TCP
		}
		a.packet(decode.LinkType(lt), rec.Timestamp, rec.Length, append([]byte(nil), rec.Data...))
		after := &a.c.TCP
		var fl tcpFlag
		for _, d := range []struct {
			f    tcpFlag
			a, b uint64
		}{
			{flagRetrans, before.Retransmissions, after.Retransmissions},
			{flagFast, before.FastRetransmissions, after.FastRetransmissions},
			{flagSpurious, before.SpuriousRetransmits, after.SpuriousRetransmits},
			{flagOOO, before.OutOfOrder, after.OutOfOrder},
			{flagDupAck, before.DupAcks, after.DupAcks},
			{flagWindowFull, before.LowWindows, after.LowWindows},
			{flagZeroWindow, before.ZeroWindows, after.ZeroWindows},
			{flagKeepAlive, before.KeepAlives, after.KeepAlives},
		} {
			if d.b != d.a {
				fl |= d.f
			}
		}
		if fl != 0 {
			out[n] = fl
		}
	}
}

// tsharkFrameFlags returns, by frame number, the tcp.analysis classes
// tshark gives each frame, from one pass over file.
func tsharkFrameFlags(t testing.TB, file string) map[int]tcpFlag {
	t.Helper()
	fields := []string{"frame.number"}
	for _, n := range tcpFlagNames {
		fields = append(fields, n.field)
	}
	out := map[int]tcpFlag{}
	for _, l := range tsharkFields(t, file, "", fields...) {
		v := strings.Split(l, "\t")
		num, err := strconv.Atoi(v[0])
		if err != nil || len(v) != len(fields) {
			t.Fatalf("tshark line %q", l)
		}
		for i, n := range tcpFlagNames {
			if v[i+1] != "" {
				out[num] |= n.f
			}
		}
	}
	return out
}

// diffFrameFlags lists the frames whose classes differ, at most max of
// them, as "frame N: sonde X, tshark Y".
func diffFrameFlags(sonde, tshark map[int]tcpFlag, max int) []string {
	return diffFlags(sonde, tshark, "sonde", "tshark", max)
}

// diffFlags lists the frames whose classes differ between a and b, at
// most max of them, as "frame N: aName X, bName Y".
func diffFlags(sonde, tshark map[int]tcpFlag, aName, bName string, max int) []string {
	seen := map[int]bool{}
	var frames []int
	for _, m := range []map[int]tcpFlag{sonde, tshark} {
		for n := range m {
			if !seen[n] && sonde[n] != tshark[n] {
				seen[n] = true
				frames = append(frames, n)
			}
		}
	}
	sort.Ints(frames)
	var out []string
	for i, n := range frames {
		if i == max {
			out = append(out, fmt.Sprintf("... and %d more", len(frames)-max))
			break
		}
		out = append(out, fmt.Sprintf("frame %d: %s %v, %s %v", n, aName, sonde[n], bName, tshark[n]))
	}
	return out
}

// TestFrameFlagsFile compares sonde's and tshark's per-frame classes of
// the capture named by SONDE_FRAME_DIFF (a diagnostic: skipped without it).
func TestFrameFlagsFile(t *testing.T) {
	file := os.Getenv("SONDE_FRAME_DIFF")
	if file == "" {
		t.Skip("SONDE_FRAME_DIFF names no capture")
	}
	needTshark(t)
	for _, l := range diffFrameFlags(sondeFrameFlags(t, file), tsharkFrameFlags(t, file), 200) {
		t.Error(l)
	}
}
