package btfjson

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf/btf"
)

func TestEnums(t *testing.T) {
	proto := &btf.Enum{Name: "proto", Size: 4, Values: []btf.EnumValue{
		{Name: "PROTO_TCP", Value: 6}, {Name: "PROTO_UDP", Value: 17},
	}}
	signed := &btf.Enum{Name: "verdict", Size: 4, Signed: true, Values: []btf.EnumValue{
		{Name: "V_DROP", Value: uint64(1<<64 - 1)}, // -1, sign-extended as cilium/ebpf stores it
		{Name: "V_PASS", Value: 0},
	}}
	small := &btf.Enum{Name: "small", Size: 1, Signed: true, Values: []btf.EnumValue{
		{Name: "S_NEG", Value: uint64(1<<64 - 2)}, // -2
	}}
	short := &btf.Enum{Name: "short", Size: 2, Values: []btf.EnumValue{{Name: "SH_BIG", Value: 0xfff0}}}
	big := &btf.Enum{Name: "big", Size: 8, Values: []btf.EnumValue{
		{Name: "B_HIGH", Value: 1 << 63}, {Name: "B_40", Value: 1 << 40},
	}}
	big64s := &btf.Enum{Name: "big_signed", Size: 8, Signed: true, Values: []btf.EnumValue{
		{Name: "BS_MIN", Value: 1 << 63},
	}}
	var many []btf.EnumValue
	for i := range 20 {
		many = append(many, btf.EnumValue{Name: fmt.Sprintf("M%d", i), Value: uint64(i * 10)})
	}
	manyEnum := &btf.Enum{Name: "many", Size: 4, Values: many}
	dup := &btf.Enum{Name: "dup", Size: 4, Values: []btf.EnumValue{{Name: "FIRST", Value: 1}, {Name: "ALIAS", Value: 1}}}

	runJSON(t, []jsonCase{
		{name: "named", typ: proto, data: b{}.u32(17), want: `"PROTO_UDP"`},
		{name: "unnamed", typ: proto, data: b{}.u32(99), want: `99`},
		{name: "signed named", typ: signed, data: b{}.u32(0xffffffff), want: `"V_DROP"`},
		{name: "signed unnamed", typ: signed, data: b{}.u32(0xfffffffe), want: `-2`},
		{name: "size 1 signed", typ: small, data: b{}.u8(0xfe), want: `"S_NEG"`},
		{name: "size 1 unnamed", typ: small, data: b{}.u8(0x80), want: `-128`},
		{name: "size 2", typ: short, data: b{}.u16(0xfff0), want: `"SH_BIG"`},
		{name: "size 8 high bit", typ: big, data: b{}.u64(1 << 63), want: `"B_HIGH"`},
		{name: "size 8 40 bits", typ: big, data: b{}.u64(1 << 40), want: `"B_40"`},
		{name: "size 8 unnamed", typ: big, data: b{}.u64(1<<63 + 1), want: `9223372036854775809`},
		{name: "size 8 signed", typ: big64s, data: b{}.u64(1 << 63), want: `"BS_MIN"`},
		{name: "size 8 signed unnamed", typ: big64s, data: b{}.u64(1<<64 - 5), want: `-5`},
		{name: "many values", typ: manyEnum, data: b{}.u32(170), want: `"M17"`},
		{name: "many values unnamed", typ: manyEnum, data: b{}.u32(171), want: `171`},
		{name: "duplicate value takes first name", typ: dup, data: b{}.u32(1), want: `"FIRST"`},
		{name: "typedef of enum", typ: td("proto_t", proto), data: b{}.u32(6), want: `"PROTO_TCP"`},
		{
			name: "bitfield enums",
			typ: strct("flags", 4,
				bitMem("p", proto, 0, 5),
				bitMem("v", signed, 5, 2),
				bitMem("w", signed, 7, 2),
			),
			data: b{}.u32(packBits([3]uint32{0, 5, 17}, [3]uint32{5, 2, 3}, [3]uint32{7, 2, 2})),
			want: `{"p":"PROTO_UDP","v":"V_DROP","w":-2}`,
		},
	})
}
