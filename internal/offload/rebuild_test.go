package offload

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sonde-project/sonde/internal/extract"
	"github.com/sonde-project/sonde/internal/ring"
)

// TestCatalogRebuild loses a sensor's whole data directory and starts it
// again on an empty one: the catalog is rebuilt from the sidecars in the
// store, a damaged sidecar is skipped and reported, the files read back
// byte for byte, and nothing is uploaded again.
func TestCatalogRebuild(t *testing.T) {
	m := startMinio(t, bucket)
	p := startProxy(t, m.addr)
	ctx := context.Background()

	// Three plain files, then two zstd-compressed ones, on one node.
	dir := t.TempDir()
	var all []ring.FileInfo
	for i, compress := range []string{"none", "zstd"} {
		e := newEnv(t, m, p, dir, func(c *Config) { c.Compress = compress }, ring.Config{}, nil)
		e.run()
		e.capture(t0+int64(i)*int64(10*time.Second), 3-i, 200, 600, uint64(20+i))
		e.waitUploaded(30 * time.Second)
		e.stop()
		all = e.r.Files()
	}
	if len(all) != 5 {
		t.Fatalf("%d files, want 5", len(all))
	}
	orig := readLocal(t, dir, all)
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	from, to := all[0].First, all[3].Last+1 // the damaged last file is outside
	var want bytes.Buffer
	if res, err := extract.Extract(ctx, &want, extract.Dir(root), all[:4], extract.Request{From: from, To: to}); err != nil || res.Missing != 0 {
		t.Fatalf("local extraction: %+v %v", res, err)
	}
	root.Close()

	// Damage the last file's sidecar.
	cl := m.client(t)
	objs := m.objects(t, bucket)
	var sideKey string
	for k := range objs {
		if strings.HasSuffix(k, all[4].Name+".zst.json") {
			sideKey = k
		}
	}
	if sideKey == "" {
		t.Fatalf("no zstd sidecar for %s in %v", all[4].Name, slices.Sorted(mapsKeys(objs)))
	}
	garbage := []byte("{not json")
	if _, err := cl.PutObject(ctx, bucket, sideKey, bytes.NewReader(garbage), int64(len(garbage)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	// A sidecar describing another key is skipped too.
	otherSide := strings.Replace(sideKey, all[4].Name, "x-"+all[4].Name, 1)
	swapped := objs[strings.Replace(sideKey, all[4].Name, all[3].Name, 1)]
	if _, err := cl.PutObject(ctx, bucket, otherSide, bytes.NewReader(swapped), int64(len(swapped)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	before := m.objects(t, bucket)

	// The data directory is lost; a new one starts.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	dir2 := t.TempDir()
	e := newEnv(t, m, p, dir2, nil, ring.Config{}, zap.New(core))
	st := e.o.Store(e.r)
	var names []string
	for _, fi := range st.Files() {
		names = append(names, fi.Name)
	}
	wantNames := []string{all[0].Name, all[1].Name, all[2].Name, all[3].Name}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("after the rebuild the store lists %v, want %v", names, wantNames)
	}
	for _, fi := range all[:4] {
		if got, ok := st.Lookup(fi.Name); !ok || got != fi {
			t.Fatalf("Lookup(%s) = %+v %v, want %+v", fi.Name, got, ok, fi)
		}
	}
	if n := bytes.Count(must(os.ReadFile(filepath.Join(dir2, "offload", catalogName))), []byte("\n")); n != 4 {
		t.Fatalf("catalog has %d lines, want 4", n)
	}
	if n := counter(t, e.reg, "sonde_offload_catalog_rebuilt_files"); n != 4 {
		t.Fatalf("rebuilt_files %v, want 4", n)
	}
	if n := counter(t, e.reg, "sonde_offload_catalog_rebuild_skipped_sidecars"); n != 2 {
		t.Fatalf("skipped sidecars %v, want 2", n)
	}
	if problems, err := testutil.CollectAndLint(e.o.Collector()); err != nil || len(problems) > 0 {
		t.Fatalf("metrics lint: %v %+v", err, problems)
	}
	for _, k := range []string{sideKey, otherSide} {
		if n := logs.FilterMessageSnippet("skipped a sidecar").FilterField(zap.String("key", k)).Len(); n != 1 {
			t.Fatalf("%d warnings name the skipped sidecar %s, want 1", n, k)
		}
	}
	if n := logs.FilterMessageSnippet("rebuilt from the store").FilterField(zap.Int("files", 4)).Len(); n != 1 {
		t.Fatalf("%d rebuild lines with files=4, want 1: %v", n, logs.All())
	}

	// Each file, and a window, read back byte for byte.
	root2, err := os.OpenRoot(dir2)
	if err != nil {
		t.Fatal(err)
	}
	defer root2.Close()
	op := e.o.Opener(extract.Dir(root2))
	for _, fi := range all[:4] {
		rc, err := op.Open(ctx, fi)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(b, orig[fi.Name]) {
			t.Fatalf("%s read back: %d bytes, %v; want the original %d bytes", fi.Name, len(b), err, len(orig[fi.Name]))
		}
	}
	var got bytes.Buffer
	if res, err := extract.Extract(ctx, &got, op, st.Window(from, to), extract.Request{From: from, To: to}); err != nil || res.Missing != 0 {
		t.Fatalf("remote extraction: %+v %v", res, err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("window read from the store differs from the original (%d vs %d bytes)", got.Len(), want.Len())
	}

	// Nothing is uploaded again.
	e.run()
	time.Sleep(time.Second)
	e.stop()
	if n := counter(t, e.reg, "sonde_offload_uploads_total", "kind", "file"); n != 0 {
		t.Fatalf("uploads_total %v, want 0", n)
	}
	if after := m.objects(t, bucket); len(after) != len(before) {
		t.Fatalf("bucket went from %d to %d objects", len(before), len(after))
	}

	t.Run("existing empty catalog is kept", func(t *testing.T) {
		d := t.TempDir()
		os.MkdirAll(filepath.Join(d, "offload"), 0o750)
		os.WriteFile(filepath.Join(d, "offload", catalogName), nil, 0o640)
		e := newEnv(t, m, p, d, nil, ring.Config{}, nil)
		if n := len(e.o.Store(e.r).Files()); n != 0 {
			t.Fatalf("%d files listed, want none: an existing catalog is not rebuilt", n)
		}
		if n := counter(t, e.reg, "sonde_offload_catalog_rebuilt_files"); n != 0 {
			t.Fatalf("rebuilt_files %v, want 0", n)
		}
	})

	t.Run("store unreachable at start", func(t *testing.T) {
		d := t.TempDir()
		p.refuse.Store(true)
		e := newEnv(t, m, p, d, nil, ring.Config{}, nil)
		p.refuse.Store(false)
		if _, err := os.Stat(filepath.Join(d, "offload", rebuildMarker)); err != nil {
			t.Fatalf("no rebuild marker: %v", err)
		}
		e.run()
		waitFor(t, 30*time.Second, "the late rebuild", func() bool { return len(e.o.Store(e.r).Files()) == 4 })
		waitFor(t, 5*time.Second, "the marker removed", func() bool {
			_, err := os.Stat(filepath.Join(d, "offload", rebuildMarker))
			return os.IsNotExist(err)
		})
		e.stop()
		// A restart has nothing left to rebuild and lists the same.
		e2 := newEnv(t, m, p, d, nil, ring.Config{}, nil)
		if n := len(e2.o.Store(e2.r).Files()); n != 4 {
			t.Fatalf("%d files after a restart, want 4", n)
		}
	})
}
