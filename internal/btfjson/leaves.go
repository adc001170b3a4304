package btfjson

import (
	"fmt"
	"math"
	"strconv"

	"github.com/cilium/ebpf/btf"
)

// intLeaf renders an Int read through a.
func intLeaf(v *btf.Int, a intAccess) (*node, error) {
	if v.Size == 16 && a.aligned {
		return int128Leaf(v.Encoding == btf.Signed), nil
	}
	if a.get == nil {
		return nil, fmt.Errorf("unsupported integer size %d", v.Size)
	}
	n := &node{size: a.size}
	switch v.Encoding {
	case btf.Bool:
		if a.native && a.size == 1 {
			n.code = opBool
		}
		get := a.get
		n.json = func(dst, b []byte) []byte {
			if get(b) != 0 {
				return append(dst, "true"...)
			}
			return append(dst, "false"...)
		}
		n.num = func(b []byte) float64 {
			if get(b) != 0 {
				return 1
			}
			return 0
		}
		n.isZero, n.set = a.firstNonZero()
	case btf.Signed:
		n.code = a.code(true)
		n.json = intJSON(a, true)
		n.num = a.number(true)
		if isPlainChar(v) {
			n.isZero, n.set = a.firstNonZero()
		} else {
			n.add = a.adder()
		}
	default: // Unsigned, Char and anything unknown.
		n.code = a.code(false)
		n.json = intJSON(a, false)
		n.num = a.number(false)
		if v.Encoding == btf.Char {
			n.isZero, n.set = a.firstNonZero()
		} else {
			n.add = a.adder()
		}
	}
	n.text = n.json
	return n, nil
}

// intJSON renders an integer in decimal.
func intJSON(a intAccess, signed bool) appendFn {
	if signed {
		get, bits := a.get, a.bits
		return func(dst, b []byte) []byte {
			return appendInt(dst, signExtend(get(b), bits))
		}
	}
	if a.native {
		// The common case, without the indirect call to get.
		switch a.size {
		case 1:
			return func(dst, b []byte) []byte { return appendUint(dst, uint64(b[0])) }
		case 2:
			return func(dst, b []byte) []byte { return appendUint(dst, uint64(ne.Uint16(b))) }
		case 4:
			return func(dst, b []byte) []byte { return appendUint(dst, uint64(ne.Uint32(b))) }
		case 8:
			return func(dst, b []byte) []byte { return appendUint(dst, ne.Uint64(b)) }
		}
	}
	get := a.get
	return func(dst, b []byte) []byte { return appendUint(dst, get(b)) }
}

// enumLeaf renders an enum by enumerator name, or as a number when the value
// has no name.
func enumLeaf(e *btf.Enum, a intAccess) (*node, error) {
	if a.get == nil {
		return nil, fmt.Errorf("unsupported enum size %d", e.Size)
	}
	type entry struct {
		val  uint64
		json []byte
		text []byte
	}
	mask := lowMask(a.bits)
	var entries []entry
	index := make(map[uint64]int)
	for _, ev := range e.Values {
		v := ev.Value & mask
		if _, dup := index[v]; dup {
			continue
		}
		index[v] = len(entries)
		entries = append(entries, entry{v, appendJSONString(nil, []byte(ev.Name)), []byte(ev.Name)})
	}
	linear := len(entries) <= 8 // a short scan beats the map
	find := func(v uint64) int {
		if linear {
			for i := range entries {
				if entries[i].val == v {
					return i
				}
			}
			return -1
		}
		if i, ok := index[v]; ok {
			return i
		}
		return -1
	}
	get, num := a.get, intJSON(a, e.Signed)
	n := &node{size: a.size, num: a.number(e.Signed)}
	n.json = func(dst, b []byte) []byte {
		if i := find(get(b)); i >= 0 {
			return append(dst, entries[i].json...)
		}
		return num(dst, b)
	}
	n.text = func(dst, b []byte) []byte {
		if i := find(get(b)); i >= 0 {
			return append(dst, entries[i].text...)
		}
		return num(dst, b)
	}
	n.isZero, n.set = a.firstNonZero()
	return n, nil
}

// floatLeaf renders a 4- or 8-byte float; NaN and infinities become null.
func floatLeaf(f *btf.Float) (*node, error) {
	var get func(b []byte) float64
	bits := int(f.Size) * 8
	switch f.Size {
	case 4:
		get = func(b []byte) float64 { return float64(math.Float32frombits(ne.Uint32(b))) }
	case 8:
		get = func(b []byte) float64 { return math.Float64frombits(ne.Uint64(b)) }
	default:
		return nil, fmt.Errorf("unsupported float size %d", f.Size)
	}
	n := &node{size: int(f.Size), num: get}
	n.json = func(dst, b []byte) []byte {
		v := get(b)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return append(dst, "null"...)
		}
		return strconv.AppendFloat(dst, v, 'g', -1, bits)
	}
	n.text = func(dst, b []byte) []byte {
		return strconv.AppendFloat(dst, get(b), 'g', -1, bits)
	}
	if f.Size == 4 {
		n.add = func(dst, src []byte) {
			s := math.Float32frombits(ne.Uint32(dst)) + math.Float32frombits(ne.Uint32(src))
			ne.PutUint32(dst, math.Float32bits(s))
		}
	} else {
		n.add = func(dst, src []byte) {
			s := math.Float64frombits(ne.Uint64(dst)) + math.Float64frombits(ne.Uint64(src))
			ne.PutUint64(dst, math.Float64bits(s))
		}
	}
	return n, nil
}

// pointerLeaf renders a pointer as a "0x..." string.
func pointerLeaf(a intAccess) *node {
	return hexIntLeaf(a)
}

// hexIntLeaf renders an integer's value as a "0x..." string.
func hexIntLeaf(a intAccess) *node {
	get := a.get
	text := func(dst, b []byte) []byte {
		return strconv.AppendUint(append(dst, "0x"...), get(b), 16)
	}
	n := &node{size: a.size, json: quoted(text), text: text}
	n.isZero, n.set = a.firstNonZero()
	return n
}

// numberLeaf renders an integer in decimal, as the "number" format does.
func numberLeaf(a intAccess, signed bool) *node {
	n := &node{size: a.size, json: intJSON(a, signed), num: a.number(signed), code: a.code(signed)}
	n.text = n.json
	n.isZero, n.set = a.firstNonZero()
	return n
}

// networkLeaf renders a network-order integer (__be16 and friends).
func networkLeaf(size int) *node {
	return numberLeaf(bigInt(size), false)
}

// int128Leaf renders a 16-byte integer as a decimal string.
func int128Leaf(signed bool) *node {
	halves := func(b []byte) (hi, lo uint64) {
		if littleEndian {
			return ne.Uint64(b[8:]), ne.Uint64(b)
		}
		return ne.Uint64(b), ne.Uint64(b[8:])
	}
	text := func(dst, b []byte) []byte {
		hi, lo := halves(b)
		if signed && int64(hi) < 0 {
			dst = append(dst, '-')
			hi, lo = neg128(hi, lo)
		}
		return appendUint128(dst, hi, lo)
	}
	n := &node{size: 16, json: quoted(text), text: text}
	n.num = func(b []byte) float64 {
		hi, lo := halves(b)
		if signed && int64(hi) < 0 {
			hi, lo = neg128(hi, lo)
			return -(float64(hi)*0x1p64 + float64(lo))
		}
		return float64(hi)*0x1p64 + float64(lo)
	}
	n.add = func(dst, src []byte) {
		dh, dl := halves(dst)
		sh, sl := halves(src)
		hi, lo := add128(dh, dl, sh, sl)
		if littleEndian {
			ne.PutUint64(dst, lo)
			ne.PutUint64(dst[8:], hi)
		} else {
			ne.PutUint64(dst, hi)
			ne.PutUint64(dst[8:], lo)
		}
	}
	return n
}

// hex128Leaf renders a 16-byte integer's value as a "0x..." string.
func hex128Leaf() *node {
	text := func(dst, b []byte) []byte {
		hi, lo := ne.Uint64(b[8:]), ne.Uint64(b)
		if !littleEndian {
			hi, lo = lo, hi
		}
		dst = append(dst, "0x"...)
		if hi == 0 {
			return strconv.AppendUint(dst, lo, 16)
		}
		dst = strconv.AppendUint(dst, hi, 16)
		return appendPadded(dst, lo, 16, 16)
	}
	n := &node{size: 16, json: quoted(text), text: text}
	n.isZero, n.set = blob(16)
	return n
}

// textLeaf makes a non-numeric leaf whose JSON is its text quoted; the text
// must need no escaping.
func textLeaf(size int, text appendFn) *node {
	n := &node{size: size, json: quoted(text), text: text}
	n.isZero, n.set = blob(size)
	return n
}

// stringLeaf renders a char array as a string cut at the first NUL.
func stringLeaf(size int) *node {
	n := &node{size: size}
	n.json = func(dst, b []byte) []byte { return appendJSONString(dst, cString(b[:size])) }
	n.text = func(dst, b []byte) []byte { return appendValidUTF8(dst, cString(b[:size])) }
	n.isZero, n.set = blob(size)
	return n
}

// quoted wraps text that needs no escaping in JSON quotes.
func quoted(text appendFn) appendFn {
	return func(dst, b []byte) []byte {
		dst = text(append(dst, '"'), b)
		return append(dst, '"')
	}
}
