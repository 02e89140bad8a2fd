// Package kmeans clusters the rows of a matrix as scikit-learn's
// KMeans(n_clusters=k, init="random", n_init=1, max_iter=maxIter,
// random_state=seed).fit_predict does (scikit-learn 1.3 and later, Lloyd's
// algorithm), for AdaMSS, whose subspaces PEFT defines by such a clustering.
//
// What is reproduced exactly: the random initial centres. sklearn draws them
// with numpy's legacy RandomState(seed) (a 32-bit Mersenne Twister seeded
// like torch's, internal/torchrand) as
// choice(n, k, replace=False, p=ones/n): uniform doubles from pairs of
// 32-bit draws, looked up in the float64 cumulative sum of p (p the float32
// 1/n, normalised by its last entry), repeated without replacement; the
// cluster ids are the order in which the rows were drawn.
//
// What is reproduced up to rounding: Lloyd's iterations — assign each row to
// its nearest centre (the first on ties), move each centre to the mean of its
// rows, relocate empty clusters to the rows farthest from their old centre,
// stop when the labels repeat or the squared centre shift totals at most
// 1e-4 times the mean per-column variance, and after stopping on the
// tolerance relabel once with the final centres. gopeft computes in float64
// on the float32 input; sklearn computes in float32 with BLAS. A row
// (almost) equidistant from two centres, to float32 rounding, can therefore
// be labelled differently; and where several clusters are empty at once,
// gopeft takes the farthest rows in decreasing distance (ties: lower row)
// where sklearn's argpartition order is unspecified.
package kmeans

import (
	"math"
	"sort"

	"github.com/gopeft/gopeft/internal/torchrand"
)

// Fit returns the cluster of each of the n rows of the row-major n x d
// matrix x (k clusters, 1 <= k <= n).
func Fit(x []float32, n, d, k, maxIter int, seed int64) []int {
	xs := make([]float64, len(x))
	for i, v := range x {
		xs[i] = float64(v)
	}
	centers := make([]float64, k*d)
	for c, row := range initRows(n, k, seed) {
		copy(centers[c*d:(c+1)*d], xs[row*d:(row+1)*d])
	}
	tol := tolerance(xs, n, d, 1e-4)
	labels := make([]int, n)
	old := make([]int, n)
	for i := range old {
		old[i] = -1
	}
	strict := false
	for range maxIter {
		assign(xs, centers, n, d, k, labels)
		next, shift := update(xs, centers, labels, n, d, k)
		centers = next
		if equal(labels, old) {
			strict = true
			break
		}
		if shift <= tol {
			break
		}
		copy(old, labels)
	}
	if !strict {
		assign(xs, centers, n, d, k, labels)
	}
	return labels
}

// initRows returns the k rows numpy's RandomState(seed).choice(n, k,
// replace=False, p=ones(n, float32)/n) picks, in order.
func initRows(n, k int, seed int64) []int {
	g := torchrand.New(seed)
	p := make([]float64, n)
	pv := float64(float32(1) / float32(n))
	for i := range p {
		p[i] = pv
	}
	found := make([]int, 0, k)
	cdf := make([]float64, n)
	for len(found) < k {
		draws := make([]float64, k-len(found))
		for i := range draws {
			a, b := g.Random()>>5, g.Random()>>6
			draws[i] = (float64(a)*67108864.0 + float64(b)) / 9007199254740992.0
		}
		for _, f := range found {
			p[f] = 0
		}
		s := 0.0
		for i, v := range p {
			s += v
			cdf[i] = s
		}
		last := cdf[n-1]
		for i := range cdf {
			cdf[i] /= last
		}
		seen := map[int]bool{}
		for _, u := range draws {
			// searchsorted(side="right"): the number of entries <= u.
			j := sort.Search(n, func(i int) bool { return cdf[i] > u })
			if !seen[j] {
				seen[j] = true
				found = append(found, j)
			}
		}
	}
	return found[:k]
}

// tolerance is sklearn's _tolerance: tol times the mean column variance.
func tolerance(x []float64, n, d int, tol float64) float64 {
	var total float64
	for j := range d {
		var mean float64
		for i := range n {
			mean += x[i*d+j]
		}
		mean /= float64(n)
		var v float64
		for i := range n {
			e := x[i*d+j] - mean
			v += e * e
		}
		total += v / float64(n)
	}
	return total / float64(d) * tol
}

// assign labels each row with its nearest centre (the first on ties).
func assign(x, centers []float64, n, d, k int, labels []int) {
	for i := range n {
		best, bestD := 0, math.Inf(1)
		for c := range k {
			var dist float64
			for j := range d {
				e := x[i*d+j] - centers[c*d+j]
				dist += e * e
			}
			if dist < bestD {
				best, bestD = c, dist
			}
		}
		labels[i] = best
	}
}

// update returns the new centres (empty clusters relocated as sklearn's
// _relocate_empty_clusters_dense does) and the total squared shift.
func update(x, centers []float64, labels []int, n, d, k int) ([]float64, float64) {
	sums := make([]float64, k*d)
	weights := make([]float64, k)
	for i, c := range labels {
		weights[c]++
		for j := range d {
			sums[c*d+j] += x[i*d+j]
		}
	}
	var empty []int
	for c, w := range weights {
		if w == 0 {
			empty = append(empty, c)
		}
	}
	if len(empty) > 0 {
		dist := make([]float64, n)
		order := make([]int, n)
		for i, c := range labels {
			for j := range d {
				e := x[i*d+j] - centers[c*d+j]
				dist[i] += e * e
			}
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return dist[order[a]] > dist[order[b]] })
		for e, c := range empty {
			far := order[e]
			from := labels[far]
			for j := range d {
				sums[from*d+j] -= x[far*d+j]
				sums[c*d+j] = x[far*d+j]
			}
			weights[c] = 1
			weights[from]--
		}
	}
	next := make([]float64, k*d)
	var shift float64
	for c := range k {
		for j := range d {
			v := sums[c*d+j]
			if weights[c] > 0 {
				v /= weights[c]
			}
			next[c*d+j] = v
			e := v - centers[c*d+j]
			shift += e * e
		}
	}
	return next, shift
}

func equal(a, b []int) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
