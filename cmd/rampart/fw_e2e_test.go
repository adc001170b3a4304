package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/rampart-shield/rampart/internal/firewall"
	"github.com/rampart-shield/rampart/internal/lab"
)

// testAgent is the real binary running as the agent in a test.
type testAgent struct {
	t    *testing.T
	bin  string
	sock string
	cmd  *exec.Cmd
	log  *syncBuffer
}

// buildBinary builds rampart once per test.
func buildBinary(t *testing.T, ctx context.Context) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rampart")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startRealAgent runs `rampart agent --socket SOCK args...` and waits for its
// socket. It is stopped (SIGINT, then SIGKILL) at cleanup unless stopped.
func startRealAgent(t *testing.T, ctx context.Context, bin, sock string, args ...string) *testAgent {
	t.Helper()
	os.Remove(sock)
	a := &testAgent{t: t, bin: bin, sock: sock, log: &syncBuffer{}}
	a.cmd = exec.CommandContext(ctx, bin, append([]string{"agent", "--socket", sock}, args...)...)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.stop(os.Interrupt)
		if t.Failed() {
			t.Logf("agent log:\n%s", a.log.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, err := os.Stat(sock); err == nil {
			return a
		}
		if a.cmd.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("agent socket never appeared:\n%s", a.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop signals the agent and waits (10 s, then SIGKILL).
func (a *testAgent) stop(sig os.Signal) {
	if a.cmd.ProcessState != nil {
		return
	}
	a.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		a.cmd.Process.Kill()
		<-done
	}
}

// cli runs a client command against the agent.
func (a *testAgent) cli(ctx context.Context, args ...string) string {
	a.t.Helper()
	out, err := exec.CommandContext(ctx, a.bin, append([]string{"--socket", a.sock}, args...)...).CombinedOutput()
	if err != nil {
		a.t.Fatalf("rampart %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (a *testAgent) rules(ctx context.Context) []firewall.Rule {
	a.t.Helper()
	var rules []firewall.Rule
	if err := json.Unmarshal([]byte(a.cli(ctx, "fw", "list", "--json")), &rules); err != nil {
		a.t.Fatal(err)
	}
	return rules
}

// pings sends n pings from h, 10 ms apart, and returns how many were answered.
func pings(t *testing.T, ctx context.Context, h *lab.Host, dst netip.Addr, n int) int {
	t.Helper()
	got, err := h.Ping(ctx, dst, n, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// attachments counts the BPF links on the interface: XDP and TCX.
func attachments(t *testing.T, iface string) (xdp, tcx int) {
	t.Helper()
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			continue
		}
		if x := info.XDP(); x != nil && int(x.Ifindex) == ifc.Index {
			xdp++
		}
		if x := info.TCX(); x != nil && int(x.Ifindex) == ifc.Index {
			tcx++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterating links: %v", err)
	}
	return
}

// needLab skips a test that needs root (BPF, namespaces) or that -short
// leaves out.
func needLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads eBPF programs and creates network namespaces")
	}
	if testing.Short() {
		t.Skip("builds the binary and runs a lab; skipped with -short")
	}
}

// labUplink builds a lab with an uplink to the root namespace and names a
// pin root for the test's agents, removed at the end.
func labUplink(t *testing.T, ctx context.Context, opts lab.UplinkOptions, clients ...string) (*lab.Lab, *lab.Uplink, string) {
	t.Helper()
	l := lab.ForTest(t)
	u, err := l.Uplink(ctx, opts, clients...)
	if err != nil {
		t.Fatal(err)
	}
	pinRoot := filepath.Join("/sys/fs/bpf", "rampart-test-"+l.ID)
	t.Cleanup(func() { os.RemoveAll(pinRoot) })
	return l, u, pinRoot
}

// serveHTTP serves h on a free port of addr until the test ends and
// returns the listener's host:port.
func serveHTTP(t *testing.T, addr netip.Addr, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(addr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func okHandler(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") }

// TestFirewallPersistence: rules applied through the CLI drop a lab host's
// packets; after kill -9 of the agent they still do; a restarted agent
// lists the same rules with counters that carried on, without a second
// attachment; a clean stop removes them.
func TestFirewallPersistence(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, u, pinRoot := labUplink(t, ctx, lab.UplinkOptions{}, "attacker", "benign")
	attacker, benign := u.Clients[0], u.Clients[1]
	iface, server := u.Root.BIface, u.Server
	bin := buildBinary(t, ctx)
	sock := filepath.Join(t.TempDir(), "api.sock")
	args := []string{"--no-default", "--no-detect", "--firewall", iface, "--pin-root", pinRoot, "--audit-file", "-"}

	if got := pings(t, ctx, attacker, server, 5); got != 5 {
		t.Fatalf("before any rule: %d of 5 pings answered", got)
	}
	a := startRealAgent(t, ctx, bin, sock, args...)
	a.cli(ctx, "fw", "add", "--src", u.Links[0].AAddr.String(), "--action", "drop", "--desc", "attacker")
	const n = 20
	if got := pings(t, ctx, attacker, server, n); got != 0 {
		t.Fatalf("with the drop rule: %d of %d pings answered", got, n)
	}
	if got := pings(t, ctx, benign, server, 5); got != 5 {
		t.Fatalf("benign host: %d of 5 pings answered", got)
	}
	before := a.rules(ctx)
	if len(before) != 1 || before[0].Packets != n {
		t.Fatalf("rules before the crash: %+v (want 1 rule with %d packets)", before, n)
	}

	// kill -9: no cleanup runs; the pinned link and maps keep filtering.
	a.stop(syscall.SIGKILL)
	if got := pings(t, ctx, attacker, server, n); got != 0 {
		t.Fatalf("agent dead: %d of %d pings answered; the rules should still drop", got, n)
	}
	if got := pings(t, ctx, benign, server, 5); got != 5 {
		t.Fatalf("agent dead: benign host got %d of 5", got)
	}

	// Restart: the rules are adopted, counters carried on, one attachment.
	a = startRealAgent(t, ctx, bin, sock, args...)
	after := a.rules(ctx)
	if len(after) != 1 || after[0].Src != before[0].Src || after[0].Description != "attacker" || after[0].Packets != 2*n {
		t.Fatalf("rules after restart: %+v (want the same rule, %d packets)", after, 2*n)
	}
	if xdp, tcx := attachments(t, iface); xdp != 1 || tcx != 1 {
		t.Fatalf("after restart %s has %d XDP and %d TC programs; want 1 each", iface, xdp, tcx)
	}
	if got := pings(t, ctx, attacker, server, 5); got != 0 {
		t.Fatalf("after restart: %d of 5 answered", got)
	}
	if r := a.rules(ctx); r[0].Packets != 2*n+5 {
		t.Fatalf("counter after restart: %d, want %d", r[0].Packets, 2*n+5)
	}
	out := a.cli(ctx, "fw", "status")
	if !strings.Contains(out, "interface "+iface+", 1 rule") {
		t.Errorf("fw status:\n%s", out)
	}

	// --keep-rules is explicit: without it, a clean stop removes the rules.
	a.stop(os.Interrupt)
	if got := pings(t, ctx, attacker, server, 5); got != 5 {
		t.Fatalf("after a clean stop: %d of 5 answered; the rules should be gone", got)
	}
	if xdp, tcx := attachments(t, iface); xdp != 0 || tcx != 0 {
		t.Fatalf("after a clean stop %s still has %d XDP and %d TC programs", iface, xdp, tcx)
	}
	if entries, _ := os.ReadDir(filepath.Join(pinRoot, "firewall")); len(entries) != 0 {
		t.Fatalf("pins left after a clean stop: %v", entries)
	}

	// With --keep-rules the rules outlive a clean stop too.
	a = startRealAgent(t, ctx, bin, sock, append(args, "--keep-rules")...)
	a.cli(ctx, "fw", "add", "--src", u.Links[0].AAddr.String(), "--action", "drop")
	a.stop(os.Interrupt)
	if got := pings(t, ctx, attacker, server, 5); got != 0 {
		t.Fatalf("after a --keep-rules stop: %d of 5 answered", got)
	}
	a = startRealAgent(t, ctx, bin, sock, args...)
	if out := a.cli(ctx, "fw", "flush"); !strings.Contains(out, "deleted 1 rule") {
		t.Fatalf("fw flush after adopting the kept rule: %q", out)
	}
	if got := pings(t, ctx, attacker, server, 5); got != 5 {
		t.Fatalf("after flush: %d of 5 answered", got)
	}
}

// TestFloodBlockedBenignServed is the closed loop in the lab: an hping3
// UDP flood from one namespace, a benign HTTP client in another, both
// through the server's one uplink. An alert handed to the responder (in
// enforce mode) blocks the flood's source in XDP; the benign client keeps
// at least 90% of its request rate; the block expires after the attack and
// the audit trail shows the block and its expiry.
func TestFloodBlockedBenignServed(t *testing.T) {
	needLab(t)
	if _, err := exec.LookPath("hping3"); err != nil {
		t.Skip("needs hping3 (apt-get install hping3) for the flood")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, u, pinRoot := labUplink(t, ctx, lab.UplinkOptions{}, "attacker", "benign")
	attacker, benign := u.Clients[0], u.Clients[1]
	web := serveHTTP(t, u.Server, okHandler)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	audit := filepath.Join(dir, "audit.jsonl")
	os.WriteFile(cfg, []byte(`respond:
  mode: enforce
  rules:
    - kind: "*-flood"
      action: block
      duration: 4s
`), 0o600)
	bin := buildBinary(t, ctx)
	a := startRealAgent(t, ctx, bin, filepath.Join(dir, "api.sock"), "--no-default", "--no-detect", "--config", cfg,
		"--firewall", u.Root.BIface, "--pin-root", pinRoot, "--audit-file", audit)

	load := benign.HTTPLoad(ctx, web)
	t0 := time.Now()
	time.Sleep(2 * time.Second)
	flood, err := attacker.Start("hping3", "--flood", "--udp", "-p", "9", "-d", "64", u.Server.String())
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	time.Sleep(500 * time.Millisecond)
	out := a.cli(ctx, "respond", "alert", "--kind", "udp-flood", "--detector", "test", "--source", u.Links[0].AAddr.String(),
		"--score", "50000", "--threshold", "1000", "--summary", "udp packets/s to "+u.Server.String())
	if !strings.Contains(out, "applied") {
		t.Fatalf("respond alert:\n%s", out)
	}
	t2 := time.Now()
	time.Sleep(3 * time.Second)
	t3 := time.Now()
	st := a.cli(ctx, "fw", "status", "--json")
	flood.Stop()
	load.Stop()

	var status struct {
		Stats map[string]uint64 `json:"stats"`
	}
	json.Unmarshal([]byte(st), &status)
	base := float64(load.Between(t0, t1)) / t1.Sub(t0).Seconds()
	during := float64(load.Between(t2, t3)) / t3.Sub(t2).Seconds()
	t.Logf("benign requests/s: %.0f before the flood, %.0f during it with the block; firewall dropped %d packets", base, during, status.Stats["dropped"])
	if base < 20 {
		t.Fatalf("the benign client only managed %.0f requests/s before the flood", base)
	}
	if during < 0.9*base {
		t.Errorf("benign rate during the blocked flood %.0f/s < 90%% of %.0f/s", during, base)
	}
	if status.Stats["dropped"] < 1000 {
		t.Errorf("the firewall dropped only %d packets of the flood", status.Stats["dropped"])
	}

	// The attack is over: the block expires and the attacker is reachable.
	deadline := time.Now().Add(10 * time.Second)
	for len(a.rules(ctx)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the block did not expire: %+v", a.rules(ctx))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := pings(t, ctx, attacker, u.Server, 5); got != 5 {
		t.Errorf("after expiry the attacker got %d of 5 pings answered", got)
	}
	trail := a.cli(ctx, "respond", "audit")
	if !strings.Contains(trail, "applied") || !strings.Contains(trail, "expired") {
		t.Errorf("audit trail lacks the block or its expiry:\n%s", trail)
	}
	if b, err := os.ReadFile(audit); err != nil || !strings.Contains(string(b), `"outcome":"expired"`) {
		t.Errorf("audit file: %v\n%s", err, b)
	}
}
