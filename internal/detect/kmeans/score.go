package kmeans

import (
	"fmt"
	"math"
	"slices"

	"github.com/rampart-shield/rampart/internal/alert"
)

// Result is the verdict on one vector.
type Result struct {
	// Cluster is the cluster that accepts the vector best: the one of
	// least Score.
	Cluster int `json:"cluster"`
	// Score is Distance / Threshold for that cluster: below 1 some
	// cluster accepts the vector; 1 or more, none does.
	Score     float64 `json:"score"`
	Distance  float64 `json:"distance"`
	Threshold float64 `json:"threshold"`
	Outlier   bool    `json:"outlier"`  // Score >= 1
	InFlight  bool    `json:"inflight"` // from ScoreInFlight
	// Top is every feature's part in Distance for Cluster, largest
	// first. It is filled for outliers only, so that accepting a benign
	// vector allocates nothing; Model.Explain gives it for any result.
	Top []Contribution `json:"top,omitempty"`
}

// Contribution is one feature's part in a score.
type Contribution struct {
	Feature int    `json:"feature"` // index in the vector
	Name    string `json:"name"`
	// Value is the feature's value in the scored vector and Baseline the
	// cluster's centre, both in original units.
	Value    float64 `json:"value"`
	Baseline float64 `json:"baseline"`
	// Contribution is the feature's share of the squared distance (the
	// shares sum to 1, or are all 0 at distance 0). For Score it is
	// e_j·(Σ⁻¹e)_j with e the deviation from the centre, negative when a
	// correlated feature already accounts for the deviation; for
	// ScoreInFlight, the feature's squared positive excess.
	Contribution float64 `json:"contribution"`
}

// maxStack is the largest number of features scored without allocating
// scratch space.
const maxStack = 16

func (m *Model) checkLen(x []float64) {
	if len(x) != len(m.norm.Features) {
		panic(fmt.Sprintf("kmeans: vector has %d features, model %q has %d", len(x), m.Name, len(m.norm.Features)))
	}
}

// scratch returns three slices of length d, on the stack when d is
// small.
func scratch(buf *[3 * maxStack]float64, d int) (a, b, c []float64) {
	if d > maxStack {
		s := make([]float64, 3*d)
		return s[:d], s[d : 2*d], s[2*d:]
	}
	return buf[:d], buf[maxStack : maxStack+d], buf[2*maxStack : 2*maxStack+d]
}

// Score judges a completed request's vector x (original units, the
// model's feature order): its Mahalanobis distance to every cluster, each
// divided by that cluster's threshold; the least ratio is the score. It
// panics if len(x) is not the number of features. Negative and NaN
// values count as 0 under log1p (NaN as 0 under none); +Inf gives a huge
// finite score.
func (m *Model) Score(x []float64) Result {
	m.checkLen(x)
	var buf [3 * maxStack]float64
	z, e, share := scratch(&buf, len(x))
	m.norm.standardise(x, z)
	res := Result{Score: math.Inf(1)}
	for c := range m.clusters {
		cl := &m.clusters[c]
		dist := cl.distance(z, e)
		if r := dist / cl.thresh; r < res.Score {
			res.Cluster, res.Score, res.Distance, res.Threshold = c, r, dist, cl.thresh
		}
	}
	if res.Outlier = res.Score >= 1; res.Outlier {
		res.Top = m.explain(x, z, e, share, res.Cluster)
	}
	return res
}

// ScoreInFlight judges a request still running, whose vector x has so far
// only grown towards its final value. For each cluster it takes the
// one-sided score: the norm of the positive excesses of the standardised
// features over the cluster's centre, each in the cluster's standard
// deviations, divided by the cluster's in-flight threshold; the least
// ratio is the score. Every ratio, and so their minimum, is monotone
// non-decreasing in every feature: the score of a partial vector never
// exceeds that of its final vector, so a benign request is flagged in
// flight only if its completed vector's one-sided score is over the
// threshold, which the training quantile makes rare. It panics if len(x)
// is not the number of features.
func (m *Model) ScoreInFlight(x []float64) Result {
	m.checkLen(x)
	var buf [3 * maxStack]float64
	z, share, _ := scratch(&buf, len(x))
	m.norm.standardise(x, z)
	res := Result{Score: math.Inf(1), InFlight: true}
	for c := range m.clusters {
		cl := &m.clusters[c]
		o := cl.oneSided(z)
		if r := o / cl.inflight; r < res.Score {
			res.Cluster, res.Score, res.Distance, res.Threshold = c, r, o, cl.inflight
		}
	}
	if res.Outlier = res.Score >= 1; res.Outlier {
		res.Top = m.explainInFlight(x, z, share, res.Cluster)
	}
	return res
}

// Explain returns every feature's part in r (a result of Score or
// ScoreInFlight for x), largest first: what Result.Top holds for
// outliers, for any result.
func (m *Model) Explain(x []float64, r Result) []Contribution {
	m.checkLen(x)
	if r.Cluster < 0 || r.Cluster >= len(m.clusters) {
		panic(fmt.Sprintf("kmeans: result cluster %d of model %q with %d clusters", r.Cluster, m.Name, len(m.clusters)))
	}
	var buf [3 * maxStack]float64
	z, e, share := scratch(&buf, len(x))
	m.norm.standardise(x, z)
	if r.InFlight {
		return m.explainInFlight(x, z, share, r.Cluster)
	}
	return m.explain(x, z, e, share, r.Cluster)
}

// Distances writes to dst (grown if short) the Mahalanobis distance of x
// to every cluster, in cluster order, and returns it.
func (m *Model) Distances(x, dst []float64) []float64 {
	m.checkLen(x)
	var buf [3 * maxStack]float64
	z, e, _ := scratch(&buf, len(x))
	m.norm.standardise(x, z)
	dst = slices.Grow(dst[:0], len(m.clusters))
	for c := range m.clusters {
		dst = append(dst, m.clusters[c].distance(z, e))
	}
	return dst
}

// InFlightDistances writes to dst (grown if short) the one-sided in-flight
// score of x against every cluster, in cluster order, and returns it.
func (m *Model) InFlightDistances(x, dst []float64) []float64 {
	m.checkLen(x)
	var buf [3 * maxStack]float64
	z, _, _ := scratch(&buf, len(x))
	m.norm.standardise(x, z)
	dst = slices.Grow(dst[:0], len(m.clusters))
	for c := range m.clusters {
		dst = append(dst, m.clusters[c].oneSided(z))
	}
	return dst
}

// explain splits the squared Mahalanobis distance of z to cluster c into
// the features' shares e_j·(Σ⁻¹e)_j / eᵀΣ⁻¹e. dev and share are scratch
// space of len(z).
func (m *Model) explain(x, z, dev, share []float64, c int) []Contribution {
	cl := &m.clusters[c]
	d := len(z)
	for j := range d {
		dev[j] = z[j] - cl.mean[j]
	}
	var total float64
	for j := range d {
		row := cl.g.prec[j*d : (j+1)*d]
		var pe float64
		for b, v := range dev {
			pe += row[b] * v
		}
		share[j] = dev[j] * pe
		total += share[j]
	}
	return m.top(share, x, cl, total)
}

// explainInFlight splits the squared one-sided score of z against cluster
// c into the features' squared excesses; share is scratch space of
// len(z).
func (m *Model) explainInFlight(x, z, share []float64, c int) []Contribution {
	cl := &m.clusters[c]
	var total float64
	for j, v := range z {
		share[j] = 0
		if e := (v - cl.mean[j]) * cl.invStd[j]; e > 0 {
			share[j] = e * e
			total += e * e
		}
	}
	return m.top(share, x, cl, total)
}

// top turns the features' parts of total into shares, largest first
// (ties by feature index). It sorts feature indices, not the
// contributions themselves, to keep scoring cheap.
func (m *Model) top(share, x []float64, cl *cluster, total float64) []Contribution {
	d := len(share)
	for j := range share {
		if total > 0 {
			share[j] /= total
		} else {
			share[j] = 0
		}
	}
	var ob [maxStack]int
	order := ob[:0]
	if d > maxStack {
		order = make([]int, 0, d)
	}
	for j := range d {
		// Insertion sort: d is small.
		at := len(order)
		for at > 0 && share[order[at-1]] < share[j] {
			at--
		}
		order = append(order, 0)
		copy(order[at+1:], order[at:])
		order[at] = j
	}
	out := make([]Contribution, d)
	for i, j := range order {
		out[i] = Contribution{
			Feature: j, Name: m.norm.Features[j], Value: x[j],
			Baseline: cl.baseline[j], Contribution: share[j],
		}
	}
	return out
}

// AlertFeatures returns the first n (all if n <= 0) contributions as
// alert features, for an alert explaining which resource is out of line.
func (r Result) AlertFeatures(n int) []alert.Feature {
	if n <= 0 || n > len(r.Top) {
		n = len(r.Top)
	}
	out := make([]alert.Feature, n)
	for i, c := range r.Top[:n] {
		out[i] = alert.Feature{Name: c.Name, Value: c.Value, Baseline: c.Baseline, Contribution: c.Contribution}
	}
	return out
}

// BenignBoxes returns, for each cluster, a box of whole resource amounts
// (original units, the model's feature order) that ScoreInFlight accepts
// entirely: every vector whose features are each at most the box's
// bounds scores below 1, since the score never decreases as a feature
// grows and the box's corner itself scores below 1 (checked here). A box
// is the cube of half-width margin/√d cluster standard deviations around
// the cluster's centre, shrunk until its corner passes; clusters whose
// box cannot pass are left out. A filter in front of the model (the
// kernel, for reqmon) may drop vectors inside a box unscored: nothing the
// model would flag is lost.
func (m *Model) BenignBoxes() [][]float64 {
	d := len(m.norm.Features)
	var boxes [][]float64
	for c := range m.clusters {
		cl := &m.clusters[c]
		delta := 0.98 * cl.inflight / math.Sqrt(float64(d))
		for try := 0; try < 8; try, delta = try+1, delta/2 {
			b := make([]float64, d)
			for j := range b {
				b[j] = math.Floor(m.norm.original(j, cl.mean[j]+delta/cl.invStd[j]))
			}
			if m.ScoreInFlight(b).Score < 1 {
				boxes = append(boxes, b)
				break
			}
		}
	}
	return boxes
}
