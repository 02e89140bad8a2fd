//go:build blas

package blas

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/gopeft/gopeft/kernels"
)

// refGemm is a float64 reference for one entry of GemmArgs.
func refGemm(a *kernels.GemmArgs, A, B, C []float32) []float64 {
	out := make([]float64, a.M*a.N)
	for i := 0; i < a.M; i++ {
		for j := 0; j < a.N; j++ {
			var s float64
			for p := 0; p < a.K; p++ {
				var x, y float32
				if a.TransA {
					x = A[p*a.LdA+i]
				} else {
					x = A[i*a.LdA+p]
				}
				if a.TransB {
					y = B[j*a.LdB+p]
				} else {
					y = B[p*a.LdB+j]
				}
				s += float64(x) * float64(y)
			}
			v := float64(a.Alpha) * s
			if a.Beta != 0 {
				v += float64(a.Beta) * float64(C[i*a.LdC+j])
			}
			out[i*a.N+j] = v
		}
	}
	return out
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = r.Float32()*2 - 1
	}
	return s
}

func TestGemm(t *testing.T) {
	be := New()
	tests := []struct {
		m, n, k        int
		transA, transB bool
		alpha, beta    float32
		pad            int // extra columns in every leading dimension
		batch          int
		shareB         bool // StrideB = 0
	}{
		{m: 1, n: 1, k: 1, alpha: 1},
		{m: 7, n: 5, k: 3, alpha: 1},
		{m: 7, n: 5, k: 3, transA: true, alpha: 0.5, beta: 2},
		{m: 33, n: 17, k: 65, transB: true, alpha: 1, beta: 1},
		{m: 16, n: 40, k: 9, transA: true, transB: true, alpha: -1.5, beta: 0.25, pad: 3},
		{m: 4, n: 6, k: 5, alpha: 1, pad: 2, batch: 3},
		{m: 4, n: 6, k: 5, transB: true, alpha: 2, beta: 1, batch: 4, shareB: true},
		{m: 3, n: 2, k: 0, alpha: 1, beta: 0.5},
		{m: 3, n: 2, k: 4, alpha: 0, beta: 0},
		{m: 0, n: 2, k: 4, alpha: 1},
		{m: 128, n: 96, k: 200, alpha: 1, batch: 2},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range tests {
		name := fmt.Sprintf("%dx%dx%d/tA=%v/tB=%v/a=%v/b=%v/pad=%d/batch=%d/shareB=%v",
			tc.m, tc.k, tc.n, tc.transA, tc.transB, tc.alpha, tc.beta, tc.pad, tc.batch, tc.shareB)
		t.Run(name, func(t *testing.T) {
			rowsA, colsA := tc.m, tc.k
			if tc.transA {
				rowsA, colsA = tc.k, tc.m
			}
			rowsB, colsB := tc.k, tc.n
			if tc.transB {
				rowsB, colsB = tc.n, tc.k
			}
			batch := max(tc.batch, 1)
			a := &kernels.GemmArgs{
				TransA: tc.transA, TransB: tc.transB,
				M: tc.m, N: tc.n, K: tc.k,
				Alpha: tc.alpha, Beta: tc.beta,
				LdA: colsA + tc.pad, LdB: colsB + tc.pad, LdC: tc.n + tc.pad,
				Batch: tc.batch,
			}
			a.StrideA, a.StrideB, a.StrideC = rowsA*a.LdA, rowsB*a.LdB, tc.m*a.LdC
			if tc.shareB {
				a.StrideB = 0
			}
			A := randSlice(r, max(batch*a.StrideA, 1))
			B := randSlice(r, max(batch*a.StrideB, rowsB*a.LdB, 1))
			C := randSlice(r, max(batch*a.StrideC, 1))
			if tc.beta == 0 {
				for i := range C {
					C[i] = float32(math.NaN()) // must not be read
				}
			}
			want := make([][]float64, batch)
			for i := range want {
				want[i] = refGemm(a, A[i*a.StrideA:], B[i*a.StrideB:], C[i*a.StrideC:])
			}
			before := append([]float32(nil), C...)
			a.A, a.B, a.C = kernels.Host(A), kernels.Host(B), kernels.Host(C)
			be.Gemm(a)
			for bi := range batch {
				for i := 0; i < tc.m; i++ {
					for j := 0; j < tc.n+tc.pad; j++ {
						at := bi*a.StrideC + i*a.LdC + j
						got := float64(C[at])
						if j >= tc.n {
							if !same(C[at], before[at]) {
								t.Fatalf("batch %d: padding C[%d,%d] changed: %v -> %v", bi, i, j, before[at], C[at])
							}
							continue
						}
						w := want[bi][i*tc.n+j]
						if tol := 1e-5 * (1 + math.Abs(w)) * math.Sqrt(float64(tc.k+1)); math.Abs(got-w) > tol || math.IsNaN(got) {
							t.Fatalf("batch %d: C[%d,%d] = %v, want %v", bi, i, j, got, w)
						}
					}
				}
			}
		})
	}
}

func same(a, b float32) bool {
	return a == b || (a != a && b != b)
}

// TestGemmConcurrent runs products from several goroutines at once, as
// concurrent inference does, and checks every result.
func TestGemmConcurrent(t *testing.T) {
	be := New()
	const n = 64
	r := rand.New(rand.NewPCG(3, 4))
	A, B := randSlice(r, n*n), randSlice(r, n*n)
	args := kernels.GemmArgs{M: n, N: n, K: n, Alpha: 1, A: kernels.Host(A), LdA: n, B: kernels.Host(B), LdB: n, LdC: n}
	want := refGemm(&args, A, B, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			C := make([]float32, n*n)
			a := args
			a.C = kernels.Host(C)
			for range 20 {
				be.Gemm(&a)
			}
			for i, w := range want {
				if math.Abs(float64(C[i])-w) > 1e-4 {
					errs <- fmt.Errorf("C[%d] = %v, want %v", i, C[i], w)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRegistered(t *testing.T) {
	be, err := kernels.Get(Name)
	if err != nil {
		t.Fatal(err)
	}
	if be.Name() != Name {
		t.Fatalf("Name() = %q, want %q", be.Name(), Name)
	}
	if Threads() < 1 {
		t.Fatalf("Threads() = %d", Threads())
	}
	if Config() == "" || CoreName() == "" {
		t.Fatalf("empty OpenBLAS config %q / core name %q", Config(), CoreName())
	}
	t.Logf("%v", be)
}

func TestGemmPanicsOnBadArgs(t *testing.T) {
	buf := kernels.Host(make([]float32, 16))
	tests := []struct {
		name string
		args kernels.GemmArgs
	}{
		{"negative M", kernels.GemmArgs{M: -1, N: 2, K: 2, A: buf, B: buf, C: buf, LdA: 2, LdB: 2, LdC: 2}},
		{"negative batch", kernels.GemmArgs{M: 2, N: 2, K: 2, Batch: -1, A: buf, B: buf, C: buf, LdA: 2, LdB: 2, LdC: 2}},
		{"overlapping outputs", kernels.GemmArgs{M: 2, N: 2, K: 2, Batch: 2, Alpha: 1, A: buf, B: buf, C: buf, LdA: 2, LdB: 2, LdC: 2}},
		{"short C", kernels.GemmArgs{M: 4, N: 8, K: 1, Alpha: 1, A: buf, B: buf, C: buf[:8], LdA: 1, LdB: 8, LdC: 8}},
		{"small LdA", kernels.GemmArgs{M: 2, N: 2, K: 3, Alpha: 1, A: buf, B: buf, C: buf, LdA: 2, LdB: 2, LdC: 2}},
	}
	be := New()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("Gemm did not panic")
				}
			}()
			be.Gemm(&tc.args)
		})
	}
}

func TestAxpy(t *testing.T) {
	be := New()
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 7, 1000, 70000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			x, y := randSlice(r, n), randSlice(r, n)
			want := make([]float64, n)
			for i := range want {
				want[i] = float64(y[i]) + 0.75*float64(x[i])
			}
			be.Axpy(kernels.Host(y), kernels.Host(x), 0.75)
			for i, w := range want {
				if math.Abs(float64(y[i])-w) > 1e-6 {
					t.Fatalf("y[%d] = %v, want %v", i, y[i], w)
				}
			}
		})
	}
	defer func() {
		if recover() == nil {
			t.Error("Axpy with different lengths did not panic")
		}
	}()
	be.Axpy(kernels.Host(make([]float32, 3)), kernels.Host(make([]float32, 4)), 1)
}
