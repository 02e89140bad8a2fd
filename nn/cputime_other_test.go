//go:build !unix

package nn

// cpuNanos is unavailable here; benchmarks then report no CPU time.
func cpuNanos() int64 { return -1 }
