package kmeans

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestQuantileSorted(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5}
	for _, c := range []struct{ q, want float64 }{
		{0, 1}, {1, 5}, {0.5, 3}, {0.25, 2}, {0.1, 1.4}, {0.999, 4.996},
	} {
		if got := quantileSorted(s, c.q); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("quantile %v = %v, want %v", c.q, got, c.want)
		}
	}
	if quantileSorted(nil, 0.5) != 0 || quantileSorted([]float64{7}, 0.9) != 7 {
		t.Error("empty or single-value quantile")
	}
}

// The trimmed moments ignore a few wild values; the MAD rule cuts a far
// mode that trimming keeps.
func TestRobustMoments(t *testing.T) {
	s := make([]float64, 0, 1002)
	for i := range 1000 {
		s = append(s, float64(i%2)) // mean 0.5, std 0.5
	}
	s = append(s, -1e9, 1e12) // one wild value each side
	slices.Sort(s)
	mean, std := robustMoments(s, 0.001, 0)
	if math.Abs(mean-0.5) > 1e-9 || math.Abs(std-0.50025) > 1e-4 {
		t.Errorf("trimmed moments %v %v, want 0.5 0.50025", mean, std)
	}
	if mean, _ := robustMoments(s, 0, 0); mean < 1e8 {
		t.Errorf("untrimmed mean %v should be dragged by the outlier", mean)
	}
	var tail []float64
	for i := range 1000 {
		tail = append(tail, float64(i%10)/10)
	}
	for range 20 {
		tail = append(tail, 50)
	}
	slices.Sort(tail)
	if mean, _ := robustMoments(tail, 0.001, 5); mean > 1 {
		t.Errorf("MAD rule kept the far mode: mean %v", mean)
	}
	if mean, _ := robustMoments(tail, 0.001, 0); mean < 1 {
		t.Errorf("trimming alone dropped the far mode (2%%): mean %v", mean)
	}
	if mean, std := robustMoments([]float64{3, 3, 3}, 0.001, 5); mean != 3 || std != 0 {
		t.Errorf("constant: %v %v", mean, std)
	}
}

// invertSPD returns the inverse and log-determinant of a known matrix and
// refuses a singular one.
func TestInvertSPD(t *testing.T) {
	a := []float64{4, 2, 0, 2, 3, 1, 0, 1, 2}
	inv, logdet, err := invertSPD(a, 3)
	if err != nil {
		t.Fatal(err)
	}
	// det = 4(6-1) - 2(4-0) = 12.
	if math.Abs(logdet-math.Log(12)) > 1e-12 {
		t.Errorf("log det %v, want ln 12", logdet)
	}
	for i := range 3 {
		for j := range 3 {
			var s float64
			for k := range 3 {
				s += a[i*3+k] * inv[k*3+j]
			}
			if want := float64(boolInt(i == j)); math.Abs(s-want) > 1e-12 {
				t.Errorf("(A·A⁻¹)[%d,%d] = %v", i, j, s)
			}
		}
	}
	e := []float64{1, -1, 2}
	var want float64
	for i := range 3 {
		for j := range 3 {
			want += e[i] * inv[i*3+j] * e[j]
		}
	}
	if got := mahalanobis2(e, inv); math.Abs(got-want) > 1e-12 {
		t.Errorf("mahalanobis2 %v, want %v", got, want)
	}
	if _, _, err := invertSPD([]float64{1, 1, 1, 1}, 2); err == nil {
		t.Error("singular matrix inverted")
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// The shrinkage estimate is small for many points of a clearly
// correlated pair, large for a few points of an uncorrelated one; the
// floors raise tiny variances; the result is always invertible, even for
// two identical features.
func TestShrunkCovariance(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	sample := func(n int, rho float64, twins bool) moments {
		m := matrix{n: n, d: 3}
		for range n {
			g := r.NormFloat64()
			a := g
			b := rho*g + math.Sqrt(1-rho*rho)*r.NormFloat64()
			c := 0.001 * r.NormFloat64()
			if twins {
				b = a
			}
			m.v = append(m.v, a, b, c)
		}
		return clusterMoments(m, make([]int32, n), 1)[0]
	}
	floors := []float64{0.1, 0.1, 0.1}
	corr := shrunkCovariance(sample(5000, 0.9, false), floors, 0)
	if corr.shrinkage > 0.05 || math.Abs(corr.cov[1]-0.9) > 0.05 {
		t.Errorf("correlated: shrinkage %v, covariance %v", corr.shrinkage, corr.cov)
	}
	if c := corr.cov[8]; c != floors[2]*floors[2] {
		t.Errorf("tiny variance %v, want the floor 0.01", c)
	}
	noise := shrunkCovariance(sample(20, 0, false), floors, 0)
	if noise.shrinkage < 0.3 {
		t.Errorf("uncorrelated, 20 points: shrinkage %v, want large", noise.shrinkage)
	}
	twins := shrunkCovariance(sample(1000, 0, true), floors, 0)
	if twins.prec == nil || twins.shrinkage < minShrinkage || math.IsInf(twins.logdet, 0) {
		t.Errorf("identical features: %+v", twins)
	}
	fixed := shrunkCovariance(sample(100, 0.9, false), floors, 0.5)
	if fixed.shrinkage != 0.5 {
		t.Errorf("fixed shrinkage %v", fixed.shrinkage)
	}
	one := shrunkCovariance(sample(1, 0, false), floors, 0)
	if one.cov[0] != floors[0]*floors[0] || one.cov[1] != 0 {
		t.Errorf("one point: covariance %v, want the floors", one.cov)
	}
}

// Lloyd on two obvious 1-D groups converges to their means from a poor
// start, and an empty cluster is reseeded with the farthest point.
func TestLloyd(t *testing.T) {
	m := matrix{v: []float64{0, 1, 2, 10, 11, 12}, n: 6, d: 1}
	cl := lloyd(m, []float64{0, 1}, 2, 100, 1e-9)
	if !slices.Equal(cl.centres, []float64{1, 11}) || !slices.Equal(cl.counts, []int{3, 3}) || cl.inertia != 4 {
		t.Errorf("centres %v counts %v inertia %v", cl.centres, cl.counts, cl.inertia)
	}
	if !slices.Equal(cl.assign, []int32{0, 0, 0, 1, 1, 1}) {
		t.Errorf("assignment %v", cl.assign)
	}
	// Both centres start at 100: the second is empty after the first pass
	// and must be reseeded at the farthest point from the first mean.
	cl = lloyd(m, []float64{100, 100}, 2, 100, 1e-9)
	if slices.Contains(cl.counts, 0) || cl.inertia != 4 {
		t.Errorf("after reseeding: centres %v counts %v", cl.centres, cl.counts)
	}
	// Duplicate points cannot fill three clusters: one stays empty and
	// dropEmpty removes it.
	dup := matrix{v: []float64{5, 5, 5, 7}, n: 4, d: 1}
	cl = dropEmpty(lloyd(dup, []float64{5, 5, 7}, 3, 100, 1e-9), 1)
	if cl.k != 2 || !slices.Equal(cl.counts, []int{3, 1}) || slices.Max(cl.assign) != 1 {
		t.Errorf("duplicates: k %d counts %v assign %v", cl.k, cl.counts, cl.assign)
	}
}

// k-means++ draws distinct, far-apart seeds on separated groups and
// depends only on its random source.
func TestSeedPlusPlus(t *testing.T) {
	var v []float64
	for g := range 4 {
		for i := range 500 {
			v = append(v, float64(g*100)+float64(i%5), float64(i%7))
		}
	}
	m := matrix{v: v, n: 2000, d: 2}
	a := seedPlusPlus(m, 4, newRand(1, 2))
	b := seedPlusPlus(m, 4, newRand(1, 2))
	if !slices.Equal(a, b) {
		t.Error("same source, different seeds")
	}
	groups := map[int]bool{}
	for c := range 4 {
		groups[int(a[2*c]/100+0.5)] = true
	}
	if len(groups) != 4 {
		t.Errorf("k-means++ seeds %v do not hit the 4 groups", a)
	}
}
