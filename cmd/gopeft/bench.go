package main

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gopeft/gopeft/bench/benchtable"
	"github.com/gopeft/gopeft/kernels"
)

// gemmShapes are the products of the bench package's BenchmarkGemm (M x K x
// N), so that gopeft bench and make bench print comparable tables.
var gemmShapes = []struct{ M, K, N int }{
	{512, 4096, 4096},
	{512, 4096, 16},
	{512, 16, 4096},
	{1024, 1024, 1024},
	{64, 256, 256},
}

// benchRow is one cell of the --json output.
type benchRow struct {
	Case    string  `json:"case"`
	Backend string  `json:"backend"`
	GFLOPS  float64 `json:"gflops"`
}

var testingInit sync.Once

func runBench(e *env, args []string) error {
	fs := e.newFlags("bench")
	filter := fs.String("bench", ".", "regular expression selecting the shapes (MxKxN) to run")
	benchtime := fs.Duration("benchtime", time.Second, "how long each case runs")
	count := fs.Int("count", 1, "runs of each case")
	stat := fs.String("stat", "median", "how several runs of a case become one number: median or best")
	base := fs.String("base", "purego", "the backend listed first, the one others are compared with")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	re, err := regexp.Compile(*filter)
	if err != nil {
		return usagef("--bench: %v", err)
	}
	if !slices.Contains(benchtable.Stats, *stat) {
		return usagef("--stat %q: want one of %v", *stat, benchtable.Stats)
	}
	if *count < 1 || *benchtime <= 0 {
		return usagef("--count and --benchtime must be positive")
	}
	// testing.Benchmark reads the test.benchtime flag.
	testingInit.Do(testing.Init)
	if err := flag.Set("test.benchtime", benchtime.String()); err != nil {
		return err
	}
	var shapes []string
	for _, s := range gemmShapes {
		if name := fmt.Sprintf("%dx%dx%d", s.M, s.K, s.N); re.MatchString(name) {
			shapes = append(shapes, name)
		}
	}
	if len(shapes) == 0 {
		return usagef("--bench %q selects none of the shapes", *filter)
	}
	names := kernels.Names()
	var out bytes.Buffer
	fmt.Fprintf(&out, "goos: %s\ngoarch: %s\n", runtime.GOOS, runtime.GOARCH)
	b := e.newBar(len(shapes)*len(names)**count, "benchmarking")
	for _, s := range gemmShapes {
		name := fmt.Sprintf("%dx%dx%d", s.M, s.K, s.N)
		if !re.MatchString(name) {
			continue
		}
		r := rand.New(rand.NewPCG(uint64(s.M), uint64(s.N)))
		A, B := randSlice(r, s.M*s.K), randSlice(r, s.K*s.N)
		for range *count {
			for _, bn := range names {
				be, err := kernels.Get(bn)
				if err != nil {
					fmt.Fprintf(e.stderr, "gopeft bench: backend %s cannot start here: %v\n", bn, err)
					b.add(1)
					continue
				}
				res := testing.Benchmark(func(tb *testing.B) { benchGemm(tb, be, s.M, s.K, s.N, A, B) })
				gflops := 2 * float64(s.M) * float64(s.N) * float64(s.K) * float64(res.N) / res.T.Seconds() / 1e9
				fmt.Fprintf(&out, "BenchmarkGemm/%s/%s-%d\t%d\t%d ns/op\t%.2f GFLOP/s\n", name, bn, runtime.GOMAXPROCS(0), res.N, res.NsPerOp(), gflops)
				b.add(1)
			}
		}
	}
	b.finish()
	if e.json {
		res, err := benchtable.Parse(bytes.NewReader(out.Bytes()), "GFLOP/s")
		if err != nil {
			return err
		}
		res.Stat = *stat
		var rows []benchRow
		for _, row := range res.Rows {
			for _, bn := range res.Backends {
				if v, ok := res.Value(row, bn); ok {
					rows = append(rows, benchRow{Case: row.Bench + "/" + row.Case, Backend: bn, GFLOPS: v})
				}
			}
		}
		return e.emit(rows)
	}
	return benchtable.Run(bytes.NewReader(out.Bytes()), e.stdout, "GFLOP/s", *base, *stat)
}

// benchGemm times C = A*B on be, as the bench package does.
func benchGemm(b *testing.B, be kernels.Backend, m, k, n int, A, B []float32) {
	a := &kernels.GemmArgs{
		M: m, N: n, K: k, Alpha: 1,
		A: be.FromHost(A), LdA: k,
		B: be.FromHost(B), LdB: n,
		C: be.Alloc(m * n), LdC: n,
	}
	defer func() {
		be.Free(a.A)
		be.Free(a.B)
		be.Free(a.C)
	}()
	probe := make([]float32, 1)
	be.Gemm(a)
	be.ToHost(probe, a.C.Slice(0, 1))
	b.ResetTimer()
	for range b.N {
		be.Gemm(a)
	}
	be.ToHost(probe, a.C.Slice(0, 1)) // wait for asynchronous devices
	b.StopTimer()
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = r.Float32()*2 - 1
	}
	return s
}
