package btfjson

// sumOp merges one leaf at a byte offset from the root.
type sumOp struct {
	off int
	n   *node
}

// Sum merges per-CPU copies of a value into dst[:Size]: integer and float
// leaves are summed (integers wrap); every other leaf (enums, bools, chars,
// pointers, addresses, formatted fields, unions) takes the bytes of the
// first CPU whose bytes for that leaf are non-zero. Padding comes from the
// first CPU. CPU copies shorter than Size are ignored, and so is a dst
// shorter than Size. dst may be cpus[0] but must not overlap other copies.
func (d *Decoder) Sum(dst []byte, cpus [][]byte) {
	d.sumOnce.Do(func() { d.sumOps = sumOps(d.root, 0, nil) })
	if len(dst) < d.size {
		return
	}
	dst = dst[:d.size]

	first := -1
	for i, c := range cpus {
		if len(c) >= d.size {
			first = i
			break
		}
	}
	if first < 0 {
		clear(dst)
		return
	}
	copy(dst, cpus[first])
	rest := cpus[first+1:]
	for _, op := range d.sumOps {
		out := dst[op.off:]
		if op.n.add != nil {
			for _, c := range rest {
				if len(c) >= d.size {
					op.n.add(out, c[op.off:])
				}
			}
			continue
		}
		if !op.n.isZero(out) {
			continue
		}
		for _, c := range rest {
			if len(c) < d.size {
				continue
			}
			if in := c[op.off:]; !op.n.isZero(in) {
				op.n.set(out, in)
				break
			}
		}
	}
}

// sumOps lists the leaves of n in order, expanding arrays and structs.
func sumOps(n *node, off int, ops []sumOp) []sumOp {
	switch {
	case n.add != nil || n.isZero != nil:
		return append(ops, sumOp{off, n})
	case n.elem != nil:
		for i := range n.nelems {
			ops = sumOps(n.elem, off+i*n.elem.size, ops)
		}
	default:
		for _, p := range n.parts {
			ops = sumOps(p.n, off+p.off, ops)
		}
	}
	return ops
}
