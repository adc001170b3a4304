package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustHost(t *testing.T, l *Lab, name string) *Host {
	t.Helper()
	h, err := l.AddHost(name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func netnsList(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	return string(out)
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

func TestSubnetAddrs(t *testing.T) {
	for _, c := range []struct {
		i              int
		a4, b4, a6, b6 string
	}{
		{0, "198.18.0.1", "198.18.0.2", "fd00:72:70::1", "fd00:72:70::2"},
		{1, "198.18.0.5", "198.18.0.6", "fd00:72:70:1::1", "fd00:72:70:1::2"},
		{numSubnets - 1, "198.19.255.253", "198.19.255.254", "fd00:72:70:7fff::1", "fd00:72:70:7fff::2"},
	} {
		a4, b4, a6, b6 := subnetAddrs(c.i)
		got := []string{a4.String(), b4.String(), a6.String(), b6.String()}
		want := []string{c.a4, c.b4, c.a6, c.b6}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("subnet %d: got %v, want %v", c.i, got, want)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	b := NewTailBuffer(4)
	for _, s := range []string{"ab", "cdefghij", "k"} {
		b.Write([]byte(s))
	}
	if got := string(b.Bytes()); got != "hijk" {
		t.Fatalf("got %q, want %q", got, "hijk")
	}
}

func TestConnectPingClose(t *testing.T) {
	l := ForTest(t)
	ctx := testCtx(t)
	a, b := mustHost(t, l, "a"), mustHost(t, l, "b")
	lk, err := l.Connect(a, b, LinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !lk.AAddr6.IsValid() || !lk.BAddr6.IsValid() || lk.AIndex == 0 || lk.BIndex == 0 {
		t.Fatalf("incomplete link: %+v", lk)
	}
	for _, c := range []struct {
		from *Host
		to   netip.Addr
	}{{a, lk.BAddr}, {b, lk.AAddr}, {a, lk.BAddr6}, {b, lk.AAddr6}} {
		n, err := c.from.Ping(ctx, c.to, 3, 50*time.Millisecond)
		if err != nil || n != 3 {
			t.Errorf("ping %s -> %s: %d replies, %v", c.from.Name, c.to, n, err)
		}
	}
	// No default route in a lab namespace.
	out, err := a.Run(ctx, 5*time.Second, "ip", "route", "show", "default")
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("default route in lab: %q, %v", out, err)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	list := netnsList(t)
	for _, h := range []*Host{a, b} {
		if strings.Contains(list, h.NS) {
			t.Errorf("namespace %s left after Close:\n%s", h.NS, list)
		}
	}
	if linkExists(lk.AIface) || linkExists(lk.BIface) {
		t.Errorf("veth left in root netns after Close")
	}
	if _, err := l.AddHost("c"); err == nil {
		t.Errorf("AddHost after Close succeeded")
	}
}

func TestConnectRootQuiet(t *testing.T) {
	l := ForTest(t)
	ctx := testCtx(t)
	h := mustHost(t, l, "h")
	lk, err := l.ConnectRoot(h, LinkOptions{Quiet: true, MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	if lk.B != nil || lk.AAddr6.IsValid() || lk.BAddr6.IsValid() {
		t.Fatalf("unexpected link: %+v", lk)
	}
	ifc, err := net.InterfaceByName(lk.BIface)
	if err != nil {
		t.Fatalf("root end: %v", err)
	}
	if ifc.Index != lk.BIndex || ifc.MTU != 1400 {
		t.Errorf("root end: index %d mtu %d, link says index %d", ifc.Index, ifc.MTU, lk.BIndex)
	}

	rx := func() int {
		b, err := os.ReadFile("/sys/class/net/" + lk.BIface + "/statistics/rx_packets")
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	const count = 7
	before := rx()
	n, err := h.Ping(ctx, lk.BAddr, count, 20*time.Millisecond)
	if err != nil || n != count {
		t.Fatalf("ping root end: %d replies, %v", n, err)
	}
	if got := rx() - before; got != count {
		t.Errorf("root end received %d packets, want exactly %d", got, count)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if linkExists(lk.BIface) {
		t.Errorf("root end %s left after Close", lk.BIface)
	}
}

func TestChannels(t *testing.T) {
	l := ForTest(t)
	ctx := testCtx(t)
	a, b := mustHost(t, l, "a"), mustHost(t, l, "b")
	lk, err := l.Connect(a, b, LinkOptions{Channels: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct {
		h     *Host
		iface string
	}{{a, lk.AIface}, {b, lk.BIface}} {
		out, err := e.h.Run(ctx, 10*time.Second, "ethtool", "-l", e.iface)
		if err != nil {
			t.Fatal(err)
		}
		_, cur, ok := strings.Cut(string(out), "Current hardware settings:")
		if !ok || !strings.Contains(cur, "RX:\t\t2") || !strings.Contains(cur, "TX:\t\t2") {
			t.Errorf("%s: want 2 rx/tx channels:\n%s", e.iface, out)
		}
	}
	if n, err := a.Ping(ctx, lk.BAddr, 2, 50*time.Millisecond); err != nil || n != 2 {
		t.Errorf("ping over 2-channel link: %d, %v", n, err)
	}
}

// groupMembers returns the live (non-zombie) processes in process group pgid.
func groupMembers(pgid int) []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after "comm)": state ppid pgrp ...
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestStartCloseKillsGroup(t *testing.T) {
	l := ForTest(t)
	h := mustHost(t, l, "h")
	p, err := h.Start("sh", "-c", "echo started; sleep 300 & sleep 300")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(groupMembers(p.Pid())) < 2 || !strings.Contains(p.Output(), "started") {
		if time.Now().After(deadline) {
			t.Fatalf("group %d never had 2 processes: %v, output %q", p.Pid(), groupMembers(p.Pid()), p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Close took %v", d)
	}
	if left := groupMembers(p.Pid()); len(left) != 0 {
		t.Errorf("processes left in group %d: %v", p.Pid(), left)
	}
	if err := p.Wait(); err == nil {
		t.Errorf("Wait after kill: nil error")
	}
}

func TestProcessWait(t *testing.T) {
	l := ForTest(t)
	h := mustHost(t, l, "h")
	p, err := h.Start("sh", "-c", "echo hello; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	var exit *exec.ExitError
	if err := p.Wait(); !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("Wait: %v, want exit status 3", err)
	}
	if got := p.Output(); got != "hello\n" {
		t.Errorf("output %q", got)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop after exit: %v", err)
	}
}

func TestDo(t *testing.T) {
	l := ForTest(t)
	a, b := mustHost(t, l, "a"), mustHost(t, l, "b")
	lk, err := l.Connect(a, b, LinkOptions{Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	has := func() bool {
		ifs, err := net.Interfaces()
		if err != nil {
			t.Fatal(err)
		}
		for _, ifc := range ifs {
			if ifc.Name == lk.AIface {
				return true
			}
		}
		return false
	}
	var inside bool
	if err := a.Do(func() error { inside = has(); return nil }); err != nil {
		t.Fatal(err)
	}
	if !inside {
		t.Errorf("Do: %s not listed inside %s", lk.AIface, a.NS)
	}
	if has() {
		t.Errorf("%s listed outside the namespace", lk.AIface)
	}
	want := errors.New("boom")
	if err := a.Do(func() error { return want }); err != want {
		t.Errorf("Do returned %v, want fn's error", err)
	}
}

func TestRunTimeout(t *testing.T) {
	l := ForTest(t)
	h := mustHost(t, l, "h")
	ctx := testCtx(t)

	out, err := h.Run(ctx, 5*time.Second, "echo", "hi")
	if err != nil || string(out) != "hi\n" {
		t.Fatalf("Run echo: %q, %v", out, err)
	}
	if _, err := h.Run(ctx, 5*time.Second, "sh", "-c", "echo oops; exit 1"); err == nil ||
		!strings.Contains(err.Error(), "oops") {
		t.Errorf("failing Run: error %v lacks output tail", err)
	}

	// The background sleep keeps the output pipe open: Run must kill it too.
	start := time.Now()
	_, err = h.Run(ctx, 300*time.Millisecond, "sh", "-c", "sleep 30 & sleep 30")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run returned after %v", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run error %v, want deadline exceeded", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(200*time.Millisecond, cancel)
	if _, err := h.Run(cctx, 0, "sleep", "30"); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with canceled ctx: %v", err)
	}
}

func TestSweepSparesLiveLabs(t *testing.T) {
	l := ForTest(t)
	h := mustHost(t, l, "h")
	lk, err := l.ConnectRoot(h, LinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A crashed lab: resources present, lock file present but not held.
	dead, err := New()
	if err != nil {
		t.Fatal(err)
	}
	dh := mustHost(t, dead, "h")
	dlk, err := dead.ConnectRoot(dh, LinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dead.lock.Close() // simulate the process dying
	dead.lock = nil
	t.Cleanup(func() { dead.Close() })

	if err := Sweep(time.Hour); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(netnsList(t), dh.NS) {
		t.Fatalf("Sweep removed a young lab")
	}
	// Old enough now, but the live lab still holds its lock.
	time.Sleep(1100 * time.Millisecond)
	if err := Sweep(time.Second); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(netnsList(t), dh.NS) || linkExists(dlk.BIface) {
		t.Errorf("Sweep left the dead lab's namespace or link")
	}
	if _, err := os.Stat(lockPath(dead.ID)); !os.IsNotExist(err) {
		t.Errorf("Sweep left the dead lab's lock file: %v", err)
	}
	if !strings.Contains(netnsList(t), h.NS) || !linkExists(lk.BIface) {
		t.Errorf("Sweep removed a live lab")
	}
}

// ifaceCounter reads a root-namespace interface counter from sysfs.
func ifaceCounter(t *testing.T, iface, name string) uint64 {
	t.Helper()
	b, err := os.ReadFile("/sys/class/net/" + iface + "/statistics/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	fmt.Sscan(string(b), &n)
	return n
}

// defaultIface is the root namespace's default-route interface, or "".
func defaultIface() string {
	out, err := exec.Command("ip", "-6", "route", "show", "default").Output()
	f := strings.Fields(string(out))
	for i := 0; err == nil && i+1 < len(f); i++ {
		if f[i] == "dev" {
			return f[i+1]
		}
	}
	return ""
}

// TestUplinkFloodStaysInLab: a spoofed IPv6 SYN flood through the uplink
// reaches the server's interface, and the server's answers (RSTs to the
// spoofed sources) go back into the lab, not out of the machine.
func TestUplinkFloodStaysInLab(t *testing.T) {
	l := ForTest(t)
	ctx := testCtx(t)
	u, err := l.Uplink(ctx, UplinkOptions{IPv6: true}, "attacker", "benign")
	if err != nil {
		t.Fatal(err)
	}
	spoof := u.SpoofPrefix6(0)
	if err := u.RouteBack(ctx, 0, spoof); err != nil {
		t.Fatal(err)
	}
	if got, err := u.Clients[1].Ping(ctx, u.Server6, 3, 50*time.Millisecond); err != nil || got != 3 {
		t.Fatalf("benign ping6 to the server: %d of 3, %v", got, err)
	}
	out := defaultIface()
	var outTx uint64
	if out != "" {
		outTx = ifaceCounter(t, out, "tx_packets")
	}
	rx := ifaceCounter(t, u.Root.BIface, "rx_packets")
	tx := ifaceCounter(t, u.Root.BIface, "tx_packets")
	fctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	lk := u.Links[0]
	sent, err := u.Clients[0].Flood(fctx, Flood{Iface: lk.AIface, SrcMAC: lk.AMAC, DstMAC: lk.BMAC, Dst: u.Server6, Src: spoof, Kind: "syn", Port: 81})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	gotRx := ifaceCounter(t, u.Root.BIface, "rx_packets") - rx
	gotTx := ifaceCounter(t, u.Root.BIface, "tx_packets") - tx
	t.Logf("sent %d spoofed SYNs in 1 s; the server's interface received %d and sent %d back into the lab", sent, gotRx, gotTx)
	// The point is where the answers go, not the rate: a loaded machine sends fewer.
	if sent < 1000 || gotRx < sent/2 {
		t.Fatalf("sent %d, received %d", sent, gotRx)
	}
	if gotTx < gotRx/2 {
		t.Errorf("the server answered only %d of %d SYNs on the lab interface", gotTx, gotRx)
	}
	if out != "" {
		if d := ifaceCounter(t, out, "tx_packets") - outTx; d > 1000 {
			t.Errorf("%s sent %d packets during the flood: answers are leaving the lab", out, d)
		}
	}
}
