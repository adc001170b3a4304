package lucid

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// trainer runs mini-batch steps: each batch is cut into shards of
// shardSize samples whose gradients are computed in parallel, then
// summed in shard order, so results do not depend on scheduling.
type trainer struct {
	m      *Model
	cfg    TrainConfig
	shards []*shard
	grad   *Gradients
	opt    adam
	steps  uint64
}

// shard is the working state of one shard of a batch.
type shard struct {
	g    *Gradients
	s    *scratch
	mask []float32
	pcg  *rand.PCG
	rng  *rand.Rand
	loss float64
}

// dropoutSalt separates the dropout streams from the other seeded ones.
const dropoutSalt = 0x64726f706f7574

func newTrainer(m *Model, cfg TrainConfig) *trainer {
	t := &trainer{m: m, cfg: cfg, grad: NewGradients(m)}
	for range (cfg.BatchSize + shardSize - 1) / shardSize {
		sh := &shard{g: NewGradients(m), s: newScratch(m), mask: make([]float32, m.K), pcg: rand.NewPCG(0, 0)}
		sh.rng = rand.New(sh.pcg)
		t.shards = append(t.shards, sh)
	}
	t.opt = adam{
		m1: NewGradients(m), m2: NewGradients(m),
		b1: cfg.Beta1, b2: cfg.Beta2, eps: cfg.Epsilon, lr: cfg.LearningRate,
	}
	return t
}

// run calls fn(0) ... fn(n-1) on up to cfg.Workers goroutines.
func (t *trainer) run(n int, fn func(i int)) {
	workers := min(t.cfg.Workers, n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// step trains on one mini-batch (indices into d) and returns the sum of
// its losses.
func (t *trainer) step(d *dataset, batch []int) float64 {
	t.steps++
	m := t.m
	ns := (len(batch) + shardSize - 1) / shardSize
	t.run(ns, func(i int) {
		sh := t.shards[i]
		sh.g.Reset()
		sh.loss = 0
		var mask []float32
		if t.cfg.Dropout > 0 {
			sh.pcg.Seed(t.cfg.Seed^dropoutSalt, t.steps<<32|uint64(i))
			mask = sh.mask
		}
		for _, j := range batch[i*shardSize : min((i+1)*shardSize, len(batch))] {
			if mask != nil {
				keep := float32(1 / (1 - t.cfg.Dropout))
				for k := range mask {
					mask[k] = 0
					if sh.rng.Float64() >= t.cfg.Dropout {
						mask[k] = keep
					}
				}
			}
			sh.s.loadFlat(m, d.sample(j))
			sh.loss += m.backward(sh.s, d.y[j], mask, sh.g)
		}
	})
	g := t.grad
	g.Reset()
	var loss float64
	for _, sh := range t.shards[:ns] {
		g.add(sh.g)
		loss += sh.loss
	}
	g.scale(1 / float32(len(batch)))
	if l2 := float32(t.cfg.L2); l2 != 0 {
		axpy(g.Conv, m.Conv, l2)
		axpy(g.Dense, m.Dense, l2)
	}
	t.opt.update(m, g)
	return loss
}

// evalChunk is the number of samples per parallel task in lossOn.
const evalChunk = 256

// lossOn returns the mean loss over d and the score of each sample.
func (t *trainer) lossOn(d *dataset) (float64, []float32) {
	m := t.m
	logits := make([]float32, d.len())
	t.run((d.len()+evalChunk-1)/evalChunk, func(c int) {
		s := m.getScratch()
		defer m.pool.Put(s)
		for i := c * evalChunk; i < min((c+1)*evalChunk, d.len()); i++ {
			s.loadFlat(m, d.sample(i))
			m.conv(s)
			m.pool1(s, false)
			logits[i] = m.logit(s, nil)
		}
	})
	var sum float64
	scores := make([]float32, len(logits))
	for i, z := range logits {
		sum += bce(z, d.y[i])
		scores[i] = sigmoid(z)
	}
	return sum / float64(len(logits)), scores
}

// adam is the Adam optimiser (Kingma and Ba), with bias correction folded
// into the step size.
type adam struct {
	m1, m2          *Gradients // first and second moment estimates
	b1, b2, eps, lr float64
	t               int
}

func (a *adam) update(m *Model, g *Gradients) {
	a.t++
	lr := a.lr * math.Sqrt(1-math.Pow(a.b2, float64(a.t))) / (1 - math.Pow(a.b1, float64(a.t)))
	u := adamStep{b1: float32(a.b1), b2: float32(a.b2), eps: float32(a.eps), lr: float32(lr)}
	u.apply(m.Conv, g.Conv, a.m1.Conv, a.m2.Conv)
	u.apply(m.ConvBias, g.ConvBias, a.m1.ConvBias, a.m2.ConvBias)
	u.apply(m.Dense, g.Dense, a.m1.Dense, a.m2.Dense)
	w, gb, m1, m2 := []float32{m.DenseBias}, []float32{g.DenseBias}, []float32{a.m1.DenseBias}, []float32{a.m2.DenseBias}
	u.apply(w, gb, m1, m2)
	m.DenseBias, a.m1.DenseBias, a.m2.DenseBias = w[0], m1[0], m2[0]
}

// adamStep holds one update's constants.
type adamStep struct{ b1, b2, eps, lr float32 }

func (u adamStep) apply(w, g, m1, m2 []float32) {
	g, m1, m2 = g[:len(w)], m1[:len(w)], m2[:len(w)]
	for i, gi := range g {
		m1[i] = u.b1*m1[i] + (1-u.b1)*gi
		m2[i] = u.b2*m2[i] + (1-u.b2)*gi*gi
		w[i] -= u.lr * m1[i] / (float32(math.Sqrt(float64(m2[i]))) + u.eps)
	}
}
