//go:build unix

package bench

import "syscall"

// cpuNanos returns the CPU time (user + system) the process has used so
// far, or -1 when the system will not say.
func cpuNanos() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
