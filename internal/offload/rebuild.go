package offload

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"go.uber.org/zap"
)

// Rebuild bounds.
const (
	rebuildTimeout = 10 * time.Minute
	// startRebuildTimeout bounds the rebuild New tries before capture
	// starts: a store that accepts connections but does not answer, or a
	// bucket too large to list that fast, must not hold capture back. The
	// rebuild then goes on in the background (Run, rebuildLate).
	startRebuildTimeout = 5 * time.Second
	maxSidecar          = 1 << 20 // a sidecar is an index entry: well under this
)

// rebuildStats is what a rebuild found.
type rebuildStats struct {
	files, snapshots, reports int
	bytes                     int64 // stored bytes of the files
	skipped                   []skippedSidecar
}

type skippedSidecar struct{ key, reason string }

// rebuildMarker, in the offload directory, says a rebuild is owed: the
// catalog was missing and the store could not be listed at start.
const rebuildMarker = "rebuild-pending"

// listCatalog lists the node's objects under PREFIX/NODE/ and returns the
// catalog entries they make: capture files from their sidecars, snapshot
// manifests and report artifacts from their keys. The listing is streamed
// and each sidecar read on its own; no capture object's body is read. A
// sidecar that does not parse, or does not describe the object beside it,
// is skipped and reported in the stats, never an error.
func listCatalog(ctx context.Context, client *minio.Client, cfg *Config) ([]Entry, rebuildStats, error) {
	var st rebuildStats
	root := segment(cfg.Node) + "/"
	if cfg.Prefix != "" {
		root = cfg.Prefix + "/" + root
	}
	var (
		entries []Entry
		index   = map[string]int{}   // catalog key → entries index; the last wins
		objects = map[string]int64{} // capture objects of the current day directory → size
		curDir  string
	)
	put := func(e Entry) {
		k := catalogKey(e.Kind, e.Name)
		if i, ok := index[k]; ok {
			entries[i] = e
			return
		}
		index[k] = len(entries)
		entries = append(entries, e)
	}
	ctx, cancel := context.WithTimeout(ctx, rebuildTimeout)
	defer cancel()
	for info := range client.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Prefix: root, Recursive: true}) {
		if info.Err != nil {
			return nil, st, fmt.Errorf("offload: listing %s/%s to rebuild the catalog: %w", cfg.Bucket, root, info.Err)
		}
		rel := strings.Split(strings.TrimPrefix(info.Key, root), "/")
		switch {
		case len(rel) == 2 && rel[0] == "snapshots" && strings.HasSuffix(rel[1], ".json") && len(rel[1]) > len(".json"):
			put(Entry{Kind: KindSnapshot, Name: strings.TrimSuffix(rel[1], ".json"), Key: info.Key, StoredBytes: info.Size, Uploaded: info.LastModified.UTC()})
			st.snapshots++
		case len(rel) == 3 && rel[0] == "reports":
			if id, _, ok := reportArtifact(rel[2]); ok && id == rel[1] {
				put(Entry{Kind: KindReport, Name: rel[2], Key: info.Key, StoredBytes: info.Size, Uploaded: info.LastModified.UTC()})
				st.reports++
			}
		case len(rel) == 5:
			// INTERFACE/YYYY/MM/DD/<file>: an object sorts just before its
			// sidecar, so only the current day directory's objects are
			// kept, to check the sidecar against.
			if d := path.Dir(info.Key); d != curDir {
				curDir = d
				clear(objects)
			}
			if !strings.HasSuffix(info.Key, ".json") {
				objects[info.Key] = info.Size
				continue
			}
			e, err := readSidecar(ctx, client, cfg.Bucket, info.Key, info.Size, objects)
			if err != nil {
				if ctx.Err() != nil {
					return nil, st, fmt.Errorf("offload: rebuilding the catalog: %w", ctx.Err())
				}
				st.skipped = append(st.skipped, skippedSidecar{info.Key, err.Error()})
				continue
			}
			delete(objects, e.Key)
			put(e)
		}
	}
	if ctx.Err() != nil {
		return nil, st, fmt.Errorf("offload: rebuilding the catalog: %w", ctx.Err())
	}
	for _, e := range entries {
		if e.Kind == KindFile {
			st.files++
			st.bytes += e.StoredBytes
		}
	}
	return entries, st, nil
}

// rebuildCatalog recreates dir/catalog.jsonl from the store when it does not
// exist (a new or lost data directory), so that the node's uploaded files
// are listed as remote-held again and nothing is uploaded again. The file is
// written atomically (temporary file, fsync, rename, directory fsync) once
// the listing is complete. When the store cannot be listed, it writes the
// rebuild marker instead (before any catalog exists, so a crash in between
// still leaves the catalog missing) and Run tries again; the error is
// returned for the log. It reports whether it rebuilt.
func rebuildCatalog(ctx context.Context, client *minio.Client, cfg *Config, dir string) (rebuildStats, bool, error) {
	p := filepath.Join(dir, catalogName)
	if _, err := os.Lstat(p); err == nil || !errors.Is(err, os.ErrNotExist) {
		return rebuildStats{}, false, err // it exists (even empty), or cannot be checked
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return rebuildStats{}, false, fmt.Errorf("offload: creating %s: %w", dir, err)
	}
	entries, st, err := listCatalog(ctx, client, cfg)
	if err != nil {
		if merr := writeAtomic(filepath.Join(dir, rebuildMarker), nil); merr != nil {
			return st, false, fmt.Errorf("%w; and writing the rebuild marker: %w", err, merr)
		}
		return st, false, errRebuildLater{err}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return st, false, err
		}
	}
	if err := writeAtomic(p, buf.Bytes()); err != nil {
		return st, false, err
	}
	return st, true, nil
}

// errRebuildLater is a failed listing at start: the catalog starts empty
// and Run rebuilds it into the catalog once the store answers.
type errRebuildLater struct{ error }

func (e errRebuildLater) Unwrap() error { return e.error }

// rebuildLate retries the listing with the upload backoff until it succeeds
// or ctx is done, then adds to the catalog every entry it lacks (uploads
// made meanwhile stay as they are) and removes the marker.
func (o *Offloader) rebuildLate(ctx context.Context) {
	for n := 1; ; n++ {
		entries, st, err := listCatalog(ctx, o.client, &o.cfg)
		if err == nil {
			for _, e := range entries {
				if o.cat.has(e.Kind, e.Name) {
					continue
				}
				if err = o.cat.add(e); err != nil {
					break
				}
			}
		}
		if err == nil {
			err = os.Remove(filepath.Join(o.cfg.DataDir, "offload", rebuildMarker))
		}
		if err == nil {
			o.rebuilt(st)
			return
		}
		if ctx.Err() != nil {
			return
		}
		wait := backoff(n, o.cfg.MinBackoff, o.cfg.MaxBackoff, rand.Float64())
		o.log.Warn("rebuilding the catalog from the store failed; retrying", zap.Duration("retry_in", wait), zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// readSidecar reads and checks the sidecar at key: an index entry of a
// ring file whose key is the sidecar's without ".json", whose object was
// listed beside it with the recorded size.
func readSidecar(ctx context.Context, client *minio.Client, bucket, key string, size int64, objects map[string]int64) (Entry, error) {
	var e Entry
	if size > maxSidecar {
		return e, fmt.Errorf("sidecar of %d bytes, over %d", size, maxSidecar)
	}
	obj, err := client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return e, err
	}
	b, err := io.ReadAll(io.LimitReader(obj, maxSidecar+1))
	obj.Close()
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("not an index entry: %w", err)
	}
	want := strings.TrimSuffix(key, ".json")
	stored, listed := objects[want]
	sum, serr := hex.DecodeString(e.SHA256)
	switch {
	case e.Key != want:
		return e, fmt.Errorf("records key %q", e.Key)
	case e.Kind != KindFile || e.Deleted || e.File == nil:
		return e, errors.New("not a capture file's index entry")
	case e.Name == "" || e.File.Name != e.Name || path.Base(strings.TrimSuffix(want, ".zst")) != e.Name:
		return e, fmt.Errorf("records file name %q", e.Name)
	case e.Compression != "" && e.Compression != "zstd":
		return e, fmt.Errorf("unknown compression %q", e.Compression)
	case serr != nil || len(sum) != 32:
		return e, errors.New("no valid sha256")
	case !listed:
		return e, errors.New("its capture object is missing")
	case stored != e.StoredBytes:
		return e, fmt.Errorf("records %d stored bytes, the object has %d", e.StoredBytes, stored)
	}
	return e, nil
}

// rebuilt reports a rebuild: the metrics, one Info line, and a Warn per
// skipped sidecar.
func (o *Offloader) rebuilt(st rebuildStats) {
	o.m.rebuiltFiles.Set(float64(st.files))
	o.m.rebuiltBytes.Set(float64(st.bytes))
	o.m.rebuildSkipped.Set(float64(len(st.skipped)))
	for _, s := range st.skipped {
		o.log.Warn("catalog rebuild: skipped a sidecar that is not a valid index entry; its capture file is not listed",
			zap.String("key", s.key), zap.String("reason", s.reason))
	}
	o.log.Info("catalog.jsonl was missing: rebuilt from the store's sidecars", zap.String("prefix", o.cfg.Prefix),
		zap.String("node", o.cfg.Node), zap.Int("files", st.files), zap.Int64("bytes", st.bytes),
		zap.Int("snapshots", st.snapshots), zap.Int("reports", st.reports), zap.Int("skipped_sidecars", len(st.skipped)))
}
