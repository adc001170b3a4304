package forest

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/rampart-shield/rampart/probes/cryptofeat"
)

func TestGini(t *testing.T) {
	for _, c := range []struct{ pos, n, want float64 }{
		{0, 0, 0},         // empty node
		{0, 4, 0},         // pure 0
		{4, 4, 0},         // pure 1
		{2, 4, 0.5},       // 1 - 0.25 - 0.25
		{1, 4, 0.375},     // 1 - 1/16 - 9/16
		{1, 3, 4.0 / 9},   // 1 - 1/9 - 4/9
		{3, 10, 0.42},     // 1 - 0.09 - 0.49
		{2, 6, 4.0 / 9.0}, // same fraction as 1/3
	} {
		if got := gini(c.pos, c.n); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("gini(%v, %v) = %v, want %v", c.pos, c.n, got, c.want)
		}
	}
}

// growTree grows one tree on all of d's rows (no bootstrap) trying every
// feature at every split.
func growTree(t *testing.T, d Dataset, minLeaf int) (tree, []float64) {
	t.Helper()
	nf, _, err := d.validate()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Config{MinLeaf: minLeaf, MaxFeatures: nf}.withDefaults(nf)
	if err != nil {
		t.Fatal(err)
	}
	idx := make([]int, len(d.Y))
	for i := range idx {
		idx[i] = i
	}
	return newBuilder(d.X, d.Y, cfg).growOn(idx, rand.New(rand.NewPCG(1, 2)))
}

func checkNode(t *testing.T, tr tree, i int, feature int32, threshold, value float64) {
	t.Helper()
	n := tr.nodes[i]
	if n.Feature != feature || n.Threshold != threshold || math.Abs(n.Value-value) > 1e-12 {
		t.Errorf("node %d = %+v, want feature %d threshold %v value %v", i, n, feature, threshold, value)
	}
	if feature < 0 && (n.Left >= 0 || n.Right >= 0) {
		t.Errorf("node %d = %+v should be a leaf", i, n)
	}
}

// Feature 0 takes the values 1-3 in both classes (no split separates
// them); feature 1 is ≤ 3 for class 0 and ≥ 7 for class 1, so the root
// must split on feature 1 halfway between 3 and 7, into two pure leaves.
func TestTreeSplitsWhereExpected(t *testing.T) {
	d := Dataset{
		X: [][]float64{{2, 1}, {1, 2}, {3, 3}, {2, 7}, {1, 8}, {3, 9}},
		Y: []int{0, 0, 0, 1, 1, 1},
	}
	tr, imp := growTree(t, d, 1)
	if len(tr.nodes) != 3 {
		t.Fatalf("tree has %d nodes, want 3: %+v", len(tr.nodes), tr.nodes)
	}
	checkNode(t, tr, 0, 1, 5, 0.5)
	l, r := tr.nodes[0].Left, tr.nodes[0].Right
	checkNode(t, tr, int(l), -1, 0, 0)
	checkNode(t, tr, int(r), -1, 0, 1)
	for i, x := range d.X {
		if got := tr.nodes[tr.leaf(x)].Value; got != float64(d.Y[i]) {
			t.Errorf("point %v: leaf value %v, want %d", x, got, d.Y[i])
		}
	}
	if !slices.Equal(imp, []float64{0, 1}) {
		t.Errorf("importance %v, want [0 1]", imp)
	}
}

// One feature, x = 1..6 with labels 0 0 0 1 1 0. Weighted child impurity
// (n_l·G_l + n_r·G_r)/n of each threshold:
//
//	1.5: 5/6·0.48 = 0.4     2.5: 4/6·0.5 = 0.333   3.5: 3/6·4/9 = 0.222
//	4.5: 4/6·0.375 + 2/6·0.5 = 0.417                5.5: 5/6·0.48 = 0.4
//
// so the root splits at 3.5 (left pure 0); the right node {1, 1, 0} then
// splits at 5.5 (4.5 leaves 1/3·0 + 2/3·0.5, 5.5 leaves 0).
func TestTreeTwoLevels(t *testing.T) {
	d := Dataset{
		X: [][]float64{{1}, {2}, {3}, {4}, {5}, {6}},
		Y: []int{0, 0, 0, 1, 1, 0},
	}
	tr, _ := growTree(t, d, 1)
	if len(tr.nodes) != 5 {
		t.Fatalf("tree has %d nodes, want 5: %+v", len(tr.nodes), tr.nodes)
	}
	checkNode(t, tr, 0, 0, 3.5, 2.0/6)
	root := tr.nodes[0]
	checkNode(t, tr, int(root.Left), -1, 0, 0)
	checkNode(t, tr, int(root.Right), 0, 5.5, 2.0/3)
	right := tr.nodes[root.Right]
	checkNode(t, tr, int(right.Left), -1, 0, 1)
	checkNode(t, tr, int(right.Right), -1, 0, 0)
	for i, x := range d.X {
		if got := tr.nodes[tr.leaf(x)].Value; got != float64(d.Y[i]) {
			t.Errorf("point %v: leaf value %v, want %d", x, got, d.Y[i])
		}
	}

	// With MinLeaf 2, thresholds 1.5 and 5.5 are not allowed: the root
	// still splits at 3.5, and its right node (3 samples < 2·MinLeaf)
	// stays a leaf with value 2/3.
	tr, _ = growTree(t, d, 2)
	if len(tr.nodes) != 3 {
		t.Fatalf("MinLeaf 2: tree has %d nodes, want 3: %+v", len(tr.nodes), tr.nodes)
	}
	checkNode(t, tr, 0, 0, 3.5, 2.0/6)
	checkNode(t, tr, int(tr.nodes[0].Right), -1, 0, 2.0/3)
}

func TestTrainRejectsBadInput(t *testing.T) {
	good := Dataset{X: [][]float64{{1}, {2}}, Y: []int{0, 1}}
	for _, c := range []struct {
		name string
		d    Dataset
		cfg  Config
		msg  string
	}{
		{"empty", Dataset{}, Config{}, "empty"},
		{"labels", Dataset{X: [][]float64{{1}}, Y: []int{0, 1}}, Config{}, "labels"},
		{"ragged", Dataset{X: [][]float64{{1, 2}, {3}}, Y: []int{0, 1}}, Config{}, "row 1 has 1"},
		{"label value", Dataset{X: [][]float64{{1}, {2}}, Y: []int{0, 2}}, Config{}, "label 2"},
		{"NaN", Dataset{X: [][]float64{{1}, {math.NaN()}}, Y: []int{0, 1}}, Config{}, "NaN"},
		{"one class", Dataset{X: [][]float64{{1}, {2}}, Y: []int{1, 1}}, Config{}, "only class 1"},
		{"names", Dataset{X: good.X, Y: good.Y, Names: []string{"a", "b"}}, Config{}, "2 feature names"},
		{"negative", good, Config{Trees: -1}, "negative"},
		{"sample", good, Config{Sample: 1.5}, "sample"},
	} {
		_, err := Train(c.d, c.cfg, nil)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.msg)
		}
	}
}

// Synthetic sessions, built as the probe's counters and derived with
// cryptofeat.Derive so the vectors are what the detector will see.

func logU(r *rand.Rand, lo, hi float64) float64 {
	return math.Exp(math.Log(lo) + r.Float64()*(math.Log(hi)-math.Log(lo)))
}

func uni(r *rand.Rand, lo, hi float64) float64 { return lo + r.Float64()*(hi-lo) }

// method draws how the server side was found, with the same odds for
// every kind of session (it must not give the class away).
func method(r *rand.Rand) cryptofeat.Method {
	switch p := r.Float64(); {
	case p < 0.6:
		return cryptofeat.MethodTCPHandshake
	case p < 0.85:
		return cryptofeat.MethodWellKnownPort
	default:
		return cryptofeat.MethodLowerPort
	}
}

// session derives the features of a session lasting dur seconds in which
// the server sent spk packets of sbytes bytes in all, the client cpk and
// cbytes.
func session(r *rand.Rand, dur, spk, sbytes, cpk, cbytes float64) []float64 {
	const start = 1_000_000_000_000
	s := cryptofeat.Session{
		StartNs: start,
		LastNs:  start + uint64(dur*1e9),
		PktsIn:  uint64(max(1, spk)), BytesIn: uint64(max(40, sbytes)),
		PktsOut: uint64(max(1, cpk)), BytesOut: uint64(max(40, cbytes)),
		Method: method(r),
	}
	return FeaturesVector(cryptofeat.Derive(s, false)) // the client is local
}

// mining is a stratum session: the client submits shares every few
// seconds (small requests, each answered by a small result), the pool
// pushes a new job every tens of seconds (bigger notifications, acked):
// long, regular, small packets both ways, a packet ratio near 1, low
// bits/s.
func mining(r *rand.Rand) []float64 {
	dur := logU(r, 120, 7200)
	submits := dur / logU(r, 2, 30)
	notifies := dur / logU(r, 15, 90)
	acks := notifies * uni(r, 0.5, 1)
	cpk := submits + acks
	spk := notifies + submits*uni(r, 0.9, 1.05)
	cbytes := submits*logU(r, 180, 260) + acks*52
	sbytes := notifies*logU(r, 400, 1200) + submits*logU(r, 90, 130)
	return session(r, dur, spk, sbytes, cpk, cbytes)
}

// benign draws one of seven kinds of ordinary session.
func benign(r *rand.Rand) []float64 {
	switch r.IntN(7) {
	case 0, 1: // bulk transfer, either way: MTU packets one way, acks back
		dur := logU(r, 0.5, 300)
		bytes := dur * logU(r, 1e6, 5e8) / 8
		pk := bytes / 1500 * uni(r, 0.9, 1)
		ack := pk * uni(r, 0.3, 0.6)
		if r.IntN(2) == 0 { // download
			return session(r, dur, pk, bytes, ack, ack*52+500)
		}
		return session(r, dur, ack, ack*52+300, pk, bytes)
	case 2: // interactive (ssh): bursts of keystrokes, echoed with output
		dur := logU(r, 30, 7200)
		cpk := dur * uni(r, 0.05, 0.5) * logU(r, 2, 10)
		spk := cpk * uni(r, 1, 2.5)
		return session(r, dur, spk, spk*logU(r, 100, 600), cpk, cpk*logU(r, 80, 110))
	case 3: // streaming: steady high server bits/s for minutes
		dur := logU(r, 60, 3600)
		bytes := dur * logU(r, 5e5, 2e7) / 8
		pk := bytes / 1400
		ack := pk * uni(r, 0.2, 0.5)
		return session(r, dur, pk, bytes, ack, ack*60)
	case 4: // web page: short, a few requests and larger responses
		dur := logU(r, 0.05, 20)
		spk := logU(r, 5, 200)
		cpk := spk * uni(r, 0.4, 0.8)
		return session(r, dur, spk, spk*logU(r, 600, 1400), cpk, cpk*logU(r, 60, 300))
	case 5: // websocket keepalive: the look-alike. Client pings every
		// few seconds to a minute, the server pongs and now and then
		// pushes an update.
		dur := logU(r, 120, 7200)
		pings := dur / logU(r, 5, 60)
		pushes := dur / logU(r, 20, 300)
		cpk := pings + pushes*uni(r, 0.5, 1)
		spk := pings + pushes
		return session(r, dur, spk, pings*logU(r, 60, 120)+pushes*logU(r, 100, 800), cpk, pings*logU(r, 58, 160)+pushes*52)
	default: // telemetry (MQTT): periodic small publishes, tiny acks back
		dur := logU(r, 300, 7200)
		pubs := dur / logU(r, 10, 120)
		pings := dur / logU(r, 30, 120)
		cpk := pubs + pings
		spk := pubs*uni(r, 0.9, 1) + pings
		return session(r, dur, spk, spk*logU(r, 52, 60), cpk, pubs*logU(r, 80, 400)+pings*54)
	}
}

// sessions makes n mining and n benign sessions.
func sessions(n int, seed uint64) Dataset {
	r := rand.New(rand.NewPCG(seed, 7))
	d := Dataset{Names: FeatureNames}
	for range n {
		d.X, d.Y = append(d.X, mining(r)), append(d.Y, 1)
		d.X, d.Y = append(d.X, benign(r)), append(d.Y, 0)
	}
	return d
}

func TestForestMiningVsBenign(t *testing.T) {
	train, test := sessions(1000, 1).Split(0.3, 2)
	if len(test.Y) != 600 || len(train.Y) != 1400 {
		t.Fatalf("split gave %d train / %d test rows, want 1400 / 600", len(train.Y), len(test.Y))
	}
	cfg := Config{Seed: 42} // defaults: 100 trees, depth 12, ...
	var calls []int
	f, err := Train(train, cfg, func(done, total int) {
		if total != DefaultTrees {
			t.Errorf("progress total %d, want %d", total, DefaultTrees)
		}
		calls = append(calls, done)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != DefaultTrees || calls[0] != 1 || !slices.IsSorted(calls) || calls[len(calls)-1] != DefaultTrees {
		t.Errorf("progress calls %v, want 1..%d", calls, DefaultTrees)
	}
	if c := f.Info.Config; c.Trees != DefaultTrees || c.MaxDepth != DefaultMaxDepth || c.MinLeaf != DefaultMinLeaf || c.MaxFeatures != 4 || c.Sample != 1 {
		t.Errorf("effective config %+v lacks the defaults", c)
	}

	m := Evaluate(f, test, 0.5)
	t.Logf("held out: %+v", m)
	if m.F1 <= 0.98 {
		t.Errorf("held-out F1 %.4f, want > 0.98 (%+v)", m.F1, m)
	}
	if m.TP+m.FN != 300 || m.TN+m.FP != 300 {
		t.Errorf("confusion %+v does not add up to 300 + 300", m)
	}

	// Importance is a distribution; the constant-odds method column
	// carries nothing.
	imp := f.Importance()
	var sum float64
	for _, c := range imp {
		sum += c.Contribution
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("importances sum to %v", sum)
	}
	t.Logf("top features: %v", imp[:4])
	if imp[len(imp)-1].Contribution > imp[0].Contribution/2 || imp[0].Name == "method" {
		t.Errorf("importance not concentrated: %v", imp)
	}

	// Deterministic: the same seed gives the same forest, tree for tree,
	// and each tree is what a sequential build from its own seed gives
	// (so goroutine scheduling does not matter).
	g, err := Train(train, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range test.X {
		if f.Predict(x) != g.Predict(x) {
			t.Fatalf("test point %d: %v then %v with the same seed", i, f.Predict(x), g.Predict(x))
		}
	}
	full, _ := cfg.withDefaults(len(FeatureNames))
	b := newBuilder(train.X, train.Y, full)
	for _, i := range []int{0, 17, DefaultTrees - 1} {
		seq, _ := b.grow(treeRand(cfg.Seed, i))
		if !slices.Equal(seq.nodes, f.trees[i].nodes) || !slices.Equal(g.trees[i].nodes, f.trees[i].nodes) {
			t.Errorf("tree %d differs between trainings with the same seed", i)
		}
	}

	// Another seed: another forest (other trees, some other votes).
	cfg.Seed = 43
	h, err := Train(train, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	sameTrees, diffVotes := 0, 0
	for i := range h.trees {
		if slices.Equal(h.trees[i].nodes, f.trees[i].nodes) {
			sameTrees++
		}
	}
	for _, x := range test.X {
		if h.Predict(x) != f.Predict(x) {
			diffVotes++
		}
	}
	if sameTrees != 0 || diffVotes == 0 {
		t.Errorf("seed 43 vs 42: %d identical trees, %d test points with other votes", sameTrees, diffVotes)
	}
	if mh := Evaluate(h, test, 0.5); mh.F1 <= 0.98 {
		t.Errorf("seed 43: held-out F1 %.4f", mh.F1)
	}
}

// Only feature 3 decides the label (y = x3 > 0.5); the other four are
// noise. Explain must put feature 3 first, pushing towards the right class,
// and the contributions must add up to the soft vote.
func TestExplainFindsInformativeFeature(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	d := Dataset{Names: []string{"n0", "n1", "n2", "signal", "n4"}}
	for range 600 {
		x := []float64{r.Float64(), r.NormFloat64(), r.Float64() * 100, r.Float64(), r.ExpFloat64()}
		y := 0
		if x[3] > 0.5 {
			y = 1
		}
		d.X, d.Y = append(d.X, x), append(d.Y, y)
	}
	f, err := Train(d, Config{Trees: 40, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if top := f.Importance()[0]; top.Name != "signal" || top.Contribution < 0.5 {
		t.Errorf("top importance %+v, want signal with most of it", top)
	}
	for _, x := range [][]float64{
		{0.5, 0, 50, 0.9, 1},
		{0.1, 2, 3, 0.1, 0.2},
		{0.9, -1, 99, 0.7, 3},
		{0.3, 0.5, 10, 0.3, 0.5},
	} {
		ex := f.Explain(x)
		if len(ex) != 5 {
			t.Fatalf("Explain gave %d entries, want 5", len(ex))
		}
		top := ex[0]
		want := 1.0
		if x[3] <= 0.5 {
			want = -1
		}
		if top.Feature != 3 || top.Name != "signal" || top.Value != x[3] || math.Copysign(1, top.Contribution) != want {
			t.Errorf("x %v: top contribution %+v, want signal pushing %+v", x, top, want)
		}
		for i := 1; i < len(ex); i++ {
			if math.Abs(ex[i].Contribution) > math.Abs(ex[i-1].Contribution) {
				t.Errorf("x %v: contributions not sorted: %v", x, ex)
			}
		}
		bias, c := f.explain(x)
		soft := 0.0
		for i := range f.trees {
			soft += f.trees[i].nodes[f.trees[i].leaf(x)].Value
		}
		soft /= float64(len(f.trees))
		sum := bias
		for _, v := range c {
			sum += v
		}
		if math.Abs(sum-soft) > 1e-9 {
			t.Errorf("x %v: bias + contributions = %v, soft vote %v", x, sum, soft)
		}
		if p := f.Predict(x); (p >= 0.5) != (want > 0) {
			t.Errorf("x %v: Predict %v", x, p)
		}
	}
}

func TestSaveLoad(t *testing.T) {
	train, test := sessions(300, 9).Split(0.3, 3)
	f, err := Train(train, Config{Trees: 20, Seed: 7}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Name, f.Version = "stratum", "test.1"
	m := Evaluate(f, test, 0.5)
	f.Info.HeldOut = &m

	var buf bytes.Buffer
	if err := f.Save(&buf); err != nil {
		t.Fatal(err)
	}
	saved := buf.Bytes()
	g, err := Load(bytes.NewReader(saved), FeatureNames)
	if err != nil {
		t.Fatal(err)
	}
	if g.Name != "stratum" || g.Version != "test.1" || g.NumTrees() != 20 || !slices.Equal(g.Features(), FeatureNames) {
		t.Errorf("loaded %q %q, %d trees, features %v", g.Name, g.Version, g.NumTrees(), g.Features())
	}
	if g.Info.HeldOut == nil || *g.Info.HeldOut != m || g.Info.Samples != len(train.Y) || g.Info.Config != f.Info.Config || !g.Info.Time.Equal(f.Info.Time) {
		t.Errorf("training info %+v, want %+v", g.Info, f.Info)
	}
	if !slices.Equal(g.Importance(), f.Importance()) {
		t.Error("importance changed")
	}
	for i, x := range test.X {
		if f.Predict(x) != g.Predict(x) || !slices.Equal(f.Explain(x), g.Explain(x)) {
			t.Fatalf("test point %d: prediction %v before saving, %v after", i, f.Predict(x), g.Predict(x))
		}
	}
	var again bytes.Buffer
	if err := g.Save(&again); err != nil || !bytes.Equal(again.Bytes(), saved) {
		t.Errorf("saving the loaded model gives other bytes (err %v)", err)
	}

	// edit rewrites one top-level field of the saved JSON.
	edit := func(key string, value any) []byte {
		var m map[string]any
		if err := json.Unmarshal(saved, &m); err != nil {
			t.Fatal(err)
		}
		m[key] = value
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	badTree := slices.Clone(f.trees[0].nodes)
	badTree[0].Left = 0 // a cycle
	for _, c := range []struct {
		name string
		data []byte
		want []string
		msg  string
	}{
		{"format version", edit("format_version", 2), nil, "format version 2 is not supported"},
		{"format name", edit("format", "something"), nil, `file format is "something"`},
		{"feature names", saved, append(slices.Clone(FeatureNames[:3]), "other"), `feature 3 is "server_bits", want "other"`},
		{"feature count", saved, FeatureNames[:5], "has 16 features, want 5"},
		{"bad tree", edit("trees", [][]Node{badTree}), nil, "tree 0: node 0 has children 0"},
		{"not json", []byte("nope"), nil, "not JSON"},
	} {
		_, err := Load(bytes.NewReader(c.data), c.want)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.msg)
		}
	}
}

func TestFeaturesVector(t *testing.T) {
	ft := cryptofeat.Derive(cryptofeat.Session{
		StartNs: 1e9, LastNs: 11e9, // 10 s
		PktsIn: 20, BytesIn: 2000, // the server's, as it is remote
		PktsOut: 20, BytesOut: 1000,
		Method: cryptofeat.MethodLowerPort,
	}, false)
	v := FeaturesVector(ft)
	if len(v) != len(FeatureNames) {
		t.Fatalf("%d values for %d names", len(v), len(FeatureNames))
	}
	want := map[string]float64{
		"method": 3, "server_packets": 20, "client_packets": 20,
		"server_bits": 16000, "client_bits": 8000, "duration_s": 10,
		"server_packets_per_s": 2, "client_packets_per_s": 2,
		"server_bits_per_s": 1600, "client_bits_per_s": 800,
		"server_bits_per_packet": 800, "client_bits_per_packet": 400,
		"packet_ratio": 1, "bit_ratio": 2,
		"packet_asymmetry": 0, "bit_asymmetry": math.Log2(16001) - math.Log2(8001),
	}
	for i, name := range FeatureNames {
		w, ok := want[name]
		if !ok {
			t.Errorf("no expectation for %q", name)
		}
		if math.Abs(v[i]-w) > 1e-12 {
			t.Errorf("%s = %v, want %v", name, v[i], w)
		}
	}
}

func BenchmarkPredict(b *testing.B) {
	d := sessions(1000, 1)
	f, err := Train(d, Config{Seed: 1}, nil) // 100 trees, the defaults
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for b.Loop() {
		f.Predict(d.X[n%len(d.X)])
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "predictions/s")
}

func BenchmarkExplain(b *testing.B) {
	d := sessions(1000, 1)
	f, err := Train(d, Config{Seed: 1}, nil)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for b.Loop() {
		f.Explain(d.X[n%len(d.X)])
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "explanations/s")
}

func BenchmarkTrain(b *testing.B) {
	d := sessions(1000, 1)
	for b.Loop() {
		if _, err := Train(d, Config{Seed: 1}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestPredictRejectsWrongLength(t *testing.T) {
	f, err := Train(Dataset{X: [][]float64{{1, 0}, {2, 0}, {3, 0}, {4, 0}}, Y: []int{0, 0, 1, 1}}, Config{Trees: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := f.Predict([]float64{4, 0}); p < 0 || p > 1 {
		t.Errorf("Predict = %v", p)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "vector has 1 features, model \"\" has 2") {
			t.Errorf("panic %v, want a length message", r)
		}
	}()
	f.Predict([]float64{1})
}
