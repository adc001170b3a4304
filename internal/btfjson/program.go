package btfjson

import "encoding/binary"

// A container's JSON is compiled into a flat program: the leaves of the
// whole subtree in order, each preceded by the literal text (keys, braces,
// commas) that comes before it. Nested structs and small arrays are
// inlined, so decoding is one loop over leaf calls.

// maxUnroll is the most leaf calls an array is inlined into; longer arrays
// are rendered by a loop over their element.
const maxUnroll = 64

// opcode names the leaves a program renders inline; others are calls.
type opcode uint8

const (
	opCall opcode = iota
	opU8
	opU16
	opU32
	opU64
	opS8
	opS16
	opS32
	opS64
	opBE16
	opBE32
	opBE64
	opBool
	opIPv4
)

// op appends lit, then renders the leaf at byte offset off.
type op struct {
	lit  []byte
	off  int
	code opcode
	fn   appendFn
}

// progBuilder collects ops, merging adjacent literals.
type progBuilder struct {
	ops []op
	lit []byte
}

func (p *progBuilder) literal(s string) { p.lit = append(p.lit, s...) }

func (p *progBuilder) call(off int, leaf *node) {
	p.ops = append(p.ops, op{lit: p.lit, off: off, code: leaf.code, fn: leaf.json})
	p.lit = nil
}

// emit appends the program of n found at byte offset off.
func (n *node) emit(p *progBuilder, off int) {
	switch {
	case n.object:
		if len(n.fields) == 0 {
			p.literal("{}")
			return
		}
		for _, f := range n.fields {
			p.literal(f.key)
			f.n.emit(p, off+f.off)
		}
		p.literal("}")
	case n.unrolled:
		p.literal("[")
		for i := range n.nelems {
			if i > 0 {
				p.literal(",")
			}
			n.elem.emit(p, off+i*n.elem.size)
		}
		p.literal("]")
	default:
		p.call(off, n)
	}
}

// program compiles n's JSON into a flat program.
func (n *node) program() appendFn {
	var p progBuilder
	n.emit(&p, 0)
	ops, tail := p.ops, p.lit
	if len(ops) == 0 {
		return func(dst, _ []byte) []byte { return append(dst, tail...) }
	}
	return func(dst, b []byte) []byte {
		for i := range ops {
			o := &ops[i]
			dst = append(dst, o.lit...)
			switch o.code {
			case opU8:
				dst = appendUint(dst, uint64(b[o.off]))
			case opU16:
				dst = appendUint(dst, uint64(ne.Uint16(b[o.off:])))
			case opU32:
				dst = appendUint(dst, uint64(ne.Uint32(b[o.off:])))
			case opU64:
				dst = appendUint(dst, ne.Uint64(b[o.off:]))
			case opS8:
				dst = appendInt(dst, int64(int8(b[o.off])))
			case opS16:
				dst = appendInt(dst, int64(int16(ne.Uint16(b[o.off:]))))
			case opS32:
				dst = appendInt(dst, int64(int32(ne.Uint32(b[o.off:]))))
			case opS64:
				dst = appendInt(dst, int64(ne.Uint64(b[o.off:])))
			case opBE16:
				dst = appendUint(dst, uint64(binary.BigEndian.Uint16(b[o.off:])))
			case opBE32:
				dst = appendUint(dst, uint64(binary.BigEndian.Uint32(b[o.off:])))
			case opBE64:
				dst = appendUint(dst, binary.BigEndian.Uint64(b[o.off:]))
			case opBool:
				if b[o.off] != 0 {
					dst = append(dst, "true"...)
				} else {
					dst = append(dst, "false"...)
				}
			case opIPv4:
				dst = append(dst, '"')
				dst = appendIPv4(dst, b[o.off:])
				dst = append(dst, '"')
			default:
				dst = o.fn(dst, b[o.off:])
			}
		}
		return append(dst, tail...)
	}
}
