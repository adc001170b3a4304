package lucid

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestDetector: sessions from a synthetic attack and benign mix go through
// the assembler and the CNN; the destination under attack gets one
// explained alert, with a filter for the many-source flood.
func TestDetector(t *testing.T) {
	m, err := Train(synthSamples(11, 1200, DefaultN), nil, TrainConfig{K: 16, Epochs: 8, Seed: 3, Name: "lucid", Version: "test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDetector(m, DetectorConfig{MinSessions: 20})
	rng := rand.New(rand.NewPCG(1, 2))
	base := uint64(1e12)
	for i := 0; i < 300; i++ {
		attack := i%3 != 0
		pkts := synthSession(rng, attack)
		pkts = pkts[:min(len(pkts), DefaultN)] // ddosfeat's per-window cap
		for j := range pkts {
			pkts[j].Session.LoPort = uint16(1000 + i) // one key per session
		}
		if attack {
			src := netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(1 + i%250)})
			for j := range pkts {
				pkts[j].Session.LoAddr = src
			}
		}
		for _, p := range pkts {
			p.TimestampNs = p.TimestampNs - pkts[0].TimestampNs + base
			d.Add(p)
		}
	}
	// Everything is idle 100 s later (slow SYN retries span 31 s): all sessions are classified.
	alerts := d.Tick(base+100e9, time.Now(), time.Second)
	if len(alerts) != 1 {
		t.Fatalf("%d alerts: %+v", len(alerts), alerts)
	}
	a := alerts[0]
	if a.Detector != DetectorName || a.Kind != "ddos" || a.Subject.Dst != srvAddr.String() || a.Model != "lucid test" {
		t.Fatalf("alert %+v", a)
	}
	if a.Score < 150 || a.Suggested != "filter" || len(a.Subject.Sources) != 0 {
		t.Errorf("200 attack sessions from 200 sources: score %v, suggested %s, sources %v", a.Score, a.Suggested, a.Subject.Sources)
	}
	if len(a.Features) == 0 || !strings.Contains(a.Features[0].Name, "packet ") || !strings.Contains(a.Summary, "drivers: ") || len(a.Samples) != 3 {
		t.Errorf("explanation: features %+v, summary %q, samples %v", a.Features, a.Summary, a.Samples)
	}
	if d.Classified != 300 || d.Attacks < 180 {
		t.Errorf("classified %d, attacks %d", d.Classified, d.Attacks)
	}
	// The same destination again within Every: no second alert.
	for i := 0; i < 100; i++ {
		for _, p := range synthSession(rng, true) {
			d.Add(p)
		}
	}
	if again := d.Tick(base+200e9, time.Now(), time.Second); len(again) != 0 {
		t.Errorf("alerted again at once: %+v", again)
	}
}
