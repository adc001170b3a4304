package forest

import (
	"cmp"
	"math"
	"slices"
)

// Contribution is one feature's share in a prediction (Explain) or in the
// model (Importance).
type Contribution struct {
	Feature int    `json:"feature"` // index in the feature vector
	Name    string `json:"name"`
	// Value is the feature's value in the explained vector (Explain; 0
	// from Importance).
	Value float64 `json:"value"`
	// Contribution is, from Explain, how much the feature moved the
	// class-1 probability of the explained vector (positive: towards 1);
	// from Importance, the feature's normalised mean decrease in impurity.
	Contribution float64 `json:"contribution"`
}

// Explain attributes the prediction for x to the features (Saabas path
// contributions). In each tree, every split on x's path from the root to
// its leaf changes the class-1 fraction from the node's to the child's;
// that change is credited to the split's feature. Contributions are
// averaged over trees, so the training base rate (the mean root fraction)
// plus all contributions is the mean class-1 fraction of x's leaves: the
// forest's soft vote, close to Predict's hard vote.
//
// It returns one entry per feature, sorted by decreasing absolute
// contribution (ties by feature index); the first few are the features
// that drove the prediction.
func (f *Forest) Explain(x []float64) []Contribution {
	f.checkLen(x)
	_, c := f.explain(x)
	out := make([]Contribution, len(f.names))
	for i, name := range f.names {
		out[i] = Contribution{Feature: i, Name: name, Value: x[i], Contribution: c[i]}
	}
	sortContributions(out)
	return out
}

// explain returns the mean root class-1 fraction and the per-feature mean
// path contributions for x.
func (f *Forest) explain(x []float64) (bias float64, c []float64) {
	c = make([]float64, len(f.names))
	for ti := range f.trees {
		nodes := f.trees[ti].nodes
		bias += nodes[0].Value
		i := 0
		for nodes[i].Left >= 0 {
			n := &nodes[i]
			next := int(n.Right)
			if x[n.Feature] <= n.Threshold {
				next = int(n.Left)
			}
			c[n.Feature] += nodes[next].Value - n.Value
			i = next
		}
	}
	t := float64(len(f.trees))
	for i := range c {
		c[i] /= t
	}
	return bias / t, c
}

// Importance returns every feature's mean decrease in impurity: for each
// tree, the Gini decrease of its splits on the feature weighted by the
// share of samples reaching them, normalised to sum to 1 per tree, then
// averaged over trees and normalised again. Sorted by decreasing
// importance (ties by feature index).
func (f *Forest) Importance() []Contribution {
	out := make([]Contribution, len(f.names))
	for i, name := range f.names {
		out[i] = Contribution{Feature: i, Name: name, Contribution: f.importance[i]}
	}
	sortContributions(out)
	return out
}

// meanImportance averages per-tree importances and normalises the result
// to sum to 1 (all zero if no tree has a split).
func meanImportance(perTree [][]float64, nf int) []float64 {
	m := make([]float64, nf)
	for _, imp := range perTree {
		for i, v := range imp {
			m[i] += v
		}
	}
	var sum float64
	for _, v := range m {
		sum += v
	}
	if sum > 0 {
		for i := range m {
			m[i] /= sum
		}
	}
	return m
}

func sortContributions(cs []Contribution) {
	slices.SortStableFunc(cs, func(a, b Contribution) int {
		if c := cmp.Compare(math.Abs(b.Contribution), math.Abs(a.Contribution)); c != 0 {
			return c
		}
		return cmp.Compare(a.Feature, b.Feature)
	})
}
