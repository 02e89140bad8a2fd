package purego

import (
	"math"
	"runtime"
	"sync"
)

// minWork is the amount of work (roughly, inner-loop iterations) below which
// splitting a job across goroutines costs more than it saves.
const minWork = 1 << 15

// chunks returns into how many pieces a job of n items, each costing about
// cost units, is split: 1 for small jobs, at most GOMAXPROCS, at most n.
func chunks(n, cost int) int {
	if n <= 1 {
		return 1
	}
	work := n
	if cost > 1 {
		if n > math.MaxInt/cost {
			work = math.MaxInt
		} else {
			work = n * cost
		}
	}
	c := min(runtime.GOMAXPROCS(0), n, work/minWork)
	return max(c, 1)
}

// split runs fn over [0, n) cut into k contiguous pieces; piece p covers
// [lo, hi). Pieces run concurrently; the last runs on the calling goroutine.
func split(n, k int, fn func(p, lo, hi int)) {
	if n <= 0 {
		return
	}
	if k <= 1 {
		fn(0, 0, n)
		return
	}
	var wg sync.WaitGroup
	per, rem := n/k, n%k
	lo := 0
	for p := 0; p < k; p++ {
		hi := lo + per
		if p < rem {
			hi++
		}
		if p == k-1 {
			fn(p, lo, hi)
			break
		}
		wg.Add(1)
		go func(p, lo, hi int) {
			defer wg.Done()
			fn(p, lo, hi)
		}(p, lo, hi)
		lo = hi
	}
	wg.Wait()
}

// parallelFor runs fn over [0, n) in as many concurrent pieces as a job of
// that size deserves (see chunks).
func parallelFor(n, cost int, fn func(lo, hi int)) {
	split(n, chunks(n, cost), func(_, lo, hi int) { fn(lo, hi) })
}
