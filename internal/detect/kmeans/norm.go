package kmeans

import (
	"math"
	"slices"
	"sort"
)

// matrix is n rows of d values, row-major.
type matrix struct {
	v    []float64
	n, d int
}

func (m matrix) row(i int) []float64 { return m.v[i*m.d : (i+1)*m.d : (i+1)*m.d] }

// Norm is the per-feature transform and robust standardisation: feature j
// of a vector becomes z_j = (T_j(x_j) - Centre[j]) / Scale[j].
type Norm struct {
	Features   []string    `json:"features"`
	Transforms []Transform `json:"transforms"`
	// Units divide each feature before its transform (Config.Units).
	Units []float64 `json:"units"`
	// Centre and Scale are the trimmed mean and standard deviation of the
	// transformed training values; Scale is at least MinScale.
	Centre   []float64 `json:"centre"`
	Scale    []float64 `json:"scale"`
	MinScale []float64 `json:"min_scale"`
}

// zLimit bounds standardised values, so that an infinite or absurd input
// gives a huge finite distance rather than Inf or NaN.
const zLimit = 1e9

// standardise writes the standardised x into z.
func (nm *Norm) standardise(x, z []float64) {
	for j, v := range x {
		s := (nm.Transforms[j].apply(v/nm.Units[j]) - nm.Centre[j]) / nm.Scale[j]
		z[j] = max(-zLimit, min(zLimit, s))
	}
}

// original maps a standardised value of feature j back to original units.
func (nm *Norm) original(j int, z float64) float64 {
	return nm.Transforms[j].invert(nm.Centre[j]+nm.Scale[j]*z) * nm.Units[j]
}

// floor returns feature j's minimum scale in standardised units.
func (nm *Norm) floor(j int) float64 { return nm.MinScale[j] / nm.Scale[j] }

// transformAll applies the transforms to the raw rows, in place.
func transformAll(m matrix, transforms []Transform, units []float64) {
	forChunks(m.n, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			row := m.row(i)
			for j, v := range row {
				row[j] = transforms[j].apply(v / units[j])
			}
		}
	})
}

// fitNorm estimates every feature's centre and scale from the transformed
// rows t: per feature, the values are sorted, the lowest and highest trim
// share (and, with mads > 0, values more than mads normal-consistent MADs
// from the median) are left out, and the mean and standard deviation of
// the rest are taken. A scale below the feature's minimum (a feature
// constant in training) is raised to it, so it stays finite and a value
// off the constant still counts as a deviation.
func fitNorm(t matrix, r resolved, features []string) Norm {
	nm := Norm{
		Features:   slices.Clone(features),
		Transforms: slices.Clone(r.transforms),
		Units:      slices.Clone(r.units),
		Centre:     make([]float64, t.d),
		Scale:      make([]float64, t.d),
		MinScale:   slices.Clone(r.minScales),
	}
	forEach(t.d, func(j int) {
		col := make([]float64, t.n)
		for i := range t.n {
			col[i] = t.v[i*t.d+j]
		}
		slices.Sort(col)
		c, s := robustMoments(col, r.cfg.TrimQuantile, r.cfg.OutlierMADs)
		nm.Centre[j], nm.Scale[j] = c, max(s, nm.MinScale[j])
	})
	return nm
}

// robustMoments returns the mean and standard deviation of the sorted
// values s without their extremes (see fitNorm).
func robustMoments(s []float64, trim, mads float64) (mean, std float64) {
	drop := int(trim * float64(len(s)))
	kept := s[drop : len(s)-drop]
	if mads > 0 {
		med := quantileSorted(s, 0.5)
		dev := make([]float64, len(s))
		for i, v := range s {
			dev[i] = math.Abs(v - med)
		}
		slices.Sort(dev)
		if mad := quantileSorted(dev, 0.5) * 1.4826; mad > 0 {
			a, b := med-mads*mad, med+mads*mad
			lo := sort.Search(len(kept), func(i int) bool { return kept[i] >= a })
			hi := sort.Search(len(kept), func(i int) bool { return kept[i] > b })
			kept = kept[lo:hi]
		}
	}
	if len(kept) == 0 {
		kept = s
	}
	for _, v := range kept {
		mean += v
	}
	mean /= float64(len(kept))
	if len(kept) < 2 {
		return mean, 0
	}
	var ss float64
	for _, v := range kept {
		ss += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(ss / float64(len(kept)-1))
}

// standardiseAll standardises the transformed rows t in place.
func (nm *Norm) standardiseAll(t matrix) {
	forChunks(t.n, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			row := t.row(i)
			for j, v := range row {
				row[j] = max(-zLimit, min(zLimit, (v-nm.Centre[j])/nm.Scale[j]))
			}
		}
	})
}

// quantileSorted is the q-quantile of sorted values, interpolated linearly
// between order statistics (Hyndman–Fan type 7); 0 for no values.
func quantileSorted(s []float64, q float64) float64 {
	if len(s) == 0 {
		return 0
	}
	h := q * float64(len(s)-1)
	i := int(h)
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[i] + (h-float64(i))*(s[i+1]-s[i])
}
