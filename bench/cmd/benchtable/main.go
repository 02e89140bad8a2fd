// Command benchtable turns `go test -bench` output from the bench package
// into one table: a row per benchmark case, a column per backend, and the
// speed-up of every backend over every slower-ranked one.
//
// It expects sub-benchmarks named <Benchmark>/<case>/<backend>, such as
// BenchmarkGemm/512x4096x4096/blas-2, and reads the metric named by -metric
// (GFLOP/s by default; ns/op works too). When a case ran several times
// (-count), the table shows the median, or with -stat=best the fastest run,
// the better estimate on a machine that other work keeps busy. Usage:
//
//	go test -tags blas -run '^$' -bench . ./bench | go run ./bench/cmd/benchtable
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"

	"github.com/gopeft/gopeft/bench/benchtable"
)

func main() {
	metric := flag.String("metric", "GFLOP/s", "the benchmark metric to tabulate (ns/op, GFLOP/s, ...)")
	base := flag.String("base", "purego", "the backend listed first, the one others are compared with")
	stat := flag.String("stat", "median", "how several runs of a case become one number: median or best")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go test -bench ... | benchtable [flags]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if !slices.Contains(benchtable.Stats, *stat) {
		fmt.Fprintf(os.Stderr, "benchtable: -stat=%s: want one of %v\n", *stat, benchtable.Stats)
		os.Exit(2)
	}
	if err := benchtable.Run(os.Stdin, os.Stdout, *metric, *base, *stat); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}
