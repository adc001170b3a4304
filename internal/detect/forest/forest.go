// Package forest is a random-forest binary classifier: bagged CART trees
// grown on Gini impurity, with a random subset of features tried at every
// split. It is generic over float64 feature vectors; FeaturesVector maps
// the crypto probe's derived session features (cryptofeat.Features) to
// one, for telling crypto-mining (stratum) sessions from benign ones.
//
// Training is parallel (one goroutine per CPU) and deterministic: every
// tree draws from its own PCG source seeded from Config.Seed and the tree's
// index, so a seed always gives the same forest whatever the scheduling.
// Models are saved as versioned JSON (Save, Load).
package forest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"
)

// Dataset is a labelled training or test set: row i is the feature vector
// X[i] with the label Y[i] (0 benign, 1 positive). Names names the columns;
// empty means "f0", "f1", ...
type Dataset struct {
	X     [][]float64
	Y     []int
	Names []string
}

// Config holds the training parameters. Zero fields take their defaults.
type Config struct {
	// Trees is the number of trees (default 100).
	Trees int `json:"trees"`
	// MaxDepth is the deepest a leaf may be; the root is depth 0
	// (default 12).
	MaxDepth int `json:"max_depth"`
	// MinLeaf is the fewest (bootstrap) samples a leaf may hold
	// (default 2).
	MinLeaf int `json:"min_leaf"`
	// MaxFeatures is how many non-constant features are tried at each
	// split (default round(sqrt(F)), at least 1; capped at F).
	MaxFeatures int `json:"max_features"`
	// Sample is the bootstrap size as a fraction of the training rows,
	// drawn with replacement, in (0, 1] (default 1.0).
	Sample float64 `json:"sample"`
	// Seed seeds every tree's random source (with the tree's index).
	Seed uint64 `json:"seed"`
}

// Defaults of Config.
const (
	DefaultTrees    = 100
	DefaultMaxDepth = 12
	DefaultMinLeaf  = 2
	DefaultSample   = 1.0
)

// withDefaults returns c with its zero fields set for f features, or an
// error for a negative or out-of-range field.
func (c Config) withDefaults(f int) (Config, error) {
	if c.Trees < 0 || c.MaxDepth < 0 || c.MinLeaf < 0 || c.MaxFeatures < 0 {
		return c, fmt.Errorf("forest: negative config field in %+v", c)
	}
	if c.Sample < 0 || c.Sample > 1 || math.IsNaN(c.Sample) {
		return c, fmt.Errorf("forest: config sample %v is not in (0, 1]", c.Sample)
	}
	if c.Trees == 0 {
		c.Trees = DefaultTrees
	}
	if c.MaxDepth == 0 {
		c.MaxDepth = DefaultMaxDepth
	}
	if c.MinLeaf == 0 {
		c.MinLeaf = DefaultMinLeaf
	}
	if c.MaxFeatures == 0 {
		c.MaxFeatures = max(1, int(math.Round(math.Sqrt(float64(f)))))
	}
	c.MaxFeatures = min(c.MaxFeatures, f)
	if c.Sample == 0 {
		c.Sample = DefaultSample
	}
	return c, nil
}

// Forest is a trained model. Name, Version and Info are saved with it;
// set Info.HeldOut (from Evaluate on a held-out set) before Save to record
// the model's measured quality.
type Forest struct {
	// Name and Version identify the model (free text, e.g. "stratum" and
	// "2025-06-01.1").
	Name    string
	Version string
	// Info describes the training run.
	Info TrainInfo

	names      []string
	trees      []tree
	importance []float64 // mean decrease in impurity, normalised, per feature
}

// TrainInfo is a model's training metadata.
type TrainInfo struct {
	Time      time.Time `json:"time"`      // when training finished (UTC)
	Seconds   float64   `json:"seconds"`   // how long training took
	Samples   int       `json:"samples"`   // training rows
	Positives int       `json:"positives"` // training rows labelled 1
	Config    Config    `json:"config"`    // effective configuration (defaults applied)
	// HeldOut is the quality on a held-out set, when the trainer measured
	// it (Train leaves it nil).
	HeldOut *Metrics `json:"held_out,omitempty"`
}

// Node is one node of a tree, as stored in the flat node array of a tree
// (the root is node 0; a node's children come after it). A leaf has
// Feature, Left and Right -1. A split sends x to Left when
// x[Feature] <= Threshold and to Right otherwise (NaN goes right). Value is
// the fraction of the node's bootstrap samples labelled 1.
type Node struct {
	Feature   int32   `json:"feature"`
	Threshold float64 `json:"threshold"`
	Left      int32   `json:"left"`
	Right     int32   `json:"right"`
	Value     float64 `json:"value"`
}

// tree is one CART tree: its nodes in preorder.
type tree struct {
	nodes []Node
}

// leaf returns the index of the leaf x falls into.
func (t *tree) leaf(x []float64) int {
	i := 0
	for {
		n := &t.nodes[i]
		if n.Left < 0 {
			return i
		}
		if x[n.Feature] <= n.Threshold {
			i = int(n.Left)
		} else {
			i = int(n.Right)
		}
	}
}

// Features returns the names of the model's features, in vector order.
func (f *Forest) Features() []string { return append([]string(nil), f.names...) }

// NumTrees returns the number of trees.
func (f *Forest) NumTrees() int { return len(f.trees) }

// Predict returns the fraction of trees voting 1 for x: a tree votes 1
// when more than half of the training samples in x's leaf were labelled 1.
// It panics if len(x) is not the model's number of features.
func (f *Forest) Predict(x []float64) float64 {
	f.checkLen(x)
	votes := 0
	for i := range f.trees {
		t := &f.trees[i]
		if t.nodes[t.leaf(x)].Value > 0.5 {
			votes++
		}
	}
	return float64(votes) / float64(len(f.trees))
}

func (f *Forest) checkLen(x []float64) {
	if len(x) != len(f.names) {
		panic(fmt.Sprintf("forest: vector has %d features, model %q has %d", len(x), f.Name, len(f.names)))
	}
}

// validate checks a dataset and returns its number of features and its
// column names (defaulted).
func (d Dataset) validate() (int, []string, error) {
	if len(d.X) == 0 {
		return 0, nil, errors.New("forest: empty dataset")
	}
	if len(d.X) != len(d.Y) {
		return 0, nil, fmt.Errorf("forest: %d rows but %d labels", len(d.X), len(d.Y))
	}
	nf := len(d.X[0])
	if nf == 0 {
		return 0, nil, errors.New("forest: rows have no features")
	}
	names := d.Names
	if len(names) == 0 {
		names = make([]string, nf)
		for i := range names {
			names[i] = fmt.Sprintf("f%d", i)
		}
	} else if len(names) != nf {
		return 0, nil, fmt.Errorf("forest: %d feature names for %d features", len(names), nf)
	}
	seen := make(map[string]bool, nf)
	for _, n := range names {
		if seen[n] {
			return 0, nil, fmt.Errorf("forest: feature name %q appears twice", n)
		}
		seen[n] = true
	}
	for i, row := range d.X {
		if len(row) != nf {
			return 0, nil, fmt.Errorf("forest: row %d has %d features, row 0 has %d", i, len(row), nf)
		}
		for j, v := range row {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, nil, fmt.Errorf("forest: row %d feature %q is %v", i, names[j], v)
			}
		}
		if y := d.Y[i]; y != 0 && y != 1 {
			return 0, nil, fmt.Errorf("forest: row %d has label %d, want 0 or 1", i, y)
		}
	}
	return nf, append([]string(nil), names...), nil
}

// Train grows a forest on d. Trees are grown in parallel on
// runtime.NumCPU goroutines; the result depends only on d and cfg. If
// progress is not nil it is called after each tree with the number of
// trees done so far (1 to total, in order, never concurrently).
//
// Each tree is grown on a bootstrap sample (cfg.Sample × rows, with
// replacement) until it reaches cfg.MaxDepth, a node is pure, a split
// would leave fewer than cfg.MinLeaf samples on a side, or no split of the
// cfg.MaxFeatures features tried lowers the Gini impurity.
func Train(d Dataset, cfg Config, progress func(done, total int)) (*Forest, error) {
	start := time.Now()
	nf, names, err := d.validate()
	if err != nil {
		return nil, err
	}
	if cfg, err = cfg.withDefaults(nf); err != nil {
		return nil, err
	}
	pos := 0
	for _, y := range d.Y {
		pos += y
	}
	if pos == 0 || pos == len(d.Y) {
		return nil, fmt.Errorf("forest: training set has only class %d", d.Y[0])
	}

	f := &Forest{
		names: names,
		trees: make([]tree, cfg.Trees),
		Info: TrainInfo{
			Samples:   len(d.Y),
			Positives: pos,
			Config:    cfg,
		},
	}
	imps := make([][]float64, cfg.Trees)

	jobs := make(chan int)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int
	)
	for range min(runtime.NumCPU(), cfg.Trees) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := newBuilder(d.X, d.Y, cfg)
			for i := range jobs {
				f.trees[i], imps[i] = b.grow(treeRand(cfg.Seed, i))
				if progress != nil {
					mu.Lock()
					done++
					progress(done, cfg.Trees)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range cfg.Trees {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	f.importance = meanImportance(imps, nf)
	f.Info.Time = time.Now().UTC()
	f.Info.Seconds = time.Since(start).Seconds()
	return f, nil
}

// treeRand returns tree i's random source: a PCG whose two seed words are
// mixed (splitmix64) from the forest's seed and the tree's index, so
// neighbouring trees get unrelated streams.
func treeRand(seed uint64, i int) *rand.Rand {
	a := splitmix64(seed ^ (uint64(i)+1)*0x9e3779b97f4a7c15)
	b := splitmix64(a ^ 0xd1b54a32d192ed03)
	return rand.New(rand.NewPCG(a, b))
}

// splitmix64 is the SplitMix64 finaliser: a bijective 64-bit mix.
func splitmix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Split divides d into a training and a test set, stratified by label:
// about testFrac of each class goes to the test set, chosen by a shuffle
// seeded with seed. The rows are shared with d, not copied.
func (d Dataset) Split(testFrac float64, seed uint64) (train, test Dataset) {
	r := rand.New(rand.NewPCG(splitmix64(seed), splitmix64(^seed)))
	train.Names, test.Names = d.Names, d.Names
	for class := 0; class <= 1; class++ {
		var idx []int
		for i, y := range d.Y {
			if y == class {
				idx = append(idx, i)
			}
		}
		r.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		nTest := int(math.Round(testFrac * float64(len(idx))))
		for k, i := range idx {
			if k < nTest {
				test.X, test.Y = append(test.X, d.X[i]), append(test.Y, d.Y[i])
			} else {
				train.X, train.Y = append(train.X, d.X[i]), append(train.Y, d.Y[i])
			}
		}
	}
	return train, test
}
