package bpf

import (
	"encoding/binary"
	"errors"
	"os"
)

// capPacket is one packet of a capture file: captured bytes and wire length.
type capPacket struct {
	data    []byte
	wireLen int
}

// readCapture reads a pcap or pcapng file. It returns the link type and the
// packets; pcapng files whose interfaces differ in link type are refused.
// Truncated files yield the packets read so far.
func readCapture(path string) (LinkType, []capPacket, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	if len(b) < 24 {
		return 0, nil, errors.New("short file")
	}
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		return readPcap(b, binary.LittleEndian)
	case 0xd4c3b2a1, 0x4d3cb2a1:
		return readPcap(b, binary.BigEndian)
	case 0x0a0d0d0a:
		return readPcapng(b)
	}
	return 0, nil, errors.New("not a capture file")
}

func readPcap(b []byte, bo binary.ByteOrder) (LinkType, []capPacket, error) {
	lt := LinkType(bo.Uint32(b[20:]) & 0x03ffffff)
	var pkts []capPacket
	for off := 24; off+16 <= len(b); {
		incl := int(bo.Uint32(b[off+8:]))
		orig := int(bo.Uint32(b[off+12:]))
		off += 16
		if incl < 0 || off+incl > len(b) || incl > 1<<20 {
			break
		}
		pkts = append(pkts, capPacket{b[off : off+incl], orig})
		off += incl
	}
	return lt, pkts, nil
}

func readPcapng(b []byte) (LinkType, []capPacket, error) {
	var bo binary.ByteOrder = binary.LittleEndian
	var lts []LinkType
	var pkts []capPacket
	for off := 0; off+12 <= len(b); {
		typ := bo.Uint32(b[off:])
		if typ == 0x0a0d0d0a {
			if binary.LittleEndian.Uint32(b[off+8:]) == 0x1a2b3c4d {
				bo = binary.LittleEndian
			} else {
				bo = binary.BigEndian
			}
			lts = lts[:0]
		}
		blen := int(bo.Uint32(b[off+4:]))
		if blen < 12 || off+blen > len(b) {
			break
		}
		body := b[off+8 : off+blen-4]
		switch typ {
		case 1: // interface description
			if len(body) >= 2 {
				lts = append(lts, LinkType(bo.Uint16(body)))
			}
		case 6: // enhanced packet
			if len(body) >= 20 {
				ifc := int(bo.Uint32(body))
				incl := int(bo.Uint32(body[12:]))
				orig := int(bo.Uint32(body[16:]))
				if ifc < len(lts) && incl >= 0 && 20+incl <= len(body) {
					pkts = append(pkts, capPacket{body[20 : 20+incl], orig})
				}
			}
		case 3: // simple packet
			if len(body) >= 4 && len(lts) > 0 {
				orig := int(bo.Uint32(body))
				incl := min(orig, len(body)-4)
				pkts = append(pkts, capPacket{body[4 : 4+incl], orig})
			}
		}
		off += blen
	}
	if len(lts) == 0 {
		return 0, nil, errors.New("no interface")
	}
	for _, lt := range lts {
		if lt != lts[0] {
			return 0, nil, errors.New("mixed link types")
		}
	}
	return lts[0], pkts, nil
}
