package traffic

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/detect/lucid"
	"github.com/rampart-shield/rampart/internal/lab"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/models"
)

func TestScenarioList(t *testing.T) {
	names := Scenarios()
	seen := map[string]bool{}
	var benign, attack int
	for i, n := range names {
		if seen[n] {
			t.Errorf("scenario %q twice", n)
		}
		seen[n] = true
		c, ok := ClassOf(n)
		switch {
		case !ok:
			t.Errorf("ClassOf(%q) unknown", n)
		case c == Benign:
			benign++
			if attack > 0 {
				t.Errorf("benign scenario %q (%d) after attacks", n, i)
			}
		case c == Attack:
			attack++
		}
	}
	for _, want := range []string{"wrk", "ab", "iperf3", "curl", "dns", "ping", "syn", "ack", "udp", "icmp", "flood6", "slowloris"} {
		if !seen[want] {
			t.Errorf("no %s scenario", want)
		}
	}
	if benign == 0 || attack == 0 {
		t.Errorf("%d benign, %d attack scenarios", benign, attack)
	}
	if Benign.Label() != 0 || Attack.Label() != 1 {
		t.Error("labels")
	}
	if _, err := Record(context.Background(), Options{Dir: t.TempDir(), Variant: "other"}); err == nil {
		t.Error("Record took a bad variant")
	}
}

func TestManifestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	recs := []Recording{
		{Scenario: "ping", Class: Benign, Variant: Test, Path: filepath.Join(dir, "test-ping.pcap"), Packets: 36, EgressMAC: "02:00:00:00:00:01"},
		{Scenario: "syn", Class: Attack, Variant: Test, Path: "/elsewhere/test-syn.pcap", Packets: 13000},
	}
	if err := WriteManifest(dir, recs); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, Manifest))
	back, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back, recs) {
		t.Errorf("read back\n%+v\nwant\n%+v\nfile:\n%s", back, recs, b)
	}
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, tcpdump, raw sockets, eBPF")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
}

func testManager(t *testing.T) *probe.Manager {
	t.Helper()
	m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestRecordSmall records two scenarios and checks what replaying them
// gives: ping (IPv4 and IPv6: one session each, capped at 10 records,
// and the link's neighbour discovery) and the fixed-source SYN flood (one session per packet hping3 sent:
// SYN, SYN-ACK, RST to the open port; SYN, RST to the closed one).
func TestRecordSmall(t *testing.T) {
	requireTools(t, "tcpdump", "ping", "hping3", "ip")
	_ = lab.Sweep(10 * time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	recs, err := Record(ctx, Options{Dir: dir, Variant: Train, Only: []string{"ping", "syn"}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Scenario != "ping" || recs[1].Scenario != "syn" {
		t.Fatalf("recordings %+v", recs)
	}
	if listed, err := ReadManifest(dir); err != nil || len(listed) != 2 {
		t.Fatalf("manifest: %v %+v", err, listed)
	}
	sets, err := Load(ctx, testManager(t), recs, lucid.DatasetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ping, syn := sets[0], sets[1]
	// The echoes (one session per family), and the neighbour discovery
	// and MLD of the root link (ICMPv6 130-143), which benign captures
	// keep.
	echoes, nd := 0, 0
	for _, s := range ping.Sessions {
		switch typ := s.Packets[0].ICMPType; {
		case s.Key.Proto == 1 || s.Key.Proto == 58 && typ >= 128 && typ <= 129:
			echoes++
			if len(s.Packets) != lucid.DefaultN {
				t.Errorf("ping session %v: %d packets", s.Key, len(s.Packets))
			}
		case s.Key.Proto == 58 && typ >= 130 && typ <= 143:
			nd++
		default:
			t.Errorf("ping: session %v (%d packets, ICMP type %d)", s.Key, len(s.Packets), typ)
		}
	}
	if echoes != 2 || nd == 0 {
		t.Errorf("ping: %d echo sessions (want 2: IPv4 and IPv6), %d of neighbour discovery (want some)", echoes, nd)
	}
	if ping.Stats.Capped == 0 {
		t.Errorf("ping: nothing capped (%+v)", ping.Stats)
	}
	// 3000 SYNs to the open port, 2000 to the closed one (train variant).
	if n := len(syn.Sessions); n < 4900 || n > 5000 {
		t.Errorf("syn: %d sessions, want about 5000", n)
	}
	var three, two int
	for _, s := range syn.Sessions {
		switch len(s.Packets) {
		case 3:
			three++
		case 2:
			two++
		}
	}
	if three < 2900 || two < 1900 {
		t.Errorf("syn: %d sessions of 3 packets, %d of 2; want about 3000 and 2000", three, two)
	}
	for _, s := range sets {
		if s.Stats.Skipped != 0 || s.Recording.Dropped != 0 {
			t.Errorf("%s: %d frames skipped, %d dropped by the capture", s.Recording.Scenario, s.Stats.Skipped, s.Recording.Dropped)
		}
	}
	if got := Samples(sets, 0); len(got) != len(ping.Sessions)+len(syn.Sessions) || got[0].Label != 0 || got[len(got)-1].Label != 1 {
		t.Errorf("samples: %d", len(got))
	}
}

// TestDefaultModelOnFreshRecordings is the acceptance test of the shipped
// model: it records the test variant of every scenario afresh (recordings
// the model was not trained on) and requires F1 >= 0.99 and a false
// positive rate <= 1% over all their sessions.
func TestDefaultModelOnFreshRecordings(t *testing.T) {
	if testing.Short() {
		t.Skip("records a minute of traffic; skipped with -short")
	}
	requireTools(t, "tcpdump", "hping3", "slowhttptest", "wrk", "ab", "iperf3", "curl", "ping", "ip")
	_ = lab.Sweep(10 * time.Minute)
	m, err := models.DDoS()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	seed := uint64(time.Now().UnixNano())
	t.Logf("recording the test variant with seed %d", seed)
	recs, err := Record(ctx, Options{Dir: t.TempDir(), Variant: Test, Seed: seed, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %d scenarios in %v", len(recs), time.Since(start).Round(time.Second))
	if len(recs) != len(Scenarios()) {
		t.Fatalf("%d of %d scenarios recorded", len(recs), len(Scenarios()))
	}
	sets, err := Load(ctx, testManager(t), recs, lucid.DatasetOptions{N: m.N})
	if err != nil {
		t.Fatal(err)
	}
	var all []lucid.Sample
	for _, s := range sets {
		smp := lucid.SamplesFrom(s.Sessions, s.Recording.Class.Label(), m.N)
		mt := lucid.Evaluate(m, smp, 0.5)
		t.Logf("%-10s %-6s %6d sessions, %6d called attack (%.2f%% right)", s.Recording.Scenario, s.Recording.Class, len(smp), mt.TP+mt.FP, 100*mt.Accuracy)
		all = append(all, smp...)
	}
	mt := lucid.Evaluate(m, all, 0.5)
	t.Logf("model %s: accuracy %.4f precision %.4f recall %.4f F1 %.4f FPR %.4f (tp %d fp %d tn %d fn %d)",
		m.Version, mt.Accuracy, mt.Precision, mt.Recall, mt.F1, mt.FPR, mt.TP, mt.FP, mt.TN, mt.FN)
	if mt.F1 < 0.99 || mt.FPR > 0.01 {
		t.Errorf("F1 %.4f (want >= 0.99), FPR %.4f (want <= 0.01)", mt.F1, mt.FPR)
	}
	if mt.TN+mt.FP < 1000 || mt.TP+mt.FN < 1000 {
		t.Errorf("too few sessions to measure: %d benign, %d attack", mt.TN+mt.FP, mt.TP+mt.FN)
	}
}
