package btfjson

import (
	"bytes"
	"math/bits"
	"net/netip"
	"strconv"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a quoted JSON string. Invalid UTF-8 becomes
// \ufffd, so the result is always valid JSON.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			if c < 0x20 {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			} else {
				dst = append(dst, `\ufffd`...)
			}
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendValidUTF8 appends s with invalid UTF-8 replaced by U+FFFD.
func appendValidUTF8(dst, s []byte) []byte {
	if utf8.Valid(s) {
		return append(dst, s...)
	}
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, s[:size]...)
		}
		s = s[size:]
	}
	return dst
}

// cString cuts b at its first NUL.
func cString(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// decimalByte holds the decimal text of every byte value.
var decimalByte = func() (t [256]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

// appendIPv4 appends the dotted quad of the four bytes at b[0].
func appendIPv4(dst, b []byte) []byte {
	_ = b[3]
	dst = append(dst, decimalByte[b[0]]...)
	dst = append(dst, '.')
	dst = append(dst, decimalByte[b[1]]...)
	dst = append(dst, '.')
	dst = append(dst, decimalByte[b[2]]...)
	dst = append(dst, '.')
	return append(dst, decimalByte[b[3]]...)
}

// appendIPv6 appends the RFC 5952 text of the 16 bytes at b[0].
func appendIPv6(dst, b []byte) []byte {
	return netip.AddrFrom16([16]byte(b[:16])).AppendTo(dst)
}

// appendIPAuto appends an IPv4 address if the 16 bytes at b[0] hold an
// IPv4-mapped address, and IPv6 text otherwise.
func appendIPAuto(dst, b []byte) []byte {
	return netip.AddrFrom16([16]byte(b[:16])).Unmap().AppendTo(dst)
}

// appendMAC appends the six bytes at b[0] as "02:00:00:00:00:01".
func appendMAC(dst, b []byte) []byte {
	_ = b[5]
	for i := range 6 {
		if i > 0 {
			dst = append(dst, ':')
		}
		dst = append(dst, hexDigits[b[i]>>4], hexDigits[b[i]&0xf])
	}
	return dst
}

// appendHex returns a renderer of size bytes as "0x" and hex digits in
// memory order.
func appendHex(size int) appendFn {
	return func(dst, b []byte) []byte {
		dst = append(dst, '0', 'x')
		for _, c := range b[:size] {
			dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
		}
		return dst
	}
}

// appendPadded appends v in base, left-padded with zeros to width digits.
func appendPadded(dst []byte, v uint64, base, width int) []byte {
	var buf [64]byte
	s := strconv.AppendUint(buf[:0], v, base)
	for range width - len(s) {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// appendUint128 appends the decimal digits of hi<<64 | lo.
func appendUint128(dst []byte, hi, lo uint64) []byte {
	if hi == 0 {
		return strconv.AppendUint(dst, lo, 10)
	}
	const e19 = 10_000_000_000_000_000_000
	qhi, rem := hi/e19, hi%e19
	qlo, r := bits.Div64(rem, lo, e19)
	dst = appendUint128(dst, qhi, qlo)
	return appendPadded(dst, r, 10, 19)
}

// neg128 returns the two's complement negation of hi<<64 | lo.
func neg128(hi, lo uint64) (uint64, uint64) {
	lo, borrow := bits.Sub64(0, lo, 0)
	hi, _ = bits.Sub64(0, hi, borrow)
	return hi, lo
}

// add128 returns a + b for 128-bit values split in halves, wrapping.
func add128(ahi, alo, bhi, blo uint64) (hi, lo uint64) {
	lo, carry := bits.Add64(alo, blo, 0)
	hi, _ = bits.Add64(ahi, bhi, carry)
	return hi, lo
}
