// Package bench holds gopeft's performance suites: go test benchmarks that
// run the same work on every compiled kernel backend, so that the numbers
// compare backends on one machine in one run. It has no non-test code.
//
// Run them with `make bench` (which builds with -tags blas and prints one
// table through bench/cmd/benchtable), or directly:
//
//	go test -tags blas -run '^$' -bench Gemm ./bench
//
// Benchmarks are named <Benchmark>/<case>/<backend> and report a rate metric
// (GFLOP/s) besides ns/op. See README.md in this folder for how to read the
// table and for the peak rate of the machine the numbers were taken on.
package bench
