package cryptofeat

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// Sizes of the kernel's key and value (one CPU's copy).
const (
	KeySize   = 40
	ValueSize = 72
)

// Method says how a session's server side was decided; lower is better.
type Method uint8

// Methods (enum crypto_method).
const (
	MethodNone          Method = 0 // not decided
	MethodTCPHandshake  Method = 1 // SYN: the destination; SYN+ACK: the source
	MethodWellKnownPort Method = 2 // the only port below 1024
	MethodLowerPort     Method = 3 // the lower port (equal: the destination)
)

func (m Method) String() string {
	switch m {
	case MethodNone:
		return "none"
	case MethodTCPHandshake:
		return "tcp-handshake"
	case MethodWellKnownPort:
		return "well-known-port"
	case MethodLowerPort:
		return "lower-port"
	}
	return fmt.Sprintf("method(%d)", uint8(m))
}

// SessionKey is a bidirectional session: the lower address first (then
// the lower port when the addresses are equal). IPv4 addresses are
// unmapped (the kernel stores them as ::ffff:a.b.c.d).
type SessionKey struct {
	LoAddr, HiAddr netip.Addr
	LoPort, HiPort uint16
	Proto          uint8
}

func (k SessionKey) String() string {
	return fmt.Sprintf("%d %s <-> %s", k.Proto, netip.AddrPortFrom(k.LoAddr, k.LoPort), netip.AddrPortFrom(k.HiAddr, k.HiPort))
}

// Bytes encodes the key as the kernel stores it (for lookups and deletes).
func (k SessionKey) Bytes() []byte {
	b := make([]byte, KeySize)
	lo, hi := k.LoAddr.As16(), k.HiAddr.As16() // IPv4 becomes IPv4-mapped
	copy(b[0:16], lo[:])
	copy(b[16:32], hi[:])
	binary.BigEndian.PutUint16(b[32:], k.LoPort)
	binary.BigEndian.PutUint16(b[34:], k.HiPort)
	b[36] = k.Proto
	return b
}

// DecodeSessionKey decodes a struct session_key.
func DecodeSessionKey(b []byte) (SessionKey, error) {
	if len(b) < KeySize {
		return SessionKey{}, fmt.Errorf("cryptofeat: session key is %d bytes, want %d", len(b), KeySize)
	}
	return SessionKey{
		LoAddr: netip.AddrFrom16([16]byte(b[0:16])).Unmap(),
		HiAddr: netip.AddrFrom16([16]byte(b[16:32])).Unmap(),
		LoPort: binary.BigEndian.Uint16(b[32:]),
		HiPort: binary.BigEndian.Uint16(b[34:]),
		Proto:  b[36],
	}, nil
}

// Session is a session's counters, one CPU's copy or merged over CPUs.
// "In" is what the ingress program saw, "out" what the egress program saw.
type Session struct {
	// StartNs and LastNs are CLOCK_MONOTONIC (coarse: one tick of
	// resolution) times of the first and last packet. LastNs 0: an empty
	// copy (the session never had a packet on that CPU).
	StartNs  uint64 `json:"start_ns"`
	LastNs   uint64 `json:"last_ns"`
	PktsIn   uint64 `json:"packets_in"`
	BytesIn  uint64 `json:"bytes_in"`
	PktsOut  uint64 `json:"packets_out"`
	BytesOut uint64 `json:"bytes_out"`
	// Server is the side guessed to be the server (invalid while Method is
	// MethodNone).
	Server netip.Addr `json:"server"`
	Method Method     `json:"method"`
}

// DecodeCopy decodes one CPU's copy of a struct crypto_session.
func DecodeCopy(b []byte) (Session, error) {
	if len(b) < ValueSize {
		return Session{}, fmt.Errorf("cryptofeat: session value is %d bytes, want %d", len(b), ValueSize)
	}
	le := binary.LittleEndian // bpfel: the object's byte order
	s := Session{
		StartNs:  le.Uint64(b[0:]),
		LastNs:   le.Uint64(b[8:]),
		PktsIn:   le.Uint64(b[16:]),
		BytesIn:  le.Uint64(b[24:]),
		PktsOut:  le.Uint64(b[32:]),
		BytesOut: le.Uint64(b[40:]),
		Method:   Method(b[64]),
	}
	if s.Method != MethodNone {
		s.Server = netip.AddrFrom16([16]byte(b[48:64])).Unmap()
	}
	return s, nil
}

// Merge merges the per-CPU copies of one session: counters are summed, the
// start is the earliest, the last the latest, and the server comes from the
// copy with the best (lowest) method, the first such CPU on a tie. Empty
// copies (LastNs 0) are skipped.
//
// The kernel restarts a CPU's copy after timeoutNs without packets on that
// CPU, so another CPU's copy may still hold an earlier incarnation of the
// session. With timeoutNs > 0, Merge keeps only the copies that chain to
// the most recent activity with gaps of at most timeoutNs (what the kernel
// would have seen on a single CPU); 0 merges every copy.
func Merge(copies []Session, timeoutNs uint64) Session {
	live := make([]bool, len(copies))
	newest := -1
	for i, c := range copies {
		if c.LastNs != 0 && (newest < 0 || c.LastNs > copies[newest].LastNs) {
			newest = i
		}
	}
	if newest < 0 {
		return Session{}
	}
	live[newest] = true
	if timeoutNs == 0 {
		for i, c := range copies {
			live[i] = c.LastNs != 0
		}
	} else {
		// Grow the chain backwards from the newest copy: a copy joins when
		// its last packet is within timeoutNs of the chain's start.
		start := copies[newest].StartNs
		for grown := true; grown; {
			grown = false
			for i, c := range copies {
				if live[i] || c.LastNs == 0 || c.LastNs+timeoutNs < start {
					continue
				}
				live[i], grown = true, true
				start = min(start, c.StartNs)
			}
		}
	}

	var m Session
	for i, c := range copies {
		if !live[i] {
			continue
		}
		if m.LastNs == 0 || c.StartNs < m.StartNs {
			m.StartNs = c.StartNs
		}
		m.LastNs = max(m.LastNs, c.LastNs)
		m.PktsIn += c.PktsIn
		m.BytesIn += c.BytesIn
		m.PktsOut += c.PktsOut
		m.BytesOut += c.BytesOut
		if c.Method != MethodNone && (m.Method == MethodNone || c.Method < m.Method) {
			m.Method, m.Server = c.Method, c.Server
		}
	}
	return m
}

// DecodeSession decodes one raw entry of the sessions map (as
// probe.RawEntry holds it: the key and one value per CPU) and merges the
// copies with Merge.
func DecodeSession(key []byte, values [][]byte, timeoutNs uint64) (SessionKey, Session, error) {
	k, err := DecodeSessionKey(key)
	if err != nil {
		return SessionKey{}, Session{}, err
	}
	copies := make([]Session, len(values))
	for i, v := range values {
		if copies[i], err = DecodeCopy(v); err != nil {
			return SessionKey{}, Session{}, err
		}
	}
	return k, Merge(copies, timeoutNs), nil
}

// ReadSessions reads every session of a loaded probe's sessions map,
// merged over CPUs (see Merge).
func ReadSessions(m *ebpf.Map, timeoutNs uint64) (map[SessionKey]Session, error) {
	out := map[SessionKey]Session{}
	var (
		key    []byte
		values [][]byte
	)
	it := m.Iterate()
	for it.Next(&key, &values) {
		k, s, err := DecodeSession(key, values, timeoutNs)
		if err != nil {
			return nil, err
		}
		out[k] = s
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("cryptofeat: reading sessions: %w", err)
	}
	return out, nil
}

// Features are TOSHI's derived features of one session. Packets and bits
// are split by sender: "server" is what the server side sent. Every ratio
// or rate whose divisor is zero is 0.
type Features struct {
	Method              Method  `json:"method"`
	ServerPackets       uint64  `json:"server_packets"`
	ClientPackets       uint64  `json:"client_packets"`
	ServerBits          uint64  `json:"server_bits"`
	ClientBits          uint64  `json:"client_bits"`
	Duration            float64 `json:"duration_s"` // seconds from the first to the last packet
	ServerPacketsPerSec float64 `json:"server_packets_per_s"`
	ClientPacketsPerSec float64 `json:"client_packets_per_s"`
	ServerBitsPerSec    float64 `json:"server_bits_per_s"`
	ClientBitsPerSec    float64 `json:"client_bits_per_s"`
	ServerBitsPerPacket float64 `json:"server_bits_per_packet"`
	ClientBitsPerPacket float64 `json:"client_bits_per_packet"`
	PacketRatio         float64 `json:"packet_ratio"` // server packets / client packets
	BitRatio            float64 `json:"bit_ratio"`    // server bits / client bits
}

// Derive computes a session's features. serverIsLocal says whether the
// session's server is this host (the probe's interface): then the server's
// packets are the ones going out, otherwise the ones coming in. (Which
// addresses are local is the caller's knowledge; s.Server names the side.)
func Derive(s Session, serverIsLocal bool) Features {
	f := Features{Method: s.Method}
	if serverIsLocal {
		f.ServerPackets, f.ServerBits = s.PktsOut, 8*s.BytesOut
		f.ClientPackets, f.ClientBits = s.PktsIn, 8*s.BytesIn
	} else {
		f.ServerPackets, f.ServerBits = s.PktsIn, 8*s.BytesIn
		f.ClientPackets, f.ClientBits = s.PktsOut, 8*s.BytesOut
	}
	if s.LastNs > s.StartNs {
		f.Duration = float64(s.LastNs-s.StartNs) / 1e9
	}
	f.ServerPacketsPerSec = div(float64(f.ServerPackets), f.Duration)
	f.ClientPacketsPerSec = div(float64(f.ClientPackets), f.Duration)
	f.ServerBitsPerSec = div(float64(f.ServerBits), f.Duration)
	f.ClientBitsPerSec = div(float64(f.ClientBits), f.Duration)
	f.ServerBitsPerPacket = div(float64(f.ServerBits), float64(f.ServerPackets))
	f.ClientBitsPerPacket = div(float64(f.ClientBits), float64(f.ClientPackets))
	f.PacketRatio = div(float64(f.ServerPackets), float64(f.ClientPackets))
	f.BitRatio = div(float64(f.ServerBits), float64(f.ClientBits))
	return f
}

// div is a / b, or 0 when b is 0.
func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Stats are the crypto_stats counters summed over CPUs. Packets = Counted +
// NonIP + OtherProto + Malformed + TableFull; Restarted counts session
// restarts (their packets are in Counted).
type Stats struct {
	Packets    uint64 `json:"packets"`
	Counted    uint64 `json:"counted"`
	NonIP      uint64 `json:"non_ip"`
	OtherProto uint64 `json:"other_proto"`
	Malformed  uint64 `json:"malformed"`
	TableFull  uint64 `json:"table_full"`
	Restarted  uint64 `json:"restarted"`
}

const statCount = 7

// StatsFromCPUs sums per-CPU values of crypto_stats: values[i] holds entry
// i's per-CPU counters.
func StatsFromCPUs(values [][]uint64) Stats {
	var s [statCount]uint64
	for i := 0; i < len(values) && i < statCount; i++ {
		for _, v := range values[i] {
			s[i] += v
		}
	}
	return Stats{s[0], s[1], s[2], s[3], s[4], s[5], s[6]}
}

// ReadStats reads the crypto_stats map of a loaded probe.
func ReadStats(m *ebpf.Map) (Stats, error) {
	values := make([][]uint64, statCount)
	for i := range values {
		if err := m.Lookup(uint32(i), &values[i]); err != nil {
			return Stats{}, fmt.Errorf("cryptofeat: reading crypto_stats[%d]: %w", i, err)
		}
	}
	return StatsFromCPUs(values), nil
}
