package flowmon

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"unsafe"
)

// Map names in the object.
const (
	FlowsMap = "flows"
	StatsMap = "stats"
)

// MaxFlows is the default capacity (max_entries) of the flows map.
const MaxFlows = 65536

// Directions: the values of Key.Dir (enum flow_dir in C).
const (
	DirIngress uint8 = 0
	DirEgress  uint8 = 1
)

// Stat indexes the stats map (enum flowmon_stat in C).
type Stat uint32

const (
	// StatPackets counts every packet (socket buffer) either program saw.
	StatPackets Stat = iota
	// StatNonIP counts frames that are not IPv4/IPv6 after at most two
	// VLAN tags.
	StatNonIP
	// StatMalformed counts IP packets with a truncated or invalid IP
	// header (IPv6: including its extension headers) or a truncated
	// TCP/UDP/SCTP/ICMP header. They create no flow.
	StatMalformed
	// StatNewFlows counts the flows the programs created.
	StatNewFlows
	// StatUpdateFailed counts packets whose flow could neither be found nor
	// created.
	StatUpdateFailed
	// NumStats is the number of entries of the stats map.
	NumStats
)

var statNames = [NumStats]string{"packets", "non_ip", "malformed", "new_flows", "update_failed"}

func (s Stat) String() string {
	if s < NumStats {
		return statNames[s]
	}
	return fmt.Sprintf("stat(%d)", uint32(s))
}

// TCP flag bits of Stats.TCPFlags.
const (
	TCPFin uint8 = 1 << iota
	TCPSyn
	TCPRst
	TCPPsh
	TCPAck
	TCPUrg
	TCPEce
	TCPCwr
)

// Key mirrors struct flow_key byte for byte (44 bytes). Sport and Dport
// hold host-order numbers: DecodeKey converts them from network order.
type Key struct {
	// Saddr and Daddr are IPv6 addresses; IPv4 is stored IPv4-mapped
	// (::ffff:a.b.c.d). See Addrs.
	Saddr, Daddr [16]byte
	// Sport and Dport are the TCP/UDP/SCTP ports. ICMP and ICMPv6: Sport
	// 0, Dport type<<8 | code. Other protocols and non-first fragments: 0.
	Sport, Dport uint16
	Proto        uint8
	Dir          uint8 // DirIngress or DirEgress
	Pad          [2]byte
	Ifindex      uint32 // skb->ifindex: the interface the program is attached to
}

// Stats mirrors struct flow_stats byte for byte (40 bytes): one CPU's share
// of a flow. Merge the CPUs with SumStats.
type Stats struct {
	// FirstNs and LastNs are CLOCK_MONOTONIC nanoseconds
	// (bpf_ktime_get_ns) of the first and last packet counted.
	FirstNs, LastNs uint64
	// Packets counts socket buffers, one per GSO/GRO buffer, as the
	// interface counters do.
	Packets uint64
	// Bytes is the sum of skb->len: whole frames as TC sees them,
	// link-layer header included.
	Bytes    uint64
	TCPFlags uint8 // OR of the TCP flag bytes seen
	TOS      uint8 // IPv4 TOS / IPv6 traffic class of the first packet
	Pad      [6]byte
}

// Sizes of the raw records.
const (
	KeySize   = int(unsafe.Sizeof(Key{}))
	StatsSize = int(unsafe.Sizeof(Stats{}))
)

// DecodeKey decodes a raw key of the flows map.
func DecodeKey(b []byte) (Key, error) {
	var k Key
	if len(b) != KeySize {
		return k, fmt.Errorf("flowmon: flow key is %d bytes, want %d", len(b), KeySize)
	}
	copy(k.Saddr[:], b[0:16])
	copy(k.Daddr[:], b[16:32])
	k.Sport = binary.BigEndian.Uint16(b[32:])
	k.Dport = binary.BigEndian.Uint16(b[34:])
	k.Proto = b[36]
	k.Dir = b[37]
	copy(k.Pad[:], b[38:40])
	k.Ifindex = binary.LittleEndian.Uint32(b[40:])
	return k, nil
}

// AppendBinary appends the raw (map) form of k to b.
func (k Key) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, k.Saddr[:]...)
	b = append(b, k.Daddr[:]...)
	b = binary.BigEndian.AppendUint16(b, k.Sport)
	b = binary.BigEndian.AppendUint16(b, k.Dport)
	b = append(b, k.Proto, k.Dir, k.Pad[0], k.Pad[1])
	return binary.LittleEndian.AppendUint32(b, k.Ifindex), nil
}

// MarshalBinary returns the raw (map) form of k, e.g. to delete the flow.
func (k Key) MarshalBinary() ([]byte, error) { return k.AppendBinary(make([]byte, 0, KeySize)) }

// Addrs returns the source and destination addresses, IPv4 unmapped.
// (An IPv6 packet whose addresses are themselves IPv4-mapped cannot be told
// apart from IPv4 and is reported as IPv4 as well.)
func (k Key) Addrs() (src, dst netip.Addr) {
	return netip.AddrFrom16(k.Saddr).Unmap(), netip.AddrFrom16(k.Daddr).Unmap()
}

func (k Key) String() string {
	src, dst := k.Addrs()
	dir := "ingress"
	if k.Dir == DirEgress {
		dir = "egress"
	}
	return fmt.Sprintf("%s %s:%d -> %s:%d proto %d if %d",
		dir, src, k.Sport, dst, k.Dport, k.Proto, k.Ifindex)
}

// DecodeStats decodes one CPU's raw value of the flows map.
func DecodeStats(b []byte) (Stats, error) {
	var s Stats
	if len(b) != StatsSize {
		return s, fmt.Errorf("flowmon: flow stats are %d bytes, want %d", len(b), StatsSize)
	}
	le := binary.LittleEndian
	s.FirstNs = le.Uint64(b[0:])
	s.LastNs = le.Uint64(b[8:])
	s.Packets = le.Uint64(b[16:])
	s.Bytes = le.Uint64(b[24:])
	s.TCPFlags = b[32]
	s.TOS = b[33]
	copy(s.Pad[:], b[34:40])
	return s, nil
}

// SumStats merges the per-CPU values of one flow: packets and bytes are
// added, TCP flags ORed, FirstNs is the earliest and LastNs the latest of
// the CPUs that counted packets, TOS is that of the earliest. CPUs that
// counted nothing (Packets 0) are ignored; so is the padding.
func SumStats(cpus []Stats) Stats {
	var out Stats
	for _, s := range cpus {
		if s.Packets == 0 {
			continue
		}
		if out.Packets == 0 || s.FirstNs < out.FirstNs {
			out.FirstNs = s.FirstNs
			out.TOS = s.TOS
		}
		if s.LastNs > out.LastNs {
			out.LastNs = s.LastNs
		}
		out.Packets += s.Packets
		out.Bytes += s.Bytes
		out.TCPFlags |= s.TCPFlags
	}
	return out
}

// DecodeCounter decodes one CPU's raw value of the stats map (struct
// counter).
func DecodeCounter(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("flowmon: counter is %d bytes, want 8", len(b))
	}
	return binary.LittleEndian.Uint64(b), nil
}
