package lucid

import "fmt"

// Normalizer scales each feature to [0,1] with min-max bounds learned
// from training data: v = (x - Min[f]) / (Max[f] - Min[f]), clamped. The
// bounds always include 0, so zero padding rows stay zero. A feature that
// was constant in training (Max == Min) normalises to 0.
type Normalizer struct {
	Min []float32 `json:"min"`
	Max []float32 `json:"max"`
}

// FitNormalizer learns per-feature bounds from the packet rows of
// samples (all rows, padding included). It returns nil when samples has
// no rows; rows must all have the same width.
func FitNormalizer(samples []Sample) *Normalizer {
	var nz *Normalizer
	for _, s := range samples {
		for _, row := range s.Packets {
			if nz == nil {
				nz = &Normalizer{Min: make([]float32, len(row)), Max: make([]float32, len(row))}
			}
			for f, x := range row[:len(nz.Min)] {
				nz.Min[f] = min(nz.Min[f], x)
				nz.Max[f] = max(nz.Max[f], x)
			}
		}
	}
	return nz
}

// Features is the number of features the normaliser covers.
func (nz *Normalizer) Features() int { return len(nz.Min) }

// Value normalises x as feature f.
func (nz *Normalizer) Value(f int, x float32) float32 {
	return clamp01((x - nz.Min[f]) * nz.scale(f))
}

// Apply normalises the rows of a sample matrix in place.
func (nz *Normalizer) Apply(packets [][]float32) {
	for _, row := range packets {
		for f := range row {
			row[f] = nz.Value(f, row[f])
		}
	}
}

// Validate checks that the bounds are consistent: equal lengths, finite,
// Min <= Max.
func (nz *Normalizer) Validate() error {
	if len(nz.Min) != len(nz.Max) {
		return fmt.Errorf("lucid: normaliser has %d minimums and %d maximums", len(nz.Min), len(nz.Max))
	}
	for f := range nz.Min {
		if !finite(nz.Min[f]) || !finite(nz.Max[f]) || nz.Min[f] > nz.Max[f] {
			return fmt.Errorf("lucid: normaliser bounds of feature %d are [%g, %g]", f, nz.Min[f], nz.Max[f])
		}
	}
	return nil
}

// scale is 1/(Max-Min), or 0 for a constant feature.
func (nz *Normalizer) scale(f int) float32 {
	if d := nz.Max[f] - nz.Min[f]; d > 0 {
		return 1 / d
	}
	return 0
}

func clamp01(v float32) float32 {
	if v > 1 {
		return 1
	}
	if v > 0 {
		return v
	}
	return 0 // also NaN
}
