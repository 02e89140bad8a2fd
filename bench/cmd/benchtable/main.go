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
	"io"
	"os"
	"slices"
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
	if !slices.Contains(Stats, *stat) {
		fmt.Fprintf(os.Stderr, "benchtable: -stat=%s: want one of %v\n", *stat, Stats)
		os.Exit(2)
	}
	if err := run(os.Stdin, os.Stdout, *metric, *base, *stat); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func run(r io.Reader, w io.Writer, metric, base, stat string) error {
	res, err := Parse(r, metric)
	if err != nil {
		return err
	}
	res.Stat = stat
	if len(res.Rows) == 0 {
		return fmt.Errorf("no benchmark results with metric %q in the input", metric)
	}
	if err := res.Write(w, base); err != nil {
		return err
	}
	if res.Failed {
		return fmt.Errorf("the benchmark run reported a failure (see FAIL lines above the table)")
	}
	return nil
}
