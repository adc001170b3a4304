package kmeans

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
)

// reservoirStream separates the reservoir's random stream from the others.
const reservoirStream = 0x7265736572766f69

// Trainer collects benign vectors from a stream (completed requests
// during the training window) and trains a model on them. It keeps at
// most Config.Cap vectors: beyond that, a uniform reservoir sample of all
// vectors added (Vitter's algorithm R, seeded by Config.Seed), so memory
// stays bounded however long the window. It is safe for concurrent use.
type Trainer struct {
	features []string
	cfg      Config
	capacity int

	mu   sync.Mutex
	data []float64 // rows of len(features), at most capacity of them
	seen int64
	rng  *rand.Rand
}

// NewTrainer returns a trainer for vectors of the named features.
func NewTrainer(features []string, cfg Config) (*Trainer, error) {
	r, err := cfg.resolve(features)
	if err != nil {
		return nil, err
	}
	return &Trainer{
		features: slices.Clone(features),
		cfg:      cfg,
		capacity: r.cfg.Cap,
		rng:      newRand(cfg.Seed, reservoirStream),
	}, nil
}

// Add offers one vector (copied). It refuses a vector of the wrong length
// or with a NaN or infinite value, which is then not counted as seen.
func (t *Trainer) Add(x []float64) error {
	if err := checkRow(t.features, x); err != nil {
		return fmt.Errorf("kmeans: trainer: %w", err)
	}
	d := len(t.features)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen++
	if n := len(t.data) / d; n < t.capacity {
		t.data = append(t.data, x...)
		return nil
	}
	// The vector number seen replaces a kept one with probability
	// capacity/seen.
	if j := t.rng.Int64N(t.seen); j < int64(t.capacity) {
		copy(t.data[int(j)*d:], x)
	}
	return nil
}

// Seen returns how many vectors were added.
func (t *Trainer) Seen() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seen
}

// Len returns how many vectors are kept.
func (t *Trainer) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.data) / len(t.features)
}

// Vectors returns a copy of the kept vectors (for WriteTrainingSet).
func (t *Trainer) Vectors() [][]float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := len(t.features)
	flat := slices.Clone(t.data)
	out := make([][]float64, len(flat)/d)
	for i := range out {
		out[i] = flat[i*d : (i+1)*d : (i+1)*d]
	}
	return out
}

// Reset forgets every vector, to start a new training window.
func (t *Trainer) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.data, t.seen = nil, 0
	t.rng = newRand(t.cfg.Seed, reservoirStream)
}

// Train fits a model on the kept vectors (a copy: adding may go on while
// it trains). The model's Info.Seen is the number of vectors added.
func (t *Trainer) Train() (*Model, error) {
	t.mu.Lock()
	d := len(t.features)
	m := matrix{v: slices.Clone(t.data), n: len(t.data) / d, d: d}
	seen := t.seen
	t.mu.Unlock()
	return train(t.features, m, t.cfg, seen)
}
