package btfjson

import (
	"math"
	"testing"

	"github.com/cilium/ebpf/btf"
)

func TestInts(t *testing.T) {
	runJSON(t, []jsonCase{
		{name: "u8", typ: tU8, data: b{}.u8(255), want: `255`},
		{name: "s8", typ: tS8, data: b{}.u8(0x80), want: `-128`},
		{name: "u16", typ: tU16, data: b{}.u16(65535), want: `65535`},
		{name: "s16", typ: tS16, data: b{}.u16(0xfffe), want: `-2`},
		{name: "u32", typ: tU32, data: b{}.u32(4294967295), want: `4294967295`},
		{name: "s32", typ: tS32, data: b{}.u32(0x80000000), want: `-2147483648`},
		{name: "u64", typ: tU64, data: b{}.u64(math.MaxUint64), want: `18446744073709551615`},
		{name: "s64", typ: tS64, data: b{}.u64(1 << 63), want: `-9223372036854775808`},
		{name: "s64 positive", typ: tS64, data: b{}.u64(42), want: `42`},
		{name: "typedef", typ: tdU64, data: b{}.u64(9007199254740993), want: `9007199254740993`},
		{name: "const volatile", typ: &btf.Const{Type: &btf.Volatile{Type: tdU32}}, data: b{}.u32(7), want: `7`},
		{name: "trailing bytes ignored", typ: tU16, data: b{}.u16(3).u32(99), want: `3`},
		{name: "u128 small", typ: tU128, data: b{}.raw(le128(0, 12345)...), want: `"12345"`},
		{name: "u128 max", typ: tU128, data: b{}.raw(le128(math.MaxUint64, math.MaxUint64)...), want: `"340282366920938463463374607431768211455"`},
		{name: "u128 2^64", typ: tU128, data: b{}.raw(le128(1, 0)...), want: `"18446744073709551616"`},
		{name: "s128 -1", typ: tS128, data: b{}.raw(le128(math.MaxUint64, math.MaxUint64)...), want: `"-1"`},
		{name: "s128 min", typ: tS128, data: b{}.raw(le128(1<<63, 0)...), want: `"-170141183460469231731687303715884105728"`},
		{name: "bool true", typ: tBool, data: b{}.u8(1), want: `true`},
		{name: "bool nonzero", typ: tBool, data: b{}.u8(7), want: `true`},
		{name: "bool false", typ: tBool, data: b{}.u8(0), want: `false`},
		{name: "char encoded alone", typ: tCh, data: b{}.u8('A'), want: `65`},
		{name: "plain char alone", typ: tChar, data: b{}.u8(0xff), want: `-1`},
		{name: "f32", typ: tF32, data: b{}.u32(math.Float32bits(1.5)), want: `1.5`},
		{name: "f32 shortest", typ: tF32, data: b{}.u32(math.Float32bits(0.1)), want: `0.1`},
		{name: "f64", typ: tF64, data: b{}.u64(math.Float64bits(-2.25e-7)), want: `-2.25e-07`},
		{name: "f64 big", typ: tF64, data: b{}.u64(math.Float64bits(1e21)), want: `1e+21`},
		{name: "f64 NaN", typ: tF64, data: b{}.u64(math.Float64bits(math.NaN())), want: `null`},
		{name: "f64 +Inf", typ: tF64, data: b{}.u64(math.Float64bits(math.Inf(1))), want: `null`},
		{name: "f32 -Inf", typ: tF32, data: b{}.u32(math.Float32bits(float32(math.Inf(-1)))), want: `null`},
		{name: "pointer", typ: &btf.Pointer{Target: tU32}, data: b{}.u64(0xffff8880deadbeef), want: `"0xffff8880deadbeef"`},
		{name: "null pointer", typ: &btf.Pointer{Target: &btf.Void{}}, data: b{}.u64(0), want: `"0x0"`},
	})
}

func TestCharArrays(t *testing.T) {
	comm := arr(tChar, 8)
	runJSON(t, []jsonCase{
		{name: "plain char", typ: comm, data: b{}.str("curl", 8), want: `"curl"`},
		{name: "char encoding", typ: arr(tCh, 4), data: b{}.str("ab", 4), want: `"ab"`},
		{name: "typedef char", typ: arr(td("gchar", tChar), 4), data: b{}.str("xy", 4), want: `"xy"`},
		{name: "no NUL", typ: comm, data: b{}.str("12345678", 8), want: `"12345678"`},
		{name: "cut at first NUL", typ: comm, data: b{}.raw('a', 0, 'b', 0, 0, 0, 0, 0), want: `"a"`},
		{name: "empty", typ: comm, data: b{}.zero(8), want: `""`},
		{name: "escapes", typ: comm, data: b{}.raw('"', '\\', '\n', '\t', 1, 0x1f, 'z', 0), want: `"\"\\\n\t\u0001\u001fz"`},
		{name: "utf8 kept", typ: comm, data: b{}.str("héé", 8), want: `"héé"`},
		{name: "invalid utf8", typ: comm, data: b{}.raw('a', 0xff, 0xc3, 'b', 0xe2, 0x82, 0, 0), want: `"a\ufffd\ufffdb\ufffd\ufffd"`},
		{name: "zero length", typ: arr(tChar, 0), data: nil, want: `""`},
		{name: "u8 array is numbers", typ: arr(tdU8, 4), data: b{}.raw(1, 2, 0, 255), want: `[1,2,0,255]`},
		{name: "unsigned char array is numbers", typ: arr(tU8, 2), data: b{}.raw('h', 'i'), want: `[104,105]`},
		{name: "signed char array is numbers", typ: arr(tS8, 2), data: b{}.raw(0xff, 1), want: `[-1,1]`},
		{name: "nested arrays", typ: arr(arr(tU16, 3), 2), data: b{}.u16(1).u16(2).u16(3).u16(4).u16(5).u16(6), want: `[[1,2,3],[4,5,6]]`},
		{name: "array of strings", typ: arr(arr(tChar, 3), 2), data: b{}.str("ab", 3).str("c", 3), want: `["ab","c"]`},
		{name: "empty array", typ: arr(tU32, 0), data: nil, want: `[]`},
	})
}

// le128 lays out a 128-bit integer in native order.
func le128(hi, lo uint64) []byte {
	if littleEndian {
		return b{}.u64(lo).u64(hi)
	}
	return b{}.u64(hi).u64(lo)
}
