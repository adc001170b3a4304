package pfa

import "fmt"

// Kind is what happened on a socket. Tick and State are never events:
// they are the symboliser's clock symbol for a connection that stays idle
// and its symbol for a change of a connection's state.
type Kind uint8

// Event kinds. The zero Kind is the start-of-stream marker of a symbol
// stream (Start), never an event.
const (
	Accept  Kind = 1 // a server socket accepted this connection
	Connect Kind = 2 // the process connected this socket
	Recv    Kind = 3 // the process received Size bytes (0: end of stream)
	Send    Kind = 4 // the process sent Size bytes
	Close   Kind = 5 // the process closed the socket
	Tick    Kind = 6 // (symbols only) the connection stayed idle for a tick
	State   Kind = 7 // (symbols only) the connection's age or received bytes changed bucket
)

var kindNames = [...]string{"start", "accept", "connect", "recv", "send", "close", "tick", "state"}

// String returns the kind's name: accept, connect, recv, send, close,
// tick, state.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ConnID is a socket of a process: the process (thread-group id) and the
// kernel's socket cookie, unique per socket for the life of the host.
type ConnID struct {
	TGID   uint32 `json:"tgid"`
	Cookie uint64 `json:"cookie"`
}

// String returns "tgid/cookie" with the cookie in hex.
func (c ConnID) String() string { return fmt.Sprintf("%d/%#x", c.TGID, c.Cookie) }

// Event is one network I/O operation of a process on a socket, as the
// netio probe reports it.
type Event struct {
	// Time is when it happened, in nanoseconds of a monotonic clock
	// (CLOCK_MONOTONIC in the kernel). Events of one connection must come
	// in time order.
	Time int64  `json:"time"`
	Conn ConnID `json:"conn"`
	// PID is the thread that did it: the worker to act on.
	PID  uint32 `json:"pid"`
	Kind Kind   `json:"kind"`
	// Size is the number of bytes of a Recv or Send (0 for the others; a
	// Recv of 0 bytes is the peer's end of stream).
	Size int `json:"size"`
}

// check reports an event the symboliser cannot take.
func (e Event) check() error {
	switch {
	case e.Kind < Accept || e.Kind > Close:
		return fmt.Errorf("pfa: event on %v has kind %v, want accept, connect, recv, send or close", e.Conn, e.Kind)
	case e.Size < 0:
		return fmt.Errorf("pfa: %v event on %v has size %d", e.Kind, e.Conn, e.Size)
	}
	return nil
}
