package netio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"unsafe"
)

// Names in the manifest and the object.
const (
	ProbeName     = "netio"
	StreamSockets = "sockets"
	MapEvents     = "events"
	MapOwners     = "owners"
	MapProcs      = "procs"
	MapStats      = "netio_stats"
	ParamAll      = "rp_watch_all"
	ParamIOEvents = "netio_io_events"
	ParamFlushUS  = "netio_flush_us"
)

// Kind of an event (enum netio_kind).
type Kind uint32

const (
	Accept  Kind = 1 // accept() returned a TCP connection
	Connect Kind = 2 // an active TCP connection reached ESTABLISHED
	Recv    Kind = 3 // bytes read (Size 0 on TCP: the peer's end of stream)
	Send    Kind = 4 // bytes written
	Close   Kind = 5 // the socket is gone (TCP CLOSE; last close of a UDP socket)
	Exit    Kind = 6 // a watched process that did network I/O exited
	Listen  Kind = 7 // a TCP socket started listening
)

var kindNames = [...]string{Accept: "accept", Connect: "connect", Recv: "recv", Send: "send", Close: "close", Exit: "exit", Listen: "listen"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "kind-" + strconv.Itoa(int(k))
}

// Flags of an event.
const (
	// FlagNew: the first event of a socket the kernel's owner table did not
	// know (a UDP socket, or a connection from before watching started).
	FlagNew = 1
	// FlagOwner: TGID and TID are the socket owner's; the event ran in
	// another context (softirq).
	FlagOwner = 2
)

// Address families and protocols as the kernel numbers them.
const (
	AFInet    = 2
	AFInet6   = 10
	ProtoTCP  = 6
	ProtoUDP  = 17
	TCPClose  = 7 // TCP_CLOSE, the state a CLOSE event reaches
	TCPListen = 10
)

// Event is one socket event (struct netio_event).
type Event struct {
	// Time is the kernel's CLOCK_MONOTONIC in ns (bpf_ktime_get_ns).
	Time uint64
	TGID uint32
	TID  uint32
	// Sock is the struct sock's kernel address; the kernel reuses it once
	// the socket is freed. Cookie is the socket cookie, unique for the
	// host's uptime (and what sock_diag names a socket by): the identity
	// of a connection.
	Sock   uint64
	Cookie uint64
	Kind   Kind
	// Size is the byte count of a Recv or Send.
	Size   uint32
	Family uint16 // AFInet, AFInet6
	Proto  uint16 // ProtoTCP, ProtoUDP
	// State is the TCP state (include/net/tcp_states.h) at the event; for
	// a Close, the state the socket left.
	State uint8
	Flags uint8
	// NetNS is the socket's network namespace (its inode number).
	NetNS uint32
	// Local and Remote: IPv4 unmapped (also for IPv4 peers of a
	// dual-stack IPv6 socket). Remote is the zero address and port for an
	// unconnected UDP socket. Exit events have neither.
	Local, Remote netip.AddrPort
}

// Conn is "remote->local" for reports.
func (e Event) Conn() string { return e.Remote.String() + "->" + e.Local.String() }

// ProtoName is "tcp", "udp" or the number.
func (e Event) ProtoName() string {
	switch e.Proto {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	}
	return strconv.Itoa(int(e.Proto))
}

func (e Event) String() string {
	s := fmt.Sprintf("%d pid %d/%d %s", e.Time, e.TGID, e.TID, e.Kind)
	if e.Kind == Exit {
		return s
	}
	s += fmt.Sprintf(" %s %s cookie %d", e.ProtoName(), e.Conn(), e.Cookie)
	if e.Kind == Recv || e.Kind == Send {
		s += fmt.Sprintf(" %d bytes", e.Size)
	}
	return s
}

// EventSize is the record's size in bytes.
const EventSize = int(unsafe.Sizeof(netioNetioEvent{}))

func addrPort(a [16]byte, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(a).Unmap(), port)
}

// DecodeEvent decodes one ring-buffer record.
func DecodeEvent(b []byte) (Event, error) {
	if len(b) < EventSize {
		return Event{}, fmt.Errorf("netio: event of %d bytes, want %d", len(b), EventSize)
	}
	le := binary.LittleEndian
	e := Event{
		Time:   le.Uint64(b[0:]),
		Cookie: le.Uint64(b[8:]),
		Sock:   le.Uint64(b[16:]),
		TGID:   le.Uint32(b[24:]),
		TID:    le.Uint32(b[28:]),
		Kind:   Kind(le.Uint32(b[32:])),
		Size:   le.Uint32(b[36:]),
		Family: le.Uint16(b[40:]),
		Proto:  le.Uint16(b[42:]),
		NetNS:  le.Uint32(b[80:]),
		State:  b[84],
		Flags:  b[85],
	}
	if e.Kind != Exit {
		e.Local = addrPort([16]byte(b[48:64]), le.Uint16(b[44:]))
		e.Remote = addrPort([16]byte(b[64:80]), le.Uint16(b[46:]))
	}
	return e, nil
}

// Proc is one process's counters (struct netio_proc), from the procs map.
// Open is a gauge: the sockets the process owns now.
type Proc = netioNetioProc

// DecodeProc decodes a procs entry.
func DecodeProc(key []byte, values [][]byte) (uint32, Proc, error) {
	var p Proc
	if len(key) != 4 || len(values) != 1 {
		return 0, p, fmt.Errorf("netio: procs entry with a %d-byte key and %d values", len(key), len(values))
	}
	if err := binary.Read(bytes.NewReader(values[0]), binary.LittleEndian, &p); err != nil {
		return 0, p, fmt.Errorf("netio: procs value: %w", err)
	}
	return binary.LittleEndian.Uint32(key), p, nil
}

// Stats are the kernel's counters (netio_stats), summed over the CPUs.
type Stats struct {
	Events     uint64 `json:"events"`
	RingFull   uint64 `json:"ringbuf_full"` // events lost
	ProcsFull  uint64 `json:"procs_full"`
	OwnersFull uint64 `json:"owners_full"`
	NoSock     uint64 `json:"accept_no_sock"`
	NoCookie   uint64 `json:"accept_no_cookie"`
	Peek       uint64 `json:"peek_skipped"`
}

// DecodeStats decodes the netio_stats array: per entry a 4-byte index and
// one 8-byte value per CPU.
func DecodeStats(keys [][]byte, values [][][]byte) (Stats, error) {
	var s Stats
	fields := [...]*uint64{&s.Events, &s.RingFull, &s.ProcsFull, &s.OwnersFull, &s.NoSock, &s.NoCookie, &s.Peek}
	if len(keys) != len(values) {
		return s, fmt.Errorf("netio: %d stats keys for %d values", len(keys), len(values))
	}
	for i, k := range keys {
		if len(k) != 4 {
			return s, fmt.Errorf("netio: stats key of %d bytes", len(k))
		}
		idx := binary.LittleEndian.Uint32(k)
		if int(idx) >= len(fields) {
			continue
		}
		for _, v := range values[i] {
			if len(v) < 8 {
				return s, fmt.Errorf("netio: stats value of %d bytes", len(v))
			}
			*fields[idx] += binary.LittleEndian.Uint64(v)
		}
	}
	return s, nil
}
