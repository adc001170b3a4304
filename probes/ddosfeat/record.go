package ddosfeat

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// RecordSize is the size of one ring-buffer record (struct pkt_features).
const RecordSize = 72

// keySize is the size of struct session_key.
const keySize = 40

// Direction is the program that saw a packet.
type Direction uint8

// Directions (enum ddos_dir).
const (
	Ingress Direction = 0
	Egress  Direction = 1
)

func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// SessionKey is a bidirectional session: the lower address first (then the
// lower port when the addresses are equal). IPv4 addresses are unmapped
// (the kernel stores them as ::ffff:a.b.c.d). Ports are 0 for protocols
// without ports and for non-first fragments.
type SessionKey struct {
	LoAddr, HiAddr netip.Addr
	LoPort, HiPort uint16
	Proto          uint8
}

func (k SessionKey) String() string {
	return fmt.Sprintf("%d %s <-> %s", k.Proto, netip.AddrPortFrom(k.LoAddr, k.LoPort), netip.AddrPortFrom(k.HiAddr, k.HiPort))
}

// PacketFeatures is one packet's record: LUCID's per-packet features.
type PacketFeatures struct {
	Session SessionKey
	// TimestampNs is bpf_ktime_get_ns() when the packet was seen
	// (CLOCK_MONOTONIC).
	TimestampNs uint64
	// IPLen is the IPv4 total length or 40 + the IPv6 payload length,
	// saturated at 65535 (GSO/GRO packets may be larger).
	IPLen uint16
	// IPFlagsFrag is the IPv4 flags and fragment offset field in host
	// order (flags<<13 | offset in 8-byte units); for IPv6 the same layout
	// built from a fragment header (0 without one).
	IPFlagsFrag   uint16
	Proto         uint8
	TCPFlags      uint8
	TCPPayloadLen uint16
	TCPAck        uint32
	TCPWindow     uint16
	// UDPLen is the UDP length field (header and data).
	UDPLen   uint16
	ICMPType uint8
	Dir      Direction
	// FromHi: the packet was sent by the session's HiAddr side.
	FromHi bool
}

// IP flag bits of IPFlagsFrag.
const (
	FlagDF = 0x4000
	FlagMF = 0x2000
)

// FragOffset is the fragment offset in bytes.
func (p PacketFeatures) FragOffset() uint32 { return uint32(p.IPFlagsFrag&0x1fff) * 8 }

// Source is the sender's address and port.
func (p PacketFeatures) Source() netip.AddrPort {
	if p.FromHi {
		return netip.AddrPortFrom(p.Session.HiAddr, p.Session.HiPort)
	}
	return netip.AddrPortFrom(p.Session.LoAddr, p.Session.LoPort)
}

// Destination is the receiver's address and port.
func (p PacketFeatures) Destination() netip.AddrPort {
	if p.FromHi {
		return netip.AddrPortFrom(p.Session.LoAddr, p.Session.LoPort)
	}
	return netip.AddrPortFrom(p.Session.HiAddr, p.Session.HiPort)
}

// DecodeSessionKey decodes a struct session_key.
func DecodeSessionKey(b []byte) (SessionKey, error) {
	if len(b) < keySize {
		return SessionKey{}, fmt.Errorf("ddosfeat: session key is %d bytes, want %d", len(b), keySize)
	}
	return SessionKey{
		LoAddr: netip.AddrFrom16([16]byte(b[0:16])).Unmap(),
		HiAddr: netip.AddrFrom16([16]byte(b[16:32])).Unmap(),
		LoPort: binary.BigEndian.Uint16(b[32:]),
		HiPort: binary.BigEndian.Uint16(b[34:]),
		Proto:  b[36],
	}, nil
}

// DecodePacketFeatures decodes one ring-buffer record (a RawSample).
func DecodePacketFeatures(b []byte) (PacketFeatures, error) {
	if len(b) < RecordSize {
		return PacketFeatures{}, fmt.Errorf("ddosfeat: record is %d bytes, want %d", len(b), RecordSize)
	}
	k, _ := DecodeSessionKey(b)
	le := binary.LittleEndian // bpfel: the object's byte order
	return PacketFeatures{
		Session:       k,
		TimestampNs:   le.Uint64(b[40:]),
		IPLen:         le.Uint16(b[48:]),
		IPFlagsFrag:   le.Uint16(b[50:]),
		Proto:         b[52],
		TCPFlags:      b[53],
		TCPPayloadLen: le.Uint16(b[54:]),
		TCPAck:        le.Uint32(b[56:]),
		TCPWindow:     le.Uint16(b[60:]),
		UDPLen:        le.Uint16(b[62:]),
		ICMPType:      b[64],
		Dir:           Direction(b[65]),
		FromHi:        b[66] != 0,
	}, nil
}

// Stats are the ddos_stats counters summed over CPUs. Packets = Submitted
// + Capped + RingBufFull + Malformed + NonIP + NoSession.
type Stats struct {
	Packets     uint64 // every packet the programs ran on
	Submitted   uint64 // records submitted to the ring buffer
	Capped      uint64 // not submitted: the session's window was full
	RingBufFull uint64 // lost: the ring buffer had no room
	Malformed   uint64 // truncated or inconsistent headers
	NonIP       uint64 // not IPv4 or IPv6
	NoSession   uint64 // the session table refused the insert
}

// statCount is the number of ddos_stats entries.
const statCount = 7

// StatsFromCPUs sums per-CPU values of ddos_stats: values[i] holds entry
// i's per-CPU counters.
func StatsFromCPUs(values [][]uint64) Stats {
	var sums [statCount]uint64
	for i := 0; i < len(values) && i < statCount; i++ {
		for _, v := range values[i] {
			sums[i] += v
		}
	}
	return Stats{sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], sums[6]}
}

// ReadStats reads the ddos_stats map of a loaded probe.
func ReadStats(m *ebpf.Map) (Stats, error) {
	values := make([][]uint64, statCount)
	for i := range values {
		if err := m.Lookup(uint32(i), &values[i]); err != nil {
			return Stats{}, fmt.Errorf("ddosfeat: reading ddos_stats[%d]: %w", i, err)
		}
	}
	return StatsFromCPUs(values), nil
}

// Reader reads decoded records from the features ring buffer.
type Reader struct {
	rd  *ringbuf.Reader
	rec ringbuf.Record
}

// NewReader opens a reader on the features map of a loaded probe.
func NewReader(features *ebpf.Map) (*Reader, error) {
	rd, err := ringbuf.NewReader(features)
	if err != nil {
		return nil, err
	}
	return &Reader{rd: rd}, nil
}

// SetDeadline bounds the next Read calls; a Read that times out returns
// an error matching os.ErrDeadlineExceeded.
func (r *Reader) SetDeadline(t time.Time) { r.rd.SetDeadline(t) }

// Read waits for the next record.
func (r *Reader) Read() (PacketFeatures, error) {
	if err := r.rd.ReadInto(&r.rec); err != nil {
		return PacketFeatures{}, err
	}
	return DecodePacketFeatures(r.rec.RawSample)
}

// Close releases the reader; a blocked Read returns ringbuf.ErrClosed.
func (r *Reader) Close() error { return r.rd.Close() }

// ErrClosed is returned by Read after Close.
var ErrClosed = ringbuf.ErrClosed
