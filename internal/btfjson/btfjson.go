// Package btfjson renders raw BPF map keys, values and ring-buffer records as
// JSON, driven by their BTF type, and extracts numbers and label text from
// them for OpenMetrics.
//
// A Decoder is compiled once per type into a flat program (literal text and
// leaf renderers at fixed offsets, see program.go) and then reused for every
// entry; decoding does no reflection, no allocation beyond growing dst and
// no switching on BTF kinds. A Decoder is safe for concurrent use.
//
// Paths name a value inside the root type: member names joined by dots
// ("inner.addr"), with array elements addressed by decimal index
// ("hist.3") in Number, Text and NumericLeaves. Members of anonymous structs
// and unions are flattened into their parent, as in C. In Options.Formats,
// array indices are left out: a format for "flows.saddr" applies to the
// saddr member of every element of the array flows.
package btfjson

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf/btf"
)

// Options tune how a type is rendered.
type Options struct {
	// Formats: dotted field path relative to the root type -> format.
	// Path "" is the root itself. Paths go through struct/union member names,
	// e.g. "saddr", "inner.addr". Formats: "ipv4", "ipv6", "ip", "mac", "hex", "string", "number".
	//
	// A format on an array applies to the whole array when it fits its size
	// (for example "ipv6" on __u8[16]) and to each element otherwise (for
	// example "ipv4" on __u32[4]).
	Formats map[string]string
}

// Decoder renders values of one BTF type.
type Decoder struct {
	root *node
	size int
	name string

	sumOnce sync.Once
	sumOps  []sumOp
}

// ErrShort is returned when the data is smaller than the type.
var ErrShort = errors.New("btfjson: data shorter than type")

// New compiles a decoder for t.
//
// It fails for types that cannot be rendered (functions, forward
// declarations, void, unsized or malformed types), for format paths that name
// no field, and for formats that do not fit the field they name.
func New(t btf.Type, opts Options) (*Decoder, error) {
	if t == nil {
		return nil, errors.New("btfjson: nil type")
	}
	c := &compiler{formats: opts.Formats, used: make(map[string]bool)}
	for _, f := range opts.Formats {
		if !knownFormat(f) {
			return nil, fmt.Errorf("btfjson: unknown format %q", f)
		}
	}
	root, err := c.compile(t, "")
	if err != nil {
		return nil, fmt.Errorf("btfjson: %s: %w", typeName(t, 0), err)
	}
	for p := range opts.Formats {
		if !c.used[p] {
			return nil, fmt.Errorf("btfjson: %s: unknown format path %q", typeName(t, 0), p)
		}
	}
	return &Decoder{root: root, size: root.size, name: typeName(t, 0)}, nil
}

// Size returns the byte size of the type.
func (d *Decoder) Size() int { return d.size }

// TypeName returns the C name of the type, e.g. "struct flow_key" or "__u64".
func (d *Decoder) TypeName() string { return d.name }

// AppendJSON appends the JSON rendering of data to dst. Bytes past Size are
// ignored.
func (d *Decoder) AppendJSON(dst, data []byte) ([]byte, error) {
	if len(data) < d.size {
		return dst, fmt.Errorf("%w: %s needs %d bytes, got %d", ErrShort, d.name, d.size, len(data))
	}
	return d.root.json(dst, data), nil
}

// Number returns a function reading the numeric leaf at path ("" is the
// root). Integers, enums, bools, floats and network-order integers
// (__be16 and friends) are numeric. The function returns NaN if data is
// shorter than Size.
func (d *Decoder) Number(path string) (func(data []byte) float64, error) {
	n, off, err := d.lookup(path)
	if err != nil {
		return nil, err
	}
	if n.num == nil {
		return nil, fmt.Errorf("btfjson: %s: %q is not numeric", d.name, path)
	}
	num, size := n.num, d.size
	return func(data []byte) float64 {
		if len(data) < size {
			return nan
		}
		return num(data[off:])
	}, nil
}

// Text returns a function rendering the value at path as label text:
// integers in decimal, enums by name, addresses as text, char arrays as
// strings and other arrays and structs as compact JSON. The function returns
// "" if data is shorter than Size.
func (d *Decoder) Text(path string) (func(data []byte) string, error) {
	n, off, err := d.lookup(path)
	if err != nil {
		return nil, err
	}
	text, size := n.text, d.size
	return func(data []byte) string {
		if len(data) < size {
			return ""
		}
		return string(text(nil, data[off:]))
	}, nil
}

// NumericLeaves returns the paths of every numeric leaf in declaration order,
// with array elements expanded ("hist.0", "hist.1", ...).
func (d *Decoder) NumericLeaves() []string {
	var out []string
	var walk func(n *node, path string)
	walk = func(n *node, path string) {
		switch {
		case n.num != nil:
			out = append(out, path)
		case n.elem != nil:
			for i := range n.nelems {
				walk(n.elem, joinIndex(path, i))
			}
		default:
			for _, f := range n.fields {
				walk(f.n, joinPath(path, f.name))
			}
		}
	}
	walk(d.root, "")
	return out
}
