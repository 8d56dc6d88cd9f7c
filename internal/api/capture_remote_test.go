package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/sonde-project/sonde/internal/ring"
)

// storeOpener stands for the offload Opener: it serves files local
// retention deleted from memory, and can fail at open, midway, or at the
// end (the checksum of a damaged object is known only once it is read).
type storeOpener struct {
	files   map[string][]byte
	openErr error
	failAt  int // fail after this many bytes; -1: never
	extra   int // append bytes the file does not have
}

func (o *storeOpener) Open(_ context.Context, fi ring.FileInfo) (io.ReadCloser, error) {
	b, ok := o.files[fi.Name]
	if !ok {
		return nil, fmt.Errorf("not in the store: %w", fs.ErrNotExist)
	}
	if o.openErr != nil {
		return nil, o.openErr
	}
	b = append(bytes.Clone(b), make([]byte, o.extra)...)
	if o.failAt < 0 {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	return io.NopCloser(io.MultiReader(bytes.NewReader(b[:o.failAt]), errReader{})), nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("object damaged") }

// TestCaptureFromStore: a file local retention has deleted but the store
// holds is downloaded whole and byte for byte, Range or not; a read that
// fails, at any point, never gives the client a complete-looking file.
func TestCaptureFromStore(t *testing.T) {
	r, dir, _ := v1Ring(t, 2, false)
	name := r.Files()[0].Name
	orig, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	op := &storeOpener{files: map[string][]byte{name: orig}, failAt: -1}
	s, _ := v1Server(t, &evictingStore{Ring: r, name: name, dir: dir}, dir, Options{Opener: op})
	if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(method string, hdr map[string]string) (*http.Response, []byte, error) {
		t.Helper()
		rq, _ := http.NewRequest(method, srv.URL+"/api/v1/captures/"+name, nil)
		rq.Header.Set("Authorization", "Bearer "+testToken)
		for k, v := range hdr {
			rq.Header.Set(k, v)
		}
		res, err := srv.Client().Do(rq)
		if err != nil {
			return nil, nil, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res, b, err
	}

	for _, hdr := range []map[string]string{nil, {"Range": "bytes=0-9"}, {"Range": "bytes=100-"}} {
		res, body, err := get("GET", hdr)
		if err != nil {
			t.Fatalf("%v: %v", hdr, err)
		}
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the file is still on local disk: %v", err)
		}
		if res.StatusCode != 200 || !bytes.Equal(body, orig) {
			t.Fatalf("%v: %d, %d bytes; want 200 and the %d bytes of the file", hdr, res.StatusCode, len(body), len(orig))
		}
		h := res.Header
		if h.Get("Content-Type") != "application/vnd.tcpdump.pcap" || h.Get("Content-Disposition") != `attachment; filename="`+name+`"` ||
			h.Get("Accept-Ranges") != "none" || h.Get("Content-Length") != strconv.Itoa(len(orig)) {
			t.Fatalf("headers %v", h)
		}
	}
	res, body, err := get("HEAD", nil)
	if err != nil || res.StatusCode != 200 || len(body) != 0 || res.ContentLength != int64(len(orig)) {
		t.Fatalf("HEAD: %v %v %d bytes", res, err, len(body))
	}

	// A store that fails before any byte: 502, and a JSON error.
	op.openErr = errors.New("connection refused")
	res, body, _ = get("GET", nil)
	if res.StatusCode != http.StatusBadGateway || !bytes.Contains(body, []byte("store_unavailable")) {
		t.Fatalf("open failure: %d %s", res.StatusCode, body)
	}
	op.openErr = nil

	// Failing midway, on the very last read (all bytes out, then the
	// checksum fails), or the object longer than the file: the transfer
	// is cut, never a whole-looking body.
	for _, c := range []struct {
		failAt, extra int
	}{{len(orig) / 2, 0}, {len(orig), 0}, {-1, 1}, {-1, 100000}} {
		op.failAt, op.extra = c.failAt, c.extra
		res, body, err := get("GET", nil)
		if err == nil || bytes.Equal(body, orig) || len(body) >= len(orig) {
			t.Fatalf("%+v: status %v, %d of %d bytes, err %v: want a broken transfer", c, res.StatusCode, len(body), len(orig), err)
		}
	}

	// Neither on disk nor in the store: evicted.
	delete(op.files, name)
	op.failAt, op.extra = -1, 0
	res, body, _ = get("GET", nil)
	if res.StatusCode != 404 || !bytes.Contains(body, []byte("evicted")) {
		t.Fatalf("gone everywhere: %d %s", res.StatusCode, body)
	}
}
