package kmeans

import (
	"errors"
	"fmt"
	"math"
)

// Transform is the per-feature map applied to raw values before
// standardisation.
type Transform string

// Transforms.
const (
	// Log1p maps v to log(1+v); zero, negative and NaN values count as 0.
	// It is the default: bytes and nanoseconds span orders of magnitude,
	// and in log space a request mix is roughly Gaussian.
	Log1p Transform = "log1p"
	// None keeps the raw value (NaN counts as 0).
	None Transform = "none"
)

// apply maps a raw value. Both transforms are monotone non-decreasing in
// v, which the in-flight rule relies on.
func (t Transform) apply(v float64) float64 {
	if t == None {
		if math.IsNaN(v) {
			return 0
		}
		return v
	}
	if !(v > 0) {
		return 0
	}
	return math.Log1p(v)
}

// invert maps a transformed value back to original units.
func (t Transform) invert(v float64) float64 {
	if t == None {
		return v
	}
	return max(0, math.Expm1(v))
}

func (t Transform) valid() bool { return t == Log1p || t == None }

// Config holds the training parameters. Zero fields take their defaults
// (the Default constants); the effective configuration is recorded in the
// model's TrainInfo.
type Config struct {
	// K fixes the number of clusters; 0 chooses it automatically among
	// 1..KMax by BIC on a subsample (see the package documentation).
	K int `json:"k,omitempty"`
	// KMax is the largest k tried by the automatic choice (default 8).
	KMax int `json:"k_max"`
	// SelectSample is the size of the subsample on which k is chosen and
	// the k-means++ restarts are run (default 20000).
	SelectSample int `json:"select_sample"`
	// Restarts is how many k-means++ initialisations are tried per k; the
	// one of least inertia is kept (default 3).
	Restarts int `json:"restarts"`
	// MaxIter bounds the Lloyd iterations of one run (default 100).
	MaxIter int `json:"max_iter"`
	// Tol stops Lloyd iterations once no centre moves by more than Tol
	// (in standardised units; default 1e-3).
	Tol float64 `json:"tol"`
	// MinClusterFrac is the smallest share of the subsample a cluster may
	// hold for its k to be eligible (default 0.005); a cluster also needs
	// at least 2(d+1) points.
	MinClusterFrac float64 `json:"min_cluster_frac"`

	// Transform is applied to every feature (default Log1p); Transforms
	// overrides it per feature name.
	Transform  Transform            `json:"transform"`
	Transforms map[string]Transform `json:"transforms,omitempty"`
	// Units divides a feature before its transform (default 1): with
	// log1p, T(x) = log(1 + x/unit), so differences well below one unit
	// (a few microseconds of CPU, a few bytes) do not spread the
	// distribution, while ratios well above it count in full. Choose the
	// unit as the smallest amount that matters for the feature.
	Units map[string]float64 `json:"units,omitempty"`
	// TrimQuantile is the share of the lowest and of the highest
	// transformed values of each feature left out of its centre and scale
	// (default 0.001: the 0.1% and 99.9% quantiles).
	TrimQuantile float64 `json:"trim_quantile"`
	// OutlierMADs, when positive, also leaves out values more than this
	// many (normal-consistent) median absolute deviations from the median.
	// Off by default: on multimodal traffic a minority request type can
	// sit many MADs from the median and would be cut.
	OutlierMADs float64 `json:"outlier_mads,omitempty"`
	// MinScale floors every scale, globally and within a cluster, in
	// transformed units (default 0.25: with log1p about a 28% change of
	// the value). MinScales overrides it per feature name; with None set
	// it in the feature's own units.
	MinScale  float64            `json:"min_scale"`
	MinScales map[string]float64 `json:"min_scales,omitempty"`
	// Shrinkage fixes the weight in (0, 1] given to the diagonal target
	// of each cluster covariance; 0 estimates it (Schäfer–Strimmer).
	Shrinkage float64 `json:"shrinkage,omitempty"`

	// Quantile and Margin set every threshold: Margin times the Quantile
	// of the training members' distances of the cluster (defaults 0.999
	// and 1.25).
	Quantile float64 `json:"quantile"`
	Margin   float64 `json:"margin"`

	// Cap is the most vectors a Trainer keeps; beyond it, it keeps a
	// uniform reservoir sample (default 262144).
	Cap int `json:"cap"`
	// Seed seeds every random choice: subsample, k-means++, reservoir.
	Seed uint64 `json:"seed"`
}

// Defaults of Config.
const (
	DefaultKMax           = 8
	DefaultSelectSample   = 20000
	DefaultRestarts       = 3
	DefaultMaxIter        = 100
	DefaultTol            = 1e-3
	DefaultMinClusterFrac = 0.005
	DefaultTransform      = Log1p
	DefaultTrimQuantile   = 0.001
	DefaultMinScale       = 0.25
	DefaultQuantile       = 0.999
	DefaultMargin         = 1.25
	DefaultCap            = 1 << 18
)

// minShrinkage is the least weight of the diagonal target when the
// weight is estimated: it keeps every covariance safely positive definite.
const minShrinkage = 0.01

// resolved is a configuration applied to a feature list.
type resolved struct {
	cfg        Config
	transforms []Transform
	units      []float64
	minScales  []float64
}

// resolve checks c against the feature names and fills its defaults.
func (c Config) resolve(features []string) (resolved, error) {
	if err := checkFeatures(features); err != nil {
		return resolved{}, err
	}
	if c.K < 0 || c.KMax < 0 || c.SelectSample < 0 || c.Restarts < 0 || c.MaxIter < 0 || c.Cap < 0 {
		return resolved{}, fmt.Errorf("kmeans: negative count in config %+v", c)
	}
	for _, f := range []struct {
		name string
		v    float64
		ok   bool
	}{
		{"tol", c.Tol, c.Tol >= 0},
		{"min_cluster_frac", c.MinClusterFrac, c.MinClusterFrac >= 0 && c.MinClusterFrac < 0.5},
		{"trim_quantile", c.TrimQuantile, c.TrimQuantile >= 0 && c.TrimQuantile < 0.25},
		{"outlier_mads", c.OutlierMADs, c.OutlierMADs >= 0},
		{"min_scale", c.MinScale, c.MinScale >= 0},
		{"shrinkage", c.Shrinkage, c.Shrinkage >= 0 && c.Shrinkage <= 1},
		{"quantile", c.Quantile, c.Quantile >= 0 && c.Quantile < 1},
		{"margin", c.Margin, c.Margin >= 0},
	} {
		if !f.ok || math.IsInf(f.v, 0) {
			return resolved{}, fmt.Errorf("kmeans: config %s %v is out of range", f.name, f.v)
		}
	}
	if c.KMax == 0 {
		c.KMax = DefaultKMax
	}
	if c.K > 0 {
		c.KMax = max(c.KMax, c.K)
	}
	if c.SelectSample == 0 {
		c.SelectSample = DefaultSelectSample
	}
	if c.Restarts == 0 {
		c.Restarts = DefaultRestarts
	}
	if c.MaxIter == 0 {
		c.MaxIter = DefaultMaxIter
	}
	if c.Tol == 0 {
		c.Tol = DefaultTol
	}
	if c.MinClusterFrac == 0 {
		c.MinClusterFrac = DefaultMinClusterFrac
	}
	if c.Transform == "" {
		c.Transform = DefaultTransform
	}
	if c.TrimQuantile == 0 {
		c.TrimQuantile = DefaultTrimQuantile
	}
	if c.MinScale == 0 {
		c.MinScale = DefaultMinScale
	}
	if c.Quantile == 0 {
		c.Quantile = DefaultQuantile
	}
	if c.Margin == 0 {
		c.Margin = DefaultMargin
	}
	if c.Cap == 0 {
		c.Cap = DefaultCap
	}
	if !c.Transform.valid() {
		return resolved{}, fmt.Errorf("kmeans: unknown transform %q (want %q or %q)", c.Transform, Log1p, None)
	}
	index := make(map[string]int, len(features))
	for i, f := range features {
		index[f] = i
	}
	r := resolved{cfg: c, transforms: make([]Transform, len(features)), units: make([]float64, len(features)), minScales: make([]float64, len(features))}
	for i := range features {
		r.transforms[i] = c.Transform
		r.units[i] = 1
		r.minScales[i] = c.MinScale
	}
	for name, u := range c.Units {
		i, ok := index[name]
		if !ok {
			return resolved{}, fmt.Errorf("kmeans: unit for unknown feature %q", name)
		}
		if !(u > 0) || math.IsInf(u, 0) {
			return resolved{}, fmt.Errorf("kmeans: feature %q: unit %v is not positive", name, u)
		}
		r.units[i] = u
	}
	for name, t := range c.Transforms {
		i, ok := index[name]
		if !ok {
			return resolved{}, fmt.Errorf("kmeans: transform for unknown feature %q", name)
		}
		if !t.valid() {
			return resolved{}, fmt.Errorf("kmeans: feature %q: unknown transform %q (want %q or %q)", name, t, Log1p, None)
		}
		r.transforms[i] = t
	}
	for name, s := range c.MinScales {
		i, ok := index[name]
		if !ok {
			return resolved{}, fmt.Errorf("kmeans: min scale for unknown feature %q", name)
		}
		if !(s > 0) || math.IsInf(s, 0) {
			return resolved{}, fmt.Errorf("kmeans: feature %q: min scale %v is not positive", name, s)
		}
		r.minScales[i] = s
	}
	return r, nil
}

// checkFeatures requires a non-empty list of distinct, non-empty names.
func checkFeatures(features []string) error {
	if len(features) == 0 {
		return errors.New("kmeans: no features")
	}
	seen := make(map[string]bool, len(features))
	for i, f := range features {
		if f == "" {
			return fmt.Errorf("kmeans: feature %d has no name", i)
		}
		if seen[f] {
			return fmt.Errorf("kmeans: feature name %q appears twice", f)
		}
		seen[f] = true
	}
	return nil
}
