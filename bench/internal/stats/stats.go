// Package stats holds what the bench harnesses share to summarise their
// rounds.
package stats

import (
	"slices"
	"syscall"
)

// Median of v: the middle value, the mean of the middle two for an even
// count, 0 for none. v is not changed.
func Median[T ~float64 | ~int64](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// CPUSeconds is the user and system CPU time of who (syscall.RUSAGE_SELF:
// this process, the agent side of a bench; RUSAGE_CHILDREN: its reaped
// children), in seconds; 0 if it cannot be read.
func CPUSeconds(who int) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
