package btfjson

import (
	"testing"

	"github.com/cilium/ebpf/btf"
)

// point is struct point { __u16 x; __s16 y; }.
var point = strct("point", 4, mem("x", tdU16, 0), mem("y", tS16, 2))

func TestStructs(t *testing.T) {
	nested := strct("shape", 24,
		mem("id", tdU32, 0),
		mem("name", arr(tChar, 4), 4),
		mem("pts", arr(point, 3), 8),
		mem("origin", point, 20),
	)
	un := union("val", 8, mem("u64", tdU64, 0), mem("u32s", arr(tdU32, 2), 0), mem("b", tU8, 0))
	bits := strct("bits", 8,
		bitMem("a", tU32, 0, 3),
		bitMem("b", tU32, 3, 5),
		bitMem("c", tS32, 8, 4),
		bitMem("d", tU32, 12, 20),
		bitMem("", tU32, 32, 4), // unnamed padding bitfield
		bitMem("flag", tBool, 36, 1),
		bitMem("e", tU16, 40, 16),
		mem("f", tU8, 7),
	)
	anon := strct("anon", 16,
		mem("kind", tU32, 0),
		mem("", union("", 8, mem("ip4", tU32, 0), mem("raw", tU64, 0)), 4),
		mem("", strct("", 4, mem("lo", tU16, 0), mem("", strct("", 2, mem("deep", tU16, 0)), 2)), 12),
	)
	padded := strct("padded", 16, mem("a", tU8, 0), mem("b", tU64, 8))
	ds := &btf.Datasec{Name: ".bss", Size: 12, Vars: []btf.VarSecinfo{
		{Type: &btf.Var{Name: "counter", Type: tdU64}, Offset: 0, Size: 8},
		{Type: &btf.Var{Name: "enabled", Type: tBool}, Offset: 8, Size: 1},
		{Type: &btf.Func{Name: "prog"}, Offset: 0, Size: 0},
	}}

	runJSON(t, []jsonCase{
		{
			name: "nested struct with array of structs",
			typ:  nested,
			data: b{}.u32(7).str("sq", 4).u16(1).u16(0xffff).u16(2).u16(3).u16(4).u16(5).u16(9).u16(10),
			want: `{"id":7,"name":"sq","pts":[{"x":1,"y":-1},{"x":2,"y":3},{"x":4,"y":5}],"origin":{"x":9,"y":10}}`,
		},
		{
			name: "union",
			typ:  un,
			data: b{}.u32(1).u32(2),
			want: func() string {
				if littleEndian {
					return `{"u64":8589934593,"u32s":[1,2],"b":1}`
				}
				return `{"u64":4294967298,"u32s":[1,2],"b":0}`
			}(),
		},
		{
			name: "bitfields",
			typ:  bits,
			data: b{}.u32(packBits([3]uint32{0, 3, 5}, [3]uint32{3, 5, 31}, [3]uint32{8, 4, 0xe}, [3]uint32{12, 20, 0xabcde})).
				u32(packBits([3]uint32{0, 4, 0xf}, [3]uint32{4, 1, 1}, [3]uint32{8, 16, 0xbeef}, [3]uint32{24, 8, 0x42})),
			want: `{"a":5,"b":31,"c":-2,"d":703710,"flag":true,"e":48879,"f":66}`,
		},
		{
			name: "anonymous members flattened",
			typ:  anon,
			data: b{}.u32(4).u64(0x0102030405060708).u16(80).u16(443),
			want: func() string {
				if littleEndian {
					return `{"kind":4,"ip4":84281096,"raw":72623859790382856,"lo":80,"deep":443}`
				}
				return `{"kind":4,"ip4":16909060,"raw":72623859790382856,"lo":80,"deep":443}`
			}(),
		},
		{name: "padding skipped", typ: padded, data: b{}.u8(1).raw(9, 9, 9, 9, 9, 9, 9).u64(2), want: `{"a":1,"b":2}`},
		{name: "empty struct", typ: strct("empty", 0), data: nil, want: `{}`},
		{name: "typedef of struct", typ: td("point_t", point), data: b{}.u16(1).u16(2), want: `{"x":1,"y":2}`},
		{name: "datasec", typ: ds, data: b{}.u64(99).u8(1).zero(3), want: `{"counter":99,"enabled":true}`},
		{name: "type tag", typ: &btf.TypeTag{Value: "tag", Type: point}, data: b{}.u16(1).u16(2), want: `{"x":1,"y":2}`},
	})
}

func TestTypeName(t *testing.T) {
	for _, tc := range []struct {
		typ  btf.Type
		want string
	}{
		{point, "struct point"},
		{strct("", 0), "struct"},
		{union("u", 4, mem("a", tU32, 0)), "union u"},
		{&btf.Enum{Name: "e", Size: 4}, "enum e"},
		{tdU64, "__u64"},
		{tU32, "unsigned int"},
		{arr(tChar, 16), "char[16]"},
		{&btf.Pointer{Target: point}, "struct point *"},
		{&btf.Const{Type: tdU32}, "const __u32"},
		{&btf.Datasec{Name: ".bss"}, ".bss"},
	} {
		if got := mustNew(t, tc.typ, nil).TypeName(); got != tc.want {
			t.Errorf("TypeName = %q, want %q", got, tc.want)
		}
	}
}

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		typ  btf.Type
		want int
	}{
		{point, 4},
		{arr(point, 3), 12},
		{tU128, 16},
		{&btf.Pointer{Target: tU8}, 8},
		{&btf.Datasec{Name: ".data", Size: 24}, 24},
	} {
		if got := mustNew(t, tc.typ, nil).Size(); got != tc.want {
			t.Errorf("%v: Size = %d, want %d", tc.typ, got, tc.want)
		}
	}
}
