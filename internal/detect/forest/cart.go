package forest

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
)

// gini is the Gini impurity of a node with n samples of which pos are
// labelled 1: 1 - p² - (1-p)² = 2p(1-p) with p = pos/n; 0 for an empty
// node.
func gini(pos, n float64) float64 {
	if n <= 0 {
		return 0
	}
	p := pos / n
	return 2 * p * (1 - p)
}

// builder grows trees on one dataset; each training goroutine has its own
// (its buffers are reused from tree to tree).
type builder struct {
	x   [][]float64
	y   []int
	cfg Config

	nodes []Node
	imp   []float64 // this tree's impurity decrease per feature
	rootN float64   // samples at the root
	rng   *rand.Rand

	idx   []int     // the bootstrap sample: row indices, with repeats
	tmp   []int     // partition buffer
	pairs []pair    // sort buffer
	perm  []int     // feature order for one split
	stack []growing // nodes waiting for their children
}

// pair is one sample's value of the feature being scanned, and its label.
type pair struct {
	v float64
	y int
}

// growing is a node whose samples are idx[lo:hi], at depth depth.
type growing struct {
	node, lo, hi, depth int
}

func newBuilder(x [][]float64, y []int, cfg Config) *builder {
	return &builder{x: x, y: y, cfg: cfg}
}

// grow grows one tree on a bootstrap sample drawn with rng and returns it
// with its per-feature impurity decrease (normalised to sum to 1, or all
// zero for a tree without splits).
func (b *builder) grow(rng *rand.Rand) (tree, []float64) {
	n := max(1, int(math.Round(b.cfg.Sample*float64(len(b.y)))))
	b.idx = b.idx[:0]
	for range n {
		b.idx = append(b.idx, rng.IntN(len(b.y)))
	}
	return b.growOn(b.idx, rng)
}

// growOn grows one tree on the samples idx (which it reorders), trying
// features in an order drawn from rng.
func (b *builder) growOn(idx []int, rng *rand.Rand) (tree, []float64) {
	nf := len(b.x[0])
	b.rng = rng
	b.idx = idx
	b.nodes = b.nodes[:0]
	b.imp = make([]float64, nf)
	b.rootN = float64(len(idx))
	if cap(b.tmp) < len(idx) {
		b.tmp = make([]int, len(idx))
		b.pairs = make([]pair, len(idx))
	}
	if len(b.perm) != nf {
		b.perm = make([]int, nf)
	}

	// Grow depth first with an explicit stack.
	b.nodes = append(b.nodes, Node{})
	b.stack = append(b.stack[:0], growing{0, 0, len(idx), 0})
	for len(b.stack) > 0 {
		g := b.stack[len(b.stack)-1]
		b.stack = b.stack[:len(b.stack)-1]
		b.split(g)
	}

	t := tree{nodes: slices.Clone(b.nodes)}
	var sum float64
	for _, v := range b.imp {
		sum += v
	}
	if sum > 0 {
		for i := range b.imp {
			b.imp[i] /= sum
		}
	}
	return t, b.imp
}

// split makes node g.node a leaf or a split. For a split it appends the
// two children (so every child's index is greater than its parent's, which
// Load checks and the tree walkers rely on) and pushes them, left on top.
func (b *builder) split(g growing) {
	idx := b.idx[g.lo:g.hi]
	n := float64(len(idx))
	pos := 0
	for _, i := range idx {
		pos += b.y[i]
	}
	value := float64(pos) / n
	b.nodes[g.node] = Node{Feature: -1, Left: -1, Right: -1, Value: value}

	minLeaf := b.cfg.MinLeaf
	if g.depth >= b.cfg.MaxDepth || pos == 0 || pos == len(idx) || len(idx) < 2*minLeaf {
		return
	}
	parentImp := gini(float64(pos), n)

	// Try features in random order until MaxFeatures non-constant ones
	// have been scanned (constant features do not count, as in CART
	// implementations such as scikit-learn's).
	for i := range b.perm {
		b.perm[i] = i
	}
	bestFeat, bestThr, bestScore := -1, 0.0, n*parentImp
	bestNL := 0
	tried := 0
	for k := 0; k < len(b.perm) && tried < b.cfg.MaxFeatures; k++ {
		j := k + b.rng.IntN(len(b.perm)-k)
		b.perm[k], b.perm[j] = b.perm[j], b.perm[k]
		feat := b.perm[k]

		pairs := b.pairs[:len(idx)]
		for p, i := range idx {
			pairs[p] = pair{b.x[i][feat], b.y[i]}
		}
		slices.SortFunc(pairs, func(a, b pair) int { return cmp.Compare(a.v, b.v) })
		if pairs[0].v == pairs[len(pairs)-1].v {
			continue // constant here
		}
		tried++

		// Sweep the thresholds between distinct consecutive values; the
		// score is the children's impurity weighted by their sizes.
		lpos := 0
		for p := 0; p < len(pairs)-1; p++ {
			lpos += pairs[p].y
			if pairs[p].v == pairs[p+1].v {
				continue
			}
			nl := p + 1
			nr := len(pairs) - nl
			if nl < minLeaf || nr < minLeaf {
				continue
			}
			score := float64(nl)*gini(float64(lpos), float64(nl)) +
				float64(nr)*gini(float64(pos-lpos), float64(nr))
			if score < bestScore-1e-12 {
				bestFeat, bestScore, bestNL = feat, score, nl
				bestThr = midpoint(pairs[p].v, pairs[p+1].v)
			}
		}
	}
	if bestFeat < 0 {
		return // no split lowers the impurity
	}

	// Partition idx stably: the samples going left first.
	nl := 0
	for _, i := range idx {
		if b.x[i][bestFeat] <= bestThr {
			b.tmp[nl] = i
			nl++
		}
	}
	r := nl
	for _, i := range idx {
		if b.x[i][bestFeat] > bestThr {
			b.tmp[r] = i
			r++
		}
	}
	copy(idx, b.tmp[:len(idx)])
	if nl != bestNL {
		panic("forest: partition disagrees with the split scan")
	}

	b.imp[bestFeat] += (n*parentImp - bestScore) / b.rootN
	li := len(b.nodes)
	b.nodes = append(b.nodes, Node{}, Node{})
	b.nodes[g.node] = Node{Feature: int32(bestFeat), Threshold: bestThr, Left: int32(li), Right: int32(li + 1), Value: value}
	b.stack = append(b.stack,
		growing{li + 1, g.lo + nl, g.hi, g.depth + 1},
		growing{li, g.lo, g.lo + nl, g.depth + 1})
}

// midpoint returns a threshold between a < b that sends a left and b
// right: their midpoint, or a when rounding puts the midpoint on b.
func midpoint(a, b float64) float64 {
	m := a/2 + b/2 // no overflow near ±MaxFloat64
	if m >= b || m < a {
		return a
	}
	return m
}
