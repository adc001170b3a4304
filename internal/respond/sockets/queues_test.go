package sockets

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestQueues: a connection whose peer does not read keeps bytes in its
// send queue; one whose peer reads does not.
func TestQueues(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	cookie := func(c net.Conn) uint64 {
		raw, _ := c.(*net.TCPConn).SyscallConn()
		var v uint64
		raw.Control(func(fd uintptr) { v, _ = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE) })
		return v
	}
	// The slow reader: a small receive buffer, never read.
	slow, err := (&net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
	}}).Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	srvSlow := <-accepted
	defer srvSlow.Close()
	srvSlow.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	srvSlow.Write(make([]byte, 4<<20)) // fills what the peer's window and our buffer take
	q, err := Queues(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got := q[cookie(srvSlow)]; got.Send == 0 || got.State != StateEstablished {
		t.Errorf("slow reader's server side: %+v, want bytes in the send queue", got)
	}
	if got := q[cookie(slow)]; got.Recv == 0 {
		t.Errorf("slow reader's own side: %+v, want bytes in the receive queue", got)
	}
	if len(q) < 2 {
		t.Errorf("%d sockets listed", len(q))
	}
}
