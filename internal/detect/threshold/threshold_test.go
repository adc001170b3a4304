package threshold

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/probes/hoststat"
)

// traffic builds cumulative snapshots the way hoststat keeps them.
type traffic struct {
	hosts   map[netip.Addr]hoststat.Host
	sources map[hoststat.SourceKey]hoststat.Source
}

func newTraffic() *traffic {
	return &traffic{map[netip.Addr]hoststat.Host{}, map[hoststat.SourceKey]hoststat.Source{}}
}

// add counts n packets of proto from src to dst (flags for TCP: "syn",
// "est" for established data).
func (t *traffic) add(src, dst string, proto uint8, n uint64, kind string, sport, dport uint16) {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	h := t.hosts[d]
	h.Packets += n
	h.Bytes += n * 100
	k := hoststat.SourceKey{Dst: d, Src: s, Proto: proto}
	so, seen := t.sources[k]
	if !seen {
		h.NewPairs++
	}
	so.Packets += n
	so.Dport, so.Sport = dport, sport
	switch proto {
	case 6:
		h.TcpPackets += n
		switch kind {
		case "syn":
			h.Syn += n
			so.Syn += n
		case "est":
			so.Established += n
		}
	case 17:
		h.UdpPackets += n
		if sport == 53 {
			h.AmpDns += n
		}
	case 1, 58:
		h.IcmpPackets += n
	}
	t.hosts[d] = h
	t.sources[k] = so
}

// snap copies the maps (the detector keeps the previous ones).
func (t *traffic) snap() (map[netip.Addr]hoststat.Host, map[hoststat.SourceKey]hoststat.Source) {
	h := make(map[netip.Addr]hoststat.Host, len(t.hosts))
	for k, v := range t.hosts {
		h[k] = v
	}
	s := make(map[hoststat.SourceKey]hoststat.Source, len(t.sources))
	for k, v := range t.sources {
		s[k] = v
	}
	return h, s
}

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func step(d *Detector, tr *traffic, i int) []string {
	h, s := tr.snap()
	var out []string
	for _, a := range d.Observe(t0.Add(time.Duration(i)*time.Second), h, s) {
		out = append(out, a.Kind+" "+a.Subject.Dst+" "+a.Suggested)
	}
	return out
}

func TestUDPFloodFromFewSourcesIsBlocked(t *testing.T) {
	d, _ := New(Config{})
	tr := newTraffic()
	tr.add("198.51.100.9", "192.0.2.1", 6, 50, "est", 40000, 80)
	step(d, tr, 0)
	tr.add("198.51.100.7", "192.0.2.1", 17, 40000, "", 5000, 9)
	tr.add("198.51.100.8", "192.0.2.1", 17, 30000, "", 5000, 9)
	tr.add("198.51.100.9", "192.0.2.1", 6, 50, "est", 40000, 80)
	h, s := tr.snap()
	as := d.Observe(t0.Add(time.Second), h, s)
	if len(as) != 1 {
		t.Fatalf("alerts %+v", as)
	}
	a := as[0]
	if a.Kind != KindUDP || a.Suggested != "block" || a.Subject.Proto != "udp" || a.Subject.Port != 9 {
		t.Fatalf("alert %+v", a)
	}
	if strings.Join(a.Subject.Sources, ",") != "198.51.100.7,198.51.100.8" {
		t.Errorf("sources %v", a.Subject.Sources)
	}
	if a.Score != 70000 || a.Thresh != DefaultLimits.UDPPPS {
		t.Errorf("score %v threshold %v", a.Score, a.Thresh)
	}
	if !strings.Contains(a.Summary, "udp packets/s 70000 > 20000 to 192.0.2.1; the top 2 sources send 100% of it") {
		t.Errorf("summary %q", a.Summary)
	}
	if len(a.Samples) != 2 || !strings.Contains(a.Samples[0], "198.51.100.7 -> 192.0.2.1 proto 17 dport 9: 40000 packets/s") {
		t.Errorf("samples %v", a.Samples)
	}
	// 70000 packets/s is under the all-packets limit: one feature.
	if len(a.Features) != 1 || a.Features[0].Name != "udp packets/s" || a.Features[0].Contribution != 3.5 {
		t.Errorf("features %+v", a.Features)
	}
}

func TestRandomSourceSYNFloodIsFiltered(t *testing.T) {
	d, _ := New(Config{})
	tr := newTraffic()
	// A real client completes connections before the attack.
	tr.add("203.0.113.5", "2001:db8::1", 6, 10, "est", 40000, 443)
	step(d, tr, 0)
	for i := 0; i < 3000; i++ {
		tr.add(fmt.Sprintf("2001:db8:bad:%x::1", i), "2001:db8::1", 6, 3, "syn", uint16(1000+i), 443)
	}
	tr.add("203.0.113.5", "2001:db8::1", 6, 10, "est", 40000, 443)
	h, s := tr.snap()
	as := d.Observe(t0.Add(time.Second), h, s)
	if len(as) != 1 {
		t.Fatalf("alerts %+v", as)
	}
	a := as[0]
	if a.Kind != KindSYN || a.Suggested != "filter" || a.Subject.TCPFlags != "syn,!ack" || a.Subject.Port != 443 || a.Subject.Proto != "tcp" {
		t.Fatalf("alert %+v", a)
	}
	if strings.Join(a.Subject.Verified, ",") != "203.0.113.5" {
		t.Errorf("verified %v", a.Subject.Verified)
	}
	if len(a.Subject.Sources) != 0 {
		t.Errorf("a spread attack names no sources to block: %v", a.Subject.Sources)
	}
	if !strings.Contains(a.Summary, "tcp syn/s 9000 > 5000") || !strings.Contains(a.Summary, "passing 1 verified clients") {
		t.Errorf("summary %q", a.Summary)
	}
}

func TestQuietTrafficAndBaseline(t *testing.T) {
	d, _ := New(Config{BaselineFactor: 5, BaselineMin: 3})
	tr := newTraffic()
	for i := 0; i < 5; i++ {
		tr.add("198.51.100.1", "192.0.2.1", 17, 2000, "", 5000, 9)
		if got := step(d, tr, i); len(got) != 0 {
			t.Fatalf("interval %d: %v at 2000 udp/s", i, got)
		}
	}
	// 15000/s: under the absolute 20000, but 7.5x the learned baseline.
	tr.add("198.51.100.1", "192.0.2.1", 17, 15000, "", 5000, 9)
	h, s := tr.snap()
	as := d.Observe(t0.Add(5*time.Second), h, s)
	if len(as) != 1 || as[0].Kind != KindUDP || !strings.Contains(as[0].Features[0].Name, "vs baseline") || as[0].Features[0].Baseline != 2000 {
		t.Fatalf("baseline alert %+v", as)
	}
}

func TestCooldownAndAmplification(t *testing.T) {
	d, _ := New(Config{Every: 3 * time.Second})
	tr := newTraffic()
	step(d, tr, 0)
	var got [][]string
	for i := 1; i <= 5; i++ {
		for r := 0; r < 50; r++ {
			tr.add(fmt.Sprintf("198.51.%d.%d", r/250, r%250+1), "192.0.2.1", 17, 100, "", 53, 30000)
		}
		h, s := tr.snap()
		var line []string
		for _, a := range d.Observe(t0.Add(time.Duration(i)*time.Second), h, s) {
			line = append(line, a.Kind+" "+a.Subject.Dst+" "+a.Suggested)
			if a.Subject.SrcPort != 53 || a.Subject.Proto != "udp" || a.Subject.Port != 0 {
				t.Errorf("amplification signature: %+v", a.Subject)
			}
		}
		got = append(got, line)
	}
	// 50 reflectors, the top 10 carry 20%: filter UDP from port 53.
	want := []string{"amplification-dns 192.0.2.1 filter", "", "", "amplification-dns 192.0.2.1 filter", ""}
	for i := range want {
		if strings.Join(got[i], ";") != want[i] {
			t.Fatalf("interval %d: %v, want %q (all: %v)", i+1, got[i], want[i], got)
		}
	}
}

func TestGroups(t *testing.T) {
	d, err := New(Config{Groups: []Group{{Name: "dns-servers", Prefixes: []string{"192.0.2.0/28"}, Limits: Limits{UDPPPS: 100000}}}})
	if err != nil {
		t.Fatal(err)
	}
	tr := newTraffic()
	step(d, tr, 0)
	tr.add("198.51.100.1", "192.0.2.1", 17, 50000, "", 5000, 53)
	tr.add("198.51.100.1", "192.0.2.100", 17, 50000, "", 5000, 53)
	if got := step(d, tr, 1); strings.Join(got, ";") != "udp-flood 192.0.2.100 block" {
		t.Fatalf("alerts %v (the group's host may take 100k udp/s)", got)
	}
	if _, err := New(Config{Groups: []Group{{Name: "x", Prefixes: []string{"nope"}}}}); err == nil {
		t.Error("a bad group prefix was accepted")
	}
}
