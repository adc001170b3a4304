package firewall

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/bpftest"
)

func srcs(rules []Rule) string {
	var s []string
	for _, r := range rules {
		s = append(s, fmt.Sprintf("%d:%s:%s", r.ID, r.Src, r.Action))
	}
	return strings.Join(s, " ")
}

// TestBatchMixed: insert, append, update and delete (by id and by match) in
// one batch, each seeing the list as the operations before it left it.
func TestBatchMixed(t *testing.T) {
	f, m := detached(t)
	mustApply(t, f,
		appendRule(Rule{Src: "10.0.0.1", Action: "drop"}),
		appendRule(Rule{Src: "10.0.0.2", Action: "drop"}),
		appendRule(Rule{Src: "10.0.0.3", Action: "drop"}),
	)
	mustApply(t, f,
		Op{Op: "insert", ID: 1, Rule: Rule{Src: "10.0.0.9", Action: "pass"}}, // 9 1 2 3
		Op{Op: "append", Rule: Rule{Src: "10.0.0.4", Action: "drop"}},        // 9 1 2 3 4
		Op{Op: "update", ID: 3, Rule: Rule{Src: "10.0.0.2", Action: "pass"}}, // 9 1 2p 3 4
		Op{Op: "delete", ID: 2}, // 9 2p 3 4
		Op{Op: "delete", Rule: Rule{Src: "10.0.0.3", Action: "drop"}},                   // 9 2p 4
		Op{Op: "insert", ID: 4, Rule: Rule{Src: "10.0.0.5", Action: "drop", TTL: "1h"}}, // 9 2p 4 5
	)
	rules, err := f.Rules()
	if err != nil {
		t.Fatal(err)
	}
	want := "1:10.0.0.9:pass 2:10.0.0.2:pass 3:10.0.0.4:drop 4:10.0.0.5:drop"
	if got := srcs(rules); got != want {
		t.Fatalf("rules %s, want %s", got, want)
	}
	if rules[3].Expires.Before(time.Now().Add(59*time.Minute)) || !rules[2].Expires.IsZero() {
		t.Errorf("expiry: %v, %v", rules[2].Expires, rules[3].Expires)
	}
	for _, c := range []struct {
		src  string
		want uint32
	}{{"10.0.0.1", xdpPass}, {"10.0.0.2", xdpPass}, {"10.0.0.3", xdpPass}, {"10.0.0.4", xdpDrop}, {"10.0.0.5", xdpDrop}, {"10.0.0.9", xdpPass}} {
		if got := run(t, m, "fw_xdp", frame(mustAddr(c.src), b4, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil))); got != c.want {
			t.Errorf("from %s: %d, want %d", c.src, got, c.want)
		}
	}
}

// TestBatchInvalidChangesNothing: a batch with one bad operation is refused
// whole, with an error naming that operation, and neither the rule list
// nor the data plane changes.
func TestBatchInvalidChangesNothing(t *testing.T) {
	f, m := detached(t)
	mustApply(t, f, appendRule(Rule{Src: "10.0.0.1", Action: "drop"}), appendRule(Rule{Src: "10.0.0.2", Action: "drop"}))
	before, _ := f.Rules()
	bad := []struct {
		name string
		ops  []Op
		want string
	}{
		{"bad prefix", []Op{appendRule(Rule{Src: "10.0.0.3", Action: "drop"}), appendRule(Rule{Src: "10.0.0.300", Action: "drop"})}, "operation 2 (append)"},
		{"bad id", []Op{{Op: "delete", ID: 1}, {Op: "update", ID: 2, Rule: Rule{Src: "10.0.0.7", Action: "drop"}}}, "operation 2 (update): invalid: id 2: there are 1 rules"},
		{"no match", []Op{{Op: "delete", Rule: Rule{Src: "10.9.9.9", Action: "drop"}}}, "operation 1 (delete): invalid: no rule matches"},
		{"unknown op", []Op{{Op: "replace", ID: 1}}, "unknown operation"},
		{"ports without proto", []Op{appendRule(Rule{Dport: "80", Action: "drop"})}, "ports need proto"},
		{"bad action", []Op{appendRule(Rule{Action: "explode"})}, "action \"explode\""},
		{"ratelimit without rate", []Op{appendRule(Rule{Action: "ratelimit"})}, "ratelimit needs rate"},
		{"mixed families", []Op{appendRule(Rule{Src: "10.0.0.1", Dst: "::1", Action: "drop"})}, "different IP versions"},
		{"bad ttl", []Op{appendRule(Rule{Src: "10.0.0.1", Action: "drop", TTL: "-5s"})}, "ttl"},
		{"insert past the end", []Op{{Op: "insert", ID: 9, Rule: Rule{Action: "drop"}}}, "insert takes an id from 1 to 3"},
		{"too many candidates", func() []Op {
			var ops []Op
			for i := 0; i < 17; i++ {
				ops = append(ops, appendRule(Rule{Src: "10.1.0.0/16", Proto: "udp", Dport: fmt.Sprint(i + 1), Action: "drop"}))
			}
			return ops
		}(), "at most 16"},
		{"too many prefix lengths", func() []Op {
			var ops []Op
			for i := 0; i < 17; i++ {
				ops = append(ops, appendRule(Rule{Src: fmt.Sprintf("%d.0.0.0/%d", 20+i, 8+i), Action: "drop"}))
			}
			return ops
		}(), "18 prefix lengths for ingress IPv4"}, // 8-24 and the /32s already there
	}
	for _, c := range bad {
		err := f.Apply(c.ops)
		var be *BatchError
		if !errors.As(err, &be) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error %v, want a BatchError marked invalid", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "nothing was applied") {
			t.Errorf("%s: %q does not say %q and that nothing was applied", c.name, err, c.want)
		}
	}
	after, _ := f.Rules()
	if srcs(after) != srcs(before) {
		t.Fatalf("rules changed: %s -> %s", srcs(before), srcs(after))
	}
	for _, c := range []struct {
		src  string
		want uint32
	}{{"10.0.0.1", xdpDrop}, {"10.0.0.2", xdpDrop}, {"10.0.0.3", xdpPass}, {"10.1.0.1", xdpPass}} {
		if got := run(t, m, "fw_xdp", frame(mustAddr(c.src), b4, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil))); got != c.want {
			t.Errorf("from %s: %d, want %d", c.src, got, c.want)
		}
	}
}

// TestRuleRoundTrip: what the kernel stores renders back to the rule given.
func TestRuleRoundTrip(t *testing.T) {
	now := time.Now()
	for _, r := range []Rule{
		{Src: "198.51.100.0/24", Dst: "192.0.2.1", Proto: "tcp", Dport: "80-90", Sport: "1024", TCPFlags: "syn,!ack", Action: "drop", Description: "syn flood"},
		{Direction: "egress", Dst: "2001:db8::/32", Proto: "udp", Action: "ratelimit", Rate: 100, Burst: 200},
		{Family: "ipv6", Proto: "icmpv6", Action: "pass"},
		{Action: "drop"},
	} {
		n, err := normalize(r, now)
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		k := toKernel(n, 1, monoOffset())
		back := fromKernel(&k).rule()
		r.Created, back.Created = time.Time{}, time.Time{}
		if r.Direction == "" {
			r.Direction = Ingress
		}
		if r.Family == "" && (r.Src != "" || r.Dst != "") {
			r.Family = map[bool]string{true: "ipv4", false: "ipv6"}[!strings.Contains(r.Src+r.Dst, ":")]
		}
		if fmt.Sprintf("%+v", back) != fmt.Sprintf("%+v", r) {
			t.Errorf("round trip:\n got %+v\nwant %+v", back, r)
		}
	}
}
