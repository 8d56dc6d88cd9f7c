package pcapio

import (
	"errors"
	"io"
)

// source is a buffered window over a file that tracks the byte offset of
// everything it hands out. Over an io.Reader it reads sequentially; over an
// io.ReaderAt it can skip packet data without reading it, which is what
// makes Scan fast on files of large packets.
type source struct {
	r    io.Reader
	ra   io.ReaderAt
	size int64 // only with ra

	buf        []byte
	start, end int   // unread bytes are buf[start:end]
	pos        int64 // file offset of buf[start]
	eof        bool  // the underlying reader has no more bytes
	err        error // a read error other than EOF
}

const (
	windowLen = 64 << 10
	// maxWindow bounds the buffer: one whole packet block plus room for
	// options. Requests above it are rejected before they allocate.
	maxWindow = MaxRecordBytes + 64<<10
)

// next returns the next n bytes and advances past them. The slice is valid
// until the next call. It returns io.EOF when no byte at all is left and
// io.ErrUnexpectedEOF when only some are.
func (s *source) next(n int) ([]byte, error) {
	b, err := s.peek(n)
	if err != nil {
		return nil, err
	}
	s.start += n
	s.pos += int64(n)
	return b, nil
}

// peek is next without advancing.
func (s *source) peek(n int) ([]byte, error) {
	if n > maxWindow {
		return nil, errors.New("request beyond window")
	}
	if s.end-s.start >= n {
		return s.buf[s.start : s.start+n], nil
	}
	s.fill(n)
	if s.end-s.start >= n {
		return s.buf[s.start : s.start+n], nil
	}
	if s.err != nil {
		return nil, s.err
	}
	if s.end == s.start {
		return nil, io.EOF
	}
	return nil, io.ErrUnexpectedEOF
}

// fill tries to have at least n unread bytes buffered.
func (s *source) fill(n int) {
	if len(s.buf) < n || len(s.buf) == 0 {
		size := max(windowLen, n)
		nb := make([]byte, size)
		copy(nb, s.buf[s.start:s.end])
		s.buf = nb
	} else {
		copy(s.buf, s.buf[s.start:s.end])
	}
	s.end -= s.start
	s.start = 0
	for s.end < n && !s.eof && s.err == nil {
		var m int
		var err error
		if s.ra != nil {
			off := s.pos + int64(s.end)
			want := min(int64(len(s.buf)-s.end), s.size-off)
			if want <= 0 {
				s.eof = true
				break
			}
			m, err = s.ra.ReadAt(s.buf[s.end:s.end+int(want)], off)
			if err == io.EOF && m > 0 {
				err = nil
			}
		} else {
			m, err = s.r.Read(s.buf[s.end:])
		}
		s.end += m
		switch {
		case err == io.EOF:
			s.eof = true
		case err != nil:
			s.err = err
		}
	}
}

// skip advances n bytes without necessarily reading them.
func (s *source) skip(n int64) error {
	if n < 0 {
		return errors.New("negative skip")
	}
	if avail := int64(s.end - s.start); n <= avail {
		s.start += int(n)
		s.pos += n
		return nil
	}
	n -= int64(s.end - s.start)
	s.pos += int64(s.end - s.start)
	s.start, s.end = 0, 0
	if s.ra != nil {
		if s.pos+n > s.size {
			s.pos = s.size
			return io.ErrUnexpectedEOF
		}
		s.pos += n
		return nil
	}
	for n > 0 {
		m, err := s.next(int(min(n, windowLen)))
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		n -= int64(len(m))
	}
	return nil
}
