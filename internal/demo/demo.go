// Package demo runs rampart's closed loop in a lab a newcomer can watch:
// network namespaces for a benign client and an attacker behind a router,
// a web server on the host, the real agent (firewall, hoststat, threshold
// detector, enforcing responder), a flood, and a live view of the
// detection, its explanation, the drop, the benign client's rate and the
// release. Everything it makes is removed when it ends.
package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rampart-shield/rampart/internal/api"
	"github.com/rampart-shield/rampart/internal/lab"
	"github.com/rampart-shield/rampart/internal/respond"
)

// Attacks the demo can run.
var Attacks = map[string]string{
	"syn":  "TCP SYN flood from random IPv4 sources (hping3, or the lab's flooder)",
	"syn6": "TCP SYN flood from random IPv6 sources (the lab's flooder)",
	"udp":  "UDP flood from one source (hping3, or the lab's flooder)",
	"icmp": "ICMP echo flood from one source (hping3, or the lab's flooder)",
}

// Options configure a run.
type Options struct {
	Attack string        // a key of Attacks
	Flood  time.Duration // how long the flood lasts (default 10 s)
	Agent  string        // the rampart binary (default: this executable)
	Out    io.Writer
}

// Run builds the lab, runs the scenario and tears everything down.
func Run(ctx context.Context, o Options) (err error) {
	if _, ok := Attacks[o.Attack]; !ok {
		return fmt.Errorf("unknown attack %q", o.Attack)
	}
	if o.Flood <= 0 {
		o.Flood = 10 * time.Second
	}
	if o.Agent == "" {
		if o.Agent, err = os.Executable(); err != nil {
			return err
		}
	}
	w := o.Out
	start := time.Now()
	say := func(format string, a ...any) {
		fmt.Fprintf(w, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}

	l, err := lab.New()
	if err != nil {
		return err
	}
	defer func() {
		say("cleaning up: lab %s (namespaces, links, processes)", l.ID)
		l.Close()
	}()
	ipv6 := o.Attack == "syn6"
	u, err := l.Uplink(ctx, lab.UplinkOptions{IPv6: ipv6}, "attacker", "benign")
	if err != nil {
		return err
	}
	server := u.Server
	if ipv6 {
		server = u.Server6
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(server.String(), "0"))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from the server\n") })}
	go srv.Serve(ln)
	defer srv.Close()
	_, portText, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portText)
	say("lab %s: the server (this host) is %s, web server on port %d, behind interface %s", l.ID, server, port, u.Root.BIface)
	say("benign client %s and attacker %s reach it through a router namespace", addrOf(u.Links[1], ipv6), addrOf(u.Links[0], ipv6))

	// The real agent, private to the demo.
	dir, err := os.MkdirTemp("", "rampart-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pinRoot := filepath.Join("/sys/fs/bpf", "rampart-demo-"+l.ID)
	defer os.RemoveAll(pinRoot)
	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte("respond:\n  mode: enforce\n  rules:\n    - {action: suggested, duration: 6s}\n"), 0o600); err != nil {
		return err
	}
	sock := filepath.Join(dir, "api.sock")
	agentLog, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return err
	}
	defer agentLog.Close()
	agent := exec.Command(o.Agent, "agent", "--socket", sock, "--no-default", "--config", cfg, "--firewall", u.Root.BIface,
		"--pin-root", pinRoot, "--audit-file", filepath.Join(dir, "audit.jsonl"))
	agent.Stdout, agent.Stderr = agentLog, agentLog
	agent.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := agent.Start(); err != nil {
		return fmt.Errorf("starting the agent: %w", err)
	}
	defer func() {
		agent.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { agent.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			agent.Process.Kill()
		}
	}()
	c := api.NewUnixClient(sock)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := c.FirewallStatus(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			log, _ := os.ReadFile(agentLog.Name())
			return fmt.Errorf("the agent did not come up:\n%s", log)
		}
	}
	say("agent running: firewall (XDP) + hoststat (TC) + threshold detector + responder in enforce mode (blocks last 6 s, extended while the attack goes on)")

	load := u.Clients[1].HTTPLoad(ctx, ln.Addr().String())
	defer load.Stop()
	v := &view{c: c, w: w, iface: u.Root.BIface, load: load, say: say, seen: map[string]bool{}}
	v.header()
	if err := v.run(ctx, 4*time.Second); err != nil {
		return err
	}
	before := v.rate(time.Now().Add(-3*time.Second), time.Now())

	stopFlood, how, err := startFlood(ctx, u, o.Attack, server, uint16(port))
	if err != nil {
		return err
	}
	floodStart := time.Now()
	say("ATTACK: %s — %s", Attacks[o.Attack], how)
	v.floodStart = floodStart
	if err := v.run(ctx, o.Flood); err != nil {
		stopFlood()
		return err
	}
	during := v.rate(floodStart.Add(2*time.Second), time.Now())
	stopFlood()
	floodEnd := time.Now()
	say("the attack stops")
	// Wait for the release.
	released := time.Duration(0)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		if err := v.run(ctx, time.Second); err != nil {
			return err
		}
		if rules, err := c.Rules(ctx); err == nil && len(rules) == 0 {
			released = time.Since(floodEnd)
			break
		}
	}
	if err := v.run(ctx, 2*time.Second); err != nil {
		return err
	}
	fmt.Fprintln(w)
	say("summary:")
	fmt.Fprintf(w, "  benign requests/s: %.0f before the attack, %.0f while it was being dropped (%.0f%%)\n", before, during, pct(during, before))
	if v.firstDrop > 0 {
		fmt.Fprintf(w, "  first packet dropped %.2f s after the attack started; %d packets dropped in all\n", v.firstDrop.Seconds(), v.dropped)
	}
	if released > 0 {
		fmt.Fprintf(w, "  mitigation released %.1f s after the attack stopped\n", released.Seconds())
	} else {
		fmt.Fprintln(w, "  the mitigation had not expired yet when the demo ended")
	}
	fmt.Fprintf(w, "  the agent's log: %s is removed with the demo; rerun with other attacks: --attack %s\n", agentLog.Name(), strings.Join(keys(), "|"))
	return nil
}

func pct(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * a / b
}

func keys() []string { return []string{"syn", "syn6", "udp", "icmp"} }

func addrOf(lk *lab.Link, ipv6 bool) netip.Addr {
	if ipv6 {
		return lk.AAddr6
	}
	return lk.AAddr
}

// startFlood starts the attack and returns how to stop it.
func startFlood(ctx context.Context, u *lab.Uplink, attack string, server netip.Addr, port uint16) (func(), string, error) {
	_, hpErr := exec.LookPath("hping3")
	if attack != "syn6" && hpErr == nil {
		args := map[string][]string{
			"syn":  {"-S", "--flood", "--rand-source", "-p", fmt.Sprint(port)},
			"udp":  {"--udp", "--flood", "-p", "9", "-d", "64"},
			"icmp": {"--icmp", "--flood", "-d", "64"},
		}[attack]
		p, err := u.Clients[0].Start("hping3", append(args, "-q", server.String())...)
		if err != nil {
			return nil, "", err
		}
		return func() { p.Stop() }, "hping3 " + strings.Join(args, " ") + " " + server.String(), nil
	}
	lk := u.Links[0]
	f := lab.Flood{Iface: lk.AIface, SrcMAC: lk.AMAC, DstMAC: lk.BMAC, Dst: server, Port: port}
	switch attack {
	case "syn":
		f.Kind, f.Src = "syn", netip.MustParsePrefix("0.0.0.0/0")
	case "syn6":
		f.Kind, f.Src = "syn", u.SpoofPrefix6(0)
		if err := u.RouteBack(ctx, 0, f.Src); err != nil {
			return nil, "", err
		}
	case "udp":
		f.Kind, f.Port, f.Size, f.Src = "udp", 9, 64, netip.PrefixFrom(lk.AAddr, 32)
	case "icmp":
		f.Kind, f.Size, f.Src = "icmp", 64, netip.PrefixFrom(lk.AAddr, 32)
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); u.Clients[0].Flood(fctx, f) }()
	return func() { cancel(); <-done }, fmt.Sprintf("the lab's packet-socket flooder: %s from %s to %s", f.Kind, f.Src, server), nil
}

// view prints a line a second and every new alert and decision.
type view struct {
	c          *api.Client
	w          io.Writer
	iface      string
	load       *lab.HTTPLoad
	say        func(string, ...any)
	seen       map[string]bool
	lastRx     uint64
	lastDrop   uint64
	lastOK     int64
	lastAt     time.Time
	floodStart time.Time
	firstDrop  time.Duration
	dropped    uint64
}

func (v *view) header() {
	fmt.Fprintf(v.w, "%8s  %16s  %18s  %16s  %6s\n", "", "benign req/s", "arriving pkts/s", "dropped pkts/s", "rules")
}

func (v *view) rate(from, to time.Time) float64 {
	return float64(v.load.Between(from, to)) / to.Sub(from).Seconds()
}

func rxPackets(iface string) uint64 {
	b, _ := os.ReadFile("/sys/class/net/" + iface + "/statistics/rx_packets")
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// run shows the scene for d, one line a second, events as they come.
func (v *view) run(ctx context.Context, d time.Duration) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		v.events(ctx)
		now := time.Now()
		if now.Sub(v.lastAt) < time.Second {
			continue
		}
		st, err := v.c.FirewallStatus(ctx)
		if err != nil {
			return fmt.Errorf("the agent stopped answering: %w", err)
		}
		rx, drop, ok := rxPackets(v.iface), st.Stats["dropped"], v.load.OK()
		if !v.lastAt.IsZero() {
			dt := now.Sub(v.lastAt).Seconds()
			fmt.Fprintf(v.w, "%8s  %16.0f  %18.0f  %16.0f  %6d\n", "", float64(ok-v.lastOK)/dt, float64(rx-v.lastRx)/dt, float64(drop-v.lastDrop)/dt, st.Rules)
		}
		if drop > 0 && v.firstDrop == 0 && !v.floodStart.IsZero() {
			v.firstDrop = now.Sub(v.floodStart)
		}
		v.dropped = drop
		v.lastRx, v.lastDrop, v.lastOK, v.lastAt = rx, drop, ok, now
	}
	return nil
}

// events prints alerts and decisions not shown yet.
func (v *view) events(ctx context.Context) {
	if alerts, err := v.c.Alerts(ctx); err == nil {
		for _, a := range alerts {
			if v.seen["a"+a.Alert.ID] {
				continue
			}
			v.seen["a"+a.Alert.ID] = true
			al := a.Alert
			v.say("ALERT %s by the %s detector (%s): score %.0f, threshold %.0f", al.Kind, al.Detector, al.Model, al.Score, al.Thresh)
			fmt.Fprintf(v.w, "          why: %s\n", al.Summary)
			for i, f := range al.Features {
				if i == 3 {
					break
				}
				fmt.Fprintf(v.w, "          feature: %s = %.0f (%.1fx its threshold)\n", f.Name, f.Value, f.Contribution)
			}
			for i, s := range al.Samples {
				if i == 3 {
					break
				}
				fmt.Fprintf(v.w, "          sample: %s\n", s)
			}
		}
	}
	if trail, err := v.c.Audit(ctx, 200); err == nil {
		for _, d := range trail {
			k := fmt.Sprint("d", d.Time.UnixNano(), d.Action, d.Target, d.Outcome)
			if v.seen[k] || d.Action == "mode" {
				continue
			}
			v.seen[k] = true
			label := map[string]string{respond.Applied: "DROP", respond.Extended: "STILL ATTACKED", respond.Expired: "RELEASE"}[d.Outcome]
			if label == "" {
				label = strings.ToUpper(d.Outcome)
			}
			v.say("%s %s %s: %s", label, d.Action, d.Target, d.Detail)
		}
	}
}
