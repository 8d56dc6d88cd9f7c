package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/netnstest"
)

// TestAPIUnderLoad hammers the HTTP API from a second client (16 concurrent
// loops over the capture list, window extractions, /metrics and health) while
// frames stream in: capture loses nothing (every frame on disk, no drop of
// any kind), and the API's latency percentiles are reported.
// SONDE_APILOAD_SECONDS sets the length (default 8).
func TestAPIUnderLoad(t *testing.T) {
	p := netnstest.New(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(t.TempDir(), "tokens")
	const token = "load-test-token-0123456789abcdef"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, p.B.NS, dir, "--interface", p.B.Iface, "--workers", "2",
		"--file-max-bytes", "4MiB", "--api-token-file", tokenFile)
	seconds := 8
	if v, err := strconv.Atoi(os.Getenv("SONDE_APILOAD_SECONDS")); err == nil && v > 0 {
		seconds = v
	}

	// Traffic for the whole run, paced, each frame numbered.
	s := sender(t, p)
	var sent [][]byte
	var stopTraffic atomic.Bool
	trafficDone := make(chan error, 1)
	go func() {
		f := p.Flow(600)
		for seq := uint64(0); !stopTraffic.Load(); seq += 100 {
			batch := make([][]byte, 100)
			for i := range batch {
				batch[i] = f.Frame(seq+uint64(i), 60+int((seq+uint64(i))%1400))
			}
			if err := s.Send(batch); err != nil {
				trafficDone <- err
				return
			}
			sent = append(sent, batch...)
			time.Sleep(2 * time.Millisecond)
		}
		trafficDone <- nil
	}()

	client := netnstest.HTTPClient(p.B.NS)
	client.Timeout = 10 * time.Second
	start := time.Now()
	routes := []func() string{
		func() string { return "/api/v1/captures" },
		func() string { return "/metrics" },
		func() string { return "/api/health" },
		func() string {
			to := time.Now().Add(-time.Second)
			return fmt.Sprintf("/api/v1/pcap?from=%d&to=%d&filter=udp", to.Add(-2*time.Second).Unix(), to.Unix())
		},
	}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failures  []string
		wg        sync.WaitGroup
	)
	deadline := start.Add(time.Duration(seconds) * time.Second)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(deadline); i++ {
				path := routes[i%len(routes)]()
				req, _ := http.NewRequest(http.MethodGet, "http://"+listenAddr+path, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				lat := time.Since(t0)
				mu.Lock()
				latencies = append(latencies, lat)
				// 404: a window with no file yet, early in the run.
				if err != nil || resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
					failures = append(failures, fmt.Sprintf("%s: %v %v", path, err, resp))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	stopTraffic.Store(true)
	if err := <-trafficDone; err != nil {
		t.Fatal(err)
	}
	m := d.waitCaptured(float64(len(sent)), p.B.Iface)
	d.stop()

	slices.Sort(latencies)
	q := func(f float64) time.Duration { return latencies[int(f*float64(len(latencies)-1))] }
	t.Logf("%d API requests in %ds from 16 clients (%.0f/s) while capturing %d frames: latency p50 %v, p95 %v, p99 %v, max %v",
		len(latencies), seconds, float64(len(latencies))/float64(seconds), len(sent), q(0.5), q(0.95), q(0.99), latencies[len(latencies)-1])
	if len(failures) > 0 {
		t.Errorf("%d failed requests, first: %s", len(failures), failures[0])
	}
	if kd, ud := m.sum("sonde_capture_kernel_drops_total"), m.sum("sonde_capture_user_drops_total"); kd+ud != 0 {
		t.Errorf("%v kernel and %v user drops under API load, want none", kd, ud)
	}
	compareFrames(t, "under API load", sent, ringRecords(t, dir, p.A.MAC, false))
}
