package kmeans

import (
	"math"
	"math/rand/v2"
	"slices"
)

// clustering is the result of one k-means run.
type clustering struct {
	k       int
	centres []float64 // k × d
	assign  []int32   // nearest centre of every row
	counts  []int     // rows per centre
	inertia float64   // sum of squared distances to the nearest centre
	iters   int       // Lloyd iterations run
}

// sqDist is the squared Euclidean distance between a and b (len(a) ≤ len(b)).
func sqDist(a, b []float64) float64 {
	b = b[:len(a)]
	var s float64
	for j, v := range a {
		e := v - b[j]
		s += e * e
	}
	return s
}

// nearest returns the index of the centre nearest to x and its squared
// distance; ties go to the lower index.
func nearest(x, centres []float64, k int) (int, float64) {
	d := len(x)
	best, bd := 0, math.Inf(1)
	for c := range k {
		if s := sqDist(x, centres[c*d:(c+1)*d]); s < bd {
			best, bd = c, s
		}
	}
	return best, bd
}

// seedPlusPlus picks k initial centres by k-means++ (Arthur and
// Vassilvitskii 2007): the first uniformly, each next one with probability
// proportional to its squared distance to the nearest centre so far. The
// distances are updated in parallel per row; the draws are sequential, so
// the result depends only on the data and r.
func seedPlusPlus(m matrix, k int, r *rand.Rand) []float64 {
	centres := make([]float64, 0, k*m.d)
	centres = append(centres, m.row(r.IntN(m.n))...)
	dist := make([]float64, m.n)
	for i := range dist {
		dist[i] = math.Inf(1)
	}
	for c := 1; c < k; c++ {
		last := centres[(c-1)*m.d : c*m.d]
		forChunks(m.n, func(_, lo, hi int) {
			for i := lo; i < hi; i++ {
				dist[i] = min(dist[i], sqDist(last, m.row(i)))
			}
		})
		var total float64
		for _, v := range dist {
			total += v
		}
		pick := r.IntN(m.n)
		if total > 0 {
			u := r.Float64() * total
			pick = m.n - 1
			for i, v := range dist {
				if u -= v; u < 0 && v > 0 {
					pick = i
					break
				}
			}
		}
		centres = append(centres, m.row(pick)...)
	}
	return centres
}

// partial is one chunk's share of a Lloyd assignment pass.
type partial struct {
	sums    []float64 // k × d
	counts  []int
	inertia float64
	changed int
}

// lloyd runs Lloyd iterations from the given centres (copied) until no
// row changes cluster, no centre moves by more than tol, or maxIter
// iterations. A cluster left empty is reseeded with the row farthest from
// its centre. The returned assignment is that of the returned centres.
func lloyd(m matrix, init []float64, k, maxIter int, tol float64) clustering {
	cl := clustering{
		k:       k,
		centres: slices.Clone(init),
		assign:  make([]int32, m.n),
		counts:  make([]int, k),
	}
	for i := range cl.assign {
		cl.assign[i] = -1
	}
	parts := make([]partial, numChunks(m.n))
	for i := range parts {
		parts[i] = partial{sums: make([]float64, k*m.d), counts: make([]int, k)}
	}
	next := make([]float64, k*m.d)
	for {
		changed := cl.pass(m, parts)
		if changed == 0 || cl.iters >= maxIter {
			return cl
		}
		cl.iters++
		// New centres: the means of the clusters, merged in chunk order.
		clear(next)
		for _, p := range parts {
			for i, v := range p.sums {
				next[i] += v
			}
		}
		var shift float64
		for c := range k {
			if cl.counts[c] == 0 {
				continue
			}
			row := next[c*m.d : (c+1)*m.d]
			for j := range row {
				row[j] /= float64(cl.counts[c])
			}
			shift = max(shift, sqDist(row, cl.centres[c*m.d:]))
			copy(cl.centres[c*m.d:], row)
		}
		reseeded := cl.reseed(m)
		if !reseeded && math.Sqrt(shift) <= tol {
			cl.pass(m, parts) // the assignment of the final centres
			return cl
		}
	}
}

// pass assigns every row to its nearest centre, filling the per-chunk
// partial sums, cl.counts and cl.inertia; it returns how many rows
// changed cluster.
func (cl *clustering) pass(m matrix, parts []partial) int {
	k, d := cl.k, m.d
	forChunks(m.n, func(ci, lo, hi int) {
		p := &parts[ci]
		clear(p.sums)
		clear(p.counts)
		p.inertia, p.changed = 0, 0
		for i := lo; i < hi; i++ {
			x := m.row(i)
			c, s := nearest(x, cl.centres, k)
			if int32(c) != cl.assign[i] {
				cl.assign[i] = int32(c)
				p.changed++
			}
			p.counts[c]++
			p.inertia += s
			sum := p.sums[c*d : (c+1)*d]
			for j, v := range x {
				sum[j] += v
			}
		}
	})
	clear(cl.counts)
	cl.inertia = 0
	changed := 0
	for _, p := range parts {
		for c, n := range p.counts {
			cl.counts[c] += n
		}
		cl.inertia += p.inertia
		changed += p.changed
	}
	return changed
}

// reseed moves the centre of every empty cluster to a row far from its
// own centre: the farthest rows in turn (ties to the lower index). It
// reports whether it moved any. Rows at distance 0 are never used, so
// duplicate data leaves the surplus clusters empty.
func (cl *clustering) reseed(m matrix) bool {
	var empty []int
	for c, n := range cl.counts {
		if n == 0 {
			empty = append(empty, c)
		}
	}
	if len(empty) == 0 {
		return false
	}
	// The len(empty) farthest rows, farthest first (rare: sequential).
	type far struct {
		i int
		s float64
	}
	var top []far
	for i := range m.n {
		x := m.row(i)
		s := sqDist(x, cl.centres[int(cl.assign[i])*m.d:])
		if s == 0 || (len(top) == len(empty) && s <= top[len(top)-1].s) {
			continue
		}
		at := len(top)
		for at > 0 && top[at-1].s < s {
			at--
		}
		top = slices.Insert(top, at, far{i, s})
		if len(top) > len(empty) {
			top = top[:len(empty)]
		}
	}
	for e, f := range top {
		copy(cl.centres[empty[e]*m.d:(empty[e]+1)*m.d], m.row(f.i))
	}
	return len(top) > 0
}

// bestOf runs restarts k-means++ initialisations followed by Lloyd on m
// and keeps the run of least inertia (the first on ties). Each restart
// has its own random stream derived from seed, k and the restart index.
func bestOf(m matrix, k, restarts, maxIter int, tol float64, seed uint64) clustering {
	var best clustering
	for r := range restarts {
		rng := newRand(seed, uint64(k)<<32|uint64(r))
		cl := lloyd(m, seedPlusPlus(m, k, rng), k, maxIter, tol)
		if r == 0 || cl.inertia < best.inertia {
			best = cl
		}
	}
	return best
}

// newRand returns a PCG stream for (seed, stream), both words mixed by
// SplitMix64 so that neighbouring streams are unrelated.
func newRand(seed, stream uint64) *rand.Rand {
	a := splitmix64(seed ^ (stream+1)*0x9e3779b97f4a7c15)
	b := splitmix64(a ^ 0xd1b54a32d192ed03)
	return rand.New(rand.NewPCG(a, b))
}

// splitmix64 is the SplitMix64 finaliser: a bijective 64-bit mix.
func splitmix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
