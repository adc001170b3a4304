package firewall

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/bpftest"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/probes"
)

const (
	xdpDrop = 1
	xdpPass = 2
	tcShot  = 2
	tcNext  = 0xffffffff // TC_ACT_UNSPEC
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newManager(t testing.TB, pinRoot string) *probe.Manager {
	t.Helper()
	bpftest.Require(t)
	m, err := probe.NewManager(probe.ManagerOptions{Logger: quiet(), Builtin: probes.Lookup, PinRoot: pinRoot})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// detached starts a firewall whose programs run only through TestRun.
func detached(t testing.TB) (*Firewall, *probe.Manager) {
	t.Helper()
	m := newManager(t, t.TempDir())
	f, err := Start(context.Background(), Options{Manager: m, Detached: true, Logger: quiet()})
	bpftest.CheckLoad(t, err)
	t.Cleanup(func() { f.Close(false) })
	return f, m
}

var (
	a4 = netip.MustParseAddr("198.51.100.7")
	b4 = netip.MustParseAddr("192.0.2.1")
	a6 = netip.MustParseAddr("2001:db8:1::7")
	b6 = netip.MustParseAddr("2001:db8:2::1")
)

func tcpFlags(sport, dport uint16, flags uint8) []byte {
	b := bpftest.TCP(sport, dport, nil)
	b[13] = flags
	return b
}

// frame builds an Ethernet frame from src to dst with the L4 bytes.
func frame(src, dst netip.Addr, proto uint8, l4 []byte) []byte {
	if src.Is4() {
		return bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv4(proto, src, dst, l4))
	}
	return bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(proto, src, dst, l4))
}

func run(t *testing.T, m *probe.Manager, prog string, pkt []byte) uint32 {
	t.Helper()
	rc, err := m.TestRun(ProbeName, prog, pkt, 1)
	if err != nil {
		t.Fatalf("TestRun %s: %v", prog, err)
	}
	return rc
}

func mustApply(t *testing.T, f *Firewall, ops ...Op) {
	t.Helper()
	if err := f.Apply(ops); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func appendRule(r Rule) Op { return Op{Op: "append", Rule: r} }

// TestMatchFields checks each match field and action on crafted IPv4 and
// IPv6 packets through BPF_PROG_TEST_RUN: a packet that matches a rule
// gets its action, one that differs in just that field passes.
func TestMatchFields(t *testing.T) {
	f, m := detached(t)
	type pkt struct {
		name string
		data []byte
		want uint32
	}
	for _, fam := range []struct {
		name         string
		a, b         netip.Addr
		other        netip.Addr
		prefix, near string
		icmp         uint8
		icmpType     uint8
	}{
		{"ipv4", a4, b4, netip.MustParseAddr("198.51.101.7"), "198.51.100.0/24", "198.51.100.0/25", bpftest.ProtoICMP, 8},
		{"ipv6", a6, b6, netip.MustParseAddr("2001:db8:9::7"), "2001:db8:1::/48", "2001:db8:1::/64", bpftest.ProtoICMPv6, 128},
	} {
		icmpName := "icmp"
		if fam.name == "ipv6" {
			icmpName = "icmpv6"
		}
		cases := []struct {
			name string
			rule Rule
			pkts []pkt
		}{
			{"src prefix", Rule{Src: fam.prefix, Action: "drop"}, []pkt{
				{"inside", frame(fam.a, fam.b, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil)), xdpDrop},
				{"outside", frame(fam.other, fam.b, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil)), xdpPass},
			}},
			{"src address", Rule{Src: fam.a.String(), Action: "drop"}, []pkt{
				{"it", frame(fam.a, fam.b, bpftest.ProtoTCP, tcpFlags(1, 2, 0x10)), xdpDrop},
				{"neighbour", frame(fam.a.Next(), fam.b, bpftest.ProtoTCP, tcpFlags(1, 2, 0x10)), xdpPass},
			}},
			{"dst prefix", Rule{Dst: fam.b.String(), Action: "drop"}, []pkt{
				{"to it", frame(fam.a, fam.b, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil)), xdpDrop},
				{"to another", frame(fam.a, fam.b.Next(), bpftest.ProtoUDP, bpftest.UDP(1, 2, nil)), xdpPass},
			}},
			{"proto", Rule{Src: fam.prefix, Proto: "udp", Action: "drop"}, []pkt{
				{"udp", frame(fam.a, fam.b, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil)), xdpDrop},
				{"tcp", frame(fam.a, fam.b, bpftest.ProtoTCP, tcpFlags(1, 2, 0x10)), xdpPass},
			}},
			{"icmp", Rule{Proto: icmpName, Src: fam.prefix, Action: "drop"}, []pkt{
				{"echo", frame(fam.a, fam.b, fam.icmp, bpftest.ICMPEcho(fam.icmpType, nil)), xdpDrop},
				{"udp", frame(fam.a, fam.b, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil)), xdpPass},
			}},
			{"dport range", Rule{Src: fam.prefix, Proto: "tcp", Dport: "1000-2000", Action: "drop"}, []pkt{
				{"1000", frame(fam.a, fam.b, bpftest.ProtoTCP, tcpFlags(5, 1000, 0x10)), xdpDrop},
				{"2000", frame(fam.a, fam.b, bpftest.ProtoTCP, tcpFlags(5, 2000, 0x10)), xdpDrop},
				{"2001", frame(fam.a, fam.b, bpftest.ProtoTCP, tcpFlags(5, 2001, 0x10)), xdpPass},
				{"999", frame(fam.a, fam.b, bpftest.ProtoTCP, tcpFlags(5, 999, 0x10)), xdpPass},
			}},
			{"sport", Rule{Src: fam.prefix, Proto: "udp", Sport: "53", Action: "drop"}, []pkt{
				{"53", frame(fam.a, fam.b, bpftest.ProtoUDP, bpftest.UDP(53, 4000, nil)), xdpDrop},
				{"54", frame(fam.a, fam.b, bpftest.ProtoUDP, bpftest.UDP(54, 4000, nil)), xdpPass},
			}},
			{"tcp flags", Rule{Src: fam.prefix, Proto: "tcp", TCPFlags: "syn,!ack", Action: "drop"}, []pkt{
				{"syn", frame(fam.a, fam.b, bpftest.ProtoTCP, tcpFlags(5, 80, 0x02)), xdpDrop},
				{"syn-ack", frame(fam.a, fam.b, bpftest.ProtoTCP, tcpFlags(5, 80, 0x12)), xdpPass},
				{"ack", frame(fam.a, fam.b, bpftest.ProtoTCP, tcpFlags(5, 80, 0x10)), xdpPass},
			}},
			{"pass beats a shorter drop", Rule{Src: fam.near, Action: "pass"}, nil},
			{"family-wide", Rule{Family: fam.name, Proto: "udp", Dport: "9", Action: "drop"}, []pkt{
				{"udp 9", frame(fam.other, fam.b, bpftest.ProtoUDP, bpftest.UDP(1, 9, nil)), xdpDrop},
				{"udp 10", frame(fam.other, fam.b, bpftest.ProtoUDP, bpftest.UDP(1, 10, nil)), xdpPass},
			}},
		}
		for _, c := range cases {
			t.Run(fam.name+"/"+c.name, func(t *testing.T) {
				if _, err := f.Flush(); err != nil {
					t.Fatal(err)
				}
				mustApply(t, f, appendRule(c.rule))
				if c.name == "pass beats a shorter drop" {
					// A longer prefix is more specific: its pass wins over
					// the drop of the covering prefix.
					mustApply(t, f, appendRule(Rule{Src: fam.prefix, Action: "drop"}))
					c.pkts = []pkt{
						{"in the /near pass", frame(fam.a, fam.b, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil)), xdpPass},
					}
					out := fam.a
					for i := 0; i < 200 && netip.MustParsePrefix(fam.near).Contains(out); i++ {
						// step out of the near prefix, staying in the wider one
						b := out.AsSlice()
						if fam.name == "ipv4" {
							b[3] |= 0x80
						} else {
							b[6] |= 0x80
						}
						out, _ = netip.AddrFromSlice(b)
					}
					c.pkts = append(c.pkts, pkt{"in the wider drop only", frame(out, fam.b, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil)), xdpDrop})
				}
				for _, p := range c.pkts {
					if got := run(t, m, "fw_xdp", p.data); got != p.want {
						t.Errorf("%s: XDP verdict %d, want %d (rule %s)", p.name, got, p.want, describe(c.rule))
					}
				}
			})
		}
	}
}

// TestRuleOrderAndCounters: the first matching rule of the list decides
// among rules of the same prefix, and only it counts the packet.
func TestRuleOrderAndCounters(t *testing.T) {
	f, m := detached(t)
	mustApply(t, f,
		appendRule(Rule{Src: "198.51.100.0/24", Proto: "tcp", Dport: "22", Action: "pass", Description: "ssh"}),
		appendRule(Rule{Src: "198.51.100.0/24", Action: "drop"}),
	)
	ssh := frame(a4, b4, bpftest.ProtoTCP, tcpFlags(5, 22, 0x10))
	web := frame(a4, b4, bpftest.ProtoTCP, tcpFlags(5, 80, 0x10))
	for i := 0; i < 3; i++ {
		if got := run(t, m, "fw_xdp", ssh); got != xdpPass {
			t.Fatalf("ssh: %d, want pass", got)
		}
	}
	if got := run(t, m, "fw_xdp", web); got != xdpDrop {
		t.Fatalf("web: %d, want drop", got)
	}
	rules, err := f.Rules()
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 || rules[0].Packets != 3 || rules[1].Packets != 1 {
		t.Fatalf("counters: %+v", rules)
	}
	if rules[0].Bytes != uint64(3*len(ssh)) || rules[1].Bytes != uint64(len(web)) {
		t.Errorf("bytes: %d, %d; want %d, %d", rules[0].Bytes, rules[1].Bytes, 3*len(ssh), len(web))
	}
	// Insert a drop for port 22 at the front: it now wins.
	mustApply(t, f, Op{Op: "insert", ID: 1, Rule: Rule{Src: "198.51.100.0/24", Proto: "tcp", Dport: "22", Action: "drop"}})
	if got := run(t, m, "fw_xdp", ssh); got != xdpDrop {
		t.Fatalf("ssh after insert at 1: %d, want drop", got)
	}
	rules, _ = f.Rules()
	if rules[1].Description != "ssh" || rules[1].Packets != 3 {
		t.Errorf("the ssh rule moved to id 2 with its counters: %+v", rules[1])
	}
}

// TestEgress: egress rules key on the destination and run in the TC
// program; TC_ACT_UNSPEC lets the packet on to later programs.
func TestEgress(t *testing.T) {
	f, m := detached(t)
	mustApply(t, f, appendRule(Rule{Direction: "egress", Dst: "192.0.2.0/24", Proto: "udp", Action: "drop"}))
	if got := run(t, m, "fw_tc_egress", frame(a4, b4, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil))); got != tcShot {
		t.Errorf("egress udp to 192.0.2.1: %d, want TC_ACT_SHOT", got)
	}
	if got := run(t, m, "fw_tc_egress", frame(b4, a4, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil))); got != tcNext {
		t.Errorf("egress udp to 198.51.100.7: %d, want TC_ACT_UNSPEC", got)
	}
	// The egress rule does not apply on ingress, from the same prefix.
	if got := run(t, m, "fw_xdp", frame(b4, a4, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil))); got != xdpPass {
		t.Errorf("ingress from 192.0.2.1: %d, want pass", got)
	}
}

// TestAllowlist: an allowlisted source passes whatever the rules say.
func TestAllowlist(t *testing.T) {
	f, m := detached(t)
	mustApply(t, f, appendRule(Rule{Family: "ipv4", Action: "drop"}), appendRule(Rule{Family: "ipv6", Action: "drop"}))
	if err := f.Allow("198.51.100.0/28", a6.String()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		src  netip.Addr
		want uint32
	}{{a4, xdpPass}, {netip.MustParseAddr("198.51.100.77"), xdpDrop}, {a6, xdpPass}, {a6.Next(), xdpDrop}} {
		dst := b4
		if c.src.Is6() {
			dst = b6
		}
		if got := run(t, m, "fw_xdp", frame(c.src, dst, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil))); got != c.want {
			t.Errorf("from %s: %d, want %d", c.src, got, c.want)
		}
	}
	if !f.Allowed(a4) || f.Allowed(b4) {
		t.Error("Allowed disagrees with the allowlist")
	}
	st, err := f.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st["allowlisted"] != 2 || st["dropped"] != 2 {
		t.Errorf("stats: %v", st)
	}
}

// TestRateLimit: a token bucket per source lets burst packets through at
// once, then drops; another source has its own bucket.
func TestRateLimit(t *testing.T) {
	f, m := detached(t)
	mustApply(t, f, appendRule(Rule{Src: "198.51.100.0/24", Action: "ratelimit", Rate: 1, Burst: 5}))
	pkt := frame(a4, b4, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil))
	passed := 0
	for i := 0; i < 20; i++ {
		if run(t, m, "fw_xdp", pkt) == xdpPass {
			passed++
		}
	}
	// 5 of burst, plus at most one refilled token at 1/s.
	if passed < 5 || passed > 6 {
		t.Errorf("%d of 20 passed, want 5 (burst) or 6", passed)
	}
	if got := run(t, m, "fw_xdp", frame(a4.Next(), b4, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil))); got != xdpPass {
		t.Errorf("another source: %d, want pass (its own bucket)", got)
	}
	st, _ := f.Stats()
	if st["ratelimited"] != uint64(20-passed) {
		t.Errorf("ratelimited = %d, want %d", st["ratelimited"], 20-passed)
	}
}

// TestMalformed: frames the parser cannot read are passed and counted; a
// packet with no L4 header still matches rules on addresses, but never a
// rule that needs ports.
func TestMalformed(t *testing.T) {
	f, m := detached(t)
	mustApply(t, f,
		appendRule(Rule{Src: "198.51.100.0/24", Proto: "udp", Dport: "53", Action: "drop"}),
		appendRule(Rule{Src: "2001:db8:1::/48", Proto: "tcp", Dport: "80", Action: "drop"}),
	)
	good := frame(a4, b4, bpftest.ProtoUDP, bpftest.UDP(1, 53, nil))
	if got := run(t, m, "fw_xdp", good); got != xdpDrop {
		t.Fatalf("the intact packet: %d, want drop", got)
	}
	ip := bpftest.IPv4(bpftest.ProtoUDP, a4, b4, bpftest.UDP(1, 53, nil))
	badVersion := append([]byte(nil), ip...)
	badVersion[0] = 0x55
	badIHL := append([]byte(nil), ip...)
	badIHL[0] = 0x44
	cases := map[string][]byte{
		"short ethernet":     good[:10],
		"truncated ip":       good[:14+12],
		"ip version 5":       bpftest.Eth(bpftest.EtherTypeIPv4, badVersion),
		"ihl 4":              bpftest.Eth(bpftest.EtherTypeIPv4, badIHL),
		"truncated udp":      good[:14+20+4],
		"non-first fragment": bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv4Frag(bpftest.ProtoUDP, a4, b4, 64, false, bpftest.UDP(1, 53, nil))),
		"truncated ipv6":     frame(a6, b6, bpftest.ProtoTCP, tcpFlags(1, 80, 2))[:14+30],
		"ipv6 short tcp":     frame(a6, b6, bpftest.ProtoTCP, tcpFlags(1, 80, 2))[:14+40+10],
		"ipv6 fragment":      bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(bpftest.ProtoFragment, a6, b6, bpftest.Fragment(bpftest.ProtoTCP, 8, false, tcpFlags(1, 80, 2)))),
		"arp":                bpftest.Eth(bpftest.EtherTypeARP, make([]byte, 28)),
		"garbage ethertype":  bpftest.Eth(0x1234, make([]byte, 40)),
	}
	for name, data := range cases {
		if len(data) < 14 {
			// BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet
			// header; the parser's own check is tested by "truncated ip".
			continue
		}
		if got := run(t, m, "fw_xdp", data); got != xdpPass {
			t.Errorf("%s: %d, want pass", name, got)
		}
	}
	// Addresses alone still match: a fragment from a dropped prefix is dropped.
	mustApply(t, f, appendRule(Rule{Src: "198.51.100.0/24", Action: "drop"}))
	if got := run(t, m, "fw_xdp", cases["non-first fragment"]); got != xdpDrop {
		t.Errorf("fragment from a blocked prefix: %d, want drop", got)
	}
	if got := run(t, m, "fw_xdp", cases["truncated ip"]); got != xdpPass {
		t.Errorf("truncated ip header from a blocked prefix: %d, want pass (no address to trust)", got)
	}
	st, _ := f.Stats()
	if st["malformed"] < 5 || st["not_ip"] < 2 {
		t.Errorf("stats %v: want malformed >= 5 (truncated ip twice, bad version, bad ihl, truncated ipv6) and not_ip >= 2", st)
	}
}

// TestVLAN: rules apply behind one or two VLAN tags.
func TestVLAN(t *testing.T) {
	f, m := detached(t)
	mustApply(t, f, appendRule(Rule{Src: a4.String(), Action: "drop"}))
	pkt := bpftest.EthVLAN(10, bpftest.EtherTypeIPv4, bpftest.IPv4(bpftest.ProtoUDP, a4, b4, bpftest.UDP(1, 2, nil)))
	if got := run(t, m, "fw_xdp", pkt); got != xdpDrop {
		t.Errorf("vlan-tagged: %d, want drop", got)
	}
}

// TestExpiry: an expired rule is ignored by the data plane at once, and the
// sweeper removes it.
func TestExpiry(t *testing.T) {
	f, m := detached(t)
	var expired []Rule
	f.opts.OnExpire = func(r Rule) { expired = append(expired, r) }
	mustApply(t, f, appendRule(Rule{Src: a4.String(), Action: "drop", TTL: "300ms"}))
	pkt := frame(a4, b4, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil))
	if got := run(t, m, "fw_xdp", pkt); got != xdpDrop {
		t.Fatalf("before expiry: %d, want drop", got)
	}
	time.Sleep(350 * time.Millisecond)
	if got := run(t, m, "fw_xdp", pkt); got != xdpPass {
		t.Errorf("after expiry, before the sweep: %d, want pass", got)
	}
	f.expire(time.Now())
	rules, _ := f.Rules()
	if len(rules) != 0 || len(expired) != 1 {
		t.Errorf("after the sweep: %d rules, %d expiry callbacks", len(rules), len(expired))
	}
}

// TestManyPrefixes: 10,000 blocked prefixes in one batch, each one dropped,
// and addresses outside them passed.
func TestManyPrefixes(t *testing.T) {
	f, m := detached(t)
	ops := make([]Op, 10000)
	for i := range ops {
		ops[i] = appendRule(Rule{Src: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), Action: "drop"})
	}
	start := time.Now()
	mustApply(t, f, ops...)
	t.Logf("10,000 inserts applied in %v", time.Since(start))
	for _, i := range []int{0, 1, 4999, 9999} {
		src := netip.AddrFrom4([4]byte{10, byte(i / 256), byte(i % 256), 9})
		if got := run(t, m, "fw_xdp", frame(src, b4, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil))); got != xdpDrop {
			t.Errorf("from %s: %d, want drop", src, got)
		}
	}
	if got := run(t, m, "fw_xdp", frame(netip.MustParseAddr("10.40.0.1"), b4, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil))); got != xdpPass {
		t.Errorf("outside the blocklist: %d, want pass", got)
	}
	n, err := f.Flush()
	if err != nil || n != 10000 {
		t.Fatalf("flush: %d, %v", n, err)
	}
	if got := run(t, m, "fw_xdp", frame(netip.MustParseAddr("10.0.0.9"), b4, bpftest.ProtoUDP, bpftest.UDP(1, 2, nil))); got != xdpPass {
		t.Errorf("after flush: %d, want pass", got)
	}
	if !strings.Contains(describe(Rule{Action: "drop", Src: "10.0.0.0/8"}), "src 10.0.0.0/8") {
		t.Error("describe")
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
