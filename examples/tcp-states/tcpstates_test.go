package tcpstates

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/rampart-shield/rampart/internal/bpftest"
)

func TestStateTransitions(t *testing.T) {
	bpftest.Require(t)

	var objs tcpStatesObjects
	bpftest.CheckLoad(t, loadTcpStatesObjects(&objs, nil))
	defer objs.Close()

	tp, err := link.Tracepoint("sock", "inet_sock_set_state", objs.OnState, nil)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, ebpf.ErrNotSupported) {
			t.Skipf("skipping: tracepoint sock/inet_sock_set_state unavailable (is tracefs mounted at /sys/kernel/tracing?): %v", err)
		}
		t.Fatalf("attaching the tracepoint: %v", err)
	}
	defer tp.Close()

	rd, err := ringbuf.NewReader(objs.Events)
	if err != nil {
		t.Fatalf("ring buffer reader: %v", err)
	}
	defer rd.Close()

	// One TCP connection over loopback, then an orderly close on both sides.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var srv net.Conn
	select {
	case srv = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("accept timed out")
	}
	if srv == nil {
		t.Fatal("accept failed")
	}
	client := netip.MustParseAddrPort(c.LocalAddr().String())
	server := netip.MustParseAddrPort(ln.Addr().String())
	// The client closes first (ESTABLISHED -> FIN_WAIT1); the server waits
	// for the FIN (ESTABLISHED -> CLOSE_WAIT) before it closes, so the
	// transitions below happen in a known order.
	c.Close()
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := srv.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("server read: %d, %v; want EOF", n, err)
	}
	srv.Close()

	// The transitions map: other TCP activity on the machine may add to the
	// counts, so each must be at least what this connection caused.
	for _, tr := range []tcpStatesTransition{
		{Oldstate: tcpStatesTcpStateNameCLOSE, Newstate: tcpStatesTcpStateNameSYN_SENT},
		{Oldstate: tcpStatesTcpStateNameSYN_SENT, Newstate: tcpStatesTcpStateNameESTABLISHED},
		{Oldstate: tcpStatesTcpStateNameESTABLISHED, Newstate: tcpStatesTcpStateNameFIN_WAIT1},
		{Oldstate: tcpStatesTcpStateNameESTABLISHED, Newstate: tcpStatesTcpStateNameCLOSE_WAIT},
	} {
		var n uint64
		deadline := time.Now().Add(3 * time.Second)
		for {
			err := objs.Transitions.Lookup(tr, &n)
			if err == nil && n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("transition %d -> %d: count %d (%v), want >= 1", tr.Oldstate, tr.Newstate, n, err)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// The ring buffer: find this connection's records.
	comm, _ := os.ReadFile("/proc/self/comm")
	wantComm := strings.TrimSpace(string(comm))
	loopback := netip.MustParseAddr("127.0.0.1").As16()
	var sawConnect, sawEstablished bool
	rd.SetDeadline(time.Now().Add(5 * time.Second))
	for !(sawConnect && sawEstablished) {
		rec, err := rd.Read()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ring buffer: no record of the connection %s -> %s (connect seen: %v, established seen: %v)", client, server, sawConnect, sawEstablished)
			}
			t.Fatalf("ring buffer: %v", err)
		}
		var ev tcpStatesStateEvent
		if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &ev); err != nil {
			t.Fatalf("decoding a %d-byte record: %v", len(rec.RawSample), err)
		}
		if ev.Dport != server.Port() || ev.Daddr != loopback || ev.Saddr != loopback {
			continue
		}
		if ev.TsNs == 0 {
			t.Errorf("record without timestamp: %+v", ev)
		}
		switch {
		case ev.Oldstate == tcpStatesTcpStateNameCLOSE && ev.Newstate == tcpStatesTcpStateNameSYN_SENT && int(ev.Pid) == os.Getpid():
			// connect(2) runs in this process: pid and comm are ours. The
			// local port may not be bound yet at this point.
			if got := commString(ev.Comm); got != wantComm {
				t.Errorf("connect record: comm %q, want %q", got, wantComm)
			}
			sawConnect = true
		case ev.Oldstate == tcpStatesTcpStateNameSYN_SENT && ev.Newstate == tcpStatesTcpStateNameESTABLISHED && ev.Sport == client.Port():
			sawEstablished = true
		}
	}
}

func commString(c [16]int8) string {
	b := make([]byte, 0, len(c))
	for _, x := range c {
		if x == 0 {
			break
		}
		b = append(b, byte(x))
	}
	return string(b)
}
