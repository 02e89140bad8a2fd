// Package benchtable turns `go test -bench` output from the bench package
// into one table: a row per benchmark case, a column per backend, and the
// speed-up of every backend over every slower-ranked one. The benchtable
// command and `gopeft bench` print it.
package benchtable

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Row is one benchmark case: a benchmark and the case name between it and
// the backend (BenchmarkGemm/512x4096x4096/blas gives Gemm, 512x4096x4096).
type Row struct {
	Bench, Case string
}

// Results holds every value read, per row and backend, in input order.
type Results struct {
	Metric   string
	Header   []string // goos/goarch/pkg/cpu lines
	Rows     []Row
	Backends []string
	Values   map[Row]map[string][]float64
	Failed   bool // a FAIL line was seen
	// Stat is how several runs of one case become one number: "median"
	// (the default) or "best" (the fastest run).
	Stat string
}

// Stats are the accepted values of Results.Stat.
var Stats = []string{"median", "best"}

// Parse reads `go test -bench` output and keeps the given metric of every
// benchmark line named <Benchmark>/<case...>/<backend>[-GOMAXPROCS].
func Parse(r io.Reader, metric string) (*Results, error) {
	res := &Results{Metric: metric, Values: map[Row]map[string][]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(text, "FAIL") || strings.HasPrefix(text, "--- FAIL"):
			res.Failed = true
			continue
		case strings.HasPrefix(text, "cpu:") || strings.HasPrefix(text, "goos:") || strings.HasPrefix(text, "goarch:"):
			if !slices.Contains(res.Header, text) {
				res.Header = append(res.Header, text)
			}
			continue
		case !strings.HasPrefix(text, "Benchmark"):
			continue
		}
		f := strings.Fields(text)
		// name, iterations, then value/unit pairs.
		if len(f) < 4 || len(f)%2 != 0 {
			continue // a benchmark's log output, or a name without results
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		row, backend, ok := splitName(f[0])
		if !ok {
			continue
		}
		for i := 2; i+1 < len(f); i += 2 {
			if f[i+1] != metric {
				continue
			}
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: value %q of %s: %w", line, f[i], metric, err)
			}
			res.add(row, backend, v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading benchmark output: %w", err)
	}
	return res, nil
}

func (res *Results) add(row Row, backend string, v float64) {
	m, ok := res.Values[row]
	if !ok {
		m = map[string][]float64{}
		res.Values[row] = m
		res.Rows = append(res.Rows, row)
	}
	m[backend] = append(m[backend], v)
	if !slices.Contains(res.Backends, backend) {
		res.Backends = append(res.Backends, backend)
	}
}

// splitName splits BenchmarkGemm/512x4096x4096/blas-2 into the row
// {Gemm, 512x4096x4096} and the backend "blas".
func splitName(name string) (Row, string, bool) {
	parts := strings.Split(name, "/")
	if len(parts) < 3 {
		return Row{}, "", false
	}
	last := parts[len(parts)-1]
	if i := strings.LastIndexByte(last, '-'); i > 0 {
		if _, err := strconv.Atoi(last[i+1:]); err == nil {
			last = last[:i]
		}
	}
	return Row{
		Bench: strings.TrimPrefix(parts[0], "Benchmark"),
		Case:  strings.Join(parts[1:len(parts)-1], "/"),
	}, last, true
}

// higherIsBetter reports whether larger values of the metric are faster:
// rates (GFLOP/s, MB/s) are, times (ns/op) are not.
func higherIsBetter(metric string) bool { return strings.HasSuffix(metric, "/s") }

// order puts base first, then the other backends as they first appeared.
func (res *Results) order(base string) []string {
	out := make([]string, 0, len(res.Backends))
	if slices.Contains(res.Backends, base) {
		out = append(out, base)
	}
	for _, b := range res.Backends {
		if b != base {
			out = append(out, b)
		}
	}
	return out
}

// Median returns the median of the values of row on backend, and false when
// there are none.
func (res *Results) Median(row Row, backend string) (float64, bool) {
	vs := slices.Clone(res.Values[row][backend])
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2], true
	}
	return (vs[n/2-1] + vs[n/2]) / 2, true
}

// Best returns the fastest of the values of row on backend (the largest for
// a rate, the smallest for a time), and false when there are none.
func (res *Results) Best(row Row, backend string) (float64, bool) {
	vs := res.Values[row][backend]
	if len(vs) == 0 {
		return 0, false
	}
	if higherIsBetter(res.Metric) {
		return slices.Max(vs), true
	}
	return slices.Min(vs), true
}

// Value is the number the table shows for row on backend: Best when Stat is
// "best", else Median.
func (res *Results) Value(row Row, backend string) (float64, bool) {
	if res.Stat == "best" {
		return res.Best(row, backend)
	}
	return res.Median(row, backend)
}

// Write prints the table: one column per backend, base first,
// then for each pair of backends (later over earlier) how many times faster
// the later one is.
func (res *Results) Write(w io.Writer, base string) error {
	backends := res.order(base)
	type pair struct{ fast, slow string }
	var pairs []pair
	for i := range backends {
		for j := i + 1; j < len(backends); j++ {
			pairs = append(pairs, pair{fast: backends[j], slow: backends[i]})
		}
	}
	for _, h := range res.Header {
		if _, err := fmt.Fprintln(w, h); err != nil {
			return err
		}
	}
	runs := 0
	for _, m := range res.Values {
		for _, vs := range m {
			runs = max(runs, len(vs))
		}
	}
	better := "lower is better"
	if higherIsBetter(res.Metric) {
		better = "higher is better"
	}
	stat := "median"
	if res.Stat == "best" {
		stat = "fastest"
	}
	if _, err := fmt.Fprintf(w, "%s per backend (%s of up to %d runs, %s); a/b = how many times faster a is than b\n\n",
		res.Metric, stat, runs, better); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"benchmark", "case"}
	head = append(head, backends...)
	for _, p := range pairs {
		head = append(head, p.fast+"/"+p.slow)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, row := range res.Rows {
		cells := []string{row.Bench, row.Case}
		for _, b := range backends {
			if v, ok := res.Value(row, b); ok {
				cells = append(cells, formatValue(v))
			} else {
				cells = append(cells, "-")
			}
		}
		for _, p := range pairs {
			f, okf := res.Value(row, p.fast)
			s, oks := res.Value(row, p.slow)
			switch {
			case !okf || !oks || f == 0 || s == 0:
				cells = append(cells, "-")
			case higherIsBetter(res.Metric):
				cells = append(cells, fmt.Sprintf("%.2fx", f/s))
			default:
				cells = append(cells, fmt.Sprintf("%.2fx", s/f))
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	return tw.Flush()
}

func formatValue(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

// Run reads `go test -bench` output from r and writes the table of metric
// to w, base first, summing up repeated runs by stat ("median" or "best").
// It fails when the input holds no result or reports a failure.
func Run(r io.Reader, w io.Writer, metric, base, stat string) error {
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
