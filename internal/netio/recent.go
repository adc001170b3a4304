package netio

// Recent is a set that remembers the last N keys added, forgetting the
// oldest first: sockets closed lately, whose events may still straggle in
// after their close. The zero value holds nothing; set N before use.
type Recent[K comparable] struct {
	N   int
	set map[K]struct{}
	log []K // ring, oldest at pos once full
	pos int
}

// Add remembers k (again adding one it holds changes nothing).
func (r *Recent[K]) Add(k K) {
	if r.set == nil {
		r.set = map[K]struct{}{}
	}
	if _, ok := r.set[k]; ok || r.N <= 0 {
		return
	}
	if len(r.log) < r.N {
		r.log = append(r.log, k)
	} else {
		delete(r.set, r.log[r.pos])
		r.log[r.pos] = k
		r.pos = (r.pos + 1) % r.N
	}
	r.set[k] = struct{}{}
}

// Has reports whether k is among the last N added.
func (r *Recent[K]) Has(k K) bool {
	_, ok := r.set[k]
	return ok
}
