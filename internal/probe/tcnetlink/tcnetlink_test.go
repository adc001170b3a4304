package tcnetlink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// All test traffic stays on a veth pair between two network namespaces the
// test creates; the root namespace is never touched.

const (
	addrA   = "198.18.0.1"
	addrB   = "198.18.0.2"
	pings   = 5
	cmdWait = 20 * time.Second
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: tcnetlink tests need root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN for setns)")
	}
	for _, bin := range []string{"ip", "tc", "ping"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("skipping: %s not found in PATH", bin)
		}
	}
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := tryRun(args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

func tryRun(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdWait)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// testNet is two fresh namespaces joined by a veth: devA (198.18.0.1/30) in
// nsA, where filters are attached, and devB (198.18.0.2/30) in nsB.
type testNet struct {
	nsA, nsB   string
	devA, devB string
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	var r [3]byte
	if _, err := rand.Read(r[:]); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(r[:])
	n := &testNet{
		nsA:  "rampart-tcnl-" + id + "-a",
		nsB:  "rampart-tcnl-" + id + "-b",
		devA: "tcnl" + id + "a",
		devB: "tcnl" + id + "b",
	}
	for _, ns := range []string{n.nsA, n.nsB} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := tryRun("ip", "netns", "del", ns); err != nil {
				t.Logf("cleanup: %v %s", err, out)
			}
		})
	}
	run(t, "ip", "-n", n.nsA, "link", "add", n.devA, "type", "veth", "peer", "name", n.devB, "netns", n.nsB)
	for _, c := range []struct{ ns, dev, addr string }{{n.nsA, n.devA, addrA}, {n.nsB, n.devB, addrB}} {
		run(t, "ip", "-n", c.ns, "addr", "add", c.addr+"/30", "dev", c.dev)
		run(t, "ip", "-n", c.ns, "link", "set", "lo", "up")
		run(t, "ip", "-n", c.ns, "link", "set", c.dev, "up")
	}
	return n
}

// inNS runs fn on a locked OS thread inside the named namespace. The thread
// is discarded afterwards (the goroutine exits while still locked).
func inNS(ns string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			done <- err
			return
		}
		err = unix.Setns(int(h.Fd()), unix.CLONE_NEWNET)
		h.Close()
		if err != nil {
			done <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// attach attaches prog to devA in nsA.
func (n *testNet) attach(t *testing.T, dir Direction, prog *ebpf.Program, name string, prio uint16) (*Filter, int, error) {
	t.Helper()
	var f *Filter
	var ifindex int
	err := inNS(n.nsA, func() error {
		ifi, err := net.InterfaceByName(n.devA)
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		f, err = Attach(ifi.Index, dir, prog, name, prio)
		return err
	})
	if f != nil {
		t.Cleanup(func() { f.Close() })
	}
	return f, ifindex, err
}

func (n *testNet) tcShow(t *testing.T, dir Direction) string {
	t.Helper()
	return strings.TrimSpace(run(t, "ip", "netns", "exec", n.nsA, "tc", "filter", "show", "dev", n.devA, dir.String()))
}

// ping sends pings from nsB to devA and fails the test unless all succeed.
func (n *testNet) ping(t *testing.T) {
	t.Helper()
	run(t, "ip", "netns", "exec", n.nsB, "ping", "-q", "-n", "-c", fmt.Sprint(pings), "-i", "0.1", "-W", "2", addrA)
}

// counterProg returns a SchedCLS program that increments the single u64 in
// its array map and returns TC_ACT_UNSPEC (-1).
func counterProg(t *testing.T) (*ebpf.Program, *ebpf.Map) {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatalf("create map: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	insns := asm.Instructions{
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, -1).WithSymbol("out"),
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, Instructions: insns, License: "GPL"})
	if err != nil {
		t.Fatalf("load program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog, m
}

func count(t *testing.T, m *ebpf.Map) uint64 {
	t.Helper()
	var v uint64
	if err := m.Lookup(uint32(0), &v); err != nil {
		t.Fatalf("read counter: %v", err)
	}
	return v
}

func progID(t *testing.T, p *ebpf.Program) uint32 {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("no program id")
	}
	return uint32(id)
}

func TestIngressAttachReplaceClose(t *testing.T) {
	requireRoot(t)
	n := newTestNet(t)
	prog1, m1 := counterProg(t)
	prog2, m2 := counterProg(t)

	f, ifindex, err := n.attach(t, Ingress, prog1, "rampart_test", 1)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if want := fmt.Sprintf("tc-netlink ifindex %d ingress prio 1 handle 1", ifindex); f.Info() != want {
		t.Errorf("Info() = %q, want %q", f.Info(), want)
	}
	if !f.CreatedQdisc() {
		t.Error("CreatedQdisc() = false on a fresh veth")
	}
	if got, want := f.ProgramID(), progID(t, prog1); got != want {
		t.Errorf("ProgramID() = %d, want %d", got, want)
	}
	out := n.tcShow(t, Ingress)
	for _, want := range []string{"bpf", "rampart_test", "direct-action", "pref 1", "handle 0x1", fmt.Sprintf("id %d", progID(t, prog1))} {
		if !strings.Contains(out, want) {
			t.Errorf("tc filter show lacks %q:\n%s", want, out)
		}
	}
	if q := run(t, "ip", "netns", "exec", n.nsA, "tc", "qdisc", "show", "dev", n.devA); !strings.Contains(q, "clsact") {
		t.Errorf("no clsact qdisc:\n%s", q)
	}

	n.ping(t)
	if c := count(t, m1); c < pings {
		t.Fatalf("ingress counter = %d after %d pings, want >= %d", c, pings, pings)
	}

	// Replace: new packets go to prog2 only.
	if err := f.Replace(prog2); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	if got, want := f.ProgramID(), progID(t, prog2); got != want {
		t.Errorf("ProgramID() after Replace = %d, want %d", got, want)
	}
	out = n.tcShow(t, Ingress)
	if !strings.Contains(out, fmt.Sprintf("id %d", progID(t, prog2))) || !strings.Contains(out, "direct-action") || !strings.Contains(out, "handle 0x1") {
		t.Errorf("tc filter show after Replace:\n%s", out)
	}
	if strings.Count(out, "direct-action") != 1 {
		t.Errorf("Replace left more than one filter:\n%s", out)
	}
	old := count(t, m1)
	n.ping(t)
	if c := count(t, m1); c != old {
		t.Errorf("old program still counting: %d -> %d", old, c)
	}
	if c := count(t, m2); c < pings {
		t.Errorf("new program counter = %d after %d pings, want >= %d", c, pings, pings)
	}

	// Close removes the filter, twice is harmless, traffic still flows.
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if out := n.tcShow(t, Ingress); out != "" {
		t.Errorf("filter still listed after Close:\n%s", out)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := f.Replace(prog1); !errors.Is(err, ErrClosed) {
		t.Errorf("Replace after Close = %v, want ErrClosed", err)
	}
	before := count(t, m2)
	n.ping(t)
	if c := count(t, m2); c != before {
		t.Errorf("closed filter still counting: %d -> %d", before, c)
	}
}

func TestEgress(t *testing.T) {
	requireRoot(t)
	n := newTestNet(t)
	prog, m := counterProg(t)

	f, ifindex, err := n.attach(t, Egress, prog, "rampart_egress", 3)
	if err != nil {
		t.Fatalf("Attach egress: %v", err)
	}
	if want := fmt.Sprintf("tc-netlink ifindex %d egress prio 3 handle 1", ifindex); f.Info() != want {
		t.Errorf("Info() = %q, want %q", f.Info(), want)
	}
	out := n.tcShow(t, Egress)
	if !strings.Contains(out, "direct-action") || !strings.Contains(out, "rampart_egress") {
		t.Errorf("tc filter show egress:\n%s", out)
	}
	if in := n.tcShow(t, Ingress); in != "" {
		t.Errorf("egress attach put a filter on ingress:\n%s", in)
	}
	n.ping(t) // devA sends the echo replies
	if c := count(t, m); c < pings {
		t.Errorf("egress counter = %d after %d pings, want >= %d", c, pings, pings)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if out := n.tcShow(t, Egress); out != "" {
		t.Errorf("egress filter still listed after Close:\n%s", out)
	}
}

// Two filters at one priority get handles 1 and 2, reuse the qdisc, both
// run, and closing one leaves the other alone. Priority 0 lets the kernel
// choose.
func TestSharedPriorityAndAutoPriority(t *testing.T) {
	requireRoot(t)
	n := newTestNet(t)
	p1, m1 := counterProg(t)
	p2, m2 := counterProg(t)
	p3, m3 := counterProg(t)

	f1, _, err := n.attach(t, Ingress, p1, "first", 5)
	if err != nil {
		t.Fatalf("Attach 1: %v", err)
	}
	f2, _, err := n.attach(t, Ingress, p2, "second", 5)
	if err != nil {
		t.Fatalf("Attach 2: %v", err)
	}
	if f1.Handle() != 1 || f2.Handle() != 2 {
		t.Errorf("handles = %d, %d; want 1, 2", f1.Handle(), f2.Handle())
	}
	if f2.CreatedQdisc() {
		t.Error("second Attach claims it created the qdisc")
	}
	f3, _, err := n.attach(t, Ingress, p3, "auto", 0)
	if err != nil {
		t.Fatalf("Attach with priority 0: %v", err)
	}
	if f3.Priority() == 0 || f3.Priority() == 5 {
		t.Errorf("auto priority = %d", f3.Priority())
	}
	if out := n.tcShow(t, Ingress); !strings.Contains(out, fmt.Sprintf("pref %d", f3.Priority())) {
		t.Errorf("tc filter show lacks pref %d:\n%s", f3.Priority(), out)
	}

	n.ping(t)
	for i, m := range []*ebpf.Map{m1, m2, m3} {
		if c := count(t, m); c < pings {
			t.Errorf("filter %d counter = %d, want >= %d", i+1, c, pings)
		}
	}

	if err := f1.Close(); err != nil {
		t.Fatalf("Close 1: %v", err)
	}
	out := n.tcShow(t, Ingress)
	if strings.Contains(out, "first") || !strings.Contains(out, "second") || !strings.Contains(out, "auto") {
		t.Errorf("after closing filter 1:\n%s", out)
	}
	// The freed handle 1 is reused.
	f4, _, err := n.attach(t, Ingress, p1, "fourth", 5)
	if err != nil {
		t.Fatalf("Attach 4: %v", err)
	}
	if f4.Handle() != 1 {
		t.Errorf("handle after reuse = %d, want 1", f4.Handle())
	}
	for _, f := range []*Filter{f2, f3, f4} {
		if err := f.Close(); err != nil {
			t.Errorf("Close %s: %v", f, err)
		}
	}
	if out := n.tcShow(t, Ingress); out != "" {
		t.Errorf("filters left:\n%s", out)
	}
}

// A filter deleted behind our back: Replace reports it, Close succeeds and
// does not touch a newer filter that took over the same slot.
func TestExternallyDeleted(t *testing.T) {
	requireRoot(t)
	n := newTestNet(t)
	p1, _ := counterProg(t)
	p2, _ := counterProg(t)
	f, _, err := n.attach(t, Ingress, p1, "victim", 2)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	run(t, "ip", "netns", "exec", n.nsA, "tc", "filter", "del", "dev", n.devA, "ingress", "prio", "2", "handle", "1", "bpf")
	err = f.Replace(p2)
	if err == nil || !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), n.devA) {
		t.Errorf("Replace of deleted filter = %v, want ENOENT naming %s", err, n.devA)
	}
	// Someone else now takes the same prio/handle slot: the stale Filter's
	// Close must leave that filter alone.
	g, _, err := n.attach(t, Ingress, p2, "newcomer", 2)
	if err != nil {
		t.Fatalf("Attach newcomer: %v", err)
	}
	if g.Handle() != f.Handle() || g.Priority() != f.Priority() {
		t.Fatalf("newcomer got prio %d handle %d, want the freed slot %d/%d", g.Priority(), g.Handle(), f.Priority(), f.Handle())
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close of deleted filter: %v", err)
	}
	if out := n.tcShow(t, Ingress); !strings.Contains(out, "newcomer") {
		t.Errorf("stale Close deleted another filter in its slot:\n%s", out)
	}
	if err := g.Close(); err != nil {
		t.Errorf("Close newcomer: %v", err)
	}
	if out := n.tcShow(t, Ingress); out != "" {
		t.Errorf("filters left:\n%s", out)
	}
}

func TestExistingQdiscs(t *testing.T) {
	requireRoot(t)
	prog, _ := counterProg(t)

	t.Run("clsact reused", func(t *testing.T) {
		n := newTestNet(t)
		run(t, "ip", "netns", "exec", n.nsA, "tc", "qdisc", "add", "dev", n.devA, "clsact")
		f, _, err := n.attach(t, Egress, prog, "reuse", 1)
		if err != nil {
			t.Fatalf("Attach on existing clsact: %v", err)
		}
		if f.CreatedQdisc() {
			t.Error("CreatedQdisc() = true for a pre-existing clsact")
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if q := run(t, "ip", "netns", "exec", n.nsA, "tc", "qdisc", "show", "dev", n.devA); !strings.Contains(q, "clsact") {
			t.Errorf("clsact qdisc was removed:\n%s", q)
		}
	})

	t.Run("legacy ingress qdisc", func(t *testing.T) {
		n := newTestNet(t)
		run(t, "ip", "netns", "exec", n.nsA, "tc", "qdisc", "add", "dev", n.devA, "ingress")
		_, _, err := n.attach(t, Egress, prog, "egress", 1)
		if err == nil || !strings.Contains(err.Error(), `"ingress" qdisc`) {
			t.Errorf("egress Attach with an ingress qdisc = %v, want a clear error", err)
		}
		f, _, err := n.attach(t, Ingress, prog, "ingress", 1)
		if err != nil {
			t.Fatalf("ingress Attach with an ingress qdisc: %v", err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("priority held with another protocol", func(t *testing.T) {
		n := newTestNet(t)
		run(t, "ip", "netns", "exec", n.nsA, "tc", "qdisc", "add", "dev", n.devA, "clsact")
		// A classic-BPF cls_bpf filter for IPv4 only (cls_bpf is the one
		// classifier every kernel this package targets has).
		run(t, "ip", "netns", "exec", n.nsA, "tc", "filter", "add", "dev", n.devA, "ingress",
			"prio", "7", "protocol", "ip", "bpf", "bytecode", "1,6 0 0 0,")
		_, _, err := n.attach(t, Ingress, prog, "clash", 7)
		if err == nil || !strings.Contains(err.Error(), "prio 7") || !strings.Contains(err.Error(), "0x0800") {
			t.Errorf("Attach on an IPv4-only priority = %v, want a clear error", err)
		}
		t.Logf("clash: %v", err)
	})
}

func TestAttachErrors(t *testing.T) {
	requireRoot(t)
	prog, _ := counterProg(t)

	// Read-only in the root namespace: the lookup fails before any change.
	_, err := Attach(0x7ffffff0, Ingress, prog, "none", 1)
	if err == nil || !errors.Is(err, unix.ENODEV) || !strings.Contains(err.Error(), "ifindex 2147483632") {
		t.Errorf("Attach on a missing ifindex = %v, want ENODEV naming the ifindex", err)
	}
	t.Logf("missing ifindex: %v", err)

	if _, err := Attach(1, Direction(7), prog, "x", 1); err == nil {
		t.Error("invalid direction accepted")
	}
	if _, err := Attach(-1, Ingress, prog, "x", 1); err == nil {
		t.Error("negative ifindex accepted")
	}
	if _, err := Attach(1, Ingress, nil, "x", 1); err == nil {
		t.Error("nil program accepted")
	}
	sock, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SocketFilter,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	if _, err := Attach(1, Ingress, sock, "x", 1); err == nil || !strings.Contains(err.Error(), "SchedCLS") {
		t.Errorf("socket filter program accepted or unclear error: %v", err)
	}
}
