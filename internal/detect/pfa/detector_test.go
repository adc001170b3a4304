package pfa

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The shared model: learned from 40k benign connections, calibrated on
// 20k others.
var (
	fixtureOnce sync.Once
	fixture     *Model
	fixtureErr  error
)

const (
	trainConns = 40000
	calibConns = 20000
	testConns  = 20000 // held out from both, for the FPR
)

func model(t testing.TB) *Model {
	t.Helper()
	fixtureOnce.Do(func() {
		g := newGen(2017)
		fixture, fixtureErr = Learn(g.benignConns(100, trainConns), ModelConfig{})
		if fixtureErr == nil {
			fixture.Name, fixture.Version = "synthetic-http", "test"
			_, fixtureErr = fixture.Calibrate(g.benignConns(100, calibConns), CalibConfig{})
		}
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return fixture
}

// run feeds events (in time order) to d, calling Advance every step from
// the first event until end; it returns the verdicts.
func run(t testing.TB, d *Detector, evs []Event, step time.Duration, end int64) []Verdict {
	t.Helper()
	var out []Verdict
	next := evs[0].Time
	for _, ev := range evs {
		for next <= ev.Time {
			out = append(out, d.Advance(next)...)
			next += int64(step)
		}
		if err := d.Observe(ev); err != nil {
			t.Fatal(err)
		}
	}
	for ; next <= end; next += int64(step) {
		out = append(out, d.Advance(next)...)
	}
	return out
}

// Held-out benign connections, running concurrently through the live
// detector (ticks from Advance), stay below the threshold: FPR <= 0.01%.
func TestBenignFalsePositiveRate(t *testing.T) {
	m := model(t)
	c := m.Calibration
	t.Logf("calibration: %d conns, median %.2f, quantile %.2f, max %.2f, threshold %.2f bits/symbol (window %d)",
		c.Conns, c.Median, c.Quantile, c.Max, c.Threshold, c.Window)
	g := newGen(99)
	t0 := dur(time.Hour)
	evs := g.benignLoad(100, testConns, t0, 2000*time.Second)
	d, err := NewDetector(m, Config{})
	if err != nil {
		t.Fatal(err)
	}
	verdicts := run(t, d, evs, 500*time.Millisecond, evs[len(evs)-1].Time+dur(time.Second))
	st := d.Stats()
	fpr := float64(st.Flagged) / testConns
	t.Logf("%d benign connections, %d events, %d symbols (%d ticks): %d flagged, FPR %.4f%%", testConns, st.Events, st.Symbols, st.Ticks, st.Flagged, 100*fpr)
	if fpr > 1e-4 {
		t.Errorf("FPR %.4f%% > 0.01%%", 100*fpr)
	}
	if len(verdicts) != 0 {
		t.Errorf("benign load gave verdicts: %+v", verdicts[0])
	}
	if st.Open != 0 {
		t.Errorf("%d connections still open", st.Open)
	}
}

type attack struct {
	name string
	kind string
	conn func(g *gen, tgid uint32, t, end int64) []Event
}

var attacks = []attack{
	{"slowloris", "slowloris", func(g *gen, tgid uint32, t, end int64) []Event { return g.slowloris(tgid, t, end, 0) }},
	// A realistic first recv: a partial request of a normal size.
	{"slowloris-partial-header", "slowloris", func(g *gen, tgid uint32, t, end int64) []Event {
		return g.slowloris(tgid, t, end, g.intn(100, 400))
	}},
	{"slow-read", "slow-read", func(g *gen, tgid uint32, t, end int64) []Event { return g.slowRead(tgid, t, end) }},
}

// Every attack connection is flagged within a few seconds of its start.
func TestAttacksDetectedQuickly(t *testing.T) {
	m := model(t)
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			g := newGen(31)
			t0 := dur(time.Hour)
			evs := g.benignLoad(100, 200, t0, 60*time.Second)
			const n = 200
			for i := range n {
				start := t0 + dur(5*time.Second) + int64(i)*dur(100*time.Millisecond)
				evs = append(evs, a.conn(g, 200, start, start+dur(60*time.Second))...)
			}
			sortEvents(evs)
			d, err := NewDetector(m, Config{Limit: 1 << 20}) // no verdicts: only detection
			if err != nil {
				t.Fatal(err)
			}
			cut := t0 + dur(5*time.Second) + n*dur(100*time.Millisecond) + dur(20*time.Second)
			i, _ := slices.BinarySearchFunc(evs, cut, func(e Event, t int64) int { return int(e.Time - t) })
			run(t, d, evs[:i], time.Second, cut)
			var offs []Offender
			for _, o := range d.Anomalous() {
				if o.Conn.TGID == 200 {
					offs = append(offs, o)
				} else {
					t.Errorf("benign connection %v flagged: %v", o.Conn, o.Improbable)
				}
			}
			if len(offs) != n {
				t.Fatalf("%d of %d attack connections flagged", len(offs), n)
			}
			var sum, worst time.Duration
			var syms, worstSyms int
			for _, o := range offs {
				dt := o.DetectedAfter()
				sum += dt
				syms += o.Symbols
				if dt > worst {
					worst, worstSyms = dt, o.Symbols
				}
			}
			t.Logf("%d connections flagged after %.2f s (%.1f symbols) on average, %.2f s (%d symbols) at worst; e.g. %v",
				n, (sum / n).Seconds(), float64(syms)/n, worst.Seconds(), worstSyms, offs[0].Improbable[0])
			if worst > 7*time.Second {
				t.Errorf("worst detection after %v, want within 7 s", worst)
			}
		})
	}
}

// The same attack on the same server (50 connections in 10 s) is a
// verdict when the server has 16 workers (the limit is reached at once),
// or 100 (the anomalous connections come to hold a quarter of it; the
// trend never predicts exhaustion within 5 s), and not when it holds
// 4096 connections.
func TestProcessVerdictDependsOnLimit(t *testing.T) {
	m := model(t)
	for _, a := range attacks {
		for _, limit := range []int{16, 100, 4096} {
			t.Run(fmt.Sprintf("%s/limit-%d", a.name, limit), func(t *testing.T) {
				g := newGen(41)
				t0 := dur(time.Hour)
				evs := g.benignLoad(300, 60, t0, 60*time.Second) // about 1 conn/s, a few open
				attackers := make(map[ConnID]bool)
				start := t0 + dur(20*time.Second)
				for i := range 50 {
					s := start + int64(i)*dur(200*time.Millisecond)
					c := a.conn(g, 300, s, t0+dur(80*time.Second))
					attackers[c[0].Conn] = true
					evs = append(evs, c...)
				}
				sortEvents(evs)
				d, err := NewDetector(m, Config{Limits: map[string]int{"tgid:300": limit}})
				if err != nil {
					t.Fatal(err)
				}
				vs := run(t, d, evs, 250*time.Millisecond, t0+dur(90*time.Second))
				if limit == 4096 {
					if len(vs) > 0 {
						t.Fatalf("%d verdicts, first: %s", len(vs), vs[0].Reason)
					}
					if st := d.Stats(); st.Flagged < 50 {
						t.Errorf("only %d connections flagged", st.Flagged)
					}
					return
				}
				if len(vs) == 0 {
					t.Fatal("no verdict")
				}
				v := vs[0]
				t.Logf("first verdict %.1f s after the attack began: %s: %s; top %v", float64(v.Time-start)/1e9, v.Kind, v.Reason, v.Top[0].Name)
				if v.Time-start > dur(10*time.Second) {
					t.Errorf("first verdict %v after the attack began", time.Duration(v.Time-start))
				}
				if limit == 100 && (!strings.Contains(v.Reason, "of the limit of 100") || strings.Contains(v.Reason, "reach")) {
					t.Errorf("limit 100: %s", v.Reason)
				}
				if !slices.ContainsFunc(vs, func(v Verdict) bool { return v.Share >= DefaultShare }) {
					t.Error("the anomalous connections never held a quarter of the limit")
				}
				if v.Kind != a.kind || v.Suggested != SuggestCloseSockets || v.Group != "tgid:300" || !slices.Equal(v.TGIDs, []uint32{300}) {
					t.Errorf("verdict %s %s %s %v", v.Kind, v.Suggested, v.Group, v.TGIDs)
				}
				for _, o := range v.Offenders {
					if !attackers[o.Conn] {
						t.Errorf("benign connection %v among the offenders", o.Conn)
					}
					if o.FlagScore <= o.Threshold || len(o.Improbable) == 0 {
						t.Errorf("offender %+v", o)
					}
				}
				if len(v.Offenders) != v.Anomalous || v.Pressure < 1 {
					t.Errorf("%d offenders, %d anomalous, pressure %v", len(v.Offenders), v.Anomalous, v.Pressure)
				}
				// Repeats come no more often than Every, unless offenders grew.
				for i := 1; i < len(vs); i++ {
					if vs[i].Time-vs[i-1].Time < dur(DefaultEvery) && vs[i].Anomalous <= vs[i-1].Anomalous {
						t.Errorf("verdict %d repeated after %v", i, time.Duration(vs[i].Time-vs[i-1].Time))
					}
				}
				al := v.Alert(time.Unix(1, 0), "synthetic-http/test")
				if err := al.Check(time.Now()); err != nil || al.Detector != Name || al.Subject.PID != 300 || len(al.Samples) == 0 {
					t.Errorf("alert %+v: %v", al, err)
				}
				t.Logf("alert: %v", al)
			})
		}
	}
}

// A fast ramp of anomalous connections is a verdict before they hold the
// share of the limit, because the trend reaches the limit within the
// horizon; a slow ramp is not.
func TestExhaustionTrend(t *testing.T) {
	m := model(t)
	for _, c := range []struct {
		name    string
		perSec  int
		verdict bool
	}{
		{"fast", 100, true},
		{"slow", 5, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newGen(43)
			t0 := dur(time.Hour)
			var evs []Event
			for i := range c.perSec * 8 {
				s := t0 + int64(i)*dur(time.Second)/int64(c.perSec)
				evs = append(evs, g.slowloris(500, s, t0+dur(60*time.Second), 0)...)
			}
			sortEvents(evs)
			d, err := NewDetector(m, Config{Limit: 1000, Share: 0.9})
			if err != nil {
				t.Fatal(err)
			}
			vs := run(t, d, evs, 500*time.Millisecond, t0+dur(20*time.Second))
			if !c.verdict {
				if len(vs) > 0 {
					t.Errorf("verdict: %s", vs[0].Reason)
				}
				return
			}
			if len(vs) == 0 {
				t.Fatal("no verdict")
			}
			v := vs[0]
			t.Logf("verdict at %.1f s: %s", float64(v.Time-t0)/1e9, v.Reason)
			if v.ExhaustIn == Never || v.ExhaustIn > DefaultHorizon || v.Share >= 0.9 || !strings.Contains(v.Reason, "reach the limit") {
				t.Errorf("verdict exhaust in %v share %v: %s", v.ExhaustIn, v.Share, v.Reason)
			}
			if math.Abs(v.Slope-float64(c.perSec)) > 0.2*float64(c.perSec) {
				t.Errorf("slope %v, want about %d/s", v.Slope, c.perSec)
			}
		})
	}
}

func TestTrend(t *testing.T) {
	s := int64(time.Second)
	mk := func(opens ...int) []sample {
		out := make([]sample, len(opens))
		for i, o := range opens {
			out[i] = sample{t: int64(i) * s, open: o}
		}
		return out
	}
	open := func(x sample) int { return x.open }
	for _, c := range []struct {
		name  string
		ss    []sample
		slope float64
	}{
		{"flat", mk(5, 5, 5, 5), 0},
		{"line", mk(0, 10, 20, 30), 10},
		{"falling", mk(30, 20, 10, 0), -10},
		{"noisy", mk(0, 12, 18, 30), 9.6},
		{"one time", []sample{{t: s, open: 1}, {t: s, open: 9}}, 0},
	} {
		if got := slope(c.ss, open); math.Abs(got-c.slope) > 1e-9 {
			t.Errorf("%s: slope %v, want %v", c.name, got, c.slope)
		}
	}
	for _, c := range []struct {
		open, limit int
		slope       float64
		want        time.Duration
	}{
		{10, 16, 2, 3 * time.Second},
		{16, 16, 0, 0},
		{20, 16, -1, 0},
		{10, 4096, 5, 817200 * time.Millisecond},
		{10, 16, 0, Never},
		{10, 16, -3, Never},
	} {
		if got := exhaustIn(c.open, c.limit, c.slope); got != c.want {
			t.Errorf("exhaustIn(%d, %d, %v) = %v, want %v", c.open, c.limit, c.slope, got, c.want)
		}
	}
}

func TestDetectorBounds(t *testing.T) {
	m := model(t)
	if _, err := NewDetector(&Model{}, Config{}); err == nil {
		t.Error("uncalibrated model accepted")
	}
	for _, c := range []Config{{Limit: -1}, {Share: -1}, {TrendWindow: time.Second}, {Limits: map[string]int{"x": 0}}, {Threshold: math.NaN()}} {
		if _, err := NewDetector(m, c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
	d, err := NewDetector(m, Config{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		d.Observe(Event{Time: 1, Conn: ConnID{1, uint64(i)}, Kind: Accept})
	}
	if st := d.Stats(); st.Open != 2 || st.Dropped != 3 {
		t.Errorf("stats %+v, want 2 open and 3 dropped", st)
	}
	if err := d.Observe(Event{Kind: Tick}); err == nil || d.Stats().Invalid != 1 {
		t.Error("invalid event accepted")
	}
	// Silent connections are forgotten after the idle expiry (and so is
	// their process, left with none); accepted and never used, they
	// became anomalous on the way.
	d.Advance(1 + int64(DefaultMaxIdle) + 1)
	if st := d.Stats(); st.Open != 0 || st.Expired != 2 || st.Flagged != 2 || len(d.Processes()) != 0 {
		t.Errorf("after expiry: %+v, %d groups", st, len(d.Processes()))
	}
}
