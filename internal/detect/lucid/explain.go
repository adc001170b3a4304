package lucid

import (
	"cmp"
	"math"
	"slices"
)

// ExplainTop is the number of input cells Explain reports.
const ExplainTop = 5

// Contribution is one input cell's share of a score's logit.
type Contribution struct {
	// Packet is the packet's row (0 = the session's first packet).
	Packet int `json:"packet"`
	// Feature is the feature's name.
	Feature string `json:"feature"`
	// Value is the normalised input value.
	Value float32 `json:"value"`
	// Contribution is the cell's additive share of the logit: the sum,
	// over the active kernels whose winning window covers the cell, of
	// Dense[k] * weight * Value. Positive values push towards "attack".
	Contribution float32 `json:"contribution"`
}

// Window is a packet window that won the max pooling of active kernels.
type Window struct {
	// Start is the first packet of the window (it covers H packets).
	Start int `json:"start"`
	// Kernels is the number of active kernels whose maximum is here.
	Kernels int `json:"kernels"`
	// Contribution is the sum of Dense[k] * ReLU output over them.
	Contribution float32 `json:"contribution"`
}

// Explanation tells why a sample got its score: Logit equals Bias plus
// the sum of all cell contributions, of which Top lists the largest.
type Explanation struct {
	// Score is the attack probability, sigmoid(Logit).
	Score float32 `json:"score"`
	// Logit is the dense layer's output.
	Logit float32 `json:"logit"`
	// Bias is the part of Logit that does not depend on the input cells:
	// DenseBias + the sum of Dense[k]*ConvBias[k] over active kernels.
	Bias float32 `json:"bias"`
	// Windows are the winning windows, largest |Contribution| first.
	Windows []Window `json:"windows"`
	// Top are the ExplainTop input cells with the largest |Contribution|.
	Top []Contribution `json:"top"`
}

// Explain scores one sample and attributes the logit to packet windows
// and input cells: only kernels with a positive ReLU output count, each
// at the window that won its max pooling, and each weight-times-input
// term of such a kernel is credited to its cell scaled by the kernel's
// dense weight.
func (m *Model) Explain(sample [][]float32) Explanation {
	s := m.getScratch()
	defer m.pool.Put(s)
	s.load(m, sample)
	m.conv(s)
	m.pool1(s, true)
	e := Explanation{Logit: m.logit(s, nil)}
	e.Score = sigmoid(e.Logit)

	cells := make([]float32, m.N*m.F)
	wins := make([]Window, m.Positions())
	bias := float64(m.DenseBias)
	for k := range m.K {
		if s.act[k] <= 0 {
			continue
		}
		d := m.Dense[k]
		p := int(s.arg[k])
		bias += float64(d * m.ConvBias[k])
		wins[p].Kernels++
		wins[p].Contribution += d * s.act[k]
		for i := range m.H {
			for f := range m.F {
				j := (p+i)*m.F + f
				cells[j] += d * m.Conv[m.ConvIndex(k, i, f)] * s.x[j]
			}
		}
	}
	e.Bias = float32(bias)
	for p, w := range wins {
		if w.Kernels > 0 {
			w.Start = p
			e.Windows = append(e.Windows, w)
		}
	}
	slices.SortStableFunc(e.Windows, func(a, b Window) int {
		return cmp.Compare(math.Abs(float64(b.Contribution)), math.Abs(float64(a.Contribution)))
	})
	var all []Contribution
	for j, c := range cells {
		if c != 0 {
			all = append(all, Contribution{Packet: j / m.F, Feature: m.FeatureName(j % m.F), Value: s.x[j], Contribution: c})
		}
	}
	slices.SortStableFunc(all, func(a, b Contribution) int {
		return cmp.Compare(math.Abs(float64(b.Contribution)), math.Abs(float64(a.Contribution)))
	})
	e.Top = all[:min(len(all), ExplainTop)]
	return e
}
