package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/api"
	"github.com/rampart-shield/rampart/internal/lab"
)

// TestDetectAndMitigate is the closed loop for real attacks in the lab:
// the agent runs the firewall, hoststat and the threshold detector with an
// enforcing responder; a benign HTTP client and an attacker reach the
// server through one uplink. Each flood must be detected and dropped while
// the benign client keeps at least 90% of its request rate, and the
// mitigation must end after the attack does.
func TestDetectAndMitigate(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := buildBinary(t, ctx)
	for _, c := range []struct {
		name, kind, suggested string
		ipv6                  bool
		hping                 []string // hping3 arguments before the target; nil: the lab flooder
	}{
		{"syn flood, random sources", "syn-flood", "filter", false, []string{"-S", "--flood", "--rand-source", "-p", "PORT"}},
		{"udp flood", "udp-flood", "block", false, []string{"--udp", "--flood", "-p", "9", "-d", "64"}},
		{"icmp flood", "icmp-flood", "block", false, []string{"--icmp", "--flood", "-d", "64"}},
		{"ipv6 syn flood, random sources", "syn-flood", "filter", true, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.hping != nil {
				if _, err := exec.LookPath("hping3"); err != nil {
					t.Skip("needs hping3 (apt-get install hping3)")
				}
			}
			_, u, pinRoot := labUplink(t, ctx, lab.UplinkOptions{IPv6: c.ipv6}, "attacker", "benign")
			server := u.Server
			if c.ipv6 {
				server = u.Server6
			}
			web := serveHTTP(t, server, okHandler)
			_, port, _ := net.SplitHostPort(web)

			dir := t.TempDir()
			cfg := filepath.Join(dir, "agent.yaml")
			os.WriteFile(cfg, []byte("respond:\n  mode: enforce\n  rules:\n    - {action: suggested, duration: 4s}\n"), 0o600)
			a := startRealAgent(t, ctx, bin, filepath.Join(dir, "api.sock"), "--no-default", "--config", cfg,
				"--firewall", u.Root.BIface, "--pin-root", pinRoot, "--audit-file", filepath.Join(dir, "audit.jsonl"))
			dropped := func() uint64 {
				var st api.FirewallStatus
				json.Unmarshal([]byte(a.cli(ctx, "fw", "status", "--json")), &st)
				return st.Stats["dropped"]
			}

			load := u.Clients[1].HTTPLoad(ctx, web)
			t0 := time.Now()
			time.Sleep(3 * time.Second)
			// The benign client alone (new connections it resets, as
			// browsers do) raises no alert.
			if early, err := clientFor(a.sock).Alerts(ctx); err != nil || len(early) != 0 {
				for _, r := range early {
					t.Errorf("alert before the attack: %s", r.Alert.Summary)
				}
				t.FailNow()
			}

			fctx, stopFlood := context.WithCancel(ctx)
			floodDone := make(chan error, 1)
			t1 := time.Now()
			if c.hping != nil {
				args := append([]string(nil), c.hping...)
				for i := range args {
					if args[i] == "PORT" {
						args[i] = port
					}
				}
				// Niced: the attacker stands for another machine; on
				// this one it must not take the benign client's CPU.
				p, err := u.Clients[0].Start("nice", append(append([]string{"-n", "19", "hping3"}, args...), "-q", server.String())...)
				if err != nil {
					t.Fatal(err)
				}
				go func() { <-fctx.Done(); p.Stop(); floodDone <- nil }()
			} else {
				spoof := u.SpoofPrefix6(0)
				if err := u.RouteBack(ctx, 0, spoof); err != nil {
					t.Fatal(err)
				}
				lk := u.Links[0]
				var pn uint16
				for _, ch := range port {
					pn = pn*10 + uint16(ch-'0')
				}
				go func() {
					_, err := u.Clients[0].Flood(fctx, lab.Flood{Iface: lk.AIface, SrcMAC: lk.AMAC, DstMAC: lk.BMAC, Dst: server, Src: spoof, Kind: "syn", Port: pn})
					floodDone <- err
				}()
			}
			// Time to the first drop.
			var firstDrop time.Duration
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if dropped() > 0 {
					firstDrop = time.Since(t1)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no drop 10 s into the flood; audit:\n%s", a.cli(ctx, "respond", "audit"))
				}
			}
			time.Sleep(time.Second)
			t2 := time.Now()
			d0 := dropped()
			time.Sleep(3 * time.Second)
			t3 := time.Now()
			d1 := dropped()
			stopFlood()
			if err := <-floodDone; err != nil {
				t.Fatal(err)
			}
			floodEnd := time.Now()

			// The alert: its kind, explanation and the mitigation chosen.
			c2, err := clientFor(a.sock).Alerts(ctx)
			if err != nil || len(c2) == 0 {
				t.Fatalf("no alert recorded: %v", err)
			}
			// The threshold detector's alert; the CNN's (kind ddos) may come too.
			var first, cnn api.AlertResult
			var haveFirst, haveCNN bool
			for _, r := range c2 {
				if r.Alert.Detector == "threshold" && !haveFirst {
					first, haveFirst = r, true
				}
				if r.Alert.Detector == "lucid" && !haveCNN {
					cnn, haveCNN = r, true
				}
			}
			switch {
			case haveFirst:
				if haveCNN {
					t.Logf("%s: the CNN also alerted: %s", c.name, cnn.Alert.Summary)
				}
				if first.Alert.Kind != c.kind || first.Alert.Suggested != c.suggested || first.Alert.Subject.Dst != server.String() {
					t.Fatalf("first threshold alert %+v", first.Alert)
				}
			case haveCNN:
				// The CNN (it runs with the firewall) was faster and
				// its block starved the threshold detector: that
				// alert must be right in its own terms.
				t.Logf("%s: only the CNN alerted (its mitigation came first)", c.name)
				if first = cnn; first.Alert.Kind != "ddos" || first.Alert.Subject.Dst != server.String() ||
					(first.Alert.Suggested != "block" && first.Alert.Suggested != "filter") {
					t.Fatalf("CNN alert %+v", first.Alert)
				}
			default:
				t.Fatalf("no threshold or CNN alert among %d", len(c2))
			}
			if len(first.Alert.Features) == 0 || first.Alert.Summary == "" || len(first.Alert.Samples) == 0 {
				t.Errorf("the alert is not explained: %+v", first.Alert)
			}
			if first.Alert.Detector == "threshold" && c.suggested == "filter" && !strings.Contains(strings.Join(first.Alert.Subject.Verified, ","), u.Links[1].AAddr.String()) &&
				!strings.Contains(strings.Join(first.Alert.Subject.Verified, ","), u.Links[1].AAddr6.String()) {
				t.Errorf("the benign client is not among the verified: %v", first.Alert.Subject.Verified)
			}
			rate := float64(d1-d0) / t3.Sub(t2).Seconds()
			t.Logf("%s: first drop %v after the flood started; dropping %.0f packets/s; alert: %s", c.name, firstDrop.Round(time.Millisecond), rate, first.Alert.Summary)
			if rate < 5000 {
				t.Errorf("dropping only %.0f packets/s during the flood", rate)
			}

			// The mitigation ends after the attack: the rules expire.
			for deadline := time.Now().Add(15 * time.Second); len(a.rules(ctx)) > 0; time.Sleep(200 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("mitigation still in place %v after the flood: %+v", time.Since(floodEnd).Round(time.Second), a.rules(ctx))
				}
			}
			released := time.Since(floodEnd)
			time.Sleep(time.Second)
			load.Stop()
			base := float64(load.Between(t0, t1)) / t1.Sub(t0).Seconds()
			during := float64(load.Between(t2, t3)) / t3.Sub(t2).Seconds()
			t.Logf("%s: benign requests/s %.0f before, %.0f during the mitigated flood (%.0f%%); rules gone %v after the flood stopped",
				c.name, base, during, 100*during/base, released.Round(100*time.Millisecond))
			if base < 20 {
				t.Fatalf("the benign client only managed %.0f requests/s before the flood", base)
			}
			if during < 0.9*base {
				t.Errorf("benign rate during the mitigated flood %.0f/s < 90%% of %.0f/s", during, base)
			}
			if trail := a.cli(ctx, "respond", "audit", "-n", "4096"); !strings.Contains(trail, "expired") {
				t.Errorf("the audit trail has no expiry:\n%s", trail)
			}
		})
	}
}

func clientFor(sock string) *api.Client { return api.NewUnixClient(sock) }

// dnsLike answers every UDP datagram on pc with a 120-byte reply, until
// the connection is closed.
func dnsLike(pc net.PacketConn) {
	buf := make([]byte, 2048)
	reply := make([]byte, 120)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		copy(reply, buf[:min(n, 12)])
		pc.WriteTo(reply, from)
	}
}

// TestBenignNoAlerts: mixed benign traffic at full rate through the
// uplink (iperf3 with 4 streams, wrk against an HTTP server, DNS-like UDP
// queries, pings) raises no alert and adds no rule. RAMPART_SOAK sets the
// duration (default 20s; the acceptance run uses 10m).
func TestBenignNoAlerts(t *testing.T) {
	needLab(t)
	for _, tool := range []string{"iperf3", "wrk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (apt-get install %s)", tool, tool)
		}
	}
	soak := 20 * time.Second
	if v := os.Getenv("RAMPART_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("RAMPART_SOAK=%q: %v", v, err)
		}
		soak = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), soak+3*time.Minute)
	defer cancel()
	bin := buildBinary(t, ctx)
	_, u, pinRoot := labUplink(t, ctx, lab.UplinkOptions{}, "bulk", "web", "dns")
	server := u.Server.String()
	web := serveHTTP(t, u.Server, func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 1+len(r.URL.Path)*100))
	})
	pc, err := net.ListenPacket("udp", net.JoinHostPort(server, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go dnsLike(pc)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("respond:\n  mode: enforce\n"), 0o600)
	a := startRealAgent(t, ctx, bin, filepath.Join(dir, "api.sock"), "--no-default", "--config", cfg,
		"--firewall", u.Root.BIface, "--pin-root", pinRoot, "--audit-file", "-")

	iperfPort := "5301"
	iperfSrv := exec.CommandContext(ctx, "iperf3", "-s", "-B", server, "-p", iperfPort)
	if err := iperfSrv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { iperfSrv.Process.Kill(); iperfSrv.Wait() })
	time.Sleep(300 * time.Millisecond)
	secs := fmt.Sprint(int(soak.Seconds()))
	bulk, err := u.Clients[0].Start("iperf3", "-c", server, "-p", iperfPort, "-P", "4", "-t", secs)
	if err != nil {
		t.Fatal(err)
	}
	wrk, err := u.Clients[1].Start("wrk", "-t", "2", "-c", "32", "-d", secs+"s", "http://"+web+"/index")
	if err != nil {
		t.Fatal(err)
	}
	// DNS-like queries (a few hundred a second) and pings from the third client.
	qctx, stopQueries := context.WithTimeout(ctx, soak)
	defer stopQueries()
	queries := make(chan int, 1)
	go func() {
		n := 0
		u.Clients[2].Do(func() error {
			c, err := net.Dial("udp", pc.LocalAddr().String())
			if err != nil {
				return err
			}
			defer c.Close()
			buf := make([]byte, 512)
			for qctx.Err() == nil {
				c.Write(make([]byte, 40))
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := c.Read(buf); err == nil {
					n++
				}
				time.Sleep(400 * time.Microsecond)
			}
			return nil
		})
		queries <- n
	}()
	pingsOut, _ := u.Clients[2].Run(ctx, soak+10*time.Second, "ping", "-n", "-q", "-i", "0.01", "-w", secs, server)
	bulk.Wait()
	wrk.Wait()
	nq := <-queries
	t.Logf("iperf3:\n%s", lastLines(bulk.Output(), 4))
	t.Logf("wrk:\n%s", lastLines(wrk.Output(), 6))
	t.Logf("dns-like queries answered: %d (%.0f/s); ping: %s", nq, float64(nq)/soak.Seconds(), lastLines(string(pingsOut), 2))
	if !strings.Contains(bulk.Output(), "receiver") || !strings.Contains(wrk.Output(), "Requests/sec") || nq == 0 {
		t.Fatal("the benign traffic did not run")
	}
	alerts, err := clientFor(a.sock).Alerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range alerts {
		t.Errorf("alert during benign traffic: %s", r.Alert.Summary)
	}
	if rules := a.rules(ctx); len(rules) != 0 {
		t.Errorf("rules added during benign traffic: %+v", rules)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
