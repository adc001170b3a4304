package netio_test

import (
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/rampart-shield/rampart/internal/apptarget"
	"github.com/rampart-shield/rampart/internal/netio"
	rec "github.com/rampart-shield/rampart/probes/netio"
)

func isKind(k rec.Kind) func(rec.Event) bool { return func(e rec.Event) bool { return e.Kind == k } }

func sizes(evs []rec.Event, k rec.Kind, cookie uint64) (sum int, n int) {
	for _, e := range evs {
		if e.Kind == k && e.Cookie == cookie {
			sum += int(e.Size)
			n++
		}
	}
	return sum, n
}

func checkOrdered(t *testing.T, evs []rec.Event) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		if evs[i].Time < evs[i-1].Time {
			t.Errorf("event %d (%v) is older than event %d (%v)", i, evs[i], i-1, evs[i-1])
		}
	}
}

// TestEchoServer: a watched TCP echo server in a child process serves three
// requests of 100, 1000 and 10000 bytes on one keep-alive connection; the
// collector sees exactly its accept, reads summing to what the client
// sent, writes summing to the same, and the close, all for that server and
// that connection. A second, unwatched server's traffic and the client's
// own (this process) produce no events.
func TestEchoServer(t *testing.T) {
	m := newManager(t)
	srv := startHelper(t, "", "echo", nil)
	other := startHelper(t, "", "echo", nil)
	c, err := netio.Watch(ctx, m, apptarget.Spec{PIDs: []int{int(srv.pid)}})
	checkWatch(t, err)
	defer c.Close()

	conn, err := net.Dial("tcp4", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, conn, 100)
	evs := collect(t, c.Events(), 5*time.Second, func(evs []rec.Event) bool { return has(evs, isKind(rec.Send)) })
	acc := evs[0]
	if acc.Kind != rec.Accept {
		t.Fatalf("first event %v, want the accept", acc)
	}
	client := netip.MustParseAddrPort(conn.LocalAddr().String())
	server := netip.MustParseAddrPort(srv.addr())
	if acc.TGID != srv.pid || acc.Remote != client || acc.Local != server || acc.Proto != rec.ProtoTCP || acc.Cookie == 0 || acc.Sock == 0 {
		t.Fatalf("accept %+v: want pid %d, %s -> %s, TCP, a cookie and a socket", acc, srv.pid, client, server)
	}
	open := c.Open(srv.pid)
	if len(open) != 1 || open[0].Cookie != acc.Cookie || open[0].Remote != client || open[0].How != rec.Accept {
		t.Fatalf("open sockets of the server: %+v, want the accepted connection from %s", open, client)
	}
	if p, ok := c.Process(srv.pid); !ok || p.Comm == "" || !strings.HasSuffix(p.Exe, filepath.Base(os.Args[0])) {
		t.Errorf("process %d: %+v, want its comm and executable", srv.pid, p)
	}

	// Unwatched traffic, before the rest of the watched exchange.
	oc, err := net.Dial("tcp4", other.addr())
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, oc, 500, 5000)
	oc.Close()

	exchange(t, conn, 1000, 10000)
	conn.Close()
	evs = append(evs, collect(t, c.Events(), 5*time.Second, func(evs []rec.Event) bool { return has(evs, isKind(rec.Close)) })...)
	evs = append(evs, drain(c.Events(), 200*time.Millisecond)...)
	checkOrdered(t, evs)
	for _, e := range evs {
		if e.TGID != srv.pid {
			t.Errorf("event of pid %d (not the watched server %d): %v", e.TGID, srv.pid, e)
		}
		if e.Cookie != acc.Cookie {
			t.Errorf("event on another socket: %v", e)
		}
	}
	if n := count(evs, isKind(rec.Accept)); n != 1 {
		t.Errorf("%d accepts, want 1", n)
	}
	if n := count(evs, isKind(rec.Close)); n != 1 {
		t.Errorf("%d closes, want 1", n)
	}
	if rx, _ := sizes(evs, rec.Recv, acc.Cookie); rx != 11100 {
		t.Errorf("the server read %d bytes, want 11100", rx)
	}
	if tx, _ := sizes(evs, rec.Send, acc.Cookie); tx != 11100 {
		t.Errorf("the server wrote %d bytes, want 11100", tx)
	}
	var eof int
	for i, e := range evs {
		if e.Kind == rec.Recv && e.Size == 0 {
			eof++
			if i != len(evs)-2 {
				t.Errorf("end of stream at event %d of %d, want just before the close", i, len(evs))
			}
		}
	}
	if eof != 1 {
		t.Errorf("%d ends of stream (RECV of 0 bytes), want 1", eof)
	}
	last := evs[len(evs)-1]
	if last.Kind != rec.Close || last.Flags&rec.FlagOwner == 0 || last.TGID != srv.pid {
		t.Errorf("last event %v (flags %d), want the close on behalf of the owner", last, last.Flags)
	}
	if open := c.Open(srv.pid); len(open) != 0 {
		t.Errorf("open sockets after the close: %+v", open)
	}
	counters, err := c.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := counters[uint32(other.pid)]; ok {
		t.Errorf("counters for the unwatched server %d", other.pid)
	}
	p := counters[srv.pid]
	if p.Open != 0 || p.Accepts != 1 || p.Closes != 1 || p.RecvBytes != 11100 || p.SendBytes != 11100 || p.RecvEof != 1 {
		t.Errorf("kernel counters of the server: %+v", p)
	}
	if lost := c.Lost(); lost != 0 {
		t.Errorf("%d events lost", lost)
	}
	st := c.Stats()
	t.Logf("stats: %+v", st)
	if st.Kernel.Events == 0 || st.Delivered == 0 {
		t.Errorf("stats %+v: want events counted", st)
	}
}

// TestMultiThreaded: each connection handled on its own OS thread; events
// carry the thread ids, all under the server's pid.
func TestMultiThreaded(t *testing.T) {
	m := newManager(t)
	srv := startHelper(t, "", "echo-mt", nil)
	c, err := netio.Watch(ctx, m, apptarget.Spec{PIDs: []int{int(srv.pid)}})
	checkWatch(t, err)
	defer c.Close()
	const n = 4
	var conns []net.Conn
	for i := 0; i < n; i++ {
		conn, err := net.Dial("tcp4", srv.addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
	}
	for i, conn := range conns {
		exchange(t, conn, 100*(i+1), 3000)
	}
	if got := c.OpenCounts()[srv.pid]; got > n {
		t.Errorf("%d open sockets, want at most %d", got, n)
	}
	for _, conn := range conns {
		conn.Close()
	}
	evs := collect(t, c.Events(), 5*time.Second, func(evs []rec.Event) bool { return count(evs, isKind(rec.Close)) == n })
	checkOrdered(t, evs)
	tids := map[uint32]bool{}
	cookies := map[uint64]bool{}
	for _, e := range evs {
		if e.TGID != srv.pid {
			t.Errorf("event of pid %d: %v", e.TGID, e)
		}
		if e.Kind == rec.Recv || e.Kind == rec.Send {
			tids[e.TID] = true
		}
		cookies[e.Cookie] = true
	}
	if len(tids) < 2 {
		t.Errorf("I/O from threads %v, want several", tids)
	}
	if len(cookies) != n || count(evs, isKind(rec.Accept)) != n {
		t.Errorf("%d sockets and %d accepts, want %d", len(cookies), count(evs, isKind(rec.Accept)), n)
	}
	for _, e := range evs {
		if e.Kind != rec.Accept {
			continue
		}
		i := -1
		for j, conn := range conns {
			if conn.LocalAddr().String() == e.Remote.String() {
				i = j
			}
		}
		if i < 0 {
			t.Errorf("accept from %s: no such client", e.Remote)
			continue
		}
		if rx, _ := sizes(evs, rec.Recv, e.Cookie); rx != 100*(i+1)+3000 {
			t.Errorf("connection %d: %d bytes read, want %d", i, rx, 100*(i+1)+3000)
		}
	}
	if open := c.OpenCounts()[srv.pid]; open != 0 {
		t.Errorf("%d sockets open after the closes", open)
	}
}

// TestForkingServer: the parent accepts and hands each connection to a
// child process; watching the parent with Tree follows the child: its
// reads and writes, its close (the connection passed to it) and its exit.
func TestForkingServer(t *testing.T) {
	m := newManager(t)
	srv := startHelper(t, "", "fork", nil)
	c, err := netio.Watch(ctx, m, apptarget.Spec{PIDs: []int{int(srv.pid)}, Tree: true})
	checkWatch(t, err)
	defer c.Close()
	conn, err := net.Dial("tcp4", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(srv.line(t, "CHILD "))
	exchange(t, conn, 100, 1000)
	conn.Close()
	evs := collect(t, c.Events(), 5*time.Second, func(evs []rec.Event) bool {
		return has(evs, isKind(rec.Close)) && has(evs, isKind(rec.Exit))
	})
	checkOrdered(t, evs)
	var acc rec.Event
	for _, e := range evs {
		switch e.Kind {
		case rec.Accept:
			acc = e
			if e.TGID != srv.pid {
				t.Errorf("accept by %d, want the parent %d", e.TGID, srv.pid)
			}
		case rec.Recv, rec.Send, rec.Close, rec.Exit:
			if e.TGID != uint32(child) {
				t.Errorf("%v: want the child %d", e, child)
			}
		}
	}
	if acc.Cookie == 0 {
		t.Fatal("no accept")
	}
	if rx, _ := sizes(evs, rec.Recv, acc.Cookie); rx != 1100 {
		t.Errorf("the child read %d bytes on the accepted connection, want 1100", rx)
	}
	if tx, _ := sizes(evs, rec.Send, acc.Cookie); tx != 1100 {
		t.Errorf("the child wrote %d bytes, want 1100", tx)
	}
	if n := len(c.Open(srv.pid)) + len(c.Open(uint32(child))); n != 0 {
		t.Errorf("%d sockets still open", n)
	}
	watched := map[uint32]uint8{}
	m.WithMaps(c.Probe(), func(maps map[string]*ebpf.Map) error {
		watched, err = apptarget.Watched(maps)
		return err
	})
	if _, ok := watched[uint32(child)]; ok {
		t.Errorf("the child %d exited but is still watched: %v", child, watched)
	}
}

// TestExec: watching an executable before it runs; the server started from
// it is picked up at exec, from its listen() on.
func TestExec(t *testing.T) {
	m := newManager(t)
	bin := filepath.Join(t.TempDir(), "netio-server")
	copyFile(t, os.Args[0], bin)
	c, err := netio.Watch(ctx, m, apptarget.Spec{Execs: []string{bin}})
	checkWatch(t, err)
	defer c.Close()
	srv := startHelper(t, bin, "echo", nil)
	conn, err := net.Dial("tcp4", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, conn, 100)
	conn.Close()
	evs := collect(t, c.Events(), 5*time.Second, func(evs []rec.Event) bool {
		return has(evs, func(e rec.Event) bool {
			return e.Kind == rec.Close && e.Proto == rec.ProtoTCP && e.State != rec.TCPListen
		})
	})
	if evs[0].Kind != rec.Listen || evs[0].TGID != srv.pid || evs[0].Local.Port() != uint16(srv.port) {
		t.Errorf("first event %v, want the listen of %d on port %d", evs[0], srv.pid, srv.port)
	}
	for _, e := range evs {
		if e.TGID != srv.pid {
			t.Errorf("event of %d: %v", e.TGID, e)
		}
	}
	if !has(evs, isKind(rec.Accept)) || !has(evs, isKind(rec.Recv)) || !has(evs, isKind(rec.Send)) {
		t.Errorf("events %v: want accept, recv, send", evs)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCgroup: watching a cgroup v2 directory; a server moved into it is
// watched from its next socket event on (found through its cgroup).
func TestCgroup(t *testing.T) {
	m := newManager(t)
	dir := makeCgroup(t)
	c, err := netio.Watch(ctx, m, apptarget.Spec{Cgroups: []string{dir}})
	checkWatch(t, err)
	defer c.Close()
	srv := startHelper(t, "", "echo", nil)
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(int(srv.pid))), 0); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp4", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, conn, 300)
	conn.Close()
	evs := collect(t, c.Events(), 5*time.Second, func(evs []rec.Event) bool { return has(evs, isKind(rec.Close)) })
	for _, e := range evs {
		if e.TGID != srv.pid {
			t.Errorf("event of %d: %v", e.TGID, e)
		}
	}
	if rx, _ := sizes(evs, rec.Recv, evs[0].Cookie); evs[0].Kind != rec.Accept || rx != 300 {
		t.Errorf("events %v: want the accept and 300 bytes read", evs)
	}
	var watched map[uint32]uint8
	m.WithMaps(c.Probe(), func(maps map[string]*ebpf.Map) error {
		watched, err = apptarget.Watched(maps)
		return err
	})
	if watched[srv.pid]&apptarget.FlagCgroup == 0 {
		t.Errorf("the server %d is not cached as watched through its cgroup: %v", srv.pid, watched)
	}
}

// makeCgroup creates a cgroup v2 directory for the test and removes it at
// the end (after the test's processes are gone from it).
func makeCgroup(t *testing.T) string {
	t.Helper()
	root := apptarget.CgroupV2Root()
	dir, err := os.MkdirTemp(root, "rampart-test-")
	if err != nil {
		t.Skipf("skipping: cannot create a cgroup under %s: %v", root, err)
	}
	t.Cleanup(func() {
		// Helpers are killed by cleanups registered later (run first);
		// give the kernel a moment to empty the cgroup.
		for i := 0; i < 50; i++ {
			if os.Remove(dir) == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("cannot remove cgroup %s", dir)
	})
	return dir
}

// TestUDP: a UDP server's socket is one "connection": first seen at its
// first read (FlagNew), every datagram read and written with its size, the
// close of its last descriptor and the process's exit.
func TestUDP(t *testing.T) {
	m := newManager(t)
	srv := startHelper(t, "", "udp", nil)
	c, err := netio.Watch(ctx, m, apptarget.Spec{PIDs: []int{int(srv.pid)}})
	checkWatch(t, err)
	defer c.Close()
	conn, err := net.Dial("udp4", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, n := range []int{100, 200, 300} {
		exchange(t, conn, n)
	}
	if _, err := conn.Write([]byte("quit")); err != nil {
		t.Fatal(err)
	}
	evs := collect(t, c.Events(), 5*time.Second, func(evs []rec.Event) bool { return has(evs, isKind(rec.Exit)) })
	checkOrdered(t, evs)
	first := evs[0]
	if first.Kind != rec.Recv || first.Flags&rec.FlagNew == 0 || first.Proto != rec.ProtoUDP || first.Local.Port() != uint16(srv.port) {
		t.Fatalf("first event %v (flags %d): want a new UDP socket's read on port %d", first, first.Flags, srv.port)
	}
	var recvs, sends []uint32
	for _, e := range evs {
		if e.TGID != srv.pid {
			t.Errorf("event of %d: %v", e.TGID, e)
		}
		if e.Kind != rec.Exit && e.Cookie != first.Cookie {
			t.Errorf("event on another socket: %v", e)
		}
		switch e.Kind {
		case rec.Recv:
			recvs = append(recvs, e.Size)
		case rec.Send:
			sends = append(sends, e.Size)
		}
	}
	if want := []uint32{100, 200, 300, 4}; !equal(recvs, want) {
		t.Errorf("reads %v, want %v", recvs, want)
	}
	if want := []uint32{100, 200, 300}; !equal(sends, want) {
		t.Errorf("writes %v, want %v", sends, want)
	}
	if count(evs, isKind(rec.Close)) != 1 {
		t.Errorf("events %v: want one close", evs)
	}
	if _, ok := c.Process(srv.pid); !ok {
		t.Errorf("process %d unknown", srv.pid)
	}
	if p, _ := c.Process(srv.pid); !p.Exited {
		t.Errorf("process %d not marked exited", srv.pid)
	}
}

func equal(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDropsCounted: a 4 KiB ring buffer under a burst of writes. Every
// write is either delivered or counted as lost (in the kernel, or by the
// probe manager), and the loss counters are exported as metrics.
func TestDropsCounted(t *testing.T) {
	m := newManager(t)
	c, err := netio.WatchWith(ctx, m, apptarget.Spec{PIDs: []int{os.Getpid()}}, netio.WatchOptions{MapSizes: map[string]uint32{rec.MapEvents: 4096}})
	checkWatch(t, err)
	defer c.Close()
	sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	conn, err := net.Dial("udp4", sink.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	const burst = 20000
	msg := make([]byte, 16)
	for i := 0; i < burst; i++ {
		conn.Write(msg)
	}
	conn.Close()
	got := drain(c.Events(), 500*time.Millisecond)
	counters, err := c.Counters()
	if err != nil {
		t.Fatal(err)
	}
	p := counters[uint32(os.Getpid())]
	st := c.Stats()
	t.Logf("%d writes, %d delivered; kernel: %+v; stream lost %d; proc: events %d lost %d", p.SendCalls, len(got), st.Kernel, st.StreamLost, p.Events, p.Lost)
	if p.SendCalls < burst {
		t.Errorf("%d writes counted, want %d", p.SendCalls, burst)
	}
	if st.Kernel.Events+st.Kernel.RingFull < p.SendCalls {
		t.Errorf("kernel emitted %d + lost %d < %d writes", st.Kernel.Events, st.Kernel.RingFull, p.SendCalls)
	}
	if p.Events+p.Lost != st.Kernel.Events+st.Kernel.RingFull {
		t.Errorf("per-process events %d + lost %d != total %d + %d", p.Events, p.Lost, st.Kernel.Events, st.Kernel.RingFull)
	}
	if d := uint64(len(got)) + c.Lost(); d < p.SendCalls {
		t.Errorf("delivered %d + lost %d < %d writes", len(got), c.Lost(), p.SendCalls)
	}
	mv, err := m.ReadMetric(c.Probe(), "netio_stats", probeReadOptions)
	if err != nil {
		t.Fatal(err)
	}
	if len(mv.Value) != 7 {
		t.Errorf("netio_stats has %d entries, want 7", len(mv.Value))
	}
	for _, name := range []string{"netio_events_lost", "netio_open_sockets", "netio_recv_bytes"} {
		if _, err := m.ReadMetric(c.Probe(), name, probeReadOptions); err != nil {
			t.Errorf("metric %s: %v", name, err)
		}
	}
}

// TestWakeupLatency: RECV/SEND events do not wake the reader one by one
// (netio_flush_us); a lone one after a quiet spell still arrives within
// the flush delay plus the reorder window.
func TestWakeupLatency(t *testing.T) {
	m := newManager(t)
	srv := startHelper(t, "", "echo", nil)
	c, err := netio.Watch(ctx, m, apptarget.Spec{PIDs: []int{int(srv.pid)}})
	checkWatch(t, err)
	defer c.Close()
	conn, err := net.Dial("tcp4", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	collect(t, c.Events(), 5*time.Second, func(evs []rec.Event) bool { return has(evs, isKind(rec.Accept)) })
	var worst time.Duration
	for i := 0; i < 5; i++ {
		time.Sleep(50 * time.Millisecond)
		start := time.Now()
		exchange(t, conn, 10)
		collect(t, c.Events(), 5*time.Second, func(evs []rec.Event) bool { return has(evs, isKind(rec.Send)) })
		worst = max(worst, time.Since(start))
	}
	t.Logf("worst delay from a request to its events: %v", worst)
	if worst > 250*time.Millisecond {
		t.Errorf("events took %v to arrive, want about 3 ms", worst)
	}
}

// TestDualStack: an IPv6 server socket that also takes IPv4 clients (Go's
// default listener): IPv4 peers are reported unmapped, IPv6 ones as they
// are, both on AF_INET6 sockets.
func TestDualStack(t *testing.T) {
	m := newManager(t)
	srv := startHelper(t, "", "echo-dual", nil)
	c, err := netio.Watch(ctx, m, apptarget.Spec{PIDs: []int{int(srv.pid)}})
	checkWatch(t, err)
	defer c.Close()
	port := strconv.Itoa(srv.port)
	var clients []netip.AddrPort
	for _, addr := range []string{"127.0.0.1:" + port, "[::1]:" + port} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Skipf("skipping: %v", err)
		}
		exchange(t, conn, 123)
		clients = append(clients, netip.MustParseAddrPort(conn.LocalAddr().String()))
		conn.Close()
	}
	evs := collect(t, c.Events(), 5*time.Second, func(evs []rec.Event) bool { return count(evs, isKind(rec.Close)) == 2 })
	var accepts []rec.Event
	for _, e := range evs {
		if e.Kind == rec.Accept {
			accepts = append(accepts, e)
		}
		if e.Family != rec.AFInet6 {
			t.Errorf("%v: family %d, want AF_INET6", e, e.Family)
		}
	}
	if len(accepts) != 2 {
		t.Fatalf("accepts %v", accepts)
	}
	for i, want := range clients {
		a := accepts[i]
		if a.Remote != want || a.Local.Port() != uint16(srv.port) || a.Local.Addr() != want.Addr() {
			t.Errorf("accept %d: %s -> %s, want %s -> %s port %d", i, a.Remote, a.Local, want, want.Addr(), srv.port)
		}
		if rx, _ := sizes(evs, rec.Recv, a.Cookie); rx != 123 {
			t.Errorf("accept %d: %d bytes read", i, rx)
		}
	}
}
