package kmeans

import (
	"math"
	"strings"
	"testing"
)

// Past its cap the trainer keeps a uniform sample of everything added:
// the kept indices average about half the stream and spread over all of
// it, the same seed keeps the same sample, and a model trained on it
// records how many vectors were seen.
func TestTrainerReservoir(t *testing.T) {
	const capacity, total = 1000, 20000
	feed := func(seed uint64) *Trainer {
		tr, err := NewTrainer([]string{"index", "cpu_ns"}, Config{Cap: capacity, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		for i := range total {
			if err := tr.Add([]float64{float64(i), 1e6 + float64(i%97)}); err != nil {
				t.Fatal(err)
			}
		}
		return tr
	}
	tr := feed(1)
	if tr.Len() != capacity || tr.Seen() != total {
		t.Fatalf("kept %d of %d seen, want %d of %d", tr.Len(), tr.Seen(), capacity, total)
	}
	var sum float64
	late := 0
	for _, x := range tr.Vectors() {
		sum += x[0]
		if x[0] >= total/2 {
			late++
		}
	}
	// The mean of 1000 uniform indices has a standard deviation of
	// 20000/sqrt(12·1000) ≈ 183.
	if mean := sum / capacity; math.Abs(mean-total/2) > 800 {
		t.Errorf("mean kept index %v, want about %v", mean, total/2)
	}
	if late < 400 || late > 600 {
		t.Errorf("%d of %d kept from the second half", late, capacity)
	}
	a, b := tr.Vectors(), feed(1).Vectors()
	for i := range a {
		if a[i][0] != b[i][0] {
			t.Fatalf("same seed, kept %v then %v at %d", a[i], b[i], i)
		}
	}
	m, err := tr.Train()
	if err != nil {
		t.Fatal(err)
	}
	if m.Info.Seen != total || m.Info.Samples != capacity {
		t.Errorf("model info seen %d samples %d", m.Info.Seen, m.Info.Samples)
	}
	if err := tr.Add([]float64{1}); err == nil || !strings.Contains(err.Error(), "1 values for 2") {
		t.Errorf("short vector: %v", err)
	}
	if err := tr.Add([]float64{1, math.Inf(1)}); err == nil || tr.Seen() != total {
		t.Errorf("infinite value: %v, seen %d", err, tr.Seen())
	}
	tr.Reset()
	if tr.Len() != 0 || tr.Seen() != 0 {
		t.Errorf("after reset: %d kept, %d seen", tr.Len(), tr.Seen())
	}
}

// Below its cap the trainer keeps everything, in order, and trains the
// same model as Train on the same vectors.
func TestTrainerMatchesTrain(t *testing.T) {
	X, _ := gen(40, threeBlobs, 3000)
	tr, err := NewTrainer(testFeatures, Config{Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range X {
		if err := tr.Add(x); err != nil {
			t.Fatal(err)
		}
	}
	a, err := tr.Train()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Train(testFeatures, X, Config{Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range X[:200] {
		if a.Score(x).Score != b.Score(x).Score {
			t.Fatalf("trainer and Train disagree on %v", x)
		}
	}
	if _, err := NewTrainer(testFeatures, Config{Cap: -1}); err == nil {
		t.Error("negative cap accepted")
	}
}
