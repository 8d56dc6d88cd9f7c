package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/sonde-project/sonde/internal/netnstest"
)

// minioBinary finds the MinIO server .ci/run builds from its Go module.
func minioBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	if p := filepath.Join(gopath, "bin", "minio"); fileExists(p) {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("minio not found on PATH or in GOPATH/bin: .ci/run installs it")
	}
	t.Skip("minio not found on PATH or in GOPATH/bin (go install github.com/minio/minio@...)")
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// startMinioIn runs MinIO on the loopback of namespace ns (where the
// daemon runs) with a generated key, and creates bucket.
func startMinioIn(t *testing.T, ns, bucket string) (addr, user, pass string) {
	t.Helper()
	bin := minioBinary(t)
	addr, user = "127.0.0.1:9000", "sonde"+hex.EncodeToString(randBytes(4))
	pass = hex.EncodeToString(randBytes(16))
	cmd := netnstest.Command(ns, bin, "server", "--quiet", "--address", addr, "--console-address", "127.0.0.1:9001", t.TempDir())
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+user, "MINIO_ROOT_PASSWORD="+pass, "MINIO_BROWSER=off", "MINIO_UPDATE=off")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	hc := netnstest.HTTPClient(ns)
	waitUntil(t, 60*time.Second, "minio live", func() bool {
		res, err := hc.Get("http://" + addr + "/minio/health/live")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	c, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(user, pass, ""), Transport: hc.Transport, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(context.Background(), bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("creating bucket: %v\n%s", err, out.String())
	}
	return addr, user, pass
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestOffloadWindowFromStore: the daemon captures real traffic into one-second
// files and uploads each to MinIO; restarted with a ring that keeps only two
// files, it deletes the older (uploaded) ones, and /api/v1/pcap of the whole
// window still returns, byte for byte, what it returned when every file was
// on local disk: the evicted part is read back from the store.
func TestOffloadWindowFromStore(t *testing.T) {
	p := netnstest.New(t)
	addr, user, pass := startMinioIn(t, p.B.NS, "sonde")
	t.Setenv("AWS_ACCESS_KEY_ID", user)
	t.Setenv("AWS_SECRET_ACCESS_KEY", pass)
	dir := t.TempDir()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(apiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--interface", p.B.Iface, "--workers", "1", "--file-max-duration", "1s", "--analysis=false",
		"--api-token-file", tokens, "--s3-endpoint", "http://" + addr, "--s3-bucket", "sonde", "--s3-prefix", "e2e", "--s3-compress", "zstd"}
	d := startDaemon(t, p.B.NS, dir, flags...)
	s := sender(t, p)

	sent := sendBursts(t, p, s, 5) // five or more files
	d.waitCaptured(float64(sent), p.B.Iface)
	var files []indexEntry
	waitUntil(t, 60*time.Second, "every file published and uploaded", func() bool {
		m := d.metrics()
		files = readIndex(t, dir)
		return len(partFiles(t, dir)) == 0 && m.sum("sonde_offload_queue_files") == 0 &&
			m.sum("sonde_offload_uploads_total", `kind="file"`) == float64(len(files))
	})
	if len(files) < 5 {
		t.Fatalf("%d files, want at least 5 (one per burst)", len(files))
	}
	ns := func(raw []byte) int64 {
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			t.Fatalf("index time %q: %v", raw, err)
		}
		return n
	}
	from, to := ns(files[0].First), ns(files[0].Last)
	for _, f := range files {
		from, to = min(from, ns(f.First)), max(to, ns(f.Last))
	}
	query := "/api/v1/pcap?from=" + epoch(from) + "&to=" + epoch(to+1)
	res, before := d.call("GET", query, "", false)
	if res.StatusCode != 200 {
		t.Fatalf("window while local: %d %s", res.StatusCode, before)
	}
	if n := len(records(t, before)); n != sent {
		t.Fatalf("window holds %d packets, want the %d sent", n, sent)
	}
	originals := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		originals[f.Name] = b
	}
	d.stop()

	// Restarted with room for two files: the older ones go, as they are
	// uploaded (none is lost).
	d = startDaemon(t, p.B.NS, dir, append(flags, "--ring-max-files", "2")...)
	if n := len(readIndex(t, dir)); n != 2 {
		t.Fatalf("%d files on local disk after the restart, want 2", n)
	}
	res, after := d.call("GET", query, "", false)
	if res.StatusCode != 200 {
		t.Fatalf("window across local and remote files: %d %s", res.StatusCode, after)
	}
	if !bytes.Equal(after, before) {
		t.Fatalf("window read partly from the store differs from the all-local one: %d vs %d bytes, %d vs %d packets",
			len(after), len(before), len(records(t, after)), len(records(t, before)))
	}
	m := d.metrics()
	if got := m.sum("sonde_offload_remote_reads_total"); got != float64(len(files)-2) {
		t.Errorf("remote reads %v, want %d (the evicted files)", got, len(files)-2)
	}
	// Every file downloads byte for byte, the evicted ones from the store.
	evicted := 0
	for _, f := range files {
		res, body := d.call("GET", "/api/v1/captures/"+f.Name, "", false)
		if res.StatusCode != 200 || !bytes.Equal(body, originals[f.Name]) {
			t.Fatalf("download of %s: %d, %d bytes; want 200 and the %d bytes of the original file", f.Name, res.StatusCode, len(body), len(originals[f.Name]))
		}
		if !fileExists(filepath.Join(dir, f.Name)) {
			evicted++
			if res.Header.Get("Accept-Ranges") != "none" {
				t.Errorf("download of %s from the store: Accept-Ranges %q, want none", f.Name, res.Header.Get("Accept-Ranges"))
			}
		}
	}
	if evicted != len(files)-2 {
		t.Fatalf("%d of the downloaded files were evicted, want %d", evicted, len(files)-2)
	}
	if got := d.metrics().sum("sonde_offload_remote_reads_total"); got != float64(2*evicted) {
		t.Errorf("remote reads %v after the downloads, want %d", got, 2*evicted)
	}
	if lost := m.sum("sonde_offload_lost_files_total"); lost != 0 {
		t.Errorf("lost files %v, want 0", lost)
	}
	if strings.Contains(d.output(), pass) {
		t.Error("the secret key appears in the daemon's log")
	}
	d.stop()
}

// throttle is a TCP proxy on the loopback of a test namespace that slows
// what clients send (uploads) to rate bytes per second and reports when a
// PUT of a capture file is under way.
type throttle struct {
	ln       net.Listener
	target   string
	rate     int64
	putBytes atomic.Int64 // body bytes of capture-file PUTs passed on
	inflight atomic.Int32 // capture-file PUTs under way
	wg       sync.WaitGroup
}

func startThrottle(t *testing.T, ns, listen, target string, rate int64) *throttle {
	t.Helper()
	p := &throttle{target: target, rate: rate}
	if err := netnstest.Do(ns, func() error {
		var err error
		p.ln, err = net.Listen("tcp", listen)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := p.ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.handle(ns, c)
			}()
		}
	}()
	t.Cleanup(func() { p.ln.Close(); p.wg.Wait() })
	return p
}

func (p *throttle) handle(ns string, c net.Conn) {
	defer c.Close()
	var s net.Conn
	if err := netnstest.Do(ns, func() error {
		var err error
		s, err = net.Dial("tcp", p.target)
		return err
	}); err != nil {
		return
	}
	defer s.Close()
	go func() { io.Copy(c, s); c.Close() }()
	// Follow the requests on the connection (keep-alive): a header, then
	// Content-Length bytes of body. A capture file's PUT is under way from
	// its header until the last byte of its body.
	var head []byte
	var left int64 // body bytes of the current request still to come
	put := false
	done := func() {
		if put {
			p.inflight.Add(-1)
			put = false
		}
	}
	defer done()
	buf := make([]byte, 8<<10)
	for {
		n, err := c.Read(buf)
		for rest := buf[:n]; len(rest) > 0; {
			if left > 0 {
				k := min(int64(len(rest)), left)
				if put {
					p.putBytes.Add(k)
				}
				left -= k
				rest = rest[k:]
				if left == 0 {
					done()
				}
				continue
			}
			head = append(head, rest...)
			rest = nil
			i := bytes.Index(head, []byte("\r\n\r\n"))
			if i < 0 {
				break
			}
			hdr := string(head[:i])
			rest, head = head[i+4:], nil
			line, _, _ := strings.Cut(hdr, "\r\n")
			for _, h := range strings.Split(hdr, "\r\n") {
				if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "Content-Length") {
					left, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				}
			}
			if left > 0 && strings.HasPrefix(line, "PUT ") && strings.Contains(line, ".pcap") && !strings.Contains(line, ".json") {
				put = true
				p.inflight.Add(1)
			}
		}
		if n > 0 {
			time.Sleep(time.Duration(int64(n) * int64(time.Second) / p.rate))
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestOffloadKill9DuringUpload: the daemon uploads to MinIO through a
// throttling proxy (so each PUT takes seconds) and is SIGKILLed while a
// capture file's PUT is under way. Restarted without the throttle, it
// uploads what the catalog lacks: every ring file is in the bucket exactly
// once, with its sidecar, and the object (decompressed if zstd) has the SHA-256 of
// the local file; the queue drains to 0.
func TestOffloadKill9DuringUpload(t *testing.T) {
	p := netnstest.New(t)
	addr, user, pass := startMinioIn(t, p.B.NS, "sonde")
	t.Setenv("AWS_ACCESS_KEY_ID", user)
	t.Setenv("AWS_SECRET_ACCESS_KEY", pass)
	slow := startThrottle(t, p.B.NS, "127.0.0.1:9100", addr, 32<<10)
	dir := t.TempDir()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(apiToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := func(endpoint string) []string {
		return []string{"--interface", p.B.Iface, "--workers", "1", "--file-max-duration", "1s", "--analysis=false",
			"--api-token-file", tokens, "--s3-endpoint", "http://" + endpoint, "--s3-bucket", "sonde", "--s3-prefix", "e2e",
			"--s3-upload-workers", "1"} // uncompressed: these frames compress to almost nothing, and the PUT must take seconds
	}
	d := startDaemon(t, p.B.NS, dir, flags("127.0.0.1:9100")...)
	s := sender(t, p)
	sent := sendBursts(t, p, s, 3)
	d.waitCaptured(float64(sent), p.B.Iface)
	waitUntil(t, 60*time.Second, "a capture file's PUT under way", func() bool {
		return slow.inflight.Load() > 0 && slow.putBytes.Load() > 16<<10
	})
	d.kill()
	if slow.inflight.Load() == 0 {
		t.Fatal("the PUT ended before the kill")
	}
	killedAt := slow.putBytes.Load()

	d = startDaemon(t, p.B.NS, dir, flags(addr)...)
	var files []indexEntry
	waitUntil(t, 60*time.Second, "every file uploaded", func() bool {
		files = readIndex(t, dir)
		return len(partFiles(t, dir)) == 0 && d.metrics().sum("sonde_offload_queue_files") == 0
	})
	if len(files) < 3 {
		t.Fatalf("%d files, want at least 3 (one per burst)", len(files))
	}
	hc := netnstest.HTTPClient(p.B.NS)
	c, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(user, pass, ""), Transport: hc.Transport, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	byName := map[string][]string{}
	objects := 0
	for info := range c.ListObjects(ctx, "sonde", minio.ListObjectsOptions{Recursive: true, Prefix: "e2e/"}) {
		if info.Err != nil {
			t.Fatal(info.Err)
		}
		objects++
		name := path.Base(strings.TrimSuffix(strings.TrimSuffix(info.Key, ".json"), ".zst"))
		byName[name] = append(byName[name], info.Key)
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	for _, f := range files {
		keys := byName[f.Name]
		if len(keys) != 2 {
			t.Fatalf("%s: objects %v, want the file and its sidecar, once", f.Name, keys)
		}
		local, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(keys)
		obj, err := c.GetObject(ctx, "sonde", keys[0], minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		stored, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatal(err)
		}
		raw := stored
		if strings.HasSuffix(keys[0], ".zst") {
			if raw, err = dec.DecodeAll(stored, nil); err != nil {
				t.Fatalf("%s: %v", keys[0], err)
			}
		}
		if sha256.Sum256(raw) != sha256.Sum256(local) {
			t.Fatalf("%s: object's SHA-256 differs from the local file's (%d vs %d bytes)", keys[0], len(raw), len(local))
		}
	}
	if objects != 2*len(files) {
		t.Fatalf("%d objects in the bucket, want %d (each of the %d files and its sidecar)", objects, 2*len(files), len(files))
	}
	if lost := d.metrics().sum("sonde_offload_lost_files_total"); lost != 0 {
		t.Errorf("lost files %v, want 0", lost)
	}
	t.Logf("killed with %d KiB of a PUT passed; %d files, all in the bucket once", killedAt>>10, len(files))
	d.stop()
}

// sendBursts sends n bursts of 400 frames, each of its own flow, about a
// second apart (so at least n one-second files), and returns the frames sent.
func sendBursts(t *testing.T, p *netnstest.Pair, s *netnstest.Sender, n int) int {
	t.Helper()
	sent := 0
	for i := range n {
		frames := p.Flow(uint32(i + 1)).Frames(netnstest.MixedSizes(400, uint64(i)))
		if err := s.SendPaced(frames, chunk, pause); err != nil {
			t.Fatal(err)
		}
		sent += len(frames)
		time.Sleep(1100 * time.Millisecond)
	}
	return sent
}
