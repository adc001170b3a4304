package lucid

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
)

// Default hyperparameters (LUCID's: 64 kernels of height 3; n = 10 packets
// keeps nearly all of the accuracy of n = 100).
const (
	DefaultN = 10
	DefaultK = 64
	DefaultH = 3
)

// Model is a LUCID network: K convolution kernels of H x F over the N
// packet rows of a sample (stride 1, no padding: P = N-H+1 positions),
// a bias and ReLU per kernel, global max pooling over the positions, and
// a dense sigmoid unit over the K pooled values.
//
// The weights are plain slices so that they can be inspected and set; a
// Model must not be modified while it is predicting. Predict, PredictBatch
// and Explain are safe for concurrent use.
type Model struct {
	// N is the number of packets per sample, F the features per packet,
	// K the number of kernels and H the kernel height in packets.
	N, F, K, H int

	// Conv holds the kernels in layout [H][F][K]: weight (k, i, f) is
	// Conv[ConvIndex(k, i, f)] = Conv[(i*F+f)*K+k].
	Conv []float32
	// ConvBias is the bias of each kernel.
	ConvBias []float32
	// Dense is the weight of each pooled kernel output in the score.
	Dense []float32
	// DenseBias is the bias of the score.
	DenseBias float32

	// Norm, when not nil, is applied to every input row before the
	// network (inputs are then raw FromPackets matrices); nil means
	// inputs are already normalised.
	Norm *Normalizer
	// Features names the F input features (FeatureNames for FromPackets
	// rows); nil means FeatureNames when F == NumFeatures, else "f0", ...
	Features []string

	// Name and Version identify the model in files and logs.
	Name, Version string
	// Meta describes how the model was trained.
	Meta TrainingMeta

	pool sync.Pool // *scratch
}

// NewModel returns a model with zero weights after checking the shape.
func NewModel(n, f, k, h int) (*Model, error) {
	if err := checkShape(n, f, k, h); err != nil {
		return nil, err
	}
	return &Model{
		N: n, F: f, K: k, H: h,
		Conv:     make([]float32, h*f*k),
		ConvBias: make([]float32, k),
		Dense:    make([]float32, k),
		Name:     "lucid",
	}, nil
}

func checkShape(n, f, k, h int) error {
	if n < 1 || f < 1 || k < 1 || h < 1 || h > n {
		return fmt.Errorf("lucid: bad shape n=%d f=%d k=%d h=%d (want all >= 1 and h <= n)", n, f, k, h)
	}
	if int64(n)*int64(f)*int64(k)*int64(h) > 1<<30 {
		return fmt.Errorf("lucid: shape n=%d f=%d k=%d h=%d is too large", n, f, k, h)
	}
	return nil
}

// ConvIndex is the index in Conv of kernel k's weight for row i of the
// window (0 <= i < H) and feature f.
func (m *Model) ConvIndex(k, i, f int) int { return (i*m.F+f)*m.K + k }

// Positions is the number of window positions, N-H+1.
func (m *Model) Positions() int { return m.N - m.H + 1 }

// Params is the number of trainable parameters.
func (m *Model) Params() int { return len(m.Conv) + len(m.ConvBias) + len(m.Dense) + 1 }

// InitWeights draws the weights from rng: conv kernels He-uniform
// (±sqrt(6/(H*F))), dense weights Glorot-uniform (±sqrt(6/(K+1))),
// biases 0.
func (m *Model) InitWeights(rng *rand.Rand) {
	lim := math.Sqrt(6 / float64(m.H*m.F))
	for i := range m.Conv {
		m.Conv[i] = float32((2*rng.Float64() - 1) * lim)
	}
	lim = math.Sqrt(6 / float64(m.K+1))
	for i := range m.Dense {
		m.Dense[i] = float32((2*rng.Float64() - 1) * lim)
	}
	clear(m.ConvBias)
	m.DenseBias = 0
}

// Validate checks that the slices match the shape, the weights are
// finite and the normaliser (if any) covers F features.
func (m *Model) Validate() error {
	if err := checkShape(m.N, m.F, m.K, m.H); err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		v    []float32
		want int
	}{{"conv", m.Conv, m.H * m.F * m.K}, {"conv_bias", m.ConvBias, m.K}, {"dense", m.Dense, m.K}} {
		if len(c.v) != c.want {
			return fmt.Errorf("lucid: %s has %d weights, shape n=%d f=%d k=%d h=%d needs %d", c.name, len(c.v), m.N, m.F, m.K, m.H, c.want)
		}
		for i, x := range c.v {
			if !finite(x) {
				return fmt.Errorf("lucid: %s[%d] is %g", c.name, i, x)
			}
		}
	}
	if !finite(m.DenseBias) {
		return fmt.Errorf("lucid: dense_bias is %g", m.DenseBias)
	}
	if m.Norm != nil {
		if err := m.Norm.Validate(); err != nil {
			return err
		}
		if m.Norm.Features() != m.F {
			return fmt.Errorf("lucid: normaliser has %d features, model has %d", m.Norm.Features(), m.F)
		}
	}
	if m.Features != nil && len(m.Features) != m.F {
		return fmt.Errorf("lucid: %d feature names for %d features", len(m.Features), m.F)
	}
	return nil
}

// FeatureName is the name of input feature f.
func (m *Model) FeatureName(f int) string {
	if m.Features != nil {
		return m.Features[f]
	}
	if m.F == NumFeatures {
		return FeatureNames[f]
	}
	return fmt.Sprintf("f%d", f)
}

// Predict returns the attack probability of one sample (an N x F matrix;
// missing rows count as zero padding, extra rows are ignored). It panics
// if a row does not have F features.
func (m *Model) Predict(sample [][]float32) float32 {
	s := m.getScratch()
	defer m.pool.Put(s)
	s.load(m, sample)
	return m.score(s)
}

// minParallel is the batch size per extra goroutine below which
// PredictBatch stays on one goroutine.
const minParallel = 256

// PredictBatch writes the attack probability of samples[i] to out[i]
// (len(out) must be at least len(samples)). Large batches are split
// across GOMAXPROCS goroutines; no memory is allocated per sample.
func (m *Model) PredictBatch(samples [][][]float32, out []float32) {
	out = out[:len(samples)]
	workers := min(runtime.GOMAXPROCS(0), len(samples)/minParallel)
	if workers <= 1 {
		m.predictRange(samples, out)
		return
	}
	m.predictParallel(samples, out, workers)
}

// predictParallel splits PredictBatch over workers goroutines.
func (m *Model) predictParallel(samples [][][]float32, out []float32, workers int) {
	var wg sync.WaitGroup
	chunk := (len(samples) + workers - 1) / workers
	for lo := 0; lo < len(samples); lo += chunk {
		hi := min(lo+chunk, len(samples))
		wg.Go(func() { m.predictRange(samples[lo:hi], out[lo:hi]) })
	}
	wg.Wait()
}

func (m *Model) predictRange(samples [][][]float32, out []float32) {
	s := m.getScratch()
	defer m.pool.Put(s)
	for i, x := range samples {
		s.load(m, x)
		out[i] = m.score(s)
	}
}

// score runs the network on the loaded input of s.
func (m *Model) score(s *scratch) float32 {
	m.conv(s)
	m.pool1(s, false)
	return sigmoid(m.logit(s, nil))
}

// logit is the dense layer over the pooled activations in s.act; mask,
// when not nil, multiplies them (dropout).
func (m *Model) logit(s *scratch, mask []float32) float32 {
	z := m.DenseBias
	if mask != nil {
		for k, a := range s.act[:m.K] {
			z += m.Dense[k] * a * mask[k]
		}
		return z
	}
	return z + dot(m.Dense, s.act[:m.K])
}

func sigmoid(z float32) float32 {
	return float32(1 / (1 + math.Exp(-float64(z))))
}

func finite(x float32) bool {
	return !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0)
}
