//go:build unix

package nn

import "syscall"

// cpuNanos returns the CPU time (user + system) the process has used, so
// that benchmarks can report a cost that other processes on a busy machine
// do not inflate.
func cpuNanos() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
