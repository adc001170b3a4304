package respond

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/internal/firewall"
)

// fakeFirewall keeps rules in memory with the real batch semantics' ids.
type fakeFirewall struct {
	rules   []firewall.Rule
	batches [][]firewall.Op
	extends int
	allowed []netip.Prefix
	fail    error
	now     func() time.Time
}

func (f *fakeFirewall) Extend(match func(firewall.Rule) bool, exp time.Time) ([]firewall.Rule, error) {
	var out []firewall.Rule
	for i := range f.rules {
		if match(f.rules[i]) {
			f.rules[i].Expires = exp
			out = append(out, f.rules[i])
		}
	}
	f.extends++
	return out, nil
}

func (f *fakeFirewall) Apply(ops []firewall.Op) error {
	if f.fail != nil {
		return f.fail
	}
	f.batches = append(f.batches, ops)
	for _, op := range ops {
		switch op.Op {
		case "append":
			r := op.Rule
			if d, err := time.ParseDuration(r.TTL); err == nil && f.now != nil {
				r.Expires, r.TTL = f.now().Add(d), ""
			}
			f.rules = append(f.rules, r)
		case "update":
			f.rules[op.ID-1] = op.Rule
		}
	}
	for i := range f.rules {
		f.rules[i].ID = i + 1
	}
	return nil
}

func (f *fakeFirewall) Rules() ([]firewall.Rule, error) {
	return append([]firewall.Rule(nil), f.rules...), nil
}

func (f *fakeFirewall) Allowed(a netip.Addr) bool {
	for _, p := range f.allowed {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newResponder(t *testing.T, p Policy, fw Firewall) (*Responder, *clock) {
	t.Helper()
	c := &clock{time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	if p.AuditFile == "" {
		p.AuditFile = filepath.Join(t.TempDir(), "audit.jsonl")
	}
	r, err := New(Options{Policy: p, Firewall: fw, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: c.now,
		Own: func() []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, c
}

func flood(sources ...string) alert.Alert {
	return alert.Alert{Detector: "threshold", Kind: "udp-flood", Score: 9, Thresh: 3, Suggested: ActBlock, Subject: alert.Subject{Sources: sources}}
}

func outcomes(ds []Decision) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.Target+"="+d.Outcome)
	}
	return strings.Join(s, " ")
}

func TestObserveChangesNothing(t *testing.T) {
	fw := &fakeFirewall{}
	r, _ := newResponder(t, Policy{}, fw)
	ds := r.Handle(flood("198.51.100.7"))
	if got := outcomes(ds); got != "198.51.100.7=observed" {
		t.Fatalf("decisions %s", got)
	}
	if len(fw.batches) != 0 {
		t.Fatalf("observe mode applied %v", fw.batches)
	}
	if !strings.Contains(ds[0].Detail, "would add: drop src 198.51.100.7 for 10m0s") {
		t.Errorf("detail %q", ds[0].Detail)
	}
}

func TestEnforceBlocksThenExtends(t *testing.T) {
	fw := &fakeFirewall{}
	r, c := newResponder(t, Policy{Mode: Enforce, Rules: []PolicyRule{{Kind: "*-flood", Action: ActBlock, Duration: "2m", PrefixV6: 64}}}, fw)
	ds := r.Handle(flood("198.51.100.7", "2001:db8:1:2::99", "2001:db8:1:2::98"))
	if got := outcomes(ds); got != "198.51.100.7=applied 2001:db8:1:2::/64=applied" {
		t.Fatalf("decisions %s", got)
	}
	if len(fw.batches) != 1 || len(fw.batches[0]) != 2 || fw.batches[0][0].Rule.TTL != "2m0s" || fw.batches[0][0].Rule.Action != "drop" {
		t.Fatalf("batches %+v", fw.batches)
	}
	if !strings.HasPrefix(fw.rules[0].Description, DescriptionPrefix+"udp-flood ") {
		t.Errorf("description %q", fw.rules[0].Description)
	}
	c.t = c.t.Add(time.Minute)
	ds = r.Handle(flood("198.51.100.7"))
	if got := outcomes(ds); got != "198.51.100.7=extended" {
		t.Fatalf("second alert: %s", got)
	}
	if len(fw.rules) != 2 || len(fw.batches) != 1 || fw.extends != 1 || !fw.rules[0].Expires.Equal(c.t.Add(2*time.Minute)) {
		t.Fatalf("the extension should move rule 1's expiry, adding nothing: %+v", fw.rules)
	}
	if !ds[0].Expires.Equal(c.t.Add(2 * time.Minute)) {
		t.Errorf("expires %v", ds[0].Expires)
	}
}

func TestAllowlistNeverBlocked(t *testing.T) {
	fw := &fakeFirewall{allowed: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}
	r, _ := newResponder(t, Policy{Mode: Enforce, Allowlist: []string{"10.1.0.0/16"}, Rules: []PolicyRule{{Action: ActBlock, PrefixV4: 24}}}, fw)
	r.AllowPeer(netip.MustParseAddr("172.16.5.5"))
	ds := r.Handle(flood("192.0.2.77", "10.1.2.3", "172.16.5.9", "203.0.113.9", "198.51.100.1"))
	want := "192.0.2.0/24=allowlisted 10.1.2.0/24=allowlisted 172.16.5.0/24=allowlisted 203.0.113.0/24=allowlisted 198.51.100.0/24=applied"
	if got := outcomes(ds); got != want {
		t.Fatalf("decisions\n got %s\nwant %s", got, want)
	}
	if len(fw.rules) != 1 || fw.rules[0].Src != "198.51.100.0/24" {
		t.Fatalf("rules %+v", fw.rules)
	}
}

func TestRateLimitOfNewBlocks(t *testing.T) {
	fw := &fakeFirewall{}
	r, c := newResponder(t, Policy{Mode: Enforce, MaxPerSecond: map[string]float64{ActBlock: 5}}, fw)
	var srcs []string
	for i := 0; i < 12; i++ {
		srcs = append(srcs, fmt.Sprintf("198.51.100.%d", i+10))
	}
	ds := r.Handle(flood(srcs...))
	n := map[string]int{}
	for _, d := range ds {
		n[d.Outcome]++
	}
	if n[Applied] != 5 || n[RateLimited] != 7 || len(fw.rules) != 5 {
		t.Fatalf("outcomes %v, %d rules", n, len(fw.rules))
	}
	c.t = c.t.Add(time.Second)
	ds = r.Handle(flood(srcs...))
	n = map[string]int{}
	for _, d := range ds {
		n[d.Outcome]++
	}
	// The 5 blocked are extended (free); 5 more tokens a second later.
	if n[Extended] != 5 || n[Applied] != 5 || n[RateLimited] != 2 {
		t.Fatalf("a second later: %v", n)
	}
}

func TestProcessActions(t *testing.T) {
	var signalled []string
	var closed []string
	c := &clock{time.Now()}
	r, err := New(Options{
		Policy: Policy{Mode: Enforce, AuditFile: "-", Rules: []PolicyRule{
			{Kind: "redos", Action: ActKill, Signal: "TERM"},
			{Kind: "slowloris", Action: ActCloseSockets},
		}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: c.now,
		Signal: func(pid int, s syscall.Signal) error {
			signalled = append(signalled, fmt.Sprint(pid, " ", s))
			return nil
		},
		CloseSockets: func(pid int, conn string) (int, error) {
			closed = append(closed, fmt.Sprint(pid, " ", conn))
			return 1, nil
		},
		Own: func() []netip.Prefix { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	d := r.Handle(alert.Alert{Detector: "kmeans", Kind: "redos", Subject: alert.Subject{PID: 4242, Comm: "node"}})
	if d[0].Outcome != Applied || len(signalled) != 1 || signalled[0] != "4242 terminated" {
		t.Fatalf("kill: %+v, %v", d, signalled)
	}
	d = r.Handle(alert.Alert{Detector: "pfa", Kind: "slowloris", Subject: alert.Subject{PID: 777, Conn: "10.0.0.1:5555->10.0.0.2:80"}})
	if d[0].Outcome != Applied || len(closed) != 1 || closed[0] != "777 10.0.0.1:5555->10.0.0.2:80" {
		t.Fatalf("close: %+v, %v", d, closed)
	}
	// Never pid 1, never the agent; the kill rate limit is 1/s.
	for _, c := range []struct {
		pid  int
		want string
	}{{1, Failed}, {os.Getpid(), Allowlisted}, {4243, RateLimited}} {
		d := r.Handle(alert.Alert{Detector: "kmeans", Kind: "redos", Subject: alert.Subject{PID: c.pid}})
		if d[0].Outcome != c.want {
			t.Errorf("pid %d: %s (%s), want %s", c.pid, d[0].Outcome, d[0].Detail, c.want)
		}
	}
	if len(signalled) != 1 {
		t.Errorf("signals: %v", signalled)
	}
}

func TestAuditTrail(t *testing.T) {
	fw := &fakeFirewall{}
	path := filepath.Join(t.TempDir(), "a", "audit.jsonl")
	r, _ := newResponder(t, Policy{Mode: Enforce, AuditFile: path}, fw)
	a := flood("198.51.100.7")
	a.ID = "abcdef0123456789"
	r.Handle(a)
	r.Expired(firewall.Rule{Src: "198.51.100.7", Description: DescriptionPrefix + "udp-flood abcdef01"})
	r.Expired(firewall.Rule{Src: "10.0.0.1", Description: "an operator's rule"})
	r.Close()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []Decision
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var d Decision
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		got = append(got, d)
	}
	if len(got) != 2 || got[0].AlertID != a.ID || got[0].Outcome != Applied || !strings.Contains(got[0].Alert, "udp-flood by threshold: score 9 vs threshold 3") || got[1].Outcome != Expired {
		t.Fatalf("audit %+v", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("audit mode %v", fi.Mode().Perm())
	}
	if tr := r.Trail(10); len(tr) != 2 {
		t.Errorf("trail %d", len(tr))
	}
}

func TestPolicyErrors(t *testing.T) {
	for _, c := range []struct {
		p    Policy
		want string
	}{
		{Policy{Mode: "panic"}, "mode"},
		{Policy{Rules: []PolicyRule{{Action: "nuke"}}}, "action \"nuke\""},
		{Policy{Rules: []PolicyRule{{Action: ActBlock, Duration: "1ms"}}}, "duration"},
		{Policy{Rules: []PolicyRule{{Action: ActBlock, PrefixV4: 4}}}, "prefix lengths"},
		{Policy{Rules: []PolicyRule{{Action: ActKill, Signal: "BOOM"}}}, "signal"},
		{Policy{MaxPerSecond: map[string]float64{"dance": 1}}, "unknown action"},
		{Policy{Rules: []PolicyRule{{Kind: "[", Action: ActLog}}}, "pattern"},
	} {
		if _, err := c.p.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.p, err, c.want)
		}
	}
}

func TestBadAlertRefused(t *testing.T) {
	r, _ := newResponder(t, Policy{Mode: Enforce}, &fakeFirewall{})
	for _, a := range []alert.Alert{{Kind: "x"}, {Detector: "x"}, {Detector: "x", Kind: "y", Subject: alert.Subject{Sources: []string{"nope"}}}} {
		if d := r.Handle(a); d[0].Outcome != Failed {
			t.Errorf("%+v: %+v", a, d)
		}
	}
}

func TestFilterPassesVerifiedAndOwn(t *testing.T) {
	fw := &fakeFirewall{}
	r, c := newResponder(t, Policy{Mode: Enforce, Rules: []PolicyRule{{Kind: "syn-flood", Action: ActFilter, Duration: "1m"}}}, fw)
	fw.now = c.now
	a := alert.Alert{Detector: "threshold", Kind: "syn-flood", Subject: alert.Subject{Dst: "192.0.2.80", Proto: "tcp", Port: 443, TCPFlags: "syn,!ack",
		Verified: []string{"198.51.100.1", "198.51.100.2", "2001:db8::5"}}}
	ds := r.Handle(a)
	if len(ds) != 1 || ds[0].Outcome != Applied || ds[0].Target != "tcp syn,!ack to 192.0.2.80 port 443" {
		t.Fatalf("decisions %+v", ds)
	}
	// Two verified IPv4 clients and the host's own address pass; the
	// IPv6 client is of another family; then the drop.
	var got []string
	for _, fr := range fw.rules {
		got = append(got, fr.Action+" "+fr.Src+">"+fr.Dst+":"+fr.Dport+" "+fr.TCPFlags)
	}
	sorted := append([]string(nil), got[:3]...)
	slices.Sort(sorted)
	want := []string{"pass 192.0.2.1>192.0.2.80:443 ", "pass 198.51.100.1>192.0.2.80:443 ", "pass 198.51.100.2>192.0.2.80:443 "}
	if strings.Join(sorted, "|") != strings.Join(want, "|") || got[3] != "drop >192.0.2.80:443 syn,!ack" || len(got) != 4 {
		t.Fatalf("rules %q", got)
	}
	// The same attack again: the filter is extended, not duplicated.
	c.t = c.t.Add(30 * time.Second)
	ds = r.Handle(a)
	if ds[0].Outcome != Extended || len(fw.rules) != 4 || !fw.rules[0].Expires.Equal(c.t.Add(time.Minute)) {
		t.Fatalf("second alert: %+v, %d rules", ds, len(fw.rules))
	}
	// No destination: refused.
	if d := r.Handle(alert.Alert{Detector: "x", Kind: "syn-flood"}); d[0].Outcome != Failed {
		t.Errorf("filter without a destination: %+v", d)
	}
}

func TestRecheckExtendsWhileDropping(t *testing.T) {
	fw := &fakeFirewall{}
	r, c := newResponder(t, Policy{Mode: Enforce, KeepPPS: 100, Rules: []PolicyRule{{Action: ActBlock, Duration: "10s"}}}, fw)
	fw.now = c.now
	r.Handle(flood("198.51.100.7"))
	exp0 := fw.rules[0].Expires
	r.Recheck(c.t) // first look: counters noted
	// 6 s later the rule has dropped 6000 packets (1000/s) and 4 s are left.
	c.t = c.t.Add(6 * time.Second)
	fw.rules[0].Packets = 6000
	r.Recheck(c.t)
	if !fw.rules[0].Expires.Equal(c.t.Add(10 * time.Second)) {
		t.Fatalf("still attacked, not extended: expires %v (was %v)", fw.rules[0].Expires, exp0)
	}
	// The attack stops: the counter stands still, no more extensions.
	c.t = c.t.Add(6 * time.Second)
	r.Recheck(c.t)
	if !fw.rules[0].Expires.Equal(c.t.Add(4 * time.Second)) {
		t.Fatalf("quiet rule was extended: expires %v", fw.rules[0].Expires)
	}
	tr := r.Trail(0)
	if last := tr[len(tr)-1]; last.Action != "recheck" || last.Outcome != Extended || !strings.Contains(last.Detail, "still dropping 1000 packets/s") {
		t.Errorf("audit %+v", last)
	}
}
