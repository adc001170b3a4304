package kmeans

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// testFeatures are the request features of the kernel probe.
var testFeatures = []string{"cpu_ns", "page_faults", "mem_bytes", "rx_bytes", "tx_bytes", "idle_ns", "syscalls"}

// Feature indices of testFeatures.
const (
	fCPU = iota
	fPF
	fMem
	fRx
	fTx
	fIdle
	fSys
)

// blob is a synthetic request mix, Gaussian in log1p space: centre in
// original units, the same spread sigma (log1p units) for every feature,
// and a shared factor of weight corr that correlates all features
// (pairwise correlation corr²).
type blob struct {
	centre []float64
	sigma  float64
	corr   float64
}

// threeBlobs are three well-separated mixes: static files (little CPU,
// large responses), API calls (CPU and memory heavy, small responses) and
// uploads (large requests, long idle).
var threeBlobs = []blob{
	{centre: []float64{2e5, 3, 8e3, 400, 5e4, 2e5, 30}, sigma: 0.3},
	{centre: []float64{3e6, 40, 2e6, 1500, 3e3, 5e6, 200}, sigma: 0.3, corr: 0.5},
	{centre: []float64{8e5, 10, 1e5, 2e6, 300, 5e7, 600}, sigma: 0.3},
}

// draw writes one request of the mix to x.
func (b blob) draw(r *rand.Rand, x []float64) {
	g := r.NormFloat64()
	for j, c := range b.centre {
		e := math.Sqrt(1-b.corr*b.corr)*r.NormFloat64() + b.corr*g
		x[j] = math.Expm1(max(0, math.Log1p(c)+b.sigma*e))
	}
}

// gen draws n requests from the mixes, in turn, with the given seed; it
// returns the vectors and each one's mix.
func gen(seed uint64, blobs []blob, n int) ([][]float64, []int) {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	X, label := make([][]float64, n), make([]int, n)
	for i := range X {
		b := i % len(blobs)
		X[i] = make([]float64, len(blobs[b].centre))
		blobs[b].draw(r, X[i])
		label[i] = b
	}
	return X, label
}

// size returns full, or small under -short.
func size(full, small int) int {
	if testing.Short() {
		return small
	}
	return full
}

// trained is a model of threeBlobs shared by the tests that only read it.
type trained struct {
	m   *Model
	err error
}

var (
	threeOnce  sync.Once
	threeModel trained
)

func threeBlobModel(t *testing.T) *Model {
	t.Helper()
	threeOnce.Do(func() {
		X, _ := gen(1, threeBlobs, size(30000, 9000))
		threeModel.m, threeModel.err = Train(testFeatures, X, Config{Seed: 7})
	})
	if threeModel.err != nil {
		t.Fatal(threeModel.err)
	}
	return threeModel.m
}

// logDist is the largest |log1p(a_j) - log1p(b_j)|.
func logDist(a, b []float64) float64 {
	var m float64
	for j := range a {
		m = max(m, math.Abs(math.Log1p(a[j])-math.Log1p(b[j])))
	}
	return m
}

// scaled returns a copy of x with feature j multiplied by f.
func scaled(x []float64, j int, f float64) []float64 {
	y := append([]float64(nil), x...)
	y[j] *= f
	return y
}
