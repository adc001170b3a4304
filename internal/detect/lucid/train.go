package lucid

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"time"
)

// TrainConfig sets up Train; zero fields take the defaults given.
type TrainConfig struct {
	// N is the packets per sample (default: the most rows of any
	// training sample), K the kernels (64) and H their height (3).
	N, K, H int
	// Epochs is the maximum number of passes over the data (default 50).
	Epochs int
	// BatchSize is the mini-batch size (default 64).
	BatchSize int
	// LearningRate is Adam's step size (default 0.005); Beta1, Beta2 and
	// Epsilon are its other constants (0.9, 0.999, 1e-7).
	LearningRate, Beta1, Beta2, Epsilon float64
	// L2 adds L2*w to the gradient of every conv and dense weight (not
	// the biases): weight decay of an (L2/2)*|w|^2 penalty. 0 is off.
	L2 float64
	// Dropout is the probability of dropping each pooled kernel value
	// during training (inverted dropout); 0 (the default) is off.
	Dropout float64
	// Patience stops training after this many epochs without a lower
	// validation loss (default 5; negative: never stop early). The
	// weights of the best epoch are kept.
	Patience int
	// ValFraction is the share of the training samples held out for
	// validation when Train gets no validation samples (default 0: no
	// validation, no early stopping).
	ValFraction float64
	// Seed makes training deterministic: the same data, config and seed
	// give bit-identical weights, whatever Workers is.
	Seed uint64
	// Workers is the number of goroutines computing gradients (default
	// GOMAXPROCS).
	Workers int
	// Normalizer is used instead of one fitted on the training samples;
	// NoNormalize trains on the inputs as they are (already normalised).
	Normalizer  *Normalizer
	NoNormalize bool
	// Name and Version label the model (defaults "lucid" and
	// "lucid-1 trained DATE seed SEED").
	Name, Version string
}

func (c TrainConfig) withDefaults() TrainConfig {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	deff := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.K, DefaultK)
	def(&c.H, DefaultH)
	def(&c.Epochs, 50)
	def(&c.BatchSize, 64)
	def(&c.Patience, 5)
	def(&c.Workers, runtime.GOMAXPROCS(0))
	deff(&c.LearningRate, 0.005)
	deff(&c.Beta1, 0.9)
	deff(&c.Beta2, 0.999)
	deff(&c.Epsilon, 1e-7)
	if c.Name == "" {
		c.Name = "lucid"
	}
	return c
}

// TrainingMeta records how a model was trained; it is saved with it.
type TrainingMeta struct {
	Trained      string  `json:"trained,omitempty"` // RFC 3339 UTC
	Seed         uint64  `json:"seed"`
	TrainSamples int     `json:"train_samples"`
	TrainAttacks int     `json:"train_attacks"`
	ValSamples   int     `json:"val_samples"`
	ValAttacks   int     `json:"val_attacks"`
	Epochs       int     `json:"epochs"`     // epochs run
	BestEpoch    int     `json:"best_epoch"` // epoch whose weights were kept (1-based)
	TrainLoss    float64 `json:"train_loss"` // mean loss of the best epoch
	ValLoss      float64 `json:"val_loss,omitempty"`
	BatchSize    int     `json:"batch_size"`
	LearningRate float64 `json:"learning_rate"`
	L2           float64 `json:"l2,omitempty"`
	Dropout      float64 `json:"dropout,omitempty"`
	// Val are the validation metrics at threshold 0.5; Test is for
	// metrics on other held-out data, filled in by the caller.
	Val  *Metrics `json:"val,omitempty"`
	Test *Metrics `json:"test,omitempty"`
}

// shardSize is the number of samples whose gradients one worker sums
// before they are added, in shard order, to the batch gradient. It is
// fixed so that the sums do not depend on the number of workers.
const shardSize = 16

// dataset is a set of normalised samples, flat: sample i is
// x[i*stride:(i+1)*stride].
type dataset struct {
	x      []float32
	y      []float32
	stride int
}

func (d *dataset) len() int               { return len(d.y) }
func (d *dataset) sample(i int) []float32 { return d.x[i*d.stride : (i+1)*d.stride] }

// Train fits a model to train (labels 0 and 1), keeping the weights of the
// epoch with the lowest loss on val (or on a ValFraction split of train
// when val is empty). progress, when not nil, is called after every
// epoch; valLoss and valAcc are NaN without validation data.
func Train(train, val []Sample, cfg TrainConfig, progress func(epoch int, trainLoss, valLoss float64, valAcc float64)) (*Model, error) {
	cfg = cfg.withDefaults()
	if len(train) == 0 {
		return nil, errors.New("lucid: no training samples")
	}
	if cfg.BatchSize < 1 || cfg.Dropout < 0 || cfg.Dropout >= 1 || cfg.ValFraction < 0 || cfg.ValFraction >= 1 || cfg.LearningRate < 0 {
		return nil, fmt.Errorf("lucid: bad training config (batch %d, dropout %g, val fraction %g, learning rate %g)", cfg.BatchSize, cfg.Dropout, cfg.ValFraction, cfg.LearningRate)
	}
	n, f, err := shapeOf(train, val, cfg.N)
	if err != nil {
		return nil, err
	}
	if len(val) == 0 && cfg.ValFraction > 0 {
		idx := rand.New(rand.NewPCG(cfg.Seed, 0x73706c6974)).Perm(len(train))
		nv := int(math.Round(cfg.ValFraction * float64(len(train))))
		tr, va := make([]Sample, 0, len(train)-nv), make([]Sample, 0, nv)
		for j, i := range idx {
			if j < nv {
				va = append(va, train[i])
			} else {
				tr = append(tr, train[i])
			}
		}
		train, val = tr, va
		if len(train) == 0 {
			return nil, errors.New("lucid: no training samples left after the validation split")
		}
	}

	m, err := NewModel(n, f, cfg.K, cfg.H)
	if err != nil {
		return nil, err
	}
	m.Name = cfg.Name
	switch {
	case cfg.NoNormalize:
	case cfg.Normalizer != nil:
		m.Norm = cfg.Normalizer
	default:
		m.Norm = FitNormalizer(train)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	m.InitWeights(rand.New(rand.NewPCG(cfg.Seed, 0x696e6974)))
	tr, va := m.flatten(train), m.flatten(val)

	t := newTrainer(m, cfg)
	order := make([]int, tr.len())
	for i := range order {
		order[i] = i
	}
	shuffle := rand.New(rand.NewPCG(cfg.Seed, 0x73687566))
	best := math.Inf(1)
	var bestParams *Gradients // a copy of the best weights
	meta := TrainingMeta{
		Seed: cfg.Seed, TrainSamples: tr.len(), ValSamples: va.len(),
		TrainAttacks: positives(tr.y), ValAttacks: positives(va.y),
		BatchSize: cfg.BatchSize, LearningRate: cfg.LearningRate, L2: cfg.L2, Dropout: cfg.Dropout,
	}
	bad := 0
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		shuffle.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var sum float64
		for lo := 0; lo < len(order); lo += cfg.BatchSize {
			sum += t.step(&tr, order[lo:min(lo+cfg.BatchSize, len(order))])
		}
		trainLoss := sum / float64(len(order))
		if math.IsNaN(trainLoss) || math.IsInf(trainLoss, 0) {
			return nil, fmt.Errorf("lucid: training diverged at epoch %d (loss %g); lower the learning rate", epoch, trainLoss)
		}
		meta.Epochs = epoch
		valLoss, valAcc := math.NaN(), math.NaN()
		if va.len() > 0 {
			var scores []float32
			valLoss, scores = t.lossOn(&va)
			valAcc = metricsOf(scores, intLabels(va.y), 0.5).Accuracy
		}
		if progress != nil {
			progress(epoch, trainLoss, valLoss, valAcc)
		}
		if va.len() == 0 {
			meta.BestEpoch, meta.TrainLoss = epoch, trainLoss
			continue
		}
		if valLoss < best {
			best, bad = valLoss, 0
			bestParams = m.snapshot(bestParams)
			meta.BestEpoch, meta.TrainLoss, meta.ValLoss = epoch, trainLoss, valLoss
			continue
		}
		if bad++; cfg.Patience > 0 && bad >= cfg.Patience {
			break
		}
	}
	if bestParams != nil {
		m.restore(bestParams)
	}
	if va.len() > 0 {
		_, scores := t.lossOn(&va)
		vm := metricsOf(scores, intLabels(va.y), 0.5)
		meta.Val = &vm
	}
	now := time.Now().UTC()
	meta.Trained = now.Format(time.RFC3339)
	m.Meta = meta
	m.Version = cfg.Version
	if m.Version == "" {
		m.Version = fmt.Sprintf("lucid-1 trained %s seed %d", now.Format(time.DateOnly), cfg.Seed)
	}
	return m, nil
}

// shapeOf checks the samples and returns n (want, or the most rows) and
// the feature count F.
func shapeOf(train, val []Sample, want int) (n, f int, err error) {
	n, f = want, -1
	for _, set := range [][]Sample{train, val} {
		for i, s := range set {
			if s.Label != 0 && s.Label != 1 {
				return 0, 0, fmt.Errorf("lucid: sample %d (%s) has label %d, want 0 or 1", i, s.Key, s.Label)
			}
			if want == 0 {
				n = max(n, len(s.Packets))
			}
			for _, row := range s.Packets {
				if f < 0 {
					f = len(row)
				}
				if len(row) != f {
					return 0, 0, fmt.Errorf("lucid: sample %d (%s) has a row of %d features, others have %d", i, s.Key, len(row), f)
				}
			}
		}
	}
	if n == 0 || f <= 0 {
		return 0, 0, errors.New("lucid: the training samples have no packet rows")
	}
	return n, f, nil
}

// flatten normalises samples into a dataset.
func (m *Model) flatten(samples []Sample) dataset {
	d := dataset{x: make([]float32, len(samples)*m.N*m.F), y: make([]float32, len(samples)), stride: m.N * m.F}
	s := m.getScratch()
	defer m.pool.Put(s)
	for i, smp := range samples {
		s.load(m, smp.Packets)
		copy(d.sample(i), s.x)
		d.y[i] = float32(smp.Label)
	}
	return d
}

func positives(y []float32) int {
	n := 0
	for _, v := range y {
		if v == 1 {
			n++
		}
	}
	return n
}

func intLabels(y []float32) []int {
	l := make([]int, len(y))
	for i, v := range y {
		l[i] = int(v)
	}
	return l
}

// snapshot copies the weights into dst (allocated when nil).
func (m *Model) snapshot(dst *Gradients) *Gradients {
	if dst == nil {
		dst = NewGradients(m)
	}
	copy(dst.Conv, m.Conv)
	copy(dst.ConvBias, m.ConvBias)
	copy(dst.Dense, m.Dense)
	dst.DenseBias = m.DenseBias
	return dst
}

// restore sets the weights from a snapshot.
func (m *Model) restore(src *Gradients) {
	copy(m.Conv, src.Conv)
	copy(m.ConvBias, src.ConvBias)
	copy(m.Dense, src.Dense)
	m.DenseBias = src.DenseBias
}
