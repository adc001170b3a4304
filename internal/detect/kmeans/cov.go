package kmeans

import (
	"errors"
	"math"
)

// moments are the sufficient statistics of one cluster's members for a
// shrinkage covariance: the count, the mean, and over the upper triangle
// (a ≤ b, packed) the sums of w = (x_a - m_a)(x_b - m_b) and of w².
type moments struct {
	n     int
	mean  []float64
	w, w2 []float64
}

// tri is the packed index of (a, b), a ≤ b, in a d × d upper triangle.
func tri(a, b, d int) int { return a*d - a*(a-1)/2 + b - a }

// clusterMoments computes the moments of every cluster of an assignment
// in two parallel passes (means, then centred products), each merged in
// chunk order.
func clusterMoments(m matrix, assign []int32, k int) []moments {
	d, nt := m.d, m.d*(m.d+1)/2
	type part struct {
		counts []int
		sums   []float64
	}
	parts := make([]part, numChunks(m.n))
	forChunks(m.n, func(ci, lo, hi int) {
		p := part{counts: make([]int, k), sums: make([]float64, k*d)}
		for i := lo; i < hi; i++ {
			c := int(assign[i])
			p.counts[c]++
			s := p.sums[c*d : (c+1)*d]
			for j, v := range m.row(i) {
				s[j] += v
			}
		}
		parts[ci] = p
	})
	mo := make([]moments, k)
	for c := range mo {
		mo[c] = moments{mean: make([]float64, d), w: make([]float64, nt), w2: make([]float64, nt)}
	}
	for _, p := range parts {
		for c := range k {
			mo[c].n += p.counts[c]
			for j := range d {
				mo[c].mean[j] += p.sums[c*d+j]
			}
		}
	}
	for c := range mo {
		if mo[c].n > 0 {
			for j := range d {
				mo[c].mean[j] /= float64(mo[c].n)
			}
		}
	}
	type part2 struct{ w, w2 []float64 }
	parts2 := make([]part2, len(parts))
	forChunks(m.n, func(ci, lo, hi int) {
		p := part2{w: make([]float64, k*nt), w2: make([]float64, k*nt)}
		e := make([]float64, d)
		for i := lo; i < hi; i++ {
			c := int(assign[i])
			x, mean := m.row(i), mo[c].mean
			for j := range d {
				e[j] = x[j] - mean[j]
			}
			w, w2 := p.w[c*nt:(c+1)*nt], p.w2[c*nt:(c+1)*nt]
			t := 0
			for a := range d {
				for b := a; b < d; b++ {
					v := e[a] * e[b]
					w[t] += v
					w2[t] += v * v
					t++
				}
			}
		}
		parts2[ci] = p
	})
	for _, p := range parts2 {
		for c := range k {
			for t := range nt {
				mo[c].w[t] += p.w[c*nt+t]
				mo[c].w2[t] += p.w2[c*nt+t]
			}
		}
	}
	return mo
}

// gaussian is a cluster's regularised covariance and what scoring needs
// of it.
type gaussian struct {
	cov, prec []float64 // d × d, row-major
	logdet    float64
	shrinkage float64 // weight of the diagonal target
}

// shrunkCovariance estimates a cluster covariance from its moments:
//
//	Σ = (1-λ)·S + λ·diag(S), then Σ_aa = max(Σ_aa, floor_a²)
//
// where S is the sample covariance. Shrinking the correlations towards 0
// (the "diagonal, unequal variance" target D of Schäfer and Strimmer
// 2005) keeps every variance and makes Σ well conditioned for small
// clusters and for nearly collinear features (rx and tx bytes, say). With
// fixed == 0, λ is their estimate Σ_{a≠b} Var(s_ab) / Σ_{a≠b} s_ab²,
// clamped to [minShrinkage, 1]; else λ = fixed. The variance floor keeps a
// feature that is constant within the cluster finite and deviating.
func shrunkCovariance(mo moments, floors []float64, fixed float64) gaussian {
	d := len(floors)
	n := float64(mo.n)
	s := make([]float64, d*d)
	lambda := 1.0
	if mo.n >= 2 {
		var num, den float64
		for a := range d {
			for b := a; b < d; b++ {
				t := tri(a, b, d)
				sab := mo.w[t] / (n - 1)
				s[a*d+b], s[b*d+a] = sab, sab
				if a != b {
					v := n / ((n - 1) * (n - 1) * (n - 1)) * max(0, mo.w2[t]-mo.w[t]*mo.w[t]/n)
					num += v
					den += sab * sab
				}
			}
		}
		if den > 0 {
			lambda = max(minShrinkage, min(1, num/den))
		}
	}
	if fixed > 0 {
		lambda = fixed
	}
	g, err := regularise(s, floors, lambda)
	if err != nil {
		// Not positive definite in floating point: fall back to the
		// diagonal, which is.
		g, _ = regularise(s, floors, 1)
	}
	return g
}

// regularise builds Σ from S, the floors and λ and inverts it.
func regularise(s, floors []float64, lambda float64) (gaussian, error) {
	d := len(floors)
	g := gaussian{cov: make([]float64, d*d), shrinkage: lambda}
	for a := range d {
		for b := range d {
			if a == b {
				g.cov[a*d+a] = max(s[a*d+a], floors[a]*floors[a])
			} else {
				if v := (1 - lambda) * s[a*d+b]; v != 0 { // no -0 in files
					g.cov[a*d+b] = v
				}
			}
		}
	}
	prec, logdet, err := invertSPD(g.cov, d)
	g.prec, g.logdet = prec, logdet
	return g, err
}

// errNotPD reports a matrix that is not (numerically) positive definite.
var errNotPD = errors.New("kmeans: covariance is not positive definite")

// invertSPD inverts a symmetric positive definite matrix by its Cholesky
// factor L (A = L·Lᵀ, A⁻¹ = L⁻ᵀ·L⁻¹) and returns log det A.
func invertSPD(a []float64, d int) (inv []float64, logdet float64, err error) {
	l := make([]float64, d*d)
	for i := range d {
		for j := 0; j <= i; j++ {
			s := a[i*d+j]
			for k := range j {
				s -= l[i*d+k] * l[j*d+k]
			}
			if i == j {
				if !(s > 0) || math.IsInf(s, 0) {
					return nil, 0, errNotPD
				}
				l[i*d+i] = math.Sqrt(s)
				logdet += 2 * math.Log(l[i*d+i])
			} else {
				l[i*d+j] = s / l[j*d+j]
			}
		}
	}
	// L⁻¹, lower triangular, by forward substitution.
	li := make([]float64, d*d)
	for j := range d {
		li[j*d+j] = 1 / l[j*d+j]
		for i := j + 1; i < d; i++ {
			var s float64
			for k := j; k < i; k++ {
				s -= l[i*d+k] * li[k*d+j]
			}
			li[i*d+j] = s / l[i*d+i]
		}
	}
	// A⁻¹ = (L⁻¹)ᵀ L⁻¹, exactly symmetric.
	inv = make([]float64, d*d)
	for i := range d {
		for j := i; j < d; j++ {
			var s float64
			for k := j; k < d; k++ {
				s += li[k*d+i] * li[k*d+j]
			}
			inv[i*d+j], inv[j*d+i] = s, s
		}
	}
	return inv, logdet, nil
}

// mahalanobis2 is eᵀ·P·e for a symmetric d × d P.
func mahalanobis2(e, p []float64) float64 {
	d := len(e)
	var s float64
	for a := range d {
		row := p[a*d : (a+1)*d]
		t := row[a] * e[a] * 0.5
		for b := a + 1; b < d; b++ {
			t += row[b] * e[b]
		}
		s += 2 * t * e[a]
	}
	return s
}
