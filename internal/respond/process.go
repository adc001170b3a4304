package respond

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/rampart-shield/rampart/internal/respond/sockets"
)

// ParseConn reads a connection "A:PORT->B:PORT" ([v6]:port for IPv6).
func ParseConn(s string) (a, b netip.AddrPort, err error) {
	l, r, ok := strings.Cut(s, "->")
	if !ok {
		return a, b, fmt.Errorf("connection %q: want SRC:PORT->DST:PORT", s)
	}
	if a, err = netip.ParseAddrPort(strings.TrimSpace(l)); err == nil {
		b, err = netip.ParseAddrPort(strings.TrimSpace(r))
	}
	if err != nil {
		return a, b, fmt.Errorf("connection %q: %v", s, err)
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), netip.AddrPortFrom(b.Addr().Unmap(), b.Port()), nil
}

// closeSockets destroys the TCP sockets of pid: all of its connections, or
// only the one conn names (in either direction). Listening sockets stay.
func closeSockets(pid int, conn string) (int, error) {
	var filter func(sockets.Socket) bool
	if conn != "" {
		a, b, err := ParseConn(conn)
		if err != nil {
			return 0, err
		}
		filter = func(s sockets.Socket) bool {
			return (s.Local == a && s.Remote == b) || (s.Local == b && s.Remote == a)
		}
	}
	closed, err := sockets.CloseProcess(pid, filter, false)
	return len(closed), err
}
