package offload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/api"
	"github.com/sonde-project/sonde/internal/extract"
	"github.com/sonde-project/sonde/internal/ring"
)

const bucket = "sonde-test"

// env is one sensor's data directory, ring and offloader, against a MinIO
// reached through a proxy.
type env struct {
	t      *testing.T
	m      *minioServer
	p      *proxy
	dir    string
	cfg    Config
	reg    *prometheus.Registry
	o      *Offloader
	r      *ring.Ring
	cancel context.CancelFunc
	done   chan struct{}
}

func newEnv(t *testing.T, m *minioServer, p *proxy, dir string, mod func(*Config), rc ring.Config, log *zap.Logger) *env {
	t.Helper()
	endpoint := ""
	if p != nil {
		endpoint = "http://" + p.addr()
	}
	cfg := Config{
		Endpoint: endpoint, Bucket: bucket, Prefix: "captures", PathStyle: true,
		AccessKey: m.user, SecretKey: m.pass, Node: "node1", DataDir: dir,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, ScanInterval: 200 * time.Millisecond,
		Transport: testTransport(),
	}
	if mod != nil {
		mod(&cfg)
	}
	if log == nil {
		log = zaptest.NewLogger(t)
	}
	reg := prometheus.NewRegistry()
	o, err := New(cfg, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	rc.Dir, rc.Node, rc.Offload = dir, "node1", o
	if rc.FileMaxDuration == 0 {
		rc.FileMaxDuration = time.Second
	}
	// capture feeds packets stamped in the past (t0), and a ring writer
	// publishes its file once the wall clock is FlushInterval past the file's
	// window: a tick between two buffers then splits a file in two (5 or 6
	// files for 3 seconds under load). Here files end by packet time only.
	if rc.FlushInterval == 0 {
		rc.FlushInterval = 100 * 365 * 24 * time.Hour
	}
	r, err := ring.Open(rc, log)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, m: m, p: p, dir: dir, cfg: cfg, reg: reg, o: o, r: r}
}

func (e *env) run() {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan struct{})
	go func() {
		defer close(e.done)
		ringDone := make(chan struct{})
		go func() { // retention every second, as in the daemon
			defer close(ringDone)
			e.r.Run(ctx)
		}()
		if err := e.o.Run(ctx, e.r); err != nil {
			e.t.Errorf("offload run: %v", err)
		}
		<-ringDone
	}()
	e.t.Cleanup(e.stop)
}

func (e *env) stop() {
	if e.cancel != nil {
		e.cancel()
		<-e.done
		e.cancel = nil
	}
}

// capture writes seconds one-second files of packets starting at t0 through
// a real ring stream (so the ring publishes them and tells the offloader),
// and waits until all are published.
func (e *env) capture(t0 int64, seconds, pps, size int, seed uint64) {
	e.t.Helper()
	s := e.r.NewStream("eth0", 0, capture.LinkTypeEthernet, 65535, nil)
	rnd := rand.New(rand.NewPCG(seed, 1))
	b := capture.Block{Interface: "eth0", LinkType: capture.LinkTypeEthernet}
	step := int64(time.Second) / int64(pps)
	for i := 0; i < seconds*pps; i++ {
		d := make([]byte, size)
		binary.BigEndian.PutUint64(d, uint64(i))
		for j := 8; j < size/2; j++ { // half random, half zeros: zstd has something to do
			d[j] = byte(rnd.Uint32())
		}
		b.Packets = append(b.Packets, capture.Packet{Timestamp: t0 + int64(i)*step, Length: uint32(size), Data: d})
		if len(b.Packets) == 64 {
			s.HandleBlock(&b)
			b.Packets = b.Packets[:0]
		}
	}
	s.HandleBlock(&b)
	s.Close()
	var st []ring.StreamStats
	defer func() {
		if e.t.Failed() {
			e.t.Logf("stream stats: %+v; index: %d files", st, len(e.r.Files()))
		}
	}()
	waitFor(e.t, 30*time.Second, "files published", func() bool {
		st = e.r.StreamStats()
		return st[len(st)-1].Files == uint64(seconds)
	})
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) waitUploaded(d time.Duration) {
	e.t.Helper()
	waitFor(e.t, d, "every file uploaded", func() bool {
		for _, fi := range e.r.Files() {
			if !e.o.Uploaded(fi.Name) {
				return false
			}
		}
		return len(e.o.Pending()) == 0
	})
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("metric %s %v not found", name, labels)
	return 0
}

// checkStore asserts that the bucket holds exactly one object and one
// sidecar per local file, each byte for byte the file (after zstd
// decompression when compressed), with a sidecar that is its index entry.
func (e *env) checkStore(files []ring.FileInfo, local map[string][]byte) {
	e.t.Helper()
	objs := e.m.objects(e.t, bucket)
	want := map[string]bool{}
	for _, fi := range files {
		key := e.o.FileKey(fi)
		want[key], want[key+".json"] = true, true
		body, ok := objs[key]
		if !ok {
			e.t.Fatalf("object %s missing; bucket has %v", key, slices.Sorted(mapsKeys(objs)))
		}
		if e.cfg.Compress == "zstd" {
			dec, _ := zstd.NewReader(nil)
			var err error
			if body, err = dec.DecodeAll(body, nil); err != nil {
				e.t.Fatalf("%s: %v", key, err)
			}
		}
		if !bytes.Equal(body, local[fi.Name]) {
			e.t.Fatalf("object %s differs from the local file (%d vs %d bytes)", key, len(body), len(local[fi.Name]))
		}
		var side Entry
		if err := json.Unmarshal(objs[key+".json"], &side); err != nil {
			e.t.Fatalf("sidecar of %s: %v", key, err)
		}
		raw := sha256.Sum256(local[fi.Name])
		if side.File == nil || *side.File != fi || side.RawSHA256 != hex.EncodeToString(raw[:]) || side.Key != key {
			e.t.Fatalf("sidecar of %s is %+v, want the index entry %+v and raw sha256 %x", key, side, fi, raw)
		}
	}
	for k := range objs {
		if !want[k] {
			e.t.Fatalf("unexpected object %s in the bucket", k)
		}
	}
}

func mapsKeys(m map[string][]byte) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func readLocal(t *testing.T, dir string, files []ring.FileInfo) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, fi := range files {
		b, err := os.ReadFile(filepath.Join(dir, fi.Name))
		if err != nil {
			t.Fatal(err)
		}
		out[fi.Name] = b
	}
	return out
}

func emptyBucket(t *testing.T, m *minioServer) {
	t.Helper()
	c := m.client(t)
	for k := range m.objects(t, bucket) {
		if err := c.RemoveObject(context.Background(), bucket, k, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

var t0 = time.Date(2026, 11, 24, 23, 59, 57, 0, time.UTC).UnixNano() // files on both sides of midnight

// TestOffload runs against one real MinIO; each subtest starts from an
// empty bucket and a fresh data directory.
func TestOffload(t *testing.T) {
	m := startMinio(t, bucket)
	p := startProxy(t, m.addr)

	for _, compress := range []string{"none", "zstd"} {
		t.Run("upload/"+compress, func(t *testing.T) {
			emptyBucket(t, m)
			e := newEnv(t, m, p, t.TempDir(), func(c *Config) { c.Compress = compress }, ring.Config{}, nil)
			e.run()
			e.capture(t0, 6, 200, 600, 1)
			e.waitUploaded(30 * time.Second)
			files := e.r.Files()
			e.checkStore(files, readLocal(t, e.dir, files))
			if n := counter(t, e.reg, "sonde_offload_uploads_total", "kind", "file"); n != 6 {
				t.Fatalf("uploads_total %v, want 6", n)
			}
			if problems, err := testutil.CollectAndLint(e.o.Collector()); err != nil || len(problems) > 0 {
				t.Fatalf("metrics lint: %v %+v", err, problems)
			}
			// Keys sort by node, interface and time, across midnight.
			keys := make([]string, len(files))
			for i, fi := range files {
				keys[i] = e.o.FileKey(fi)
			}
			if !slices.IsSorted(keys) || !strings.HasPrefix(keys[0], "captures/node1/eth0/2026/11/24/") || !strings.HasPrefix(keys[5], "captures/node1/eth0/2026/11/25/") {
				t.Fatalf("keys %q: want sorted, under captures/node1/eth0/YYYY/MM/DD", keys)
			}
		})
	}

	t.Run("checksum mismatch", func(t *testing.T) {
		emptyBucket(t, m)
		e := newEnv(t, m, p, t.TempDir(), nil, ring.Config{}, nil)
		p.flip.Store(true)
		defer p.flip.Store(false)
		e.run()
		e.capture(t0, 3, 200, 600, 2)
		e.waitUploaded(30 * time.Second)
		if p.flipped.Load() != 1 {
			t.Fatalf("proxy flipped %d bytes, want 1", p.flipped.Load())
		}
		if n := counter(t, e.reg, "sonde_offload_failures_total", "reason", "checksum"); n != 1 {
			t.Fatalf("checksum failures %v, want 1 (the store must refuse the damaged body)", n)
		}
		files := e.r.Files()
		e.checkStore(files, readLocal(t, e.dir, files))
	})

	t.Run("restart during upload", func(t *testing.T) {
		emptyBucket(t, m)
		dir := t.TempDir()
		e := newEnv(t, m, p, dir, func(c *Config) { c.Workers = 1 }, ring.Config{FileMaxBytes: 0}, nil)
		p.rate.Store(2 << 20)
		defer p.rate.Store(0)
		e.capture(t0, 3, 1000, 1400, 3) // ~1.4 MB files: each takes about 0.7s at 2 MB/s
		before := p.upstream.Load()
		e.run()
		waitFor(t, 20*time.Second, "an upload under way", func() bool { return p.upstream.Load()-before > 300<<10 })
		e.stop() // mid-PUT: the first file is not in the catalog
		if len(e.o.Pending()) == 0 || e.o.Uploaded(e.r.Files()[0].Name) {
			t.Fatalf("stop came too late to cut an upload short: pending %v", e.o.Pending())
		}
		files := e.r.Files()
		local := readLocal(t, dir, files)
		p.rate.Store(0)
		// A new process on the same directory.
		e2 := newEnv(t, m, p, dir, func(c *Config) { c.Workers = 1 }, ring.Config{}, nil)
		e2.run()
		e2.waitUploaded(30 * time.Second)
		e2.checkStore(files, local)
		b, err := os.ReadFile(filepath.Join(dir, "offload", catalogName))
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(b, []byte("\n")); n != len(files) {
			t.Fatalf("catalog has %d lines, want one per file (%d)", n, len(files))
		}
	})

	t.Run("lost to the byte budget while the store is unreachable", func(t *testing.T) {
		emptyBucket(t, m)
		core, logs := observer.New(zap.ErrorLevel)
		p.refuse.Store(true)
		e := newEnv(t, m, p, t.TempDir(), nil, ring.Config{MaxFiles: 2}, zap.New(core))
		e.run()
		e.capture(t0, 4, 200, 600, 4)
		files := e.r.Files()
		if len(files) != 4 {
			t.Fatalf("%d files kept, want all 4: --ring-max-files must not delete files that are not uploaded", len(files))
		}
		var one int64
		for _, fi := range files {
			one = max(one, fi.Bytes)
		}
		if err := e.r.SetRetention(ring.Retention{MaxBytes: 2 * one}); err != nil {
			t.Fatal(err)
		}
		if n := counter(t, e.reg, "sonde_offload_lost_files_total"); n != 2 {
			t.Fatalf("lost files %v, want 2", n)
		}
		if got := logs.FilterMessageSnippet("before it was uploaded").Len(); got != 2 {
			t.Fatalf("%d loss errors logged, want 2", got)
		}
		if n := counter(t, e.reg, "sonde_offload_failures_total", "reason", "network"); n < 1 {
			t.Fatalf("network failures %v, want at least 1", n)
		}
		p.refuse.Store(false)
		e.waitUploaded(30 * time.Second)
		kept := e.r.Files()
		e.checkStore(kept, readLocal(t, e.dir, kept))
	})

	t.Run("window across local and remote files", func(t *testing.T) {
		for _, compress := range []string{"none", "zstd"} {
			emptyBucket(t, m)
			e := newEnv(t, m, p, t.TempDir(), func(c *Config) { c.Compress = compress }, ring.Config{}, nil)
			e.run()
			e.capture(t0, 6, 200, 600, 5)
			e.waitUploaded(30 * time.Second)
			root, err := os.OpenRoot(e.dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			from, to := t0+int64(500*time.Millisecond), t0+int64(5500*time.Millisecond)
			var want bytes.Buffer
			res, err := extract.Extract(context.Background(), &want, extract.Dir(root), e.r.Window(from, to), extract.Request{From: from, To: to})
			if err != nil || res.Missing != 0 {
				t.Fatalf("local extraction: %+v %v", res, err)
			}
			// Local retention now deletes the oldest three (uploaded) files.
			if err := e.r.SetRetention(ring.Retention{MaxFiles: 3}); err != nil {
				t.Fatal(err)
			}
			if n := len(e.r.Files()); n != 3 {
				t.Fatalf("%d local files, want 3", n)
			}
			if n := counter(t, e.reg, "sonde_offload_lost_files_total"); n != 0 {
				t.Fatalf("lost %v files, want 0: they were uploaded", n)
			}
			st := e.o.Store(e.r)
			win := st.Window(from, to)
			if len(win) != 6 {
				t.Fatalf("window lists %d files, want 6 (3 local, 3 remote)", len(win))
			}
			var got bytes.Buffer
			res, err = extract.Extract(context.Background(), &got, e.o.Opener(extract.Dir(root)), win, extract.Request{From: from, To: to})
			if err != nil || res.Missing != 0 {
				t.Fatalf("extraction across local and remote: %+v %v", res, err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("%s: window across local and remote files differs from the all-local one (%d vs %d bytes)", compress, got.Len(), want.Len())
			}
			if n := counter(t, e.reg, "sonde_offload_remote_reads_total"); n != 3 {
				t.Fatalf("remote reads %v, want 3", n)
			}
			if _, ok := st.Lookup(win[0].Name); !ok || len(st.Files()) != 6 {
				t.Fatalf("Lookup/Files do not list the remote files")
			}

			// A stored copy that was changed behind sonde's back fails the
			// read, naming the object.
			ent, _ := e.o.Entry(win[0].Name)
			obj := m.objects(t, bucket)[ent.Key]
			obj[len(obj)/2] ^= 1
			if _, err := m.client(t).PutObject(context.Background(), bucket, ent.Key, bytes.NewReader(obj), int64(len(obj)), minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
			rc, err := e.o.Opener(extract.Dir(root)).Open(context.Background(), win[0])
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
				rc.Close()
			}
			if err == nil || !strings.Contains(err.Error(), ent.Key) {
				t.Fatalf("reading a damaged object: %v, want an error naming %s", err, ent.Key)
			}
			e.stop()
		}
	})

	t.Run("download of files held only in the store", func(t *testing.T) {
		for _, compress := range []string{"none", "zstd"} {
			emptyBucket(t, m)
			e := newEnv(t, m, p, t.TempDir(), func(c *Config) { c.Compress = compress }, ring.Config{}, nil)
			e.run()
			e.capture(t0, 5, 200, 600, 7)
			e.waitUploaded(30 * time.Second)
			all := e.r.Files()
			local := readLocal(t, e.dir, all)
			if err := e.r.SetRetention(ring.Retention{MaxFiles: 2}); err != nil {
				t.Fatal(err)
			}
			if n := len(e.r.Files()); n != 2 {
				t.Fatalf("%d local files, want 2", n)
			}
			srv := apiServer(t, e)
			for i, fi := range all {
				res, body, err := download(srv, fi.Name)
				if err != nil || res.StatusCode != 200 || !bytes.Equal(body, local[fi.Name]) {
					t.Fatalf("%s: file %d (%s): %v %v, %d bytes: want 200 and the %d bytes of the original file",
						compress, i, fi.Name, res.Status, err, len(body), len(local[fi.Name]))
				}
				if remote := i < 3; remote != (res.Header.Get("Accept-Ranges") == "none") {
					t.Fatalf("%s: file %d: Accept-Ranges %q", compress, i, res.Header.Get("Accept-Ranges"))
				}
			}
			if n := counter(t, e.reg, "sonde_offload_remote_reads_total"); n != 3 {
				t.Fatalf("remote reads %v, want 3 (the evicted files)", n)
			}
			// A stored copy changed behind sonde's back: the transfer is
			// cut, never a whole-looking file.
			ent, _ := e.o.Entry(all[0].Name)
			obj := m.objects(t, bucket)[ent.Key]
			obj[len(obj)-2] ^= 1
			if _, err := m.client(t).PutObject(context.Background(), bucket, ent.Key, bytes.NewReader(obj), int64(len(obj)), minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
			res, body, err := download(srv, all[0].Name)
			if err == nil || len(body) >= len(local[all[0].Name]) {
				t.Fatalf("%s: damaged object: %v, %d of %d bytes, err %v: want a broken transfer", compress, res.Status, len(body), len(local[all[0].Name]), err)
			}
			e.stop()
		}
	})

	t.Run("snapshots and reports", func(t *testing.T) {
		emptyBucket(t, m)
		dir := t.TempDir()
		reports := filepath.Join(dir, "reports")
		os.MkdirAll(reports, 0o750)
		os.WriteFile(filepath.Join(reports, "r1.json"), []byte(`{"report":1}`), 0o640)
		os.WriteFile(filepath.Join(reports, "r1.html"), []byte(`<html></html>`), 0o640)
		os.WriteFile(filepath.Join(reports, "r1.status.json"), []byte(`{}`), 0o640)
		e := newEnv(t, m, p, dir, func(c *Config) { c.ReportsDir = reports }, ring.Config{}, nil)
		e.capture(t0, 3, 200, 600, 6)
		snap, err := e.r.Pin(time.Unix(0, t0), time.Unix(0, t0+int64(2*time.Second)), time.Hour, "INC-1")
		if err != nil {
			t.Fatal(err)
		}
		e.run()
		e.waitUploaded(30 * time.Second)
		waitFor(t, 10*time.Second, "snapshot and reports uploaded", func() bool {
			return counter(t, e.reg, "sonde_offload_uploads_total", "kind", "snapshot") == 1 && counter(t, e.reg, "sonde_offload_uploads_total", "kind", "report") == 2
		})
		objs := m.objects(t, bucket)
		if string(objs["captures/node1/reports/r1/r1.json"]) != `{"report":1}` || objs["captures/node1/reports/r1/r1.html"] == nil {
			t.Fatalf("report artifacts missing: %v", slices.Sorted(mapsKeys(objs)))
		}
		var man Manifest
		if err := json.Unmarshal(objs["captures/node1/snapshots/"+snap.ID+".json"], &man); err != nil {
			t.Fatal(err)
		}
		if len(man.Objects) != len(snap.Files) {
			t.Fatalf("manifest lists %d objects, want %d", len(man.Objects), len(snap.Files))
		}
		for name, key := range man.Objects {
			if objs[key] == nil {
				t.Fatalf("manifest names %s → %s, not in the bucket", name, key)
			}
		}
	})
}

// TestStoreOutage stops MinIO for a minute while files are published: the
// ring keeps them (max files would delete them otherwise), failures are
// counted as network, and once the store is back every file arrives, byte
// for byte, and only then does retention delete the older ones.
func TestStoreOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("a one-minute outage")
	}
	outage := time.Minute
	if s := os.Getenv("SONDE_OUTAGE"); s != "" {
		outage, _ = time.ParseDuration(s)
	}
	m := startMinio(t, bucket)
	p := startProxy(t, m.addr)
	e := newEnv(t, m, p, t.TempDir(), func(c *Config) { c.MaxBackoff = 8 * time.Second }, ring.Config{MaxFiles: 2}, nil)
	e.run()
	e.capture(t0, 2, 200, 600, 7)
	e.waitUploaded(30 * time.Second)
	m.stop()
	down := time.Now()
	e.capture(t0+int64(2*time.Second), 4, 200, 600, 8)
	files := e.r.Files()
	local := readLocal(t, e.dir, files)
	if len(files) != 4 {
		t.Fatalf("%d files kept during the outage, want the 4 not uploaded (max files 2 deletes only uploaded ones)", len(files))
	}
	time.Sleep(outage - time.Since(down))
	if n := counter(t, e.reg, "sonde_offload_queue_files"); n != 4 {
		t.Fatalf("queue_files %v during the outage, want 4", n)
	}
	if n := counter(t, e.reg, "sonde_offload_oldest_pending_timestamp_seconds"); n != float64(files[0].First)/1e9 {
		t.Fatalf("oldest pending %v, want %v", n, float64(files[0].First)/1e9)
	}
	fails := counter(t, e.reg, "sonde_offload_failures_total", "reason", "network")
	// Without backoff this would be thousands; with it, 50ms doubling to
	// 8s (less jitter), two workers, about 20.
	if fails < 3 || fails > 40 {
		t.Fatalf("%v network failures over %s, want a few: retries back off (50ms doubling to 8s)", fails, outage)
	}
	m.start(t)
	waitFor(t, 30*time.Second, "the backlog uploaded and retention applied", func() bool {
		return len(e.o.Pending()) == 0 && len(e.r.Files()) == 2
	})
	objs := m.objects(t, bucket)
	for _, fi := range files {
		if !bytes.Equal(objs[e.o.FileKey(fi)], local[fi.Name]) {
			t.Fatalf("%s not in the store byte for byte after the outage", fi.Name)
		}
	}
	if n := counter(t, e.reg, "sonde_offload_lost_files_total"); n != 0 {
		t.Fatalf("lost %v files, want 0", n)
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := time.Second, time.Minute
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: 32 * time.Second, 7: time.Minute, 50: time.Minute} {
		if got := backoff(n, lo, hi, 0); got != want {
			t.Errorf("backoff(%d) = %s, want %s", n, got, want)
		}
		if got := backoff(n, lo, hi, 1); got != want-want/5 {
			t.Errorf("backoff(%d) with full jitter = %s, want %s", n, got, want-want/5)
		}
	}
}

func TestCatalogTornLine(t *testing.T) {
	dir := t.TempDir()
	c, _, err := openCatalog(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi := ring.FileInfo{Name: "a.pcap", First: 1, Last: 2}
	if err := c.add(Entry{Name: "a.pcap", Key: "k/a.pcap", File: &fi}); err != nil {
		t.Fatal(err)
	}
	c.close()
	f, _ := os.OpenFile(filepath.Join(dir, catalogName), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"name":"b.pcap","key":"k/b`) // a crash mid-append
	f.Close()
	c, torn, err := openCatalog(dir)
	if err != nil || torn != 1 {
		t.Fatalf("torn %d, %v: want the cut line dropped", torn, err)
	}
	if !c.has(KindFile, "a.pcap") || c.has(KindFile, "b.pcap") {
		t.Fatal("want a.pcap recorded and b.pcap not")
	}
	c.close()
	b, _ := os.ReadFile(filepath.Join(dir, catalogName))
	if bytes.Count(b, []byte("\n")) != 1 || !bytes.HasSuffix(b, []byte("\n")) {
		t.Fatalf("catalog not rewritten whole: %q", b)
	}
	// A damaged line in the middle is refused.
	os.WriteFile(filepath.Join(dir, catalogName), append([]byte("garbage\n"), b...), 0o640)
	if _, _, err := openCatalog(dir); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("damaged catalog: %v, want an error naming line 1", err)
	}
}

func TestParseEndpoint(t *testing.T) {
	for _, c := range []struct {
		in       string
		insecure bool
		host     string
		secure   bool
		bad      bool
	}{
		{"minio:9000", false, "minio:9000", true, false},
		{"minio:9000", true, "minio:9000", false, false},
		{"http://10.0.0.1:9000", false, "10.0.0.1:9000", false, false},
		{"https://s3.example.com", false, "s3.example.com", true, false},
		{"https://s3.example.com", true, "", false, true},
		{"ftp://x", false, "", false, true},
		{"http://x/path", false, "", false, true},
		{"", false, "", false, true},
		{"host:", false, "", false, true},
	} {
		h, s, err := ParseEndpoint(c.in, c.insecure)
		if (err != nil) != c.bad || h != c.host || s != c.secure {
			t.Errorf("ParseEndpoint(%q, %v) = %q, %v, %v", c.in, c.insecure, h, s, err)
		}
	}
}

// TestOffloadTLS: over TLS with a custom CA (--s3-ca-file) uploads work; a
// client that does not trust the CA fails every upload, counted as "tls",
// and keeps the file pending.
func TestOffloadTLS(t *testing.T) {
	bin := minioBinary()
	if bin == "" {
		startMinio(t, bucket) // skips, or fails under CI
	}
	certs := selfSigned(t)
	m := startMinioTLS(t, bin, bucket, certs)
	for _, trust := range []bool{true, false} {
		e := newEnv(t, m, nil, t.TempDir(), func(c *Config) {
			c.Endpoint, c.Transport = m.addr, nil // host:port: TLS by default
			if trust {
				c.CAFile = filepath.Join(certs, "public.crt")
			}
		}, ring.Config{}, nil)
		e.run()
		e.capture(t0, 2, 100, 200, 9)
		if trust {
			e.waitUploaded(30 * time.Second)
			files := e.r.Files()
			e.checkStore(files, readLocal(t, e.dir, files))
		} else {
			waitFor(t, 30*time.Second, "a TLS failure", func() bool { return counter(t, e.reg, "sonde_offload_failures_total", "reason", "tls") > 0 })
			if len(e.o.Pending()) != 2 {
				t.Fatalf("pending %v, want both files", e.o.Pending())
			}
		}
		e.stop()
	}
}

const apiToken = "offload-test-token-0123456789"

// apiServer serves e's ring as the daemon does with offload on: the Store
// wrapper lists remote files, the Opener reads them back.
func apiServer(t *testing.T, e *env) *httptest.Server {
	t.Helper()
	root, err := os.OpenRoot(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	s := api.New(api.Options{Store: e.o.Store(e.r), Opener: e.o.Opener(extract.Dir(root)), DataDir: e.dir, Tokens: []string{apiToken}},
		zaptest.NewLogger(t), prometheus.NewRegistry(), nil)
	t.Cleanup(func() { s.Close() })
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

// download GETs /api/v1/captures/name; err is set when the transfer breaks.
func download(srv *httptest.Server, name string) (*http.Response, []byte, error) {
	rq, _ := http.NewRequest("GET", srv.URL+"/api/v1/captures/"+name, nil)
	rq.Header.Set("Authorization", "Bearer "+apiToken)
	res, err := srv.Client().Do(rq)
	if err != nil {
		return &http.Response{Status: "no response"}, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

// fakeSource is a ring that holds no files locally and pins the given ones.
type fakeSource struct{ pinned []string }

func (f fakeSource) Files() []ring.FileInfo { return nil }
func (f fakeSource) Snapshots() []ring.Snapshot {
	return []ring.Snapshot{{ID: "pin", Files: f.pinned}}
}

func catalogLines(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "offload", catalogName))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// TestRemoteRetention: with MaxAge, files whose last packet is older are
// deleted from the bucket (object and sidecar) and the catalog, except
// pinned files and files still on local disk; the catalog is compacted
// once its dead lines outnumber the live ones, and reopens to the same
// content. The clock is injected.
func TestRemoteRetention(t *testing.T) {
	m := startMinio(t, bucket)
	p := startProxy(t, m.addr)
	// The clock runs at the real rate from a time the test sets.
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	setClock := func(at int64) { offset.Store(int64(time.Unix(0, at).Sub(time.Now()))) }
	setClock(t0) // nothing is older than an hour
	dir := t.TempDir()
	mod := func(c *Config) {
		c.MaxAge, c.RetentionInterval, c.Now = time.Hour, 100*time.Millisecond, clock
	}
	e := newEnv(t, m, p, dir, mod, ring.Config{Now: clock}, nil)
	e.run()
	e.capture(t0, 6, 200, 600, 8)
	e.waitUploaded(30 * time.Second)
	all := e.r.Files()
	if len(all) != 6 {
		t.Fatalf("%d files, want 6", len(all))
	}
	// Pin file 1, then keep two more files locally: 0, 2 and 3 are remote only.
	if _, err := e.r.Pin(time.Unix(0, all[1].First), time.Unix(0, all[1].Last+1), 0, "INC-7"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the snapshot manifest uploaded", func() bool {
		return counter(t, e.reg, "sonde_offload_uploads_total", "kind", "snapshot") == 1
	})
	if err := e.r.SetRetention(ring.Retention{MaxFiles: 2}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.r.Files()); n != 3 {
		t.Fatalf("%d local files, want 3 (pinned 1, and 4, 5)", n)
	}
	local := map[string]bool{}
	for _, fi := range e.r.Files() {
		local[fi.Name] = true
	}
	if !local[all[1].Name] || !local[all[4].Name] || !local[all[5].Name] {
		t.Fatalf("local files %v, want 1, 4 and 5", local)
	}
	if n := counter(t, e.reg, "sonde_offload_expired_files_total"); n != 0 {
		t.Fatalf("expired %v files while none is older than an hour", n)
	}
	if n := catalogLines(t, dir); n != 7 {
		t.Fatalf("catalog has %d lines, want 7 (6 files and a snapshot)", n)
	}
	keys := func() map[string]bool {
		out := map[string]bool{}
		for k := range m.objects(t, bucket) {
			out[k] = true
		}
		return out
	}
	has := func(objs map[string]bool, i int) bool {
		k := e.o.FileKey(all[i])
		if objs[k] != objs[k+".json"] {
			t.Fatalf("object %s and its sidecar: one without the other", k)
		}
		return objs[k]
	}

	// An hour and 3 s after t0: files 0, 1 and 2 ended more than an hour
	// ago (file 3 ends 995 ms later); 1 is pinned (and local), so 0 and 2
	// go.
	setClock(t0 + int64(time.Hour+3*time.Second))
	waitFor(t, 10*time.Second, "two files expired", func() bool {
		return counter(t, e.reg, "sonde_offload_expired_files_total") == 2
	})
	objs := keys()
	for i, want := range []bool{false, true, false, true, true, true} {
		if has(objs, i) != want {
			t.Fatalf("file %d in the bucket: %v, want %v (bucket %v)", i, !want, want, objs)
		}
		if _, ok := e.o.Entry(all[i].Name); ok != want {
			t.Fatalf("file %d in the catalog: %v, want %v", i, ok, want)
		}
	}
	if n := len(e.o.Store(e.r).Files()); n != 4 {
		t.Fatalf("the API lists %d files, want 4 (1, 3 local or remote, 4, 5)", n)
	}
	// 5 live entries, 2 dead and 2 deletion lines: not compacted yet.
	if n := catalogLines(t, dir); n != 9 {
		t.Fatalf("catalog has %d lines, want 9", n)
	}

	// Ten seconds later every file is old; 1, 4 and 5 are on local disk
	// (deleting their copies would only upload them again): 3 goes, and the
	// catalog's 6 dead lines now outnumber its 4 live ones.
	setClock(t0 + int64(time.Hour+10*time.Second))
	waitFor(t, 10*time.Second, "a third file expired", func() bool {
		return counter(t, e.reg, "sonde_offload_expired_files_total") == 3
	})
	waitFor(t, 10*time.Second, "the catalog compacted", func() bool {
		return counter(t, e.reg, "sonde_offload_catalog_compactions_total") == 1
	})
	if n := catalogLines(t, dir); n != 4 {
		t.Fatalf("compacted catalog has %d lines, want 4 (3 files and the snapshot)", n)
	}
	objs = keys()
	for i, want := range []bool{false, true, false, false, true, true} {
		if has(objs, i) != want {
			t.Fatalf("file %d in the bucket: %v, want %v", i, !want, want)
		}
	}
	if !objs["captures/node1/snapshots/"+e.r.Snapshots()[0].ID+".json"] {
		t.Fatal("the snapshot manifest was deleted")
	}
	var stored float64
	for _, fi := range all[:4] {
		if fi.Name != all[1].Name {
			stored += float64(fi.Bytes) // uncompressed: stored bytes are the file's
		}
	}
	if n := counter(t, e.reg, "sonde_offload_expired_bytes_total"); n != stored {
		t.Fatalf("expired bytes %v, want %v", n, stored)
	}
	if n := counter(t, e.reg, "sonde_offload_catalog_objects"); n != 4 {
		t.Fatalf("catalog objects %v, want 4", n)
	}
	// Pinned files are kept even when not on local disk.
	if n := e.o.Expire(context.Background(), fakeSource{pinned: []string{all[4].Name}}); n != 2 {
		t.Fatalf("expired %d with only file 4 pinned, want 2 (1 and 5)", n)
	}
	objs = keys()
	for i, want := range []bool{false, false, false, false, true, false} {
		if has(objs, i) != want {
			t.Fatalf("file %d in the bucket: %v, want %v", i, !want, want)
		}
	}
	e.stop()

	// Reopened, the catalog lists the same.
	o2, err := New(e.cfg, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o2.cat.close()
	if files := o2.cat.allFiles(); len(files) != 1 || files[0].Name != all[4].Name || !o2.cat.has(KindSnapshot, e.r.Snapshots()[0].ID) {
		t.Fatalf("reopened catalog lists %v, want file 4 and the snapshot", files)
	}
	if problems, err := testutil.CollectAndLint(e.o.Collector()); err != nil || len(problems) > 0 {
		t.Fatalf("metrics lint: %v %+v", err, problems)
	}
}

// TestCatalogCompaction: deletions are durable lines; compaction rewrites
// the file atomically with live entries only, and appends continue after it.
func TestCatalogCompaction(t *testing.T) {
	dir := t.TempDir()
	c, _, err := openCatalog(dir)
	if err != nil {
		t.Fatal(err)
	}
	var es []Entry
	for i := range 10 {
		fi := ring.FileInfo{Name: "f" + string(rune('a'+i)), First: int64(i), Last: int64(i)}
		e := Entry{Name: fi.Name, Key: "k/" + fi.Name, File: &fi}
		es = append(es, e)
		if err := c.add(e); err != nil {
			t.Fatal(err)
		}
	}
	if done, err := c.remove(es[:2]); err != nil || done {
		t.Fatalf("remove 2 of 10: compacted %v %v, want none (12 lines, 8 live)", done, err)
	}
	if n := bytes.Count(must(os.ReadFile(filepath.Join(dir, catalogName))), []byte("\n")); n != 12 {
		t.Fatalf("%d lines, want 12 (10 uploads, 2 deletions)", n)
	}
	if done, err := c.remove(es[2:5]); err != nil || !done {
		t.Fatalf("remove 3 more: compacted %v %v, want compaction (15 lines, 5 live)", done, err)
	}
	fi := ring.FileInfo{Name: "new", First: 100, Last: 100}
	if err := c.add(Entry{Name: "new", Key: "k/new", File: &fi}); err != nil {
		t.Fatal(err)
	}
	c.close()
	b, _ := os.ReadFile(filepath.Join(dir, catalogName))
	if n := bytes.Count(b, []byte("\n")); n != 6 {
		t.Fatalf("catalog has %d lines after compaction and one append, want 6:\n%s", n, b)
	}
	if _, err := os.Stat(filepath.Join(dir, catalogName+".tmp")); err == nil {
		t.Fatal("temporary file left behind")
	}
	c2, _, err := openCatalog(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.close()
	var names []string
	for _, f := range c2.allFiles() {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"ff", "fg", "fh", "fi", "fj", "new"}) {
		t.Fatalf("reopened catalog lists %v", names)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
