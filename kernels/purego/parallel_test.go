package purego

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// split visits every index exactly once, in the number of pieces asked for.
func TestSplitCoversRangeOnce(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 100, 1001} {
		for _, k := range []int{1, 2, 3, 8, 2000} {
			if k > max(n, 1) {
				continue
			}
			t.Run(fmt.Sprintf("n%d_k%d", n, k), func(t *testing.T) {
				seen := make([]atomic.Int32, n)
				var pieces atomic.Int32
				split(n, k, func(p, lo, hi int) {
					pieces.Add(1)
					if p < 0 || p >= k || lo > hi {
						t.Errorf("piece %d covers [%d, %d)", p, lo, hi)
					}
					for i := lo; i < hi; i++ {
						seen[i].Add(1)
					}
				})
				for i := range seen {
					if c := seen[i].Load(); c != 1 {
						t.Fatalf("index %d visited %d times", i, c)
					}
				}
				if n > 0 && int(pieces.Load()) != k {
					t.Errorf("%d pieces ran, want %d", pieces.Load(), k)
				}
			})
		}
	}
}

// chunks splits only jobs big enough to pay for goroutines, never into more
// pieces than GOMAXPROCS or items.
func TestChunks(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	tests := []struct {
		n, cost, want int
	}{
		{0, 1, 1},
		{1, 1 << 30, 1},
		{100, 1, 1},                           // too little work to split
		{minWork * 64, 1, min(procs, 64)},     // plenty of work
		{3, minWork, min(procs, 3)},           // few expensive items
		{1 << 40, 1 << 40, min(procs, 1<<40)}, // n*cost overflows
	}
	for _, tc := range tests {
		if got := chunks(tc.n, tc.cost); got != tc.want {
			t.Errorf("chunks(%d, %d) = %d, want %d", tc.n, tc.cost, got, tc.want)
		}
	}
}

// Misuse by the caller panics with a message naming the problem.
func TestGemmArgumentChecks(t *testing.T) {
	be := New()
	buf := func(n int) kernels.Buffer { return make(kernels.Host, n) }
	tests := []struct {
		name, want string
		args       kernels.GemmArgs
	}{
		{"negative size", "negative size", kernels.GemmArgs{M: -1, N: 1, K: 1, A: buf(1), LdA: 1, B: buf(1), LdB: 1, C: buf(1), LdC: 1}},
		{"short lda", "LdA", kernels.GemmArgs{M: 2, N: 2, K: 3, A: buf(6), LdA: 2, B: buf(6), LdB: 2, C: buf(4), LdC: 2}},
		{"short A", "Gemm A", kernels.GemmArgs{M: 2, N: 2, K: 3, A: buf(5), LdA: 3, B: buf(6), LdB: 2, C: buf(4), LdC: 2}},
		{"short C for batch", "Gemm C", kernels.GemmArgs{M: 2, N: 2, K: 1, A: buf(2), LdA: 1, B: buf(2), LdB: 2, C: buf(4), LdC: 2, Batch: 2, StrideC: 4}},
		{"zero StrideC", "StrideC", kernels.GemmArgs{M: 2, N: 2, K: 1, A: buf(2), LdA: 1, B: buf(2), LdB: 2, C: buf(4), LdC: 2, Batch: 2}},
		{"foreign buffer", "not made by a host backend", kernels.GemmArgs{M: 1, N: 1, K: 1, A: foreign{}, LdA: 1, B: buf(1), LdB: 1, C: buf(1), LdC: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), tc.want) {
					t.Errorf("panic = %v, want one mentioning %q", r, tc.want)
				}
			}()
			be.Gemm(&tc.args)
		})
	}
}

type foreign struct{}

func (foreign) Len() int                          { return 1 }
func (f foreign) Slice(off, n int) kernels.Buffer { return f }

// Kernels running at once on one backend do not interfere (run with -race).
func TestConcurrentUse(t *testing.T) {
	be := New()
	const n = 64
	var wg sync.WaitGroup
	results := make([][]float32, 4)
	for g := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := make(kernels.Host, n*n)
			for i := range a {
				a[i] = float32(i%7) - 3
			}
			c := make(kernels.Host, n*n)
			be.Gemm(&kernels.GemmArgs{M: n, N: n, K: n, Alpha: 1, A: a, LdA: n, B: a, LdB: n, C: c, LdC: n})
			be.Softmax(c, c, n, n, true)
			be.Uniform(a, 5, 0, 0, 1)
			results[g] = append(c, a...)
		}()
	}
	wg.Wait()
	for g := 1; g < len(results); g++ {
		for i := range results[0] {
			if results[g][i] != results[0][i] {
				t.Fatalf("goroutine %d element %d = %v, goroutine 0 got %v", g, i, results[g][i], results[0][i])
			}
		}
	}
}
