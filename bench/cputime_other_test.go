//go:build !unix

package bench

// cpuNanos reports that CPU time is unknown here.
func cpuNanos() int64 { return -1 }
