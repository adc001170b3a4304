package netio

import "testing"

func TestRecent(t *testing.T) {
	r := Recent[int]{N: 3}
	for _, k := range []int{1, 2, 2, 3} {
		r.Add(k)
	}
	for _, k := range []int{1, 2, 3} {
		if !r.Has(k) {
			t.Errorf("%d forgotten with room left", k)
		}
	}
	r.Add(4) // forgets 1, the oldest
	if r.Has(1) || !r.Has(2) || !r.Has(4) {
		t.Errorf("after a fourth: has 1 %v, 2 %v, 4 %v", r.Has(1), r.Has(2), r.Has(4))
	}
	var zero Recent[int]
	zero.Add(1)
	if zero.Has(1) {
		t.Error("a Recent with N 0 remembered a key")
	}
}
