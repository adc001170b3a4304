package btfjson

import (
	"encoding/binary"
	"math"
)

var (
	ne           = binary.NativeEndian
	littleEndian = ne.Uint16([]byte{1, 0}) == 1
	nan          = math.NaN()
)

// intAccess reads and writes an integer of up to 64 bits at b[0]: a whole
// native- or big-endian integer, or a bitfield.
type intAccess struct {
	size int // bytes spanned
	bits int // value width
	get  func(b []byte) uint64
	set  func(b []byte, v uint64)
	// aligned is true for whole integers, whose zero test and copy can work
	// on the bytes; native is true for whole native-endian integers.
	aligned bool
	native  bool
	big     bool // a whole network-order integer
}

// code returns the program opcode rendering a in decimal, or opCall.
func (a intAccess) code(signed bool) opcode {
	if a.size > 8 {
		return opCall
	}
	switch {
	case a.native && !signed:
		return [9]opcode{1: opU8, 2: opU16, 4: opU32, 8: opU64}[a.size]
	case a.native && signed:
		return [9]opcode{1: opS8, 2: opS16, 4: opS32, 8: opS64}[a.size]
	case a.big && !signed:
		return [9]opcode{2: opBE16, 4: opBE32, 8: opBE64}[a.size]
	}
	return opCall
}

// nativeInt accesses a native-endian integer of size 1, 2, 4 or 8 bytes.
func nativeInt(size int) intAccess {
	a := intAccess{size: size, bits: size * 8, aligned: true, native: true}
	switch size {
	case 1:
		a.get = func(b []byte) uint64 { return uint64(b[0]) }
		a.set = func(b []byte, v uint64) { b[0] = byte(v) }
	case 2:
		a.get = func(b []byte) uint64 { return uint64(ne.Uint16(b)) }
		a.set = func(b []byte, v uint64) { ne.PutUint16(b, uint16(v)) }
	case 4:
		a.get = func(b []byte) uint64 { return uint64(ne.Uint32(b)) }
		a.set = func(b []byte, v uint64) { ne.PutUint32(b, uint32(v)) }
	case 8:
		a.get = func(b []byte) uint64 { return ne.Uint64(b) }
		a.set = func(b []byte, v uint64) { ne.PutUint64(b, v) }
	default:
		return intAccess{size: size, aligned: true}
	}
	return a
}

// bigInt accesses a network-order integer of size 2, 4 or 8 bytes.
func bigInt(size int) intAccess {
	be := binary.BigEndian
	a := intAccess{size: size, bits: size * 8, aligned: true, big: true}
	switch size {
	case 2:
		a.get = func(b []byte) uint64 { return uint64(be.Uint16(b)) }
		a.set = func(b []byte, v uint64) { be.PutUint16(b, uint16(v)) }
	case 4:
		a.get = func(b []byte) uint64 { return uint64(be.Uint32(b)) }
		a.set = func(b []byte, v uint64) { be.PutUint32(b, uint32(v)) }
	case 8:
		a.get = func(b []byte) uint64 { return be.Uint64(b) }
		a.set = func(b []byte, v uint64) { be.PutUint64(b, v) }
	default:
		return intAccess{size: size, aligned: true}
	}
	return a
}

// bitInt accesses a bitfield of bits bits starting shift bits into b[0], laid
// out as the host's compiler lays out bitfields.
func bitInt(shift, bits int) intAccess {
	nb := (shift + bits + 7) / 8
	mask := lowMask(bits)
	// pos[i] is where bit 0 of byte i lands in the value (may be negative).
	pos := make([]int, nb)
	for i := range pos {
		if littleEndian {
			pos[i] = 8*i - shift
		} else {
			pos[i] = shift + bits - 8*(i+1)
		}
	}
	return intAccess{
		size: nb,
		bits: bits,
		get: func(b []byte) uint64 {
			var v uint64
			for i, p := range pos {
				v |= shift64(uint64(b[i]), p)
			}
			return v & mask
		},
		set: func(b []byte, v uint64) {
			for i, p := range pos {
				m := byte(shift64(mask, -p))
				b[i] = b[i]&^m | byte(shift64(v, -p))&m
			}
		},
	}
}

// shift64 shifts x left by p bits, or right by -p bits if p is negative.
func shift64(x uint64, p int) uint64 {
	if p >= 0 {
		return x << uint(p)
	}
	return x >> uint(-p)
}

// lowMask returns a mask of the low bits bits.
func lowMask(bits int) uint64 {
	if bits >= 64 {
		return math.MaxUint64
	}
	return 1<<uint(bits) - 1
}

// signExtend interprets the low bits bits of v as a signed integer.
func signExtend(v uint64, bits int) int64 {
	s := uint(64 - bits)
	return int64(v<<s) >> s
}

// number returns a reader of a's value, signed or unsigned, as a float64.
func (a intAccess) number(signed bool) func(b []byte) float64 {
	get, bits := a.get, a.bits
	if signed {
		return func(b []byte) float64 { return float64(signExtend(get(b), bits)) }
	}
	return func(b []byte) float64 { return float64(get(b)) }
}

// adder returns the per-CPU merge of a counter: dst += src, wrapping.
func (a intAccess) adder() func(dst, src []byte) {
	if a.native {
		switch a.size {
		case 1:
			return func(dst, src []byte) { dst[0] += src[0] }
		case 2:
			return func(dst, src []byte) { ne.PutUint16(dst, ne.Uint16(dst)+ne.Uint16(src)) }
		case 4:
			return func(dst, src []byte) { ne.PutUint32(dst, ne.Uint32(dst)+ne.Uint32(src)) }
		case 8:
			return func(dst, src []byte) { ne.PutUint64(dst, ne.Uint64(dst)+ne.Uint64(src)) }
		}
	}
	get, set := a.get, a.set
	return func(dst, src []byte) { set(dst, get(dst)+get(src)) }
}

// firstNonZero returns the per-CPU merge of a non-numeric integer.
func (a intAccess) firstNonZero() (func(b []byte) bool, func(dst, src []byte)) {
	if a.aligned {
		return blob(a.size)
	}
	get, set := a.get, a.set
	return func(b []byte) bool { return get(b) == 0 },
		func(dst, src []byte) { set(dst, get(src)) }
}

// blob returns the per-CPU merge of size opaque bytes.
func blob(size int) (func(b []byte) bool, func(dst, src []byte)) {
	return func(b []byte) bool {
			for _, c := range b[:size] {
				if c != 0 {
					return false
				}
			}
			return true
		}, func(dst, src []byte) {
			copy(dst[:size], src[:size])
		}
}
