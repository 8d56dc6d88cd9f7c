// Command offlinebench measures `sonde analyze` on a multi-million-packet
// capture against tshark and tcpdump on the same file, in the same run (issue
// 4's offline targets: at least 3 million packets per second on one core, at
// least 20 times tshark, at least 0.6 of tcpdump's bare read-and-write speed).
//
// The capture is built from the real TCP, DNS and BGP captures in
// analysis/testdata, repeated with their timestamps shifted forward so time
// keeps increasing, until it holds -packets packets.
//
//	go run ./internal/offlinebench [-packets 3000000] [-sonde PATH] [-keep]
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
)

func main() {
	packets := flag.Int("packets", 3_000_000, "packets in the generated capture")
	sonde := flag.String("sonde", "", "sonde binary (default: go build ./cmd/sonde)")
	keep := flag.Bool("keep", false, "keep the generated capture and print its path")
	flag.Parse()
	if err := run(*packets, *sonde, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "offlinebench:", err)
		os.Exit(1)
	}
}

type record struct {
	wire uint32
	data []byte
}

func run(n int, sonde string, keep bool) error {
	dir, err := os.MkdirTemp("", "offlinebench-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	if sonde == "" {
		sonde = filepath.Join(dir, "sonde")
		if out, err := exec.Command("go", "build", "-o", sonde, "./cmd/sonde").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v: %s", err, out)
		}
	}
	file := filepath.Join(dir, "mixed.pcap")
	size, err := build(file, n)
	if err != nil {
		return err
	}
	fmt.Printf("%d packets, %.0f MB: %s\n\n", n, float64(size)/1e6, file)

	type result struct {
		name      string
		wall, cpu time.Duration
	}
	var results []result
	for _, c := range []struct {
		name string
		args []string
	}{
		{"sonde analyze --format json", []string{sonde, "analyze", "--format", "json", file}},
		{"tcpdump -r FILE -w /dev/null", []string{"tcpdump", "-r", file, "-w", "/dev/null"}},
		{"tshark -q -z conv,tcp", []string{"tshark", "-q", "-z", "conv,tcp", "-r", file}},
	} {
		// Twice: the first run warms the page cache, the second is measured.
		var r result
		for i := 0; i < 2; i++ {
			if c.name[:6] == "tshark" && i == 0 {
				continue // a minute a run; the file is already cached
			}
			cmd := exec.Command(c.args[0], c.args[1:]...)
			var stderr strings.Builder
			cmd.Stdout, cmd.Stderr = io.Discard, &stderr
			start := time.Now()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s: %v: %s", c.name, err, stderr.String())
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			r = result{c.name, time.Since(start), time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
		}
		results = append(results, r)
		fmt.Printf("%-30s %8.2f s wall %8.2f s CPU  %6.2f Mpps\n", r.name, r.wall.Seconds(), r.cpu.Seconds(), float64(n)/r.wall.Seconds()/1e6)
	}
	s, td, ts := results[0], results[1], results[2]
	fmt.Println()
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSES the target"
	}
	pps := float64(n) / s.wall.Seconds() / 1e6
	fmt.Printf("sonde: %.2f Mpps on one core (target >= 3): %s\n", pps, verdict(pps >= 3))
	fmt.Printf("sonde vs tshark: %.1fx faster (target >= 20x): %s\n", ts.wall.Seconds()/s.wall.Seconds(), verdict(ts.wall >= 20*s.wall))
	fmt.Printf("sonde vs tcpdump: %.2f of tcpdump's speed (target >= 0.6): %s\n", td.wall.Seconds()/s.wall.Seconds(), verdict(td.wall.Seconds()/s.wall.Seconds() >= 0.6))
	return nil
}

// build writes n packets taken in turn from the captures in analysis/testdata,
// each pass shifted to start after the previous one ended.
func build(path string, n int) (int64, error) {
	srcs, err := filepath.Glob("analysis/testdata/*.pcap")
	if err != nil || len(srcs) == 0 {
		return 0, fmt.Errorf("no captures in analysis/testdata (run from the repository root): %v", err)
	}
	var recs []record
	var lt capture.LinkType
	for _, src := range srcs {
		f, err := os.Open(src)
		if err != nil {
			return 0, err
		}
		r, err := pcapio.NewReader(bufio.NewReader(f))
		if err != nil {
			f.Close()
			return 0, fmt.Errorf("%s: %w", src, err)
		}
		if r.LinkType() != capture.LinkTypeEthernet {
			f.Close()
			continue
		}
		lt = r.LinkType()
		for {
			rec, err := r.Next()
			if err != nil {
				break
			}
			recs = append(recs, record{rec.Length, append([]byte(nil), rec.Data...)})
		}
		f.Close()
	}
	if len(recs) == 0 {
		return 0, errors.New("no Ethernet packets in analysis/testdata")
	}
	out, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	w := bufio.NewWriterSize(out, 4<<20)
	w.Write(pcapio.AppendFileHeader(nil, pcapio.FormatPcap, lt, 262144, ""))
	// Packets 1 µs apart, as on a busy link: 3 million packets are 3 s of
	// traffic. (Kept at their original spacing, the passes would stretch
	// over days of capture time and measure window bookkeeping instead.)
	var buf []byte
	start := 1_700_000_000 * int64(time.Second)
	for i := 0; i < n; i++ {
		rec := recs[i%len(recs)]
		buf = pcapio.AppendRecord(buf[:0], pcapio.FormatPcap, start+int64(i)*int64(time.Microsecond), rec.wire, rec.data)
		if _, err := w.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	st, err := out.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
