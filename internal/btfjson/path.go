package btfjson

import (
	"fmt"
	"strconv"
	"strings"
)

// lookup finds the node at a dotted path and its byte offset from the root.
func (d *Decoder) lookup(path string) (*node, int, error) {
	n, off := d.root, 0
	if path == "" {
		return n, 0, nil
	}
	for seg := range strings.SplitSeq(path, ".") {
		switch {
		case n.elem != nil:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= n.nelems {
				return nil, 0, fmt.Errorf("btfjson: %s: path %q: %q is not an index below %d", d.name, path, seg, n.nelems)
			}
			off += i * n.elem.size
			n = n.elem
		case n.fields != nil:
			f := n.field(seg)
			if f == nil {
				return nil, 0, fmt.Errorf("btfjson: %s: path %q: no member %q", d.name, path, seg)
			}
			off += f.off
			n = f.n
		default:
			return nil, 0, fmt.Errorf("btfjson: %s: path %q: %q is inside a leaf", d.name, path, seg)
		}
	}
	return n, off, nil
}

// field returns the flattened member called name, or nil.
func (n *node) field(name string) *field {
	for i := range n.fields {
		if n.fields[i].name == name {
			return &n.fields[i]
		}
	}
	return nil
}

// joinPath appends a member name to a dotted path.
func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// joinIndex appends an array index to a dotted path.
func joinIndex(path string, i int) string {
	return joinPath(path, strconv.Itoa(i))
}
