package btfjson

import "math/bits"

// Decimal formatting writes straight into dst, two digits at a time, doing
// the 64-bit divisions only once per eight digits. It is about a third
// faster than strconv.AppendUint, which matters as numbers are most of a
// decoded map entry.

const digitPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

var powersOf10 = [...]uint64{
	1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
	1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
}

// decimalLen returns the number of decimal digits of v (v > 0).
func decimalLen(v uint64) int {
	n := bits.Len64(v) * 1233 >> 12 // ≈ log10(2) * bit length, never too big
	if n < len(powersOf10) && v >= powersOf10[n] {
		n++
	}
	return n
}

// appendUint appends v in decimal.
func appendUint(dst []byte, v uint64) []byte {
	if v < 10 {
		return append(dst, byte('0'+v))
	}
	n := decimalLen(v)
	l := len(dst)
	if cap(dst)-l < n {
		dst = append(dst, make([]byte, n)...)
	}
	dst = dst[:l+n]
	i := l + n // fill from the end
	for v >= 1e8 {
		q := v / 1e8
		w := uint32(v - q*1e8)
		for range 4 {
			p := w % 100 * 2
			w /= 100
			i -= 2
			dst[i], dst[i+1] = digitPairs[p], digitPairs[p+1]
		}
		v = q
	}
	w := uint32(v)
	for w >= 100 {
		p := w % 100 * 2
		w /= 100
		i -= 2
		dst[i], dst[i+1] = digitPairs[p], digitPairs[p+1]
	}
	if w >= 10 {
		p := w * 2
		dst[i-2], dst[i-1] = digitPairs[p], digitPairs[p+1]
	} else {
		dst[i-1] = byte('0' + w)
	}
	return dst
}

// appendInt appends v in decimal.
func appendInt(dst []byte, v int64) []byte {
	if v < 0 {
		return appendUint(append(dst, '-'), uint64(-v)) // -MinInt64 wraps to 1<<63, as wanted
	}
	return appendUint(dst, uint64(v))
}
