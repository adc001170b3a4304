package kmeans

import (
	"bytes"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// Three well-separated mixes: the automatic choice finds k = 3 (the BIC
// of 3 is the least of the valid ones) and every centre lies within 0.05
// log units (about 5%) of its mix's, feature by feature.
func TestAutoKRecoversBlobs(t *testing.T) {
	m := threeBlobModel(t)
	if m.K() != 3 {
		t.Fatalf("k = %d, want 3; selection %+v", m.K(), m.Info.Selection)
	}
	if !m.Info.AutoK || len(m.Info.Selection) != DefaultKMax {
		t.Errorf("auto %v, %d k tried, want %d", m.Info.AutoK, len(m.Info.Selection), DefaultKMax)
	}
	for _, s := range m.Info.Selection {
		if s.Valid && s.BIC < m.Info.Selection[2].BIC {
			t.Errorf("k = %d has BIC %v below k = 3's %v", s.K, s.BIC, m.Info.Selection[2].BIC)
		}
	}
	used := map[int]bool{}
	for b, bl := range threeBlobs {
		best, bd := -1, math.Inf(1)
		for c, ci := range m.Clusters() {
			if d := logDist(ci.Centre, bl.centre); d < bd {
				best, bd = c, d
			}
		}
		if bd > 0.05 || used[best] {
			t.Errorf("mix %d: nearest cluster %d is %.3f log units off (used before: %v)", b, best, bd, used[best])
		}
		used[best] = true
	}
}

// One correlated blob is one cluster: splitting an elongated Gaussian
// must not pay under the criterion.
func TestOneBlobIsOneCluster(t *testing.T) {
	one := []blob{{centre: []float64{1e6, 20, 1e5, 800, 2e4, 1e6, 50}, sigma: 0.4, corr: 0.8}}
	X, _ := gen(3, one, size(20000, 6000))
	m, err := Train(testFeatures, X, Config{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if m.K() != 1 {
		t.Fatalf("k = %d, want 1; selection %+v", m.K(), m.Info.Selection)
	}
}

// A fixed k is used as given.
func TestFixedK(t *testing.T) {
	X, _ := gen(4, threeBlobs, 3000)
	m, err := Train(testFeatures, X, Config{K: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if m.K() != 2 || m.Info.AutoK || m.Info.Selection != nil {
		t.Errorf("k = %d, auto %v, selection %v; want fixed 2", m.K(), m.Info.AutoK, m.Info.Selection)
	}
}

// On held-out benign requests of the same mixes, at most 0.1% are flagged
// at the default threshold, completed or in flight. The same data with
// margin 1 and the 99% quantile flags about 1%, which shows the
// threshold is the training quantile and the bound is not vacuous.
func TestHeldOutFalsePositiveRate(t *testing.T) {
	m := threeBlobModel(t)
	test, _ := gen(2, threeBlobs, size(100000, 20000))
	var fp, fpIn int
	for _, x := range test {
		if m.Score(x).Outlier {
			fp++
		}
		if m.ScoreInFlight(x).Outlier {
			fpIn++
		}
	}
	n := float64(len(test))
	t.Logf("held-out false positives: %d completed, %d in flight of %d", fp, fpIn, len(test))
	if float64(fp)/n > 0.001 || float64(fpIn)/n > 0.001 {
		t.Errorf("false positive rate %.4f%% completed, %.4f%% in flight; want at most 0.1%%", 100*float64(fp)/n, 100*float64(fpIn)/n)
	}

	X, _ := gen(1, threeBlobs, 9000)
	loose, err := Train(testFeatures, X, Config{Seed: 7, Quantile: 0.99, Margin: 1})
	if err != nil {
		t.Fatal(err)
	}
	fp = 0
	for _, x := range test {
		if loose.Score(x).Outlier {
			fp++
		}
	}
	if r := float64(fp) / n; r < 0.005 || r > 0.02 {
		t.Errorf("quantile 0.99, margin 1: false positive rate %.3f%%, want about 1%%", 100*r)
	}
}

// Attacks are flagged, and Top names the resource out of line; the mix
// centres themselves are not.
func TestAnomaliesFlagged(t *testing.T) {
	m := threeBlobModel(t)
	static, api, upload := threeBlobs[0].centre, threeBlobs[1].centre, threeBlobs[2].centre
	mixed := append([]float64(nil), static...)
	mixed[fRx] = upload[fRx] // a static-file request with an upload's body
	for _, c := range []struct {
		name    string
		x       []float64
		outlier bool
		top     string
	}{
		{"static", static, false, ""},
		{"api", api, false, ""},
		{"upload", upload, false, ""},
		{"static x1000 cpu", scaled(static, fCPU, 1000), true, "cpu_ns"},
		{"api x30 memory", scaled(api, fMem, 30), true, "mem_bytes"},
		{"static with upload body", mixed, true, "rx_bytes"},
		{"static x20 page faults", scaled(static, fPF, 20), true, "page_faults"},
	} {
		r := m.Score(c.x)
		if r.Outlier != c.outlier || (r.Score >= 1) != r.Outlier {
			t.Errorf("%s: score %.3g outlier %v, want outlier %v", c.name, r.Score, r.Outlier, c.outlier)
		}
		if (r.Top != nil) != r.Outlier {
			t.Errorf("%s: outlier %v with %d contributions", c.name, r.Outlier, len(r.Top))
		}
		if !r.Outlier {
			r.Top = m.Explain(c.x, r)
		} else if ex := m.Explain(c.x, r); !slices.Equal(ex, r.Top) {
			t.Errorf("%s: Explain %v, Top %v", c.name, ex, r.Top)
		}
		if c.top != "" && r.Top[0].Name != c.top {
			t.Errorf("%s: top feature %+v, want %s", c.name, r.Top[0], c.top)
		}
		if len(r.Top) != len(testFeatures) {
			t.Errorf("%s: %d contributions", c.name, len(r.Top))
		}
		var sum float64
		for _, f := range r.Top {
			sum += f.Contribution
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Errorf("%s: contributions sum to %v, want 1", c.name, sum)
		}
	}
	// The baseline of the top feature is the accepting cluster's centre.
	r := m.Score(scaled(static, fCPU, 1000))
	if b := r.Top[0].Baseline; math.Abs(math.Log1p(b)-math.Log1p(static[fCPU])) > 0.05 {
		t.Errorf("cpu baseline %v, want about %v", b, static[fCPU])
	}
	if af := r.AlertFeatures(2); len(af) != 2 || af[0].Name != "cpu_ns" || af[0].Value != r.Top[0].Value {
		t.Errorf("alert features %+v", af)
	}
}

// In flight: a ReDoS request whose CPU time alone is far beyond every
// mix is flagged while its other resources are still small; the same
// request early on, or a normal one part way, is not; a request idle for
// ages is flagged on idle_ns.
func TestInFlightDetection(t *testing.T) {
	m := threeBlobModel(t)
	early := make([]float64, len(testFeatures))
	for j, v := range threeBlobs[0].centre {
		early[j] = v / 10
	}
	for _, c := range []struct {
		name    string
		x       []float64
		outlier bool
		top     string
	}{
		{"early", early, false, ""},
		{"zero", make([]float64, len(testFeatures)), false, ""},
		{"half an api call", scaled(scaled(threeBlobs[1].centre, fCPU, 0.5), fTx, 0.5), false, ""},
		{"redos", scaled(early, fCPU, 1e5), true, "cpu_ns"},
		{"stalled", scaled(early, fIdle, 1e5), true, "idle_ns"},
	} {
		r := m.ScoreInFlight(c.x)
		if r.Outlier != c.outlier || !r.InFlight {
			t.Errorf("%s: in-flight score %.3g outlier %v, want %v", c.name, r.Score, r.Outlier, c.outlier)
		}
		if top := m.Explain(c.x, r); c.top != "" && top[0].Name != c.top {
			t.Errorf("%s: top %+v, want %s", c.name, top[0], c.top)
		}
	}
}

// Two requests whose standardised coordinates have the same sum (what
// FineLame scores) but different mixes: at a cluster's centre, and with
// CPU up and bytes sent down by the same amount against the cluster's
// positive correlation. The Mahalanobis distance accepts the first and
// flags the second.
func TestEqualSumMixesTellApart(t *testing.T) {
	one := []blob{{centre: []float64{1e6, 20, 1e5, 800, 2e4, 1e6, 50}, sigma: 0.4, corr: 0.8}}
	X, _ := gen(5, one, 6000)
	m, err := Train(testFeatures, X, Config{K: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	nm := m.Normalisation()
	mean := m.clusters[0].mean
	at := func(z []float64) []float64 {
		x := make([]float64, len(z))
		for j := range z {
			x[j] = nm.original(j, z[j])
		}
		return x
	}
	z1 := append([]float64(nil), mean...)
	z2 := append([]float64(nil), mean...)
	// 3.5 cluster standard deviations each way (in standardised units).
	z2[fCPU] += 3.5 / m.clusters[0].invStd[fCPU]
	z2[fTx] -= 3.5 / m.clusters[0].invStd[fCPU]
	x1, x2 := at(z1), at(z2)

	sum := func(x []float64) float64 {
		z := make([]float64, len(x))
		nm.standardise(x, z)
		var s float64
		for _, v := range z {
			s += v
		}
		return s
	}
	if s1, s2 := sum(x1), sum(x2); math.Abs(s1-s2) > 1e-9 {
		t.Fatalf("coordinate sums %v and %v differ; the test needs them equal", s1, s2)
	}
	r1, r2 := m.Score(x1), m.Score(x2)
	if r1.Outlier || !r2.Outlier {
		t.Errorf("equal-sum mixes: scores %.3g and %.3g, want below and above 1", r1.Score, r2.Score)
	}
	top := m.Explain(x2, r2)
	if names := top[0].Name + "," + top[1].Name; names != "cpu_ns,tx_bytes" && names != "tx_bytes,cpu_ns" {
		t.Errorf("top features %s, want cpu_ns and tx_bytes", names)
	}
}

// A feature constant in training (no page faults at all) gets the floor
// scale: the model is finite, a request without page faults is normal,
// one page fault adds distance, many make an outlier (completed and in
// flight) explained by page_faults.
func TestConstantFeature(t *testing.T) {
	b := blob{centre: []float64{1e6, 0, 1e5, 800, 2e4, 1e6, 50}, sigma: 0.3}
	X, _ := gen(6, []blob{b}, 4000)
	for _, x := range X {
		x[fPF] = 0
	}
	m, err := Train(testFeatures, X, Config{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if s := m.norm.Scale[fPF]; s != DefaultMinScale {
		t.Errorf("page_faults scale %v, want the floor %v", s, DefaultMinScale)
	}
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil { // JSON refuses NaN and Inf
		t.Fatal(err)
	}
	for _, c := range m.clusters {
		for _, v := range append(append(append([]float64{c.thresh, c.inflight, c.g.logdet}, c.g.cov...), c.g.prec...), c.mean...) {
			if !finite(v) {
				t.Fatalf("cluster has a non-finite number: %+v", c)
			}
		}
	}
	x0 := append([]float64(nil), b.centre...)
	x1 := append([]float64(nil), x0...)
	x1[fPF] = 1
	r0, r1 := m.Score(x0), m.Score(x1)
	r1.Top = m.Explain(x1, r1)
	x9 := append([]float64(nil), x0...)
	x9[fPF] = 1000
	r9, r9in := m.Score(x9), m.ScoreInFlight(x9)
	if r0.Outlier || !finite(r0.Score) {
		t.Errorf("no page faults: score %v", r0.Score)
	}
	if !(r1.Distance > r0.Distance) || r1.Top[0].Name != "page_faults" {
		t.Errorf("one page fault: distance %v (none: %v), top %s", r1.Distance, r0.Distance, r1.Top[0].Name)
	}
	if !r9.Outlier || !r9in.Outlier || m.Explain(x9, r9)[0].Name != "page_faults" || m.Explain(x9, r9in)[0].Name != "page_faults" {
		t.Errorf("1000 page faults: score %v, in flight %v, tops %s %s", r9.Score, r9in.Score, r9.Top[0].Name, r9in.Top[0].Name)
	}
}

// The in-flight score never decreases as any feature grows: random
// partial vectors (every feature a random fraction of the final value)
// score at most the final vector, and a request growing step by step
// scores a non-decreasing sequence. The final vectors are benign ones and
// wilder mixes, so every cluster is the best one somewhere.
func TestInFlightMonotone(t *testing.T) {
	m := threeBlobModel(t)
	r := rand.New(rand.NewPCG(9, 9))
	finals, _ := gen(10, threeBlobs, 300)
	for range 300 {
		x := make([]float64, len(testFeatures))
		for j := range x {
			x[j] = math.Expm1(r.Float64() * 20)
		}
		finals = append(finals, x)
	}
	part := make([]float64, len(testFeatures))
	for i, x := range finals {
		final := m.ScoreInFlight(x).Score
		for range 20 {
			for j := range part {
				part[j] = x[j] * r.Float64()
			}
			if s := m.ScoreInFlight(part).Score; s > final {
				t.Fatalf("final %d %v: partial %v scores %v > final %v", i, x, part, s, final)
			}
		}
		// Grow one random feature at a time up to the final vector.
		clear(part)
		prev := m.ScoreInFlight(part).Score
		for range 50 {
			j := r.IntN(len(part))
			part[j] = min(x[j], part[j]+x[j]*r.Float64()*0.2)
			s := m.ScoreInFlight(part).Score
			if s < prev {
				t.Fatalf("final %d: score fell from %v to %v as %s grew", i, prev, s, testFeatures[j])
			}
			prev = s
		}
	}
}

// The same seed and data give the same model (byte for byte, times
// aside) with 1 and with 2 OS threads.
func TestDeterministicAcrossGOMAXPROCS(t *testing.T) {
	X, _ := gen(11, threeBlobs, size(20000, 9000))
	save := func(procs int) string {
		old := runtime.GOMAXPROCS(procs)
		defer runtime.GOMAXPROCS(old)
		rows := make([][]float64, len(X))
		for i, x := range X {
			rows[i] = append([]float64(nil), x...)
		}
		m, err := Train(testFeatures, rows, Config{Seed: 3, SelectSample: 6000})
		if err != nil {
			t.Fatal(err)
		}
		m.Info.Time, m.Info.Seconds = time.Time{}, 0
		var b strings.Builder
		if err := m.Save(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	one, two := save(1), save(2)
	if one != two {
		t.Errorf("GOMAXPROCS 1 and 2 give different models:\n%.2000s\n---\n%.2000s", one, two)
	}
}

func TestTrainRejectsBadInput(t *testing.T) {
	good, _ := gen(12, threeBlobs[:1], 100)
	nan := [][]float64{append([]float64(nil), good[0]...)}
	nan[0][2] = math.NaN()
	for _, c := range []struct {
		name     string
		features []string
		X        [][]float64
		cfg      Config
		msg      string
	}{
		{"no features", nil, good, Config{}, "no features"},
		{"duplicate", []string{"a", "b", "a", "c", "d", "e", "f"}, good, Config{}, "twice"},
		{"too few", testFeatures, good[:5], Config{}, "at least 16"},
		{"ragged", testFeatures, [][]float64{{1, 2}}, Config{}, "2 values for 7"},
		{"nan", testFeatures, append(nan, good...), Config{}, "mem_bytes"},
		{"quantile", testFeatures, good, Config{Quantile: 1}, "quantile"},
		{"transform", testFeatures, good, Config{Transform: "sqrt"}, "unknown transform"},
		{"transform feature", testFeatures, good, Config{Transforms: map[string]Transform{"gpu": None}}, "unknown feature"},
		{"min scale", testFeatures, good, Config{MinScales: map[string]float64{"cpu_ns": -1}}, "not positive"},
		{"negative k", testFeatures, good, Config{K: -1}, "negative"},
	} {
		_, err := Train(c.features, c.X, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.msg)
		}
	}
}

// Per-feature transforms and scales apply: with none, the centre is the
// trimmed mean of the raw values.
func TestTransformNone(t *testing.T) {
	X, _ := gen(13, threeBlobs[:1], 2000)
	m, err := Train(testFeatures, X, Config{
		Seed: 1, Transforms: map[string]Transform{"syscalls": None}, MinScales: map[string]float64{"syscalls": 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	nm := m.Normalisation()
	if nm.Transforms[fSys] != None || nm.Transforms[fCPU] != Log1p || nm.MinScale[fSys] != 1 {
		t.Fatalf("transforms %v, min scales %v", nm.Transforms, nm.MinScale)
	}
	if c := nm.Centre[fSys]; math.Abs(c-31.4) > 1.5 { // E[exp(N(ln 31, 0.3²))] - 1 ≈ 31.4
		t.Errorf("syscalls centre %v, want about 31.4", c)
	}
	if c := nm.Centre[fCPU]; math.Abs(c-math.Log1p(2e5)) > 0.02 {
		t.Errorf("cpu centre %v, want about %v", c, math.Log1p(2e5))
	}
}

// TestUnits: CPU times that vary from microseconds to a few milliseconds
// spread widely in log1p(ns), so a request of half a second sits within
// the benign spread; with a unit of 1 ms the sub-millisecond noise folds
// to about 0 and the same request is far out.
func TestUnits(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	X := make([][]float64, 5000)
	for i := range X {
		X[i] = []float64{math.Exp(r.Float64()*math.Log(3e6/1e3)) * 1e3, float64(100 + r.IntN(400))}
	}
	feats := []string{"cpu_ns", "tx_bytes"}
	plain, err := Train(feats, X, Config{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	unit, err := Train(feats, X, Config{Seed: 1, Units: map[string]float64{"cpu_ns": 1e6, "tx_bytes": 1024}})
	if err != nil {
		t.Fatal(err)
	}
	x := []float64{5e8, 300}
	p, u := plain.ScoreInFlight(x), unit.ScoreInFlight(x)
	t.Logf("a 500 ms request: score %.2f without units, %.2f with", p.Score, u.Score)
	if !u.Outlier || u.Score < 2*p.Score {
		t.Errorf("with a 1 ms unit the 500 ms request scores %.2f (without units %.2f)", u.Score, p.Score)
	}
	if u.Top[0].Name != "cpu_ns" || u.Top[0].Value != 5e8 {
		t.Errorf("explanation in original units: %+v", u.Top[0])
	}
	if c := unit.Normalisation().Units; c[0] != 1e6 || c[1] != 1024 {
		t.Errorf("units %v", c)
	}
	var b bytes.Buffer
	if err := unit.Save(&b); err != nil {
		t.Fatal(err)
	}
	back, err := Load(&b, feats)
	if err != nil {
		t.Fatal(err)
	}
	if back.ScoreInFlight(x).Score != u.Score {
		t.Error("units lost in save/load")
	}
	if _, err := Train(feats, X, Config{Units: map[string]float64{"cpu_ns": -1}}); err == nil {
		t.Error("a negative unit was accepted")
	}
}

// TestBenignBoxes: every vector inside a benign box scores below 1 (what
// lets the kernel drop them unscored), the boxes hold most benign
// requests (what makes the filter worth having), and anomalies stay out.
func TestBenignBoxes(t *testing.T) {
	m := threeBlobModel(t)
	boxes := m.BenignBoxes()
	if len(boxes) == 0 || len(boxes) > m.K() {
		t.Fatalf("%d boxes for %d clusters", len(boxes), m.K())
	}
	r := rand.New(rand.NewPCG(3, 4))
	x := make([]float64, len(testFeatures))
	for _, b := range boxes {
		if s := m.ScoreInFlight(b).Score; s >= 1 {
			t.Fatalf("box corner %v scores %v", b, s)
		}
		for range 2000 {
			for j := range x {
				x[j] = math.Floor(b[j] * math.Pow(r.Float64(), 4))
			}
			if s := m.ScoreInFlight(x).Score; s >= 1 {
				t.Fatalf("%v inside box %v scores %v", x, b, s)
			}
		}
	}
	inside := func(x []float64) bool {
		for _, b := range boxes {
			in := true
			for j := range x {
				in = in && x[j] <= b[j]
			}
			if in {
				return true
			}
		}
		return false
	}
	benign, _ := gen(77, threeBlobs, 3000)
	n := 0
	for _, x := range benign {
		if inside(x) {
			n++
		}
	}
	if frac := float64(n) / float64(len(benign)); frac < 0.5 {
		t.Errorf("boxes hold %.0f%% of benign requests, want most", 100*frac)
	} else {
		t.Logf("boxes hold %.1f%% of benign requests", 100*frac)
	}
	if redos := scaled(threeBlobs[0].centre, fCPU, 1e4); inside(redos) {
		t.Errorf("a ReDoS vector %v is inside a box", redos)
	}
}
