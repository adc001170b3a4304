package netio_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/bpftest"
	"github.com/rampart-shield/rampart/internal/probe"
	rec "github.com/rampart-shield/rampart/probes/netio"
)

// The tests re-run their own binary as the servers they watch:
// NETIO_HELPER names the part to play.
const helperEnv = "NETIO_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		runHelper(mode)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runHelper(mode string) {
	// Every helper but the forked child exits when the test closes its
	// stdin (or dies).
	if mode != "child" {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			os.Exit(0)
		}()
	}
	switch mode {
	case "echo":
		serveTCP("tcp4", "127.0.0.1:0", false, func(c net.Conn) { echo(c) })
	case "echo-dual": // one IPv6 socket for IPv4 and IPv6 clients
		serveTCP("tcp", ":0", false, func(c net.Conn) { echo(c) })
	case "echo-mt":
		serveTCP("tcp4", "127.0.0.1:0", true, func(c net.Conn) { echo(c) })
	case "fork":
		self, _ := os.Executable()
		serveTCP("tcp4", "127.0.0.1:0", false, func(c net.Conn) {
			f, err := c.(*net.TCPConn).File()
			if err != nil {
				panic(err)
			}
			cmd := exec.Command(self, "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"=child")
			cmd.ExtraFiles = []*os.File{f}
			if err := cmd.Start(); err != nil {
				panic(err)
			}
			fmt.Printf("CHILD %d\n", cmd.Process.Pid)
			f.Close()
			c.Close()
			cmd.Wait()
		})
	case "child":
		c, err := net.FileConn(os.NewFile(3, "conn"))
		if err != nil {
			panic(err)
		}
		syscall.Close(3)
		echo(c)
	case "udp":
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		fmt.Printf("PORT %d\n", pc.LocalAddr().(*net.UDPAddr).Port)
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				panic(err)
			}
			if string(buf[:n]) == "quit" {
				pc.Close()
				time.Sleep(100 * time.Millisecond)
				os.Exit(0)
			}
			pc.WriteTo(buf[:n], from)
		}
	default:
		panic("unknown helper " + mode)
	}
}

// serveTCP accepts connections and runs handle for each, on its own OS
// thread when mt is set.
func serveTCP(network, addr string, mt bool, handle func(net.Conn)) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		panic(err)
	}
	fmt.Printf("PORT %d\n", ln.Addr().(*net.TCPAddr).Port)
	for {
		c, err := ln.Accept()
		if err != nil {
			panic(err)
		}
		go func() {
			if mt {
				runtime.LockOSThread()
			}
			handle(c)
		}()
	}
}

// echo writes back what it reads with plain read(2)/write(2) (io.Copy
// between TCP sockets would splice, which sock_recv_length does not see),
// then closes.
func echo(c net.Conn) {
	buf := make([]byte, 65536)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.Close()
}

// helper is a running helper process.
type helper struct {
	cmd   *exec.Cmd
	pid   uint32
	port  int
	lines chan string // stdout lines after PORT
	stdin io.WriteCloser
}

// startHelper runs this test binary (or bin) as helper mode and waits for
// its port. The process is killed at the end of the test.
func startHelper(t *testing.T, bin, mode string, before func(pid int)) *helper {
	t.Helper()
	if bin == "" {
		bin = os.Args[0]
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, pid: uint32(cmd.Process.Pid), lines: make(chan string, 64), stdin: in}
	t.Cleanup(func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	if before != nil {
		before(cmd.Process.Pid)
	}
	port := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "PORT "); ok {
				n, _ := strconv.Atoi(p)
				port <- n
				continue
			}
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	select {
	case h.port = <-port:
	case <-time.After(10 * time.Second):
		t.Fatalf("helper %s did not start", mode)
	}
	return h
}

// line waits for the helper's next stdout line with the prefix.
func (h *helper) line(t *testing.T, prefix string) string {
	t.Helper()
	select {
	case l, ok := <-h.lines:
		if !ok {
			t.Fatalf("helper %d ended before printing %q", h.pid, prefix)
		}
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v
		}
		t.Fatalf("helper %d printed %q, want %q...", h.pid, l, prefix)
	case <-time.After(10 * time.Second):
		t.Fatalf("helper %d printed no %q", h.pid, prefix)
	}
	return ""
}

func (h *helper) addr() string { return "127.0.0.1:" + strconv.Itoa(h.port) }

func newManager(t testing.TB) *probe.Manager {
	t.Helper()
	bpftest.Require(t)
	for _, tp := range []string{"sock/sock_recv_length", "sock/inet_sock_set_state", "syscalls/sys_exit_accept4"} {
		if _, err := os.Stat("/sys/kernel/tracing/events/" + tp); err != nil {
			t.Skipf("skipping: tracepoint %s is missing (is tracefs mounted at /sys/kernel/tracing?)", tp)
		}
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("skipping: the kernel has no BTF (/sys/kernel/btf/vmlinux), which tp_btf programs need")
	}
	m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// checkWatch skips on what the kernel cannot do, fails otherwise.
func checkWatch(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		bpftest.CheckLoad(t, err)
	}
}

// collect reads events until done says so or the timeout passes.
func collect(t *testing.T, ch <-chan rec.Event, timeout time.Duration, done func([]rec.Event) bool) []rec.Event {
	t.Helper()
	var evs []rec.Event
	deadline := time.After(timeout)
	for !done(evs) {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("the event channel closed after %d events", len(evs))
			}
			evs = append(evs, e)
		case <-deadline:
			for _, e := range evs {
				t.Log(e)
			}
			t.Fatalf("timed out after %d events", len(evs))
		}
	}
	return evs
}

// drain reads what arrives within d.
func drain(ch <-chan rec.Event, d time.Duration) []rec.Event {
	var evs []rec.Event
	deadline := time.After(d)
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return evs
			}
			evs = append(evs, e)
		case <-deadline:
			return evs
		}
	}
}

func has(evs []rec.Event, f func(rec.Event) bool) bool {
	for _, e := range evs {
		if f(e) {
			return true
		}
	}
	return false
}

func count(evs []rec.Event, f func(rec.Event) bool) int {
	n := 0
	for _, e := range evs {
		if f(e) {
			n++
		}
	}
	return n
}

// exchange sends each size as one request on c and reads the echo back.
func exchange(t *testing.T, c net.Conn, sizes ...int) {
	t.Helper()
	for _, n := range sizes {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(i)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			t.Fatal(err)
		}
	}
}

var ctx = context.Background()

var probeReadOptions = probe.ReadOptions{}
