package flowmon

// Hand-built frames for BPF_PROG_TEST_RUN. Every builder returns a fresh
// slice; lengths and checksums are filled in where the programs could look.

import (
	"encoding/binary"
	"net/netip"
)

const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806
	etherVLAN = 0x8100
	etherQinQ = 0x88A8
	etherIPv6 = 0x86DD

	protoHopByHop = 0
	protoICMP     = 1
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoGRE      = 47
	protoAH       = 51
	protoICMPv6   = 58
	protoNoNext   = 59
	protoDestOpts = 60
	protoSCTP     = 132
)

var (
	dstMAC = [6]byte{0x02, 0, 0, 0, 0, 0x02}
	srcMAC = [6]byte{0x02, 0, 0, 0, 0, 0x01}
)

// eth prepends an Ethernet header.
func eth(etherType uint16, payload []byte) []byte {
	return ethTagged(nil, etherType, payload)
}

// ethTagged prepends an Ethernet header with one VLAN tag per TPID in tpids
// (outermost first; VLAN ids 100, 101, ...).
func ethTagged(tpids []uint16, etherType uint16, payload []byte) []byte {
	b := append([]byte{}, dstMAC[:]...)
	b = append(b, srcMAC[:]...)
	for i, tpid := range tpids {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i))
	}
	b = binary.BigEndian.AppendUint16(b, etherType)
	return append(b, payload...)
}

// ip4 describes an IPv4 header.
type ip4 struct {
	proto    uint8
	tos      uint8
	src, dst netip.Addr
	options  []byte // a multiple of 4 bytes
	offset   uint16 // fragment offset in bytes (a multiple of 8)
	more     bool   // more fragments
	totLen   int    // 0: header + payload
}

// ipv4 prepends the header h to payload.
func ipv4(h ip4, payload []byte) []byte {
	hlen := 20 + len(h.options)
	b := make([]byte, hlen, hlen+len(payload))
	b[0] = 0x40 | uint8(hlen/4)
	b[1] = h.tos
	tot := h.totLen
	if tot == 0 {
		tot = hlen + len(payload)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(tot))
	binary.BigEndian.PutUint16(b[4:], 0x4242)
	frag := h.offset / 8
	if h.more {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = 64
	b[9] = h.proto
	s, d := h.src.As4(), h.dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	copy(b[20:], h.options)
	binary.BigEndian.PutUint16(b[10:], checksum(b))
	return append(b, payload...)
}

// ipv6 prepends a 40-byte IPv6 header with traffic class tc.
func ipv6(nextHeader, tc uint8, src, dst netip.Addr, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	// version 6, traffic class, flow label 0x12345
	binary.BigEndian.PutUint32(b[0:], 6<<28|uint32(tc)<<20|0x12345)
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = nextHeader
	b[7] = 64
	s, d := src.As16(), dst.As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	return append(b, payload...)
}

// optsHdr prepends a hop-by-hop or destination options header of 8*(1+n)
// bytes, filled with one PadN option.
func optsHdr(nextHeader uint8, n int, payload []byte) []byte {
	size := 8 * (1 + n)
	b := make([]byte, size, size+len(payload))
	b[0] = nextHeader
	b[1] = uint8(n)
	b[2] = 1 // PadN
	b[3] = uint8(size - 4)
	return append(b, payload...)
}

// routingHdr prepends an IPv6 routing header (type 4, segment routing, no
// segments left) of 8*(1+n) bytes.
func routingHdr(nextHeader uint8, n int, payload []byte) []byte {
	size := 8 * (1 + n)
	b := make([]byte, size, size+len(payload))
	b[0] = nextHeader
	b[1] = uint8(n)
	b[2] = 4
	return append(b, payload...)
}

// ahHdr prepends an authentication header with 12 bytes of ICV (24 bytes:
// its length field counts 4-byte words minus 2).
func ahHdr(nextHeader uint8, payload []byte) []byte {
	b := make([]byte, 24, 24+len(payload))
	b[0] = nextHeader
	b[1] = 24/4 - 2
	binary.BigEndian.PutUint32(b[4:], 0x1000) // SPI
	binary.BigEndian.PutUint32(b[8:], 1)      // sequence
	return append(b, payload...)
}

// fragHdr prepends an IPv6 fragment header.
func fragHdr(nextHeader uint8, offset uint16, more bool, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0] = nextHeader
	fo := offset &^ 7
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(b[2:], fo)
	binary.BigEndian.PutUint32(b[4:], 0xabcd)
	return append(b, payload...)
}

// tcp prepends a 20-byte TCP header with the given flags.
func tcp(sport, dport uint16, flags uint8, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 1000)
	b[12] = 5 << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	return append(b, payload...)
}

// udp prepends a UDP header (checksum 0).
func udp(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

// sctp prepends an SCTP common header (checksum 0).
func sctp(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 12, 12+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 0xfeedf00d)
	return append(b, payload...)
}

// icmp builds an ICMP or ICMPv6 message (8-byte header + payload).
func icmp(typ, code uint8, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint16(b[4:], 7) // id
	binary.BigEndian.PutUint16(b[6:], 1) // sequence
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// gre prepends a minimal GRE header (no options) carrying IPv4.
func gre(payload []byte) []byte {
	return append([]byte{0, 0, 0x08, 0x00}, payload...)
}

// arp is an Ethernet/IPv4 ARP request body.
func arp(sender, target netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], 1) // request
	copy(b[8:14], srcMAC[:])
	s, t := sender.As4(), target.As4()
	copy(b[14:18], s[:])
	copy(b[24:28], t[:])
	return b
}

// pad appends zero bytes up to n bytes (Ethernet's 60-byte minimum).
func pad(frame []byte, n int) []byte {
	for len(frame) < n {
		frame = append(frame, 0)
	}
	return frame
}

// checksum is the Internet checksum of b.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
