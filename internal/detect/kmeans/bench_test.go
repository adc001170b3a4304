package kmeans

import (
	"testing"
)

// BenchmarkTrain1M trains on 1,000,000 vectors of 7 features (the three
// mixes) with the automatic choice of k. Run it with -benchtime=1x.
func BenchmarkTrain1M(b *testing.B) {
	X, _ := gen(100, threeBlobs, 1_000_000)
	b.ReportAllocs()
	for b.Loop() {
		m, err := Train(testFeatures, X, Config{Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		if m.K() != 3 {
			b.Fatalf("k = %d, want 3", m.K())
		}
	}
}

// benchModel is an 8-cluster model, the most the automatic choice gives.
func benchModel(b *testing.B) (*Model, [][]float64) {
	X, _ := gen(101, threeBlobs, 20000)
	m, err := Train(testFeatures, X, Config{K: 8, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	return m, X[:1024]
}

func BenchmarkScore(b *testing.B) {
	m, X := benchModel(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Score(X[i&1023])
		i++
	}
}

func BenchmarkScoreInFlight(b *testing.B) {
	m, X := benchModel(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.ScoreInFlight(X[i&1023])
		i++
	}
}

// BenchmarkScoreOutlier scores attacks: every result is explained (Top).
func BenchmarkScoreOutlier(b *testing.B) {
	m, X := benchModel(b)
	for _, x := range X {
		x[fCPU] *= 1e4
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if !m.Score(X[i&1023]).Outlier {
			b.Fatal("not an outlier")
		}
		i++
	}
}
