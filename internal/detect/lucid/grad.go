package lucid

// Gradients holds one value per trainable parameter of a Model, in the
// same layout (Conv is [H][F][K]).
type Gradients struct {
	Conv      []float32
	ConvBias  []float32
	Dense     []float32
	DenseBias float32
}

// NewGradients returns zero gradients shaped for m.
func NewGradients(m *Model) *Gradients {
	return &Gradients{
		Conv:     make([]float32, len(m.Conv)),
		ConvBias: make([]float32, len(m.ConvBias)),
		Dense:    make([]float32, len(m.Dense)),
	}
}

// Reset sets all gradients to zero.
func (g *Gradients) Reset() {
	clear(g.Conv)
	clear(g.ConvBias)
	clear(g.Dense)
	g.DenseBias = 0
}

// add adds o into g.
func (g *Gradients) add(o *Gradients) {
	axpy(g.Conv, o.Conv, 1)
	axpy(g.ConvBias, o.ConvBias, 1)
	axpy(g.Dense, o.Dense, 1)
	g.DenseBias += o.DenseBias
}

// scale multiplies all gradients by c.
func (g *Gradients) scale(c float32) {
	for _, v := range [][]float32{g.Conv, g.ConvBias, g.Dense} {
		for i := range v {
			v[i] *= c
		}
	}
	g.DenseBias *= c
}

// axpy is y += a*x.
func axpy(y, x []float32, a float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}

// Gradient adds to g the gradient of the binary cross-entropy loss of one
// sample (a matrix as for Predict, normalised by m.Norm when set) with
// label 0 or 1, and returns that loss. The max pooling routes each
// kernel's gradient to its winning position (the first on ties); ReLU's
// gradient at 0 is 0.
func (m *Model) Gradient(sample [][]float32, label int, g *Gradients) float64 {
	s := m.getScratch()
	defer m.pool.Put(s)
	s.load(m, sample)
	return m.backward(s, float32(label), nil, g)
}

// backward runs the forward and backward pass on the input loaded in s
// with target t, adding the gradients to g; mask, when not nil, is the
// dropout multiplier of each pooled value. It returns the loss.
func (m *Model) backward(s *scratch, t float32, mask []float32, g *Gradients) float64 {
	m.conv(s)
	m.pool1(s, true)
	z := m.logit(s, mask)
	dz := sigmoid(z) - t // dL/dz of BCE after a sigmoid
	g.DenseBias += dz
	K, F, H := m.K, m.F, m.H
	for k := range K {
		a, d := s.act[k], dz*m.Dense[k]
		if mask != nil {
			a *= mask[k]
			d *= mask[k]
		}
		g.Dense[k] += dz * a
		if s.pre[k] <= 0 || d == 0 {
			continue // ReLU inactive (or dropped): no gradient below
		}
		g.ConvBias[k] += d
		p := int(s.arg[k])
		for j, v := range s.x[p*F : (p+H)*F] {
			if v != 0 {
				g.Conv[j*K+k] += d * v
			}
		}
	}
	return bce(z, t)
}
