package offload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"

	"github.com/sonde-project/sonde/internal/extract"
	"github.com/sonde-project/sonde/internal/ring"
)

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// bytesReader hides io.Seeker, as body does (see newClient).
func bytesReader(b []byte) io.Reader { return struct{ io.Reader }{bytes.NewReader(b)} }

// Store is the ring as the API sees it with offload on: its own files, and
// the uploaded files local retention has deleted since, listed from the
// catalog. Pins and snapshots are the ring's.
type Store struct {
	*ring.Ring
	o *Offloader
}

// Store wraps r.
func (o *Offloader) Store(r *ring.Ring) *Store { return &Store{Ring: r, o: o} }

// merge adds to local the remote files it lacks, keeping the order by first
// packet (then name).
func merge(local, remote []ring.FileInfo) []ring.FileInfo {
	if len(remote) == 0 {
		return local
	}
	have := make(map[string]bool, len(local))
	for _, f := range local {
		have[f.Name] = true
	}
	out := local
	added := false
	for _, f := range remote {
		if !have[f.Name] {
			out = append(out, f)
			added = true
		}
	}
	if added {
		sortFiles(out)
	}
	return out
}

// Files lists local and remote-only files, oldest first.
func (s *Store) Files() []ring.FileInfo { return merge(s.Ring.Files(), s.o.cat.allFiles()) }

// Window returns the local and remote files holding packets in [from, to).
func (s *Store) Window(from, to int64) []ring.FileInfo {
	return merge(s.Ring.Window(from, to), s.o.cat.window(from, to))
}

// Lookup finds a file locally, else in the catalog.
func (s *Store) Lookup(name string) (ring.FileInfo, bool) {
	if fi, ok := s.Ring.Lookup(name); ok {
		return fi, true
	}
	if e, ok := s.o.cat.lookup(KindFile, name); ok {
		return *e.File, true
	}
	return ring.FileInfo{}, false
}

// Opener opens files locally through local and, when the local copy is
// gone, from the store: verified against the catalog's checksum while it
// streams, and decompressed.
func (o *Offloader) Opener(local extract.Opener) extract.Opener {
	return &opener{o: o, local: local}
}

type opener struct {
	o     *Offloader
	local extract.Opener
}

func (p *opener) Open(ctx context.Context, fi ring.FileInfo) (io.ReadCloser, error) {
	rc, err := p.local.Open(ctx, fi)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return rc, err
	}
	e, ok := p.o.cat.lookup(KindFile, fi.Name)
	if !ok {
		return nil, err
	}
	rc, rerr := openObject(ctx, p.o.client, p.o.cfg.Bucket, e)
	if rerr == nil {
		p.o.m.remoteReads.Inc()
	}
	return rc, rerr
}
