package netnstest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Record is one record of a pcap file.
type Record struct {
	TsNanos int64  // timestamp in nanoseconds since the Unix epoch
	OrigLen uint32 // length on the wire
	Data    []byte // captured bytes
}

// PcapFile is a parsed classic pcap file.
type PcapFile struct {
	LinkType uint32
	Snaplen  uint32
	Records  []Record
}

// ReadPcap reads a whole classic pcap file (either byte order, micro- or
// nanosecond timestamps). It is written from the file format, independently
// of sonde's writer, so tests can use it as a second opinion next to
// tcpdump. A truncated last record is an error.
func ReadPcap(path string) (*PcapFile, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var pf PcapFile
	err = scanPcap(bufio.NewReaderSize(fh, 1<<20), &pf.LinkType, &pf.Snaplen, func(r Record) error {
		r.Data = append([]byte(nil), r.Data...)
		pf.Records = append(pf.Records, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return &pf, nil
}

// CountPcap counts the records of a classic pcap file without keeping them.
func CountPcap(path string) (uint64, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	var n uint64
	var lt, sl uint32
	err = scanPcap(bufio.NewReaderSize(fh, 1<<20), &lt, &sl, func(Record) error { n++; return nil })
	if err != nil {
		return n, fmt.Errorf("reading %s: %w", path, err)
	}
	return n, nil
}

func scanPcap(r io.Reader, linkType, snaplen *uint32, fn func(Record) error) error {
	var hdr [24]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("file header: %w", err)
	}
	var bo binary.ByteOrder
	var nano bool
	switch m := binary.LittleEndian.Uint32(hdr[:]); m {
	case 0xa1b2c3d4:
		bo = binary.LittleEndian
	case 0xa1b23c4d:
		bo, nano = binary.LittleEndian, true
	case 0xd4c3b2a1:
		bo = binary.BigEndian
	case 0x4d3cb2a1:
		bo, nano = binary.BigEndian, true
	default:
		return fmt.Errorf("not a classic pcap file (magic %#x)", m)
	}
	*snaplen = bo.Uint32(hdr[16:])
	*linkType = bo.Uint32(hdr[20:]) & 0x0fffffff
	var rh [16]byte
	buf := make([]byte, 0, 65536)
	for i := 0; ; i++ {
		if _, err := io.ReadFull(r, rh[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("record %d header: %w", i, err)
		}
		sec, frac := int64(bo.Uint32(rh[0:])), int64(bo.Uint32(rh[4:]))
		incl, orig := bo.Uint32(rh[8:]), bo.Uint32(rh[12:])
		if incl > 1<<18 {
			return fmt.Errorf("record %d: captured length %d is implausible", i, incl)
		}
		if incl > orig {
			return errors.New("captured length exceeds original length")
		}
		buf = buf[:incl]
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("record %d data: %w", i, err)
		}
		if !nano {
			frac *= 1000
		}
		if err := fn(Record{TsNanos: sec*1e9 + frac, OrigLen: orig, Data: buf}); err != nil {
			return err
		}
	}
}
