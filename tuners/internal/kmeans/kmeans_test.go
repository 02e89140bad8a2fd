package kmeans

import (
	"math/rand/v2"
	"testing"
)

// TestInitDraws checks the uniform doubles against numpy:
// np.random.RandomState(0).rand() == 0.5488135039273248 and
// RandomState(42).rand() == 0.3745401188473625, and the row choice for one
// centre: floor(u * n) away from cdf rounding.
func TestInitDraws(t *testing.T) {
	for _, c := range []struct {
		seed int64
		u    float64
	}{{0, 0.5488135039273248}, {42, 0.3745401188473625}} {
		rows := initRows(1000, 1, c.seed)
		if want := int(c.u * 1000); rows[0] != want {
			t.Errorf("seed %d: first row %d, want %d (u = %v)", c.seed, rows[0], want, c.u)
		}
	}
	rows := initRows(7, 7, 123456789)
	seen := map[int]bool{}
	for _, r := range rows {
		if r < 0 || r >= 7 || seen[r] {
			t.Fatalf("rows %v are not a permutation", rows)
		}
		seen[r] = true
	}
}

// TestBlobs checks that well separated blobs come out as the clusters, each
// labelled by the order in which its initial row was drawn.
func TestBlobs(t *testing.T) {
	const n, d, k = 60, 3, 3
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, n*d)
	truth := make([]int, n)
	for i := range n {
		truth[i] = rng.IntN(k)
		for j := range d {
			x[i*d+j] = float32(10*truth[i]*(j+1)) + float32(rng.NormFloat64()*0.1)
		}
	}
	labels := Fit(x, n, d, k, 10, 123456789)
	init := initRows(n, k, 123456789)
	groups := map[int]int{}
	for c, row := range init {
		groups[truth[row]] = c
	}
	if len(groups) != k {
		t.Skip("initial rows fell in fewer blobs than clusters")
	}
	for i := range n {
		if labels[i] != groups[truth[i]] {
			t.Fatalf("row %d labelled %d, want %d", i, labels[i], groups[truth[i]])
		}
	}
}

// TestEmptyRelocation: more clusters than distinct points still labels
// every cluster by relocating empty ones to the farthest rows.
func TestEmptyRelocation(t *testing.T) {
	x := []float32{0, 0, 0, 0, 0, 0, 1, 1, 5, 5}
	labels := Fit(x, 5, 2, 3, 10, 3)
	used := map[int]bool{}
	for _, l := range labels {
		used[l] = true
	}
	if labels[0] != labels[1] || labels[1] != labels[2] {
		t.Fatalf("identical rows split: %v", labels)
	}
	if len(used) != 3 {
		t.Fatalf("labels %v do not use all 3 clusters", labels)
	}
}
