// Package replay drives packet probes with captured traffic through
// BPF_PROG_TEST_RUN: the same kernel code as live traffic, at the capture's
// timestamps.
package replay

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Packet is one captured frame.
type Packet struct {
	TimeNs  uint64 // capture time, Unix nanoseconds
	Data    []byte // the captured bytes
	OrigLen uint32 // the frame's length on the wire
}

// Reader reads classic pcap files (microsecond or nanosecond, either byte
// order) with Ethernet frames, as tcpdump -w writes them.
type Reader struct {
	r       *bufio.Reader
	order   binary.ByteOrder
	nano    bool
	snaplen uint32
	hdr     [16]byte
}

const linkEthernet = 1

// NewReader reads the file header.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var h [24]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, fmt.Errorf("pcap: reading the file header: %w", err)
	}
	rd := &Reader{r: br}
	switch magic := binary.LittleEndian.Uint32(h[:4]); magic {
	case 0xa1b2c3d4:
		rd.order = binary.LittleEndian
	case 0xa1b23c4d:
		rd.order, rd.nano = binary.LittleEndian, true
	case 0xd4c3b2a1:
		rd.order = binary.BigEndian
	case 0x4d3cb2a1:
		rd.order, rd.nano = binary.BigEndian, true
	case 0x0a0d0d0a:
		return nil, errors.New("pcap: this is a pcapng file; convert it with `editcap -F pcap IN OUT` or capture with `tcpdump -w` (which writes pcap)")
	default:
		return nil, fmt.Errorf("pcap: not a pcap file (magic %#x)", magic)
	}
	rd.snaplen = rd.order.Uint32(h[16:20])
	if lt := rd.order.Uint32(h[20:24]) & 0x0fffffff; lt != linkEthernet {
		return nil, fmt.Errorf("pcap: link type %d; only Ethernet (1) can be replayed through TC and XDP programs", lt)
	}
	return rd, nil
}

// Next returns the next packet, or io.EOF.
func (rd *Reader) Next() (Packet, error) {
	if _, err := io.ReadFull(rd.r, rd.hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Packet{}, fmt.Errorf("pcap: truncated record header")
		}
		return Packet{}, err
	}
	sec, frac := rd.order.Uint32(rd.hdr[0:4]), rd.order.Uint32(rd.hdr[4:8])
	incl, orig := rd.order.Uint32(rd.hdr[8:12]), rd.order.Uint32(rd.hdr[12:16])
	if incl > 1<<18 || (rd.snaplen > 0 && incl > rd.snaplen && incl > 65535) {
		return Packet{}, fmt.Errorf("pcap: record of %d bytes is larger than the snap length %d: corrupt file", incl, rd.snaplen)
	}
	p := Packet{Data: make([]byte, incl), OrigLen: orig}
	if _, err := io.ReadFull(rd.r, p.Data); err != nil {
		return Packet{}, fmt.Errorf("pcap: truncated record: %w", err)
	}
	if rd.nano {
		p.TimeNs = uint64(sec)*1e9 + uint64(frac)
	} else {
		p.TimeNs = uint64(sec)*1e9 + uint64(frac)*1e3
	}
	return p, nil
}
