package offload

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinioBinary finds the MinIO server built from its Go module (.ci/run
// installs it with go install): on PATH, else in GOPATH/bin. It returns ""
// when there is none.
func minioBinary() string {
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	p := filepath.Join(gopath, "bin", "minio")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// minioServer is a real MinIO on loopback with a generated root key.
type minioServer struct {
	bin, dir, addr, console string
	user, pass              string
	certs                   string // --certs-dir: TLS when set
	cmd                     *exec.Cmd
	exited                  chan struct{}
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// startMinio starts MinIO and creates bucket; it skips the test when the
// binary is missing, except under CI=true, where it fails.
func startMinio(t testing.TB, bucket string) *minioServer {
	t.Helper()
	bin := minioBinary()
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("minio not found on PATH or in GOPATH/bin: .ci/run installs it (go install github.com/minio/minio@...)")
		}
		t.Skip("minio not found on PATH or in GOPATH/bin (go install github.com/minio/minio@...)")
	}
	return startMinioTLS(t, bin, bucket, "")
}

// startMinioTLS starts MinIO serving TLS with the key pair in certs
// (public.crt, private.key), or plain HTTP when certs is empty.
func startMinioTLS(t testing.TB, bin, bucket, certs string) *minioServer {
	t.Helper()
	m := &minioServer{bin: bin, dir: t.TempDir(), addr: freePort(t), console: freePort(t), user: "sonde" + randHex(4), pass: randHex(16), certs: certs}
	m.start(t)
	t.Cleanup(m.stop)
	c := m.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("creating bucket %s: %v", bucket, err)
	}
	return m
}

func (m *minioServer) start(t testing.TB) {
	t.Helper()
	args := []string{"server", "--quiet", "--address", m.addr, "--console-address", m.console}
	if m.certs != "" {
		args = append(args, "--certs-dir", m.certs)
	}
	cmd := exec.Command(m.bin, append(args, m.dir)...)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.user, "MINIO_ROOT_PASSWORD="+m.pass, "MINIO_BROWSER=off", "MINIO_UPDATE=off")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting minio: %v", err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(m.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := m.httpClient().Get(m.url() + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-m.exited:
			t.Fatalf("minio exited at start: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			m.stop()
			t.Fatalf("minio not live after 60s: %s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop kills MinIO's process group and waits for it.
func (m *minioServer) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	<-m.exited
	m.cmd = nil
}

func (m *minioServer) url() string {
	if m.certs != "" {
		return "https://" + m.addr
	}
	return "http://" + m.addr
}

// httpClient trusts the test CA when MinIO serves TLS.
func (m *minioServer) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if m.certs != "" {
		pool := x509.NewCertPool()
		pem, _ := os.ReadFile(filepath.Join(m.certs, "public.crt"))
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func (m *minioServer) client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(m.addr, &minio.Options{Creds: credentials.NewStaticV4(m.user, m.pass, ""), BucketLookup: minio.BucketLookupPath,
		Secure: m.certs != "", Transport: m.httpClient().Transport})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// objects lists the bucket: key → content.
func (m *minioServer) objects(t testing.TB, bucket string) map[string][]byte {
	t.Helper()
	c := m.client(t)
	ctx := context.Background()
	out := map[string][]byte{}
	for info := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		if info.Err != nil {
			t.Fatal(info.Err)
		}
		obj, err := c.GetObject(ctx, bucket, info.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatalf("reading %s: %v", info.Key, err)
		}
		out[info.Key] = b
	}
	return out
}

// proxy sits between sonde and MinIO on loopback, one request per
// connection (the test transport turns keep-alive off), and can refuse
// connections, throttle uploads, or flip one byte of one PUT body.
type proxy struct {
	ln     net.Listener
	target string

	refuse   atomic.Bool
	flip     atomic.Bool  // flip a byte of the next PUT body of a capture file
	flipped  atomic.Int32 // how many were flipped
	rate     atomic.Int64 // client-to-server bytes per second, 0: unlimited
	upstream atomic.Int64 // body bytes forwarded to the server
	wg       sync.WaitGroup
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *proxy) handle(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(c, s)
		c.Close()
		close(done)
	}()
	var head []byte
	bodyAt := -1 // offset in the stream where the body starts
	flipAt := int64(-1)
	var pos int64
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		chunk := buf[:n]
		if bodyAt < 0 && n > 0 {
			head = append(head, chunk...)
			if i := bytes.Index(head, []byte("\r\n\r\n")); i >= 0 {
				bodyAt = i + 4
				line, _, _ := strings.Cut(string(head), "\r\n")
				if strings.HasPrefix(line, "PUT ") && strings.Contains(line, ".pcap") && !strings.Contains(line, ".json") && p.flip.CompareAndSwap(true, false) {
					flipAt = int64(bodyAt) + 100
				}
			}
		}
		if flipAt >= pos && flipAt < pos+int64(n) {
			chunk[flipAt-pos] ^= 0xff
			p.flipped.Add(1)
		}
		if bodyAt >= 0 {
			p.upstream.Add(max(0, pos+int64(n)-max(pos, int64(bodyAt))))
		}
		pos += int64(n)
		if n > 0 {
			if r := p.rate.Load(); r > 0 {
				time.Sleep(time.Duration(int64(n) * int64(time.Second) / r))
			}
			if _, werr := s.Write(chunk); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	s.(*net.TCPConn).CloseWrite()
	<-done
}

// testTransport is a transport without keep-alive, so each request has
// its own connection through the proxy.
func testTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableKeepAlives = true
	return t
}

var _ = fmt.Sprintf

// selfSigned writes a self-signed certificate for 127.0.0.1 as MinIO's
// certs dir (public.crt, private.key) and returns the dir; public.crt is
// also the CA file a client must be given.
func selfSigned(t testing.TB) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sonde test minio"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "public.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "private.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	return dir
}
