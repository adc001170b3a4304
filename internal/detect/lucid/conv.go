package lucid

import (
	"fmt"
	"math"
)

// scratch is the per-goroutine working memory of one forward (and
// backward) pass; it is sized for one model shape.
type scratch struct {
	x        []float32 // N*F normalised input, row-major
	nzOff    []int32   // flat index in x of each nonzero input times K, by row
	nzVal    []float32 // its value
	rowStart []int32   // N+1: nonzeros of row r are rowStart[r]:rowStart[r+1]
	z        []float32 // P*K conv outputs (before bias), z[p*K+k]
	pre      []float32 // K: max_p z + bias
	act      []float32 // K: ReLU(pre)
	arg      []int32   // K: the winning position of each kernel
	scale    []float32 // F: normaliser scale, 1/(Max-Min) or 0
	norm     *Normalizer
}

func newScratch(m *Model) *scratch {
	return &scratch{
		x:        make([]float32, m.N*m.F),
		nzOff:    make([]int32, m.N*m.F),
		nzVal:    make([]float32, m.N*m.F),
		rowStart: make([]int32, m.N+1),
		z:        make([]float32, m.Positions()*m.K),
		pre:      make([]float32, m.K),
		act:      make([]float32, m.K),
		arg:      make([]int32, m.K),
		scale:    make([]float32, m.F),
	}
}

// getScratch returns working memory for m from its pool, with the
// normaliser's scales ready.
func (m *Model) getScratch() *scratch {
	s, _ := m.pool.Get().(*scratch)
	if s == nil || len(s.x) != m.N*m.F || len(s.z) != m.Positions()*m.K || len(s.scale) != m.F {
		s = newScratch(m)
	}
	s.norm = m.Norm
	if m.Norm != nil {
		for f := range s.scale {
			s.scale[f] = m.Norm.scale(f)
		}
	}
	return s
}

// load copies sample into s.x, normalising it when the model has a
// normaliser, and indexes its nonzero values.
func (s *scratch) load(m *Model, sample [][]float32) {
	F := m.F
	nnz := int32(0)
	off, val := s.nzOff[:len(s.x)], s.nzVal[:len(s.x)]
	K := int32(m.K)
	for r := range m.N {
		s.rowStart[r] = nnz
		row := s.x[r*F : (r+1)*F : (r+1)*F]
		if r >= len(sample) {
			clear(row)
			continue
		}
		in := sample[r]
		if len(in) != F {
			panic(fmt.Sprintf("lucid: sample row %d has %d features, model wants %d", r, len(in), F))
		}
		in = in[:F:F]
		if nz := s.norm; nz != nil {
			lo, sc := nz.Min[:F:F], s.scale[:F:F]
			for f, v := range in {
				v = clamp01((v - lo[f]) * sc[f])
				row[f] = v
				if v != 0 {
					off[nnz], val[nnz] = int32(r*F+f)*K, v
					nnz++
				}
			}
		} else {
			for f, v := range in {
				row[f] = v
				if v != 0 {
					off[nnz], val[nnz] = int32(r*F+f)*K, v
					nnz++
				}
			}
		}
	}
	s.rowStart[m.N] = nnz
}

// loadFlat is load for an already normalised N*F input.
func (s *scratch) loadFlat(m *Model, x []float32) {
	F := m.F
	copy(s.x, x)
	nnz := int32(0)
	for r := range m.N {
		s.rowStart[r] = nnz
		for f, v := range s.x[r*F : (r+1)*F] {
			if v != 0 {
				s.nzOff[nnz], s.nzVal[nnz] = int32((r*F+f)*m.K), v
				nnz++
			}
		}
	}
	s.rowStart[m.N] = nnz
}

// conv computes s.z[p*K+k] = sum over the window at p of kernel k times
// the input, skipping zero inputs. Kernels are processed eight at a time
// with the accumulators in registers; the window of position p is the
// nonzeros of rows p..p+H-1, and an input at flat index j is multiplied
// by the weights at Conv[(j-p*F)*K+k] (nzOff holds j*K).
func (m *Model) conv(s *scratch) {
	K, F, H := m.K, m.F, m.H
	P := m.Positions()
	w := m.Conv
	off, val := s.nzOff, s.nzVal
	kb := 0
	for ; kb+8 <= K; kb += 8 {
		for p := range P {
			var a0, a1, a2, a3, a4, a5, a6, a7 float32
			lo, hi := s.rowStart[p], s.rowStart[p+H]
			base := p*F*K - kb
			for e := lo; e < hi; e++ {
				v := val[e]
				o := int(off[e]) - base
				ww := w[o : o+8 : o+8]
				a0 += v * ww[0]
				a1 += v * ww[1]
				a2 += v * ww[2]
				a3 += v * ww[3]
				a4 += v * ww[4]
				a5 += v * ww[5]
				a6 += v * ww[6]
				a7 += v * ww[7]
			}
			zz := s.z[p*K+kb : p*K+kb+8 : p*K+kb+8]
			zz[0], zz[1], zz[2], zz[3] = a0, a1, a2, a3
			zz[4], zz[5], zz[6], zz[7] = a4, a5, a6, a7
		}
	}
	for ; kb < K; kb++ {
		for p := range P {
			var a float32
			base := p*F*K - kb
			for e := s.rowStart[p]; e < s.rowStart[p+H]; e++ {
				a += val[e] * w[int(off[e])-base]
			}
			s.z[p*K+kb] = a
		}
	}
}

// pool1 is global max pooling, bias and ReLU: s.pre[k] = max_p z + bias,
// s.act[k] = max(pre, 0) and (when wantArg) s.arg[k] the first position
// that reached the maximum.
func (m *Model) pool1(s *scratch, wantArg bool) {
	K := m.K
	pre := s.pre[:K:K]
	copy(pre, s.z[:K])
	if wantArg {
		clear(s.arg)
	}
	for p := 1; p < m.Positions(); p++ {
		zp := s.z[p*K : (p+1)*K : (p+1)*K]
		if wantArg {
			for k, v := range zp {
				if v > pre[k] {
					pre[k], s.arg[k] = v, int32(p)
				}
			}
			continue
		}
		for k, v := range zp {
			if v > pre[k] {
				pre[k] = v
			}
		}
	}
	act := s.act[:K:K]
	for k, b := range m.ConvBias[:K:K] {
		v := pre[k] + b
		pre[k] = v
		act[k] = max(v, 0)
	}
}

// dot is the dot product of a and b[:len(a)], four-way unrolled.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		aa, bb := a[i:i+4:i+4], b[i:i+4:i+4]
		s0 += aa[0] * bb[0]
		s1 += aa[1] * bb[1]
		s2 += aa[2] * bb[2]
		s3 += aa[3] * bb[3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// bce is the binary cross-entropy of logit z against label t, computed
// stably: max(z,0) - t*z + log(1+exp(-|z|)).
func bce(z float32, t float32) float64 {
	zf := float64(z)
	return math.Max(zf, 0) - float64(t)*zf + math.Log1p(math.Exp(-math.Abs(zf)))
}
