package offload

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// ParseEndpoint splits an endpoint setting into host[:port] and whether to
// use TLS: "http://h:p" is plain, "https://h:p" and a bare "h:p" are TLS
// unless insecure is set.
func ParseEndpoint(s string, insecure bool) (host string, secure bool, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", false, errors.New("empty endpoint")
	}
	secure = !insecure
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", false, fmt.Errorf("not a URL: %w", err)
		}
		switch u.Scheme {
		case "http":
			secure = false
		case "https":
			if insecure {
				return "", false, errors.New("https:// endpoint with insecure set: pick one")
			}
		default:
			return "", false, fmt.Errorf("scheme %q: want http or https", u.Scheme)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
			return "", false, errors.New("want scheme://host[:port] with no path, query or user")
		}
		s = u.Host
	}
	if s == "" || strings.ContainsAny(s, "/?# ") {
		return "", false, fmt.Errorf("host %q: want host or host:port", s)
	}
	if h, p, err := net.SplitHostPort(s); err == nil && (h == "" || p == "") {
		return "", false, fmt.Errorf("host %q: want host or host:port", s)
	}
	return s, secure, nil
}

// newClient builds the minio-go client. minio-go's own retries are turned
// off (MaxRetries 1 and bodies that cannot seek): the upload queue retries
// with its own backoff and counts every failure.
func newClient(cfg *Config) (*minio.Client, error) {
	host, secure, err := ParseEndpoint(cfg.Endpoint, cfg.Insecure)
	if err != nil {
		return nil, fmt.Errorf("offload: endpoint %q: %w", cfg.Endpoint, err)
	}
	tr := cfg.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = time.Minute
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("offload: reading CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("offload: CA file %s holds no PEM certificate", cfg.CAFile)
			}
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		tr = t
	}
	lookup := minio.BucketLookupDNS
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	return minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:       secure,
		Region:       cfg.Region,
		BucketLookup: lookup,
		Transport:    tr,
		MaxRetries:   1,
	})
}

// Failure reasons of sonde_offload_failures_total.
const (
	ReasonNetwork  = "network"  // connection refused, reset, timeout
	ReasonTLS      = "tls"      // the endpoint's certificate is not trusted
	ReasonAuth     = "auth"     // credentials refused
	ReasonChecksum = "checksum" // the store computed another checksum than sonde sent
	ReasonBucket   = "bucket"   // no such bucket
	ReasonLocal    = "local"    // reading the local file failed
	ReasonOther    = "other"
)

var reasons = []string{ReasonNetwork, ReasonTLS, ReasonAuth, ReasonChecksum, ReasonBucket, ReasonLocal, ReasonOther}

// localError is a failure to read what is being uploaded.
type localError struct{ error }

func (e localError) Unwrap() error { return e.error }

// classify names the reason of an upload failure.
func classify(err error) string {
	var le localError
	if errors.As(err, &le) {
		return ReasonLocal
	}
	switch minio.ToErrorResponse(err).Code {
	case "BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch", "InvalidChecksum":
		return ReasonChecksum
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken":
		return ReasonAuth
	case "NoSuchBucket":
		return ReasonBucket
	case "":
		var ce *tls.CertificateVerificationError
		var ua x509.UnknownAuthorityError
		var hn x509.HostnameError
		if errors.As(err, &ce) || errors.As(err, &ua) || errors.As(err, &hn) {
			return ReasonTLS
		}
		var ne net.Error
		var ue *url.Error
		if errors.As(err, &ne) || errors.As(err, &ue) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return ReasonNetwork
		}
	}
	return ReasonOther
}

// digest is what pass one over a file finds: the stored bytes' size and
// SHA-256, and the file's own SHA-256.
type digest struct {
	size     int64
	sha, raw []byte
}

// newEncoder is the one zstd encoder configuration: single-threaded, so the
// same input always gives the same bytes, which lets the checksum be taken
// in one pass and the upload streamed in a second without a temporary copy.
func newEncoder(w io.Writer) (*zstd.Encoder, error) {
	return zstd.NewWriter(w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(true))
}

type countingHash struct {
	hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.Hash.Write(p)
}

// digestFile reads f once, hashing it and, when compress is set, its zstd
// stream.
func digestFile(f *os.File, compress bool) (digest, error) {
	stored := &countingHash{Hash: sha256.New()}
	if !compress {
		// Stored bytes are the file's: one hash serves both.
		if _, err := io.Copy(stored, f); err != nil {
			return digest{}, localError{fmt.Errorf("reading %s: %w", f.Name(), err)}
		}
		sum := stored.Sum(nil)
		return digest{size: stored.n, sha: sum, raw: sum}, nil
	}
	raw := sha256.New()
	enc, err := newEncoder(stored)
	if err != nil {
		return digest{}, err
	}
	if _, err := io.Copy(io.MultiWriter(raw, enc), f); err != nil {
		return digest{}, localError{fmt.Errorf("reading %s: %w", f.Name(), err)}
	}
	if err := enc.Close(); err != nil {
		return digest{}, err
	}
	return digest{size: stored.n, sha: stored.Sum(nil), raw: raw.Sum(nil)}, nil
}

// body streams f as it is stored: as it is, or through the same encoder as
// digestFile. It hides io.Seeker so minio-go cannot retry on its own.
func body(f *os.File, compress bool) io.ReadCloser {
	if !compress {
		return io.NopCloser(struct{ io.Reader }{f})
	}
	pr, pw := io.Pipe()
	go func() {
		enc, err := newEncoder(pw)
		if err == nil {
			_, err = io.Copy(enc, f)
			if cerr := enc.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// putOptions asks the store to verify the SHA-256 of what it receives: the
// x-amz-checksum-sha256 header is checked by the server against the body,
// and a mismatch refuses the object (BadDigest or
// XAmzContentChecksumMismatch). The payload is not signed as well
// (DisableContentSha256): the checksum already covers it, and signing would
// hash every byte a third time.
func putOptions(sha []byte, contentType string) minio.PutObjectOptions {
	return minio.PutObjectOptions{
		ContentType:          contentType,
		DisableMultipart:     true,
		DisableContentSha256: true,
		UserMetadata:         map[string]string{"X-Amz-Checksum-Sha256": base64.StdEncoding.EncodeToString(sha)},
	}
}

// verifyingReader checks an object's size and SHA-256 as it is read and
// fails the read that reaches its end when either differs.
type verifyingReader struct {
	r    io.ReadCloser
	h    hash.Hash
	n    int64
	want Entry
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		if v.n != v.want.StoredBytes {
			return n, fmt.Errorf("offload: object %s: read %d bytes, the catalog recorded %d", v.want.Key, v.n, v.want.StoredBytes)
		}
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.SHA256 {
			return n, fmt.Errorf("offload: object %s: SHA-256 %s, the catalog recorded %s: the stored copy is damaged", v.want.Key, got, v.want.SHA256)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.r.Close() }

// openObject streams an uploaded object back as the original file's bytes,
// verified and decompressed. A missing object wraps fs.ErrNotExist.
func openObject(ctx context.Context, c *minio.Client, bucket string, e Entry) (io.ReadCloser, error) {
	obj, err := c.GetObject(ctx, bucket, e.Key, minio.GetObjectOptions{})
	if err == nil {
		_, err = obj.Stat()
	}
	if err != nil {
		if obj != nil {
			obj.Close()
		}
		if code := minio.ToErrorResponse(err).Code; code == "NoSuchKey" || code == "NoSuchBucket" {
			return nil, fmt.Errorf("offload: object %s: %w", e.Key, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("offload: reading object %s: %w", e.Key, err)
	}
	v := &verifyingReader{r: obj, h: sha256.New(), want: e}
	if e.Compression != "zstd" {
		return v, nil
	}
	dec, err := zstd.NewReader(v, zstd.WithDecoderConcurrency(1))
	if err != nil {
		v.Close()
		return nil, err
	}
	return &decodedReader{dec: dec, v: v}, nil
}

type decodedReader struct {
	dec     *zstd.Decoder
	v       *verifyingReader
	drained bool
}

func (d *decodedReader) Read(p []byte) (int, error) {
	n, err := d.dec.Read(p)
	if err == io.EOF && !d.drained {
		// The decoder may stop at the end of the frame without reading
		// the object to its end, where its size and SHA-256 are checked:
		// the read ends only once they are.
		d.drained = true
		if _, derr := io.Copy(io.Discard, d.v); derr != nil {
			err = derr
		}
	}
	if err != nil && err != io.EOF && !strings.Contains(err.Error(), d.v.want.Key) {
		err = fmt.Errorf("offload: object %s: %w", d.v.want.Key, err)
	}
	return n, err
}
func (d *decodedReader) Close() error {
	d.dec.Close()
	return d.v.Close()
}
