package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/alert"
	appwatch "github.com/rampart-shield/rampart/internal/app"
	"github.com/rampart-shield/rampart/internal/lab"
	"github.com/rampart-shield/rampart/internal/lab/apps"
)

// appDoSScale: RAMPART_APPDOS=full trains for FineLame's 200 s and counts
// false positives over 100,000 benign requests; the default (CI) trains
// for 20 s and counts them over 20,000 (Node) or 5,000 (Apache, nginx).
func appDoSScale(server string) (train string, benign int) {
	if os.Getenv("RAMPART_APPDOS") == "full" {
		return "200s", 100000
	}
	if server == apps.Node {
		return "20s", 20000
	}
	return "20s", 5000
}

// TestAppDoS is issue 6's acceptance in the lab: a real server (the Node.js
// app with npm packages pinned to versions with published ReDoS CVEs, and
// Apache httpd and nginx with a CPU-heavy Lua route, watched through the
// generic mapping without any uprobe) is watched by the agent through
// `rampart app watch`; after training on benign traffic of mixed routes and
// sizes, (1) the benign false positive rate stays at most 0.1%, and (2)
// every crafted request is flagged while it still runs, no later than
// max(200 ms, 10% of the time it takes when nothing intervenes), measured
// on the same request (the responder observes only).
func TestAppDoS(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	bin := buildBinary(t, ctx)
	for _, name := range []string{apps.Node, apps.Apache, apps.Nginx} {
		t.Run(name, func(t *testing.T) { appDoSCase(t, ctx, bin, name) })
	}
}

// appAlerts lists the request alerts raised since a time (not the block
// requests that follow repeated ones).
func appAlerts(t *testing.T, ctx context.Context, a *testAgent, since time.Time) []alert.Alert {
	t.Helper()
	rs, err := clientFor(a.sock).Alerts(ctx)
	if err != nil {
		t.Fatalf("alerts: %v", err)
	}
	var out []alert.Alert
	for _, r := range rs {
		if r.Alert.Detector == "kmeans" && r.Alert.Kind != "request-repeat-offender" && !r.Alert.Time.Before(since) {
			out = append(out, r.Alert)
		}
	}
	return out
}

func watchInfo(t *testing.T, ctx context.Context, a *testAgent, name string) appwatch.Info {
	t.Helper()
	var info appwatch.Info
	if err := json.Unmarshal([]byte(a.cli(ctx, "app", "show", name)), &info); err != nil {
		t.Fatalf("app show: %v", err)
	}
	return info
}

func appDoSCase(t *testing.T, ctx context.Context, bin, name string) {
	srv := apps.ForTest(t, name, apps.Options{})
	dir := t.TempDir()
	a := startRealAgent(t, ctx, bin, filepath.Join(dir, "api.sock"), "--no-default", "--audit-file", filepath.Join(dir, "audit.jsonl"))
	train, nBenign := appDoSScale(name)
	out := filepath.Join(dir, "model")
	a.cli(ctx, "app", "watch", "--pid", strconv.Itoa(srv.MainPID), "--tree", "--name", "web",
		"--train", train, "--min-train", "2000", "--out", out)

	load := srv.StartLoad(ctx, apps.LoadOptions{Concurrency: 4, Seed: 42})
	deadline := time.Now().Add(4 * time.Minute)
	var info appwatch.Info
	for {
		info = watchInfo(t, ctx, a, "web")
		if info.Detect != nil && info.Detect.Phase == "detecting" {
			break
		}
		if time.Now().After(deadline) || !srv.Running() {
			load.Stop()
			t.Fatalf("still training after 4 min: %+v\n%s", info, srv.Output())
		}
		time.Sleep(time.Second)
	}
	tDetect := time.Now()
	t.Logf("%s: trained on %d requests (k=%d), %d processes watched", name, info.Detect.Trained, info.Detect.K, len(info.Processes))

	// (1) Benign false positives over nBenign requests after training.
	for {
		st := load.Window(tDetect, time.Time{})
		if st.Count >= nBenign {
			break
		}
		if time.Now().After(deadline.Add(3 * time.Minute)) {
			t.Fatalf("only %d benign requests in the detection phase", st.Count)
		}
		time.Sleep(500 * time.Millisecond)
	}
	bst := load.Stop()
	time.Sleep(300 * time.Millisecond) // the last completions reach the detector
	fps := appAlerts(t, ctx, a, tDetect)
	scored := watchInfo(t, ctx, a, "web").Detect.Scored
	n := load.Window(tDetect, time.Time{}).Count
	t.Logf("%s: benign after training: %d requests (%d scored by the detector), %d alerts, FPR %.4f%%; load p50 %v p99 %v, %d errors",
		name, n, scored, len(fps), 100*float64(len(fps))/float64(n), bst.P50, bst.P99, bst.Errors)
	for i, f := range fps {
		if i < 3 {
			t.Logf("false positive: %s; %+v", f.Summary, f.Features)
		}
	}
	if float64(len(fps)) > 0.001*float64(n) {
		t.Errorf("%d false alerts on %d benign requests (> 0.1%%)", len(fps), n)
	}

	// (2) Each crafted request, alone, in observe mode: it runs to its end,
	// so its unhindered time is measured on the very request.
	var table []string
	for _, atk := range srv.Attacks() {
		before := time.Now()
		res, err := srv.RunAttack(ctx, atk.Kind, apps.AttackOptions{Count: 1, Size: atk.TestSize, Timeout: 60 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		r := res[0]
		time.Sleep(200 * time.Millisecond)
		var hit *alert.Alert
		for _, al := range appAlerts(t, ctx, a, before) {
			if slices.Contains(srv.PIDs(), al.Subject.PID) || al.Subject.PID == srv.MainPID {
				hit = &al
				break
			}
		}
		budget := max(200*time.Millisecond, r.Duration/10)
		if hit == nil {
			t.Errorf("%s (%s %s): not flagged; the request took %v", atk.Kind, atk.Library, atk.CVE, r.Duration)
			table = append(table, fmt.Sprintf("%-24s %-26s took %7v  NOT FLAGGED", atk.Kind, atk.Library, r.Duration.Round(time.Millisecond)))
			continue
		}
		lat := hit.Time.Sub(r.Start)
		table = append(table, fmt.Sprintf("%-24s %-26s took %7v  flagged after %6v (budget %v) as %s, score %.1f, top %s",
			atk.Kind, atk.Library, r.Duration.Round(time.Millisecond), lat.Round(time.Millisecond), budget.Round(time.Millisecond), hit.Kind, hit.Score, topFeature(*hit)))
		if lat > budget {
			t.Errorf("%s: flagged after %v, budget %v", atk.Kind, lat, budget)
		}
		if hit.Subject.Conn == "" || hit.Suggested == "" {
			t.Errorf("%s: alert without connection or suggestion: %+v", atk.Kind, hit)
		}
	}
	t.Logf("%s attacks (TestSize inputs):\n  %s", name, strings.Join(table, "\n  "))
	for _, f := range []string{"train.csv", "test.csv", "scores.csv", "clusters.csv", "normalisation.csv", "model.json"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("output file %s: %v", f, err)
		}
	}
}

func topFeature(a alert.Alert) string {
	if len(a.Features) == 0 {
		return "-"
	}
	f := a.Features[0]
	return fmt.Sprintf("%s=%.3g (baseline %.3g)", f.Name, f.Value, f.Baseline)
}

// TestAppDoSEnforce: Apache httpd (prefork) with a CPU-heavy Lua route,
// attacked by a lab host that keeps more crafted requests in flight than
// Apache has workers, while a benign lab host keeps using the site.
// Without rampart every worker ends up burning CPU on a crafted request and
// benign requests wait for a free one; with the agent enforcing, each
// crafted request is killed with its worker (Apache starts another) and
// the attacker is blocked at XDP after its third offence. Benign latency
// and availability are measured in both phases of the same run.
func TestAppDoSEnforce(t *testing.T) {
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	bin := buildBinary(t, ctx)
	_, u, pinRoot := labUplink(t, ctx, lab.UplinkOptions{}, "attacker", "benign")
	// Each phase has its own server: crafted requests of the first phase
	// would still be running when the second starts (a request read
	// before the watch began is not the watch's to see).
	newServer := func() *apps.Server {
		return apps.ForTest(t, apps.Apache, apps.Options{Addr: u.Server.String() + ":0", Workers: 16})
	}
	srv := newServer()
	atk, err := srv.Attack("lua-expensive-loop")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("respond:\n  mode: enforce\n  max-per-second: {kill: 50}\n  rules:\n    - {kind: \"request-*\", action: suggested, duration: 60s}\n"), 0o600)
	a := startRealAgent(t, ctx, bin, filepath.Join(dir, "api.sock"), "--no-default", "--config", cfg,
		"--firewall", u.Root.BIface, "--pin-root", pinRoot, "--audit-file", filepath.Join(dir, "audit.jsonl"))

	benignOpts := apps.LoadOptions{Concurrency: 4, Rate: 200, Seed: 7, Timeout: 5 * time.Second, Dial: apps.Dialer(u.Clients[1])}
	attack := func(d time.Duration) []apps.AttackResult {
		actx, stop := context.WithTimeout(ctx, d)
		defer stop()
		var all []apps.AttackResult
		for actx.Err() == nil {
			res, _ := srv.RunAttack(actx, atk.Kind, apps.AttackOptions{Count: 20, Concurrency: 20, Size: atk.FullSize, Timeout: 20 * time.Second, Dial: apps.Dialer(u.Clients[0])})
			if len(res) > 0 && res[len(res)-1].Duration < 100*time.Millisecond {
				time.Sleep(100 * time.Millisecond) // refused (blocked): do not spin
			}
			all = append(all, res...)
		}
		return all
	}
	phase := func(name string) apps.Stats {
		load := srv.StartLoad(ctx, benignOpts)
		time.Sleep(2 * time.Second)
		from := time.Now()
		res := attack(20 * time.Second)
		to := time.Now()
		st := load.Window(from, to)
		load.Stop()
		ok := 0
		for _, r := range res {
			if r.Status == 200 {
				ok++
			}
		}
		down := 0
		for _, s := range st.PerSecond {
			if s.Availability < 0.5 {
				down++
			}
		}
		t.Logf("%s: crafted requests sent %d, answered %d; benign %d requests, availability %.3f, p50 %v p99 %v max %v, %d s below 50%% availability",
			name, len(res), ok, st.Count, st.Availability, st.P50.Round(time.Microsecond), st.P99.Round(time.Millisecond), st.Max.Round(time.Millisecond), down)
		return st
	}

	before := phase("no rampart")
	srv.Close()
	srv = newServer()

	a.cli(ctx, "app", "watch", "--pid", strconv.Itoa(srv.MainPID), "--tree", "--name", "web", "--train", "15s", "--min-train", "1000")
	load := srv.StartLoad(ctx, benignOpts)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		if info := watchInfo(t, ctx, a, "web"); info.Detect != nil && info.Detect.Phase == "detecting" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still training after 2 min")
		}
	}
	load.Stop()
	tEnforce := time.Now()
	after := phase("rampart enforcing")

	ds, err := clientFor(a.sock).Audit(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	kills, blocks := 0, 0
	for _, d := range ds {
		if d.Time.Before(tEnforce) {
			continue
		}
		if d.Outcome != "applied" {
			if d.Outcome != "extended" && d.Action != "log" {
				t.Logf("decision: %s %s %s: %s", d.Action, d.Outcome, d.Target, d.Detail)
			}
			continue
		}
		switch d.Action {
		case "kill":
			kills++
		case "block":
			blocks++
			t.Logf("block: %s", d.Target)
		}
	}
	t.Logf("enforcing: %d workers killed, %d blocks; benign p99 %v -> %v, availability %.3f -> %.3f",
		kills, blocks, before.P99.Round(time.Millisecond), after.P99.Round(time.Millisecond), before.Availability, after.Availability)
	if kills == 0 || blocks == 0 {
		t.Errorf("expected kills and a block of the attacker, got %d and %d", kills, blocks)
	}
	if after.Availability < 0.99 {
		t.Errorf("benign availability %.3f under attack with rampart enforcing, want >= 0.99", after.Availability)
	}
	if after.P99 >= before.P99 {
		t.Errorf("benign p99 %v with rampart, %v without", after.P99, before.P99)
	}
}
