package sockets

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Queue is what sock_diag says of a connected TCP socket's queues.
type Queue struct {
	// Recv is the bytes received and not yet read by the process; Send
	// the bytes written and not yet acknowledged by the peer (for an
	// established socket: idiag_rqueue, idiag_wqueue).
	Recv, Send uint32
	State      uint8
}

// Queues lists the connected TCP sockets (established or closing by the
// peer) of pid's network namespace, by socket cookie, with their queues:
// one sock_diag dump per address family, without extensions. A socket whose
// Send queue stays full while its process does not write is one whose peer
// does not read (a slow reader).
func Queues(pid int) (map[uint64]Queue, error) {
	ns, err := netnsOf(pid)
	if err != nil {
		return nil, err
	}
	c, err := dial(ns)
	if err != nil {
		return nil, err
	}
	defer c.close()
	out := map[uint64]Queue{}
	states := uint32(1<<StateEstablished | 1<<StateCloseWait)
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		msg := c.request(unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, fam, 0, states, [sizeofSockID]byte{})
		err := c.roundTrip("sock_diag dump", msg, func(m message) {
			if m.typ != unix.SOCK_DIAG_BY_FAMILY || len(m.data) < sizeofDiagMsg {
				return
			}
			b := m.data
			ne := binary.NativeEndian
			id := b[4 : 4+sizeofSockID]
			cookie := uint64(ne.Uint32(id[40:])) | uint64(ne.Uint32(id[44:]))<<32
			out[cookie] = Queue{State: b[1], Recv: ne.Uint32(b[4+sizeofSockID+4:]), Send: ne.Uint32(b[4+sizeofSockID+8:])}
		})
		if err != nil && !(fam == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT)) {
			return nil, fmt.Errorf("process %d: %w", pid, err)
		}
	}
	return out, nil
}
