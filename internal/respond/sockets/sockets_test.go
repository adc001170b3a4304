package sockets

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the child process: with this variable set,
// TestMain runs the child mode it names instead of the tests.
const childEnv = "RAMPART_SOCKTEST_CHILD"

// Child exit codes.
const (
	exitAborted  = 42 // read failed with ECONNABORTED: the socket was destroyed
	exitReset    = 43 // read failed with ECONNRESET: the peer was destroyed
	exitEOF      = 44
	exitOtherErr = 45
	exitAccept   = 46 // accept failed (listener destroyed)
	exitSetup    = 2
	exitWatchdog = 3
)

// timeout bounds every wait in these tests.
const timeout = 10 * time.Second

func TestMain(m *testing.M) {
	if spec, ok := os.LookupEnv(childEnv); ok {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

func runChild(spec string) int {
	time.AfterFunc(60*time.Second, func() {
		fmt.Fprintln(os.Stderr, "child: watchdog expired")
		os.Exit(exitWatchdog)
	})
	setupErr := func(err error) int {
		fmt.Fprintln(os.Stderr, "child:", err)
		return exitSetup
	}
	f := strings.Fields(spec)
	switch f[0] {
	case "idle": // no sockets at all
		fmt.Println("ready")
		time.Sleep(time.Minute)
		return 0

	case "connect": // connect NETWORK ADDR, then block reading
		c, err := net.DialTimeout(f[1], f[2], timeout)
		if err != nil {
			return setupErr(err)
		}
		if _, err := c.Write([]byte("R")); err != nil {
			return setupErr(err)
		}
		fmt.Println("ready")
		return readUntilError(c)

	case "listen": // listen on 127.0.0.1, accept and greet every connection
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return setupErr(err)
		}
		fmt.Println("ready", ln.Addr())
		var conns []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				fmt.Fprintln(os.Stderr, "child: accept:", err)
				return exitAccept
			}
			conns = append(conns, c)
			c.Write([]byte("A"))
		}

	case "netns": // in a fresh network namespace: connect to itself, block reading
		if err := loopbackUp(); err != nil {
			return setupErr(err)
		}
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return setupErr(err)
		}
		client, err := net.DialTimeout("tcp4", ln.Addr().String(), timeout)
		if err != nil {
			return setupErr(err)
		}
		server, err := ln.Accept()
		if err != nil {
			return setupErr(err)
		}
		fmt.Println("ready", client.LocalAddr(), ln.Addr())
		code := readUntilError(client)
		runtime.KeepAlive(server)
		runtime.KeepAlive(ln)
		return code
	}
	return setupErr(fmt.Errorf("unknown child mode %q", spec))
}

func readUntilError(c net.Conn) int {
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		fmt.Fprintln(os.Stderr, "child: read:", err)
		switch {
		case errors.Is(err, syscall.ECONNABORTED):
			return exitAborted
		case errors.Is(err, syscall.ECONNRESET):
			return exitReset
		case errors.Is(err, io.EOF):
			return exitEOF
		}
		return exitOtherErr
	}
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS lo: %w", err)
	}
	return nil
}

// child is a running child process.
type child struct {
	t      *testing.T
	cmd    *exec.Cmd
	pid    int
	ready  []string // the words after "ready" on its first line
	stderr bytes.Buffer
	exited chan struct{} // closed once the child has been waited for
}

// startChild runs the test binary in child mode spec, with env added to its
// environment, and waits until it says it is ready. The child is killed and
// waited for when the test ends.
func startChild(t *testing.T, attr *syscall.SysProcAttr, spec string, env ...string) *child {
	t.Helper()
	c := &child{t: t, exited: make(chan struct{})}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(append(os.Environ(), childEnv+"="+spec), env...)
	c.cmd.Stdout = w
	c.cmd.Stderr = &c.stderr
	c.cmd.SysProcAttr = attr
	err = c.cmd.Start()
	w.Close()
	if err != nil {
		if attr != nil && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL)) {
			t.Skipf("cannot start a child with %+v: %v", attr, err)
		}
		t.Fatal(err)
	}
	c.pid = c.cmd.Process.Pid
	go func() {
		c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		select {
		case <-c.exited:
		case <-time.After(timeout):
			t.Errorf("child %d not reaped %v after SIGKILL", c.pid, timeout)
		}
	})

	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		f := strings.Fields(s)
		if len(f) == 0 || f[0] != "ready" {
			c.cmd.Process.Kill()
			<-c.exited
			t.Fatalf("child %q did not get ready (exit code %d): stdout %q, stderr %q",
				spec, c.cmd.ProcessState.ExitCode(), s, c.stderr.String())
		}
		c.ready = f[1:]
	case <-time.After(timeout):
		c.cmd.Process.Kill()
		t.Fatalf("child %q not ready after %v", spec, timeout)
	}
	return c
}

// wait waits for the child to exit on its own and returns its exit code.
func (c *child) wait() int {
	c.t.Helper()
	select {
	case <-c.exited:
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		c.t.Fatalf("child %d still running %v after its sockets were destroyed", c.pid, timeout)
		return -1
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: SOCK_DESTROY needs CAP_NET_ADMIN, entering a network namespace CAP_SYS_ADMIN, pidfd_getfd CAP_SYS_PTRACE")
	}
}

func addrPort(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func TestCloseProcessIPv4(t *testing.T) { testCloseProcess(t, "tcp4", "127.0.0.1:0", unix.AF_INET) }
func TestCloseProcessIPv6(t *testing.T) { testCloseProcess(t, "tcp6", "[::1]:0", unix.AF_INET6) }

// testCloseProcess connects a child to a listener of ours and destroys the
// child's end.
func testCloseProcess(t *testing.T, network, addr string, family int) {
	requireRoot(t)
	ln, err := net.Listen(network, addr)
	if err != nil {
		if family == unix.AF_INET6 {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(timeout))

	ch := startChild(t, nil, "connect "+network+" "+ln.Addr().String())
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	srv.SetDeadline(time.Now().Add(timeout))
	if _, err := io.ReadFull(srv, make([]byte, 1)); err != nil {
		t.Fatalf("reading the child's greeting: %v", err)
	}
	serverAP, childAP := addrPort(t, ln.Addr()), addrPort(t, srv.RemoteAddr())

	socks, err := OfProcess(ch.pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 1 {
		t.Fatalf("OfProcess(%d) = %v, want exactly the connection %s -> %s", ch.pid, socks, childAP, serverAP)
	}
	s := socks[0]
	if s.Family != family || s.Local != childAP || s.Remote != serverAP || s.State != StateEstablished || s.Inode == 0 {
		t.Fatalf("OfProcess(%d) = %v (family %d), want tcp %s -> %s ESTABLISHED (family %d)",
			ch.pid, s, s.Family, childAP, serverAP, family)
	}
	if s.cookie == [2]uint32{} {
		t.Errorf("socket %v has no cookie from the dump", s)
	}

	// A filter that matches nothing closes nothing.
	closed, err := CloseProcess(ch.pid, func(Socket) bool { return false }, false)
	if err != nil || len(closed) != 0 {
		t.Fatalf("CloseProcess with a filter matching nothing = %v, %v; want nothing closed", closed, err)
	}
	if again, err := OfProcess(ch.pid); err != nil || len(again) != 1 {
		t.Fatalf("after closing nothing, OfProcess = %v, %v; want the connection still there", again, err)
	}

	closed, err = CloseProcess(ch.pid, func(s Socket) bool { return s.Remote == serverAP }, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(closed) != 1 || closed[0].Inode != s.Inode {
		t.Fatalf("CloseProcess closed %v, want [%v]", closed, s)
	}

	// Our end gets the RST.
	_, err = srv.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("server read after destroy: %v, want ECONNRESET", err)
	}
	// The child's blocked read fails with ECONNABORTED.
	if code := ch.wait(); code != exitAborted {
		t.Errorf("child exit code %d, want %d (read failed with ECONNABORTED); stderr: %s", code, exitAborted, ch.stderr.String())
	}

	// Destroying it again: it is gone.
	if err := Destroy(closed[0]); !errors.Is(err, unix.ENOENT) {
		t.Errorf("Destroy of a destroyed socket = %v, want ENOENT", err)
	}
	// The child has been reaped.
	if _, err := OfProcess(ch.pid); !errors.Is(err, unix.ESRCH) {
		t.Errorf("OfProcess of a reaped child = %v, want ESRCH", err)
	}
}

// mptcpEnabled reports whether the kernel creates MPTCP sockets.
func mptcpEnabled() bool {
	b, err := os.ReadFile("/proc/sys/net/mptcp/enabled")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// Since Go 1.24 listeners are MPTCP by default (GODEBUG multipathtcp=2); the
// connections they accept from plain TCP clients are plain TCP.
func TestCloseProcessListenersTCP(t *testing.T) { testListeners(t, "multipathtcp=0", false) }
func TestCloseProcessListenersMPTCP(t *testing.T) {
	if !mptcpEnabled() {
		t.Skip("MPTCP is not enabled in this kernel (net.mptcp.enabled)")
	}
	testListeners(t, "multipathtcp=2", true)
}

func testListeners(t *testing.T, godebug string, mptcp bool) {
	requireRoot(t)
	ch := startChild(t, nil, "listen", "GODEBUG="+godebug)
	lnAddr := ch.ready[0]
	c, err := net.DialTimeout("tcp4", lnAddr, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil { // accepted
		t.Fatalf("reading the child's greeting: %v", err)
	}
	ours, theirs := addrPort(t, c.LocalAddr()), addrPort(t, c.RemoteAddr())

	socks, err := OfProcess(ch.pid)
	if err != nil {
		t.Fatal(err)
	}
	var sawListener, sawConn bool
	for _, s := range socks {
		switch {
		case s.State == StateListen && s.Local == theirs:
			sawListener = true
			if s.MPTCP != mptcp {
				t.Errorf("listener %v: MPTCP = %v, want %v", s, s.MPTCP, mptcp)
			}
		case s.State == StateEstablished && s.Local == theirs && s.Remote == ours:
			sawConn = true
			if s.MPTCP {
				t.Errorf("connection from a plain TCP client %v: MPTCP = true, want false", s)
			}
		}
	}
	if len(socks) != 2 || !sawListener || !sawConn {
		t.Fatalf("OfProcess(%d) = %v, want the listener on %s and the connection %s -> %s", ch.pid, socks, theirs, theirs, ours)
	}

	closed, err := CloseProcess(ch.pid, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(closed) != 1 || closed[0].State != StateEstablished {
		t.Fatalf("CloseProcess(includeListeners=false) closed %v, want only the connection", closed)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read after destroy: %v, want ECONNRESET", err)
	}
	socks, err = OfProcess(ch.pid)
	if err != nil || len(socks) != 1 || socks[0].State != StateListen {
		t.Fatalf("after CloseProcess(includeListeners=false), OfProcess = %v, %v; want the listener left", socks, err)
	}

	closed, err = CloseProcess(ch.pid, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(closed) != 1 || closed[0].State != StateListen {
		t.Fatalf("CloseProcess(includeListeners=true) closed %v, want the listener", closed)
	}
	if c2, err := net.DialTimeout("tcp4", lnAddr, timeout); !errors.Is(err, syscall.ECONNREFUSED) {
		if c2 != nil {
			c2.Close()
		}
		t.Errorf("dialing the destroyed listener: %v, want ECONNREFUSED", err)
	}
	if code := ch.wait(); code != exitAccept {
		t.Errorf("child exit code %d, want %d (accept failed); stderr: %s", code, exitAccept, ch.stderr.String())
	}
}

// TestCloseProcessOtherNetns destroys sockets of a process in another network
// namespace, which the caller's own sock_diag cannot see.
func TestCloseProcessOtherNetns(t *testing.T) {
	requireRoot(t)
	ch := startChild(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}, "netns", "GODEBUG=multipathtcp=0")
	clientAP, err1 := netip.ParseAddrPort(ch.ready[0])
	lnAP, err2 := netip.ParseAddrPort(ch.ready[1])
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}

	socks, err := OfProcess(ch.pid)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		fmt.Sprintf("%s %s LISTEN", lnAP, netip.AddrPortFrom(netip.IPv4Unspecified(), 0)): true,
		fmt.Sprintf("%s %s ESTABLISHED", clientAP, lnAP):                                  true,
		fmt.Sprintf("%s %s ESTABLISHED", lnAP, clientAP):                                  true,
	}
	for _, s := range socks {
		k := fmt.Sprintf("%s %s %s", s.Local, s.Remote, s.StateName())
		if !want[k] {
			t.Errorf("unexpected socket %v", s)
		}
		delete(want, k)
		if s.ns.pid != ch.pid {
			t.Errorf("socket %v not marked as in the child's namespace", s)
		}
	}
	for k := range want {
		t.Errorf("missing socket %s", k)
	}

	closed, err := CloseProcess(ch.pid, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	// Destroying one end sends the other a RST, so the second may be gone
	// by the time we get to it (and is then skipped).
	if len(closed) < 1 || len(closed) > 2 {
		t.Errorf("CloseProcess closed %v, want one or both ends of the connection", closed)
	}
	for _, s := range closed {
		if s.State == StateListen {
			t.Errorf("CloseProcess(includeListeners=false) closed the listener %v", s)
		}
	}
	if code := ch.wait(); code != exitAborted && code != exitReset {
		t.Errorf("child exit code %d, want %d or %d (read failed); stderr: %s", code, exitAborted, exitReset, ch.stderr.String())
	}
}

func TestNoSockets(t *testing.T) {
	ch := startChild(t, nil, "idle")
	socks, err := OfProcess(ch.pid)
	if err != nil || len(socks) != 0 {
		t.Fatalf("OfProcess of a process without sockets = %v, %v; want none, no error", socks, err)
	}
	closed, err := CloseProcess(ch.pid, nil, true)
	if err != nil || len(closed) != 0 {
		t.Fatalf("CloseProcess of a process without sockets = %v, %v; want none, no error", closed, err)
	}
}

func TestNoSuchProcess(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	max, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	pid := max + 1 // never a valid pid
	for _, f := range map[string]func() error{
		"OfProcess":    func() error { _, err := OfProcess(pid); return err },
		"CloseProcess": func() error { _, err := CloseProcess(pid, nil, true); return err },
	} {
		err := f()
		want := fmt.Sprintf("process %d: no such process", pid)
		if err == nil || err.Error() != want || !errors.Is(err, unix.ESRCH) {
			t.Errorf("error %v, want %q wrapping ESRCH", err, want)
		}
	}
	if _, err := OfProcess(0); err == nil || !strings.Contains(err.Error(), "invalid pid") {
		t.Errorf("OfProcess(0) = %v, want an invalid pid error", err)
	}
}

// TestDestroyNeedsCapNetAdmin drops CAP_NET_ADMIN from one thread and
// destroys from it.
func TestDestroyNeedsCapNetAdmin(t *testing.T) {
	requireRoot(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(timeout))
	ch := startChild(t, nil, "connect tcp4 "+ln.Addr().String())
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	socks, err := OfProcess(ch.pid)
	if err != nil || len(socks) != 1 {
		t.Fatalf("OfProcess = %v, %v; want the one connection", socks, err)
	}

	done := make(chan error, 1)
	go func() {
		// This thread loses the capability for good: never unlock it, so
		// the runtime discards it when the goroutine ends.
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- fmt.Errorf("capget: %w", err)
			return
		}
		data[0].Effective &^= 1 << unix.CAP_NET_ADMIN
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- fmt.Errorf("capset: %w", err)
			return
		}
		done <- Destroy(socks[0])
	}()
	select {
	case err = <-done:
	case <-time.After(timeout):
		t.Fatal("Destroy did not return")
	}
	want := "sock_diag destroy: operation not permitted (needs CAP_NET_ADMIN)"
	if err == nil || err.Error() != want || !errors.Is(err, unix.EPERM) {
		t.Fatalf("Destroy without CAP_NET_ADMIN = %v, want %q", err, want)
	}
	if again, err := OfProcess(ch.pid); err != nil || len(again) != 1 {
		t.Fatalf("after a refused destroy, OfProcess = %v, %v; want the connection still there", again, err)
	}
}

// TestCloseProcessMPTCP closes an MPTCP connection (and listener), which
// SOCK_DESTROY refuses: they are shut down instead.
func TestCloseProcessMPTCP(t *testing.T) {
	requireRoot(t)
	if !mptcpEnabled() {
		t.Skip("MPTCP is not enabled in this kernel (net.mptcp.enabled)")
	}
	// GODEBUG multipathtcp=1: the child both listens and dials with MPTCP.
	ch := startChild(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}, "netns", "GODEBUG=multipathtcp=1")
	socks, err := OfProcess(ch.pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 3 {
		t.Fatalf("OfProcess = %v, want a listener and both ends of a connection", socks)
	}
	for _, s := range socks {
		if !s.MPTCP {
			t.Errorf("socket %v: MPTCP = false, want true", s)
		}
	}
	closed, err := CloseProcess(ch.pid, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(closed) == 0 {
		t.Errorf("CloseProcess closed nothing")
	}
	// Shutting down the child's end gives it EOF; shutting down the other
	// end first can end the connection with a reset.
	if code := ch.wait(); code != exitEOF && code != exitReset {
		t.Errorf("child exit code %d, want %d or %d (read EOF or reset after shutdown); stderr: %s",
			code, exitEOF, exitReset, ch.stderr.String())
	}
}
