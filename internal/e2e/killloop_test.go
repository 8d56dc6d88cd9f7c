package e2e

import (
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/netnstest"
)

// TestKill9Loop kills sonde with SIGKILL at random moments while it rotates
// small files under steady traffic, and restarts it on the same data
// directory, many times over: after every kill each published file is a
// valid capture (capinfos reads it whole), and after the last restart the
// index lists exactly the files on disk with their packet counts, and no
// .part file is left. SONDE_KILL_LOOPS sets the number of rounds (default 8).
func TestKill9Loop(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	rounds := 8
	if v, err := strconv.Atoi(os.Getenv("SONDE_KILL_LOOPS")); err == nil && v > 0 {
		rounds = v
	}
	flags := []string{"--interface", p.B.Iface, "--workers", "2", "--file-max-bytes", "64KiB", "--ring-max-files", "40"}
	s := sender(t, p)
	var stop atomic.Bool
	done := make(chan error, 1)
	go func() {
		for seq := uint64(0); !stop.Load(); seq += 50 {
			batch := make([][]byte, 50)
			for i := range batch {
				batch[i] = p.Flow(uint32(seq/50%16)).Frame(seq+uint64(i), 60+int((seq+uint64(i))%1400))
			}
			if err := s.Send(batch); err != nil {
				done <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
		done <- nil
	}()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	published := 0
	for r := 0; r < rounds; r++ {
		d := startDaemon(t, p.B.NS, dir, flags...)
		time.Sleep(time.Duration(50+rng.IntN(450)) * time.Millisecond)
		d.kill()
		files := publishedFiles(t, dir)
		for _, f := range files {
			capinfosPackets(t, f) // fails the test unless the whole file reads
		}
		published = len(files)
		if t.Failed() {
			t.Fatalf("round %d: a published file is damaged", r)
		}
	}
	stop.Store(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, p.B.NS, dir, flags...)
	d.stop()
	if left := partFiles(t, dir); len(left) > 0 {
		t.Errorf(".part files left after a clean restart: %v", left)
	}
	checkIndexMatchesDisk(t, dir)
	t.Logf("%d rounds of kill -9 during rotation; %d files published at the last kill", rounds, published)
}
