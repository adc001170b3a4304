package kmeans

import (
	"math"
)

// KScore is the automatic choice of k's record of one candidate, computed
// on the selection subsample.
type KScore struct {
	K       int     `json:"k"`
	Inertia float64 `json:"inertia"` // k-means objective, best of the restarts
	// BIC is -2·log-likelihood + p·ln(n) of the hard-assigned Gaussian
	// mixture (weights n_c/n, the clusters' shrinkage covariances) with
	// p = k·(d + d(d+1)/2) + k - 1 parameters. Lower is better.
	BIC     float64 `json:"bic"`
	MinSize int     `json:"min_size"` // members of the smallest cluster
	// Valid is false when a cluster is smaller than the minimum size
	// (Config.MinClusterFrac, at least 2(d+1) points): such a k is not
	// chosen.
	Valid bool `json:"valid"`
}

// minClusterSize is the least number of members of a cluster for a k to
// be chosen, for n rows of d features.
func minClusterSize(n, d int, frac float64) int {
	return max(2*(d+1), int(math.Ceil(frac*float64(n))))
}

// chooseK clusters the subsample for every k from 1 to KMax (best of the
// restarts each) and returns the valid clustering of least BIC (the
// smaller k on ties) with the record of every k tried. k = 1 is always
// valid, so one blob gives one cluster. It stops early at a k the
// subsample is too small to fill with minimum-size clusters.
func chooseK(sub matrix, r resolved, floors []float64) (clustering, []KScore) {
	cfg := r.cfg
	minSize := minClusterSize(sub.n, sub.d, cfg.MinClusterFrac)
	var (
		best    clustering
		bestBIC float64
		scores  []KScore
	)
	for k := 1; k <= cfg.KMax; k++ {
		if k > 1 && k*minSize > sub.n {
			break
		}
		cl := bestOf(sub, k, cfg.Restarts, cfg.MaxIter, cfg.Tol, cfg.Seed)
		s := KScore{K: k, Inertia: cl.inertia, BIC: bic(sub, cl, floors, cfg.Shrinkage), MinSize: sub.n}
		for _, n := range cl.counts {
			s.MinSize = min(s.MinSize, n)
		}
		s.Valid = k == 1 || s.MinSize >= minSize
		scores = append(scores, s)
		if s.Valid && (k == 1 || s.BIC < bestBIC) {
			best, bestBIC = cl, s.BIC
		}
	}
	return best, scores
}

// bic is the Bayesian information criterion of a clustering read as a
// hard-assigned Gaussian mixture with the same regularised covariances as
// the model's. Full covariances matter: splitting an elongated Gaussian
// blob along its axis raises a diagonal-covariance likelihood enough to
// win, not a full-covariance one (each half gains 0.5·ln(π/(π-2)) ≈ 0.51
// nats a point, less than the ln 2 the weights cost).
func bic(m matrix, cl clustering, floors []float64, shrink float64) float64 {
	d := m.d
	mo := clusterMoments(m, cl.assign, cl.k)
	gs := make([]gaussian, cl.k)
	var ll float64
	used := 0
	for c := range cl.k {
		if mo[c].n == 0 {
			continue
		}
		used++
		gs[c] = shrunkCovariance(mo[c], floors, shrink)
		nc := float64(mo[c].n)
		ll += nc*math.Log(nc/float64(m.n)) - 0.5*nc*(float64(d)*math.Log(2*math.Pi)+gs[c].logdet)
	}
	quad := make([]float64, numChunks(m.n))
	forChunks(m.n, func(ci, lo, hi int) {
		e := make([]float64, d)
		var s float64
		for i := lo; i < hi; i++ {
			c := int(cl.assign[i])
			x, mean := m.row(i), mo[c].mean
			for j := range d {
				e[j] = x[j] - mean[j]
			}
			s += max(0, mahalanobis2(e, gs[c].prec))
		}
		quad[ci] = s
	})
	for _, q := range quad {
		ll -= 0.5 * q
	}
	p := float64(used*(d+d*(d+1)/2) + used - 1)
	return -2*ll + p*math.Log(float64(m.n))
}
