package kmeans

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// chunkSize is the number of rows in one unit of parallel work. Chunk
// boundaries depend only on the number of rows, and every parallel pass
// keeps one partial result per chunk, merged in chunk order: floating
// point sums come out the same whatever GOMAXPROCS is.
const chunkSize = 4096

// numChunks is the number of chunks of n rows.
func numChunks(n int) int { return (n + chunkSize - 1) / chunkSize }

// forChunks calls fn(c, lo, hi) for every chunk c, rows [lo, hi), on up to
// GOMAXPROCS goroutines. fn must only write state owned by its chunk or
// its rows.
func forChunks(n int, fn func(c, lo, hi int)) {
	forEach(numChunks(n), func(c int) {
		lo := c * chunkSize
		fn(c, lo, min(lo+chunkSize, n))
	})
}

// forEach calls fn(0) ... fn(n-1) on up to GOMAXPROCS goroutines.
func forEach(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}
