package benchtable

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/gopeft/gopeft/bench
cpu: Intel(R) Xeon(R) Processor
BenchmarkGemm/512x4096x4096/purego-2         	       1	1700000000 ns/op	        10.00 GFLOP/s
BenchmarkGemm/512x4096x4096/blas-2           	      20	  68000000 ns/op	       250.0 GFLOP/s
BenchmarkGemm/512x4096x4096/blas-2           	      20	  68000000 ns/op	       260.0 GFLOP/s
BenchmarkGemm/512x4096x4096/blas-2           	      20	  68000000 ns/op	       200.0 GFLOP/s
BenchmarkGemm/64x256x256/blas                	    1000	     40000 ns/op	        50.00 GFLOP/s
BenchmarkGemm/64x256x256/cuda-2              	    1000	     40000 ns/op
    gemm_test.go:42: some log line
PASS
ok  	github.com/gopeft/gopeft/bench	12.3s
`

func TestParse(t *testing.T) {
	res, err := Parse(strings.NewReader(sample), "GFLOP/s")
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed {
		t.Error("Failed set on a passing run")
	}
	if got, want := strings.Join(res.Backends, ","), "purego,blas"; got != want {
		t.Errorf("backends = %s, want %s", got, want)
	}
	tests := []struct {
		row     Row
		backend string
		want    float64
		ok      bool
	}{
		{Row{"Gemm", "512x4096x4096"}, "purego", 10, true},
		{Row{"Gemm", "512x4096x4096"}, "blas", 250, true}, // median of 200, 250, 260
		{Row{"Gemm", "64x256x256"}, "blas", 50, true},     // no -GOMAXPROCS suffix
		{Row{"Gemm", "64x256x256"}, "purego", 0, false},
		{Row{"Gemm", "64x256x256"}, "cuda", 0, false}, // no GFLOP/s metric
	}
	for _, tc := range tests {
		got, ok := res.Median(tc.row, tc.backend)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Median(%v, %s) = %v, %v; want %v, %v", tc.row, tc.backend, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSplitName(t *testing.T) {
	tests := []struct {
		name    string
		row     Row
		backend string
		ok      bool
	}{
		{"BenchmarkGemm/1x2x3/blas-16", Row{"Gemm", "1x2x3"}, "blas", true},
		{"BenchmarkGemm/1x2x3/blas", Row{"Gemm", "1x2x3"}, "blas", true},
		{"BenchmarkLinear/r=16/4096/purego-2", Row{"Linear", "r=16/4096"}, "purego", true},
		{"BenchmarkGemm/blas-2", Row{}, "", false},
	}
	for _, tc := range tests {
		row, backend, ok := splitName(tc.name)
		if row != tc.row || backend != tc.backend || ok != tc.ok {
			t.Errorf("splitName(%q) = %v, %q, %v; want %v, %q, %v", tc.name, row, backend, ok, tc.row, tc.backend, tc.ok)
		}
	}
}

func TestWrite(t *testing.T) {
	tests := []struct {
		metric, stat string
		want         []string // substrings of the table
	}{
		{"GFLOP/s", "median", []string{"blas/purego", "25.00x", "higher is better", "median of up to 3", "cpu: Intel"}},
		{"GFLOP/s", "best", []string{"260.0", "26.00x", "fastest of up to 3"}},
		{"ns/op", "median", []string{"blas/purego", "25.00x", "lower is better"}},
		{"ns/op", "best", []string{"68000000", "25.00x", "fastest of up to 3"}},
	}
	for _, tc := range tests {
		t.Run(tc.metric+"/"+tc.stat, func(t *testing.T) {
			var out bytes.Buffer
			if err := Run(strings.NewReader(sample), &out, tc.metric, "purego", tc.stat); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("table lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name, input string
	}{
		{"empty", ""},
		{"failed", sample + "--- FAIL: BenchmarkGemm\nFAIL\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := Run(strings.NewReader(tc.input), &bytes.Buffer{}, "GFLOP/s", "purego", "median"); err == nil {
				t.Error("run succeeded, want an error")
			}
		})
	}
}
