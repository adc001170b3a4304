package kmeans

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Model is a trained benign-request model. It is read-only after Train or
// Load, so Score and ScoreInFlight may be called concurrently.
type Model struct {
	// Name and Version identify the model (free text).
	Name    string
	Version string
	// Info describes the training run.
	Info TrainInfo

	norm     Norm
	clusters []cluster
}

// cluster is one cluster of benign requests, in standardised units.
type cluster struct {
	size     int
	mean     []float64
	g        gaussian
	invStd   []float64 // 1/sqrt(Σ_jj), for the one-sided in-flight score
	thresh   float64   // Mahalanobis distance threshold
	inflight float64   // one-sided score threshold
	baseline []float64 // the mean in original units
}

// TrainInfo is a model's training summary.
type TrainInfo struct {
	Time    time.Time `json:"time"`    // when training finished (UTC)
	Seconds float64   `json:"seconds"` // how long training took
	Samples int       `json:"samples"` // vectors trained on
	// Seen is how many vectors were offered; more than Samples when a
	// Trainer kept a reservoir sample.
	Seen  int64 `json:"seen"`
	K     int   `json:"k"`
	AutoK bool  `json:"auto_k"`
	// Selection records every k tried by the automatic choice.
	Selection []KScore `json:"selection,omitempty"`
	// Iterations and Inertia are those of the final Lloyd run on all
	// samples (standardised units).
	Iterations int     `json:"iterations"`
	Inertia    float64 `json:"inertia"`
	Config     Config  `json:"config"` // effective configuration
}

// Train fits a model on benign vectors X (one row per completed request,
// columns named by features). Rows must have len(features) finite values.
// The result depends only on the data and cfg (cfg.Seed included), not on
// GOMAXPROCS.
func Train(features []string, X [][]float64, cfg Config) (*Model, error) {
	if err := checkFeatures(features); err != nil {
		return nil, err
	}
	d := len(features)
	m := matrix{v: make([]float64, 0, len(X)*d), n: len(X), d: d}
	for i, x := range X {
		if err := checkRow(features, x); err != nil {
			return nil, fmt.Errorf("kmeans: row %d: %w", i, err)
		}
		m.v = append(m.v, x...)
	}
	return train(features, m, cfg, int64(len(X)))
}

// checkRow requires len(features) finite values.
func checkRow(features []string, x []float64) error {
	if len(x) != len(features) {
		return fmt.Errorf("%d values for %d features", len(x), len(features))
	}
	for j, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("feature %q is %v", features[j], v)
		}
	}
	return nil
}

// train fits a model on the raw rows m, which it overwrites.
func train(features []string, m matrix, cfg Config, seen int64) (*Model, error) {
	start := time.Now()
	r, err := cfg.resolve(features)
	if err != nil {
		return nil, err
	}
	cfg = r.cfg
	if min2 := 2 * (m.d + 1); m.n < min2 {
		return nil, fmt.Errorf("kmeans: %d training vectors; at least %d are needed for %d features", m.n, min2, m.d)
	}

	transformAll(m, r.transforms, r.units)
	nm := fitNorm(m, r, features)
	nm.standardiseAll(m)
	floors := make([]float64, m.d)
	for j := range floors {
		floors[j] = nm.floor(j)
	}

	sub := subsample(m, cfg.SelectSample, cfg.Seed)
	info := TrainInfo{Samples: m.n, Seen: seen, AutoK: cfg.K == 0, Config: cfg}
	var init clustering
	if cfg.K == 0 {
		init, info.Selection = chooseK(sub, r, floors)
	} else {
		init = bestOf(sub, min(cfg.K, sub.n), cfg.Restarts, cfg.MaxIter, cfg.Tol, cfg.Seed)
	}
	final := init
	if sub.n != m.n {
		final = lloyd(m, init.centres, init.k, cfg.MaxIter, cfg.Tol)
	}
	final = dropEmpty(final, m.d)
	info.K, info.Iterations, info.Inertia = final.k, final.iters, final.inertia

	model := &Model{norm: nm, Info: info}
	model.clusters = buildClusters(m, final, floors, r.cfg)
	for c := range model.clusters {
		model.clusters[c].baseline = model.baseline(model.clusters[c].mean)
	}
	model.Info.Time = time.Now().UTC()
	model.Info.Seconds = time.Since(start).Seconds()
	return model, nil
}

// subsampleStream separates the subsample's random stream from the
// k-means++ ones.
const subsampleStream = 0x73756273616d706c

// subsample returns size rows of m chosen uniformly without replacement
// (in their original order), or m itself when it has no more rows.
func subsample(m matrix, size int, seed uint64) matrix {
	if m.n <= size {
		return m
	}
	r := newRand(seed, subsampleStream)
	idx := make([]int32, m.n)
	for i := range idx {
		idx[i] = int32(i)
	}
	for i := range size {
		j := i + r.IntN(m.n-i)
		idx[i], idx[j] = idx[j], idx[i]
	}
	pick := idx[:size]
	slices.Sort(pick)
	out := matrix{v: make([]float64, 0, size*m.d), n: size, d: m.d}
	for _, i := range pick {
		out.v = append(out.v, m.row(int(i))...)
	}
	return out
}

// dropEmpty removes clusters without members (possible only when rows
// repeat), renumbering the rest in order.
func dropEmpty(cl clustering, d int) clustering {
	if !slices.Contains(cl.counts, 0) {
		return cl
	}
	renum := make([]int32, cl.k)
	out := clustering{assign: cl.assign, inertia: cl.inertia, iters: cl.iters}
	for c, n := range cl.counts {
		renum[c] = int32(out.k)
		if n > 0 {
			out.centres = append(out.centres, cl.centres[c*d:(c+1)*d]...)
			out.counts = append(out.counts, n)
			out.k++
		}
	}
	for i, c := range out.assign {
		out.assign[i] = renum[c]
	}
	return out
}

// buildClusters estimates every cluster's covariance and thresholds from
// its members. The Mahalanobis threshold is Margin times the Quantile of
// the members' distances; the in-flight threshold the same of their
// one-sided scores; both at least Margin (one standard deviation).
func buildClusters(m matrix, cl clustering, floors []float64, cfg Config) []cluster {
	d := m.d
	mo := clusterMoments(m, cl.assign, cl.k)
	out := make([]cluster, cl.k)
	for c := range out {
		g := shrunkCovariance(mo[c], floors, cfg.Shrinkage)
		inv := make([]float64, d)
		for j := range inv {
			inv[j] = 1 / math.Sqrt(g.cov[j*d+j])
		}
		out[c] = cluster{size: mo[c].n, mean: mo[c].mean, g: g, invStd: inv}
	}
	// Every member's distance and one-sided score, grouped by cluster.
	start := make([]int, cl.k+1)
	for c := range cl.k {
		start[c+1] = start[c] + mo[c].n
	}
	pos := make([]int, m.n)
	next := slices.Clone(start[:cl.k])
	for i, c := range cl.assign {
		pos[i] = next[c]
		next[c]++
	}
	dist, one := make([]float64, m.n), make([]float64, m.n)
	forChunks(m.n, func(_, lo, hi int) {
		e := make([]float64, d)
		for i := lo; i < hi; i++ {
			c := &out[cl.assign[i]]
			dist[pos[i]] = c.distance(m.row(i), e)
			one[pos[i]] = c.oneSided(m.row(i))
		}
	})
	forEach(cl.k, func(c int) {
		ds, os := dist[start[c]:start[c+1]], one[start[c]:start[c+1]]
		slices.Sort(ds)
		slices.Sort(os)
		out[c].thresh = cfg.Margin * max(1, quantileSorted(ds, cfg.Quantile))
		out[c].inflight = cfg.Margin * max(1, quantileSorted(os, cfg.Quantile))
	})
	return out
}

// distance is the Mahalanobis distance of the standardised z to the
// cluster; e is scratch space of len(z).
func (c *cluster) distance(z, e []float64) float64 {
	for j, v := range z {
		e[j] = v - c.mean[j]
	}
	return math.Sqrt(max(0, mahalanobis2(e, c.g.prec)))
}

// oneSided is the in-flight score of the standardised z against the
// cluster: the norm of the positive excesses over the cluster mean, each
// in cluster standard deviations. It is monotone non-decreasing in every
// coordinate of z.
func (c *cluster) oneSided(z []float64) float64 {
	var s float64
	for j, v := range z {
		if e := (v - c.mean[j]) * c.invStd[j]; e > 0 {
			s += e * e
		}
	}
	return math.Sqrt(s)
}

// baseline maps a standardised centre to original units.
func (m *Model) baseline(mean []float64) []float64 {
	b := make([]float64, len(mean))
	for j, v := range mean {
		b[j] = m.norm.original(j, v)
	}
	return b
}

// Features returns the model's feature names, in vector order.
func (m *Model) Features() []string { return slices.Clone(m.norm.Features) }

// K returns the number of clusters.
func (m *Model) K() int { return len(m.clusters) }

// Normalisation returns a copy of the model's transforms, centres and
// scales.
func (m *Model) Normalisation() Norm {
	n := m.norm
	n.Features, n.Transforms, n.Units = slices.Clone(n.Features), slices.Clone(n.Transforms), slices.Clone(n.Units)
	n.Centre, n.Scale, n.MinScale = slices.Clone(n.Centre), slices.Clone(n.Scale), slices.Clone(n.MinScale)
	return n
}

// ClusterInfo describes one cluster.
type ClusterInfo struct {
	Size int `json:"size"` // training members
	// Centre is the members' mean, mapped back to original units (with
	// log1p, a geometric-style mean of 1 + the value, minus 1).
	Centre            []float64 `json:"centre"`
	Threshold         float64   `json:"threshold"`          // of Score's distance
	InFlightThreshold float64   `json:"inflight_threshold"` // of ScoreInFlight's score
	Shrinkage         float64   `json:"shrinkage"`          // weight of the diagonal covariance target
}

// Clusters describes the model's clusters, in index order.
func (m *Model) Clusters() []ClusterInfo {
	out := make([]ClusterInfo, len(m.clusters))
	for c, cl := range m.clusters {
		out[c] = ClusterInfo{
			Size: cl.size, Centre: slices.Clone(cl.baseline),
			Threshold: cl.thresh, InFlightThreshold: cl.inflight, Shrinkage: cl.g.shrinkage,
		}
	}
	return out
}
