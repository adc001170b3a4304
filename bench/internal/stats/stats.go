// Package stats holds what the bench harnesses share to summarise their
// rounds.
package stats

import "slices"

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
