package btfjson

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// rec is a record with fields of every shape the formats apply to.
var rec = strct("rec", 64,
	mem("a4", tdU32, 0),
	mem("a16", arr(tdU8, 16), 4),
	mem("hw", arr(tdU8, 6), 20),
	mem("port", tdBe16, 26),
	mem("id", tdU64, 28),
	mem("neg", tS16, 36),
	mem("name", arr(tdU8, 8), 38),
	mem("addrs", arr(tdU32, 2), 46),
	mem("f", tF32, 54),
	mem("pair", point, 58),
	mem("tiny", tU8, 62),
	mem("bool", tBool, 63),
)

// recData fills rec.
func recData(t testing.TB) []byte {
	return b{}.raw(192, 0, 2, 1).raw(ip6(t, "::ffff:10.0.0.1")...).raw(2, 0, 0, 0, 0, 1).be16(53).
		u64(0xdeadbeef).u16(0xfffe).str("eth0", 8).raw(10, 0, 0, 1, 10, 0, 0, 2).u32(0x3fc00000).
		u16(1).u16(2).u8(0xab).u8(1)
}

func TestFormats(t *testing.T) {
	data := recData(t)
	fmtOf := func(path, format string) map[string]string { return map[string]string{path: format} }
	// field picks one member's rendering out of the whole record.
	cases := []struct {
		name, path, format, want string
	}{
		{"ipv4 on u32", "a4", "ipv4", `"192.0.2.1"`},
		{"ip on u32", "a4", "ip", `"192.0.2.1"`},
		{"ipv6 on u8[16]", "a16", "ipv6", `"::ffff:10.0.0.1"`},
		{"ip on u8[16] v4-mapped", "a16", "ip", `"10.0.0.1"`},
		{"mac on u8[6]", "hw", "mac", `"02:00:00:00:00:01"`},
		{"hex on u64 uses the value", "id", "hex", `"0xdeadbeef"`},
		{"hex on be16 uses the network-order value", "port", "hex", `"0x35"`},
		{"hex on signed", "neg", "hex", `"0xfffe"`},
		{"hex on byte array in memory order", "hw", "hex", `"0x020000000001"`},
		{"hex on struct in memory order", "pair", "hex", `"0x` + hexOf(b{}.u16(1).u16(2)) + `"`},
		{"hex on float in memory order", "f", "hex", `"0x` + hexOf(b{}.u32(0x3fc00000)) + `"`},
		{"hex on bool", "bool", "hex", `"0x1"`},
		{"string on u8[8]", "name", "string", `"eth0"`},
		{"number undoes be16", "port", "number", func() string {
			if littleEndian {
				return `13568`
			}
			return `53`
		}()},
		{"number on u8[4]", "a4", "number", func() string {
			if littleEndian {
				return `16908480`
			}
			return `3221225985`
		}()},
		{"number on signed keeps sign", "neg", "number", `-2`},
		{"number on byte", "tiny", "number", `171`},
		{"number per element of u8[6]", "hw", "number", `[2,0,0,0,0,1]`},
		{"ipv4 per element of u32[2]", "addrs", "ipv4", `["10.0.0.1","10.0.0.2"]`},
		{"hex on u32[2] as a whole", "addrs", "hex", `"0x0a0000010a000002"`},
		{"format below a struct", "pair.x", "hex", `{"x":"0x1","y":2}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := mustNew(t, rec, fmtOf(tc.path, tc.format))
			got := render(t, d, data)
			top, _, _ := strings.Cut(tc.path, ".")
			fn, err := d.Text(top)
			if err != nil {
				t.Fatal(err)
			}
			field := fn(data)
			if strings.HasPrefix(tc.want, `"`) {
				field = `"` + field + `"`
			}
			if field != tc.want {
				t.Errorf("%s: got %s, want %s", tc.path, field, tc.want)
			}
			if !strings.Contains(got, `"`+top+`":`+tc.want) {
				t.Errorf("JSON %s lacks %s", got, tc.want)
			}
		})
	}
}

func TestFormatRoot(t *testing.T) {
	runJSON(t, []jsonCase{
		{name: "root ipv4", typ: tdU32, formats: map[string]string{"": "ipv4"}, data: b{}.raw(8, 8, 4, 4), want: `"8.8.4.4"`},
		{name: "root hex of in6_addr", typ: in6Addr, formats: map[string]string{"": "hex"}, data: ip6(t, "::1"), want: `"0x00000000000000000000000000000001"`},
		{name: "root number of in_addr", typ: inAddr, formats: map[string]string{"": "number"}, data: b{}.u32(77), want: `77`},
		{name: "hex on u128", typ: tU128, formats: map[string]string{"": "hex"}, data: le128(0xab, 1), want: `"0xab0000000000000001"`},
		{name: "string on char array is a no-op", typ: arr(tChar, 4), formats: map[string]string{"": "string"}, data: b{}.str("ab", 4), want: `"ab"`},
		{
			name: "format inside array of structs", typ: arr(strct("e", 4, mem("ip", tdU32, 0)), 2),
			formats: map[string]string{"ip": "ipv4"}, data: b{}.raw(1, 1, 1, 1, 2, 2, 2, 2), want: `[{"ip":"1.1.1.1"},{"ip":"2.2.2.2"}]`,
		},
		{
			name: "bitfield hex and number", typ: strct("bf", 4, bitMem("a", tU32, 0, 12), bitMem("b", tS32, 12, 4)),
			formats: map[string]string{"a": "hex", "b": "number"},
			data:    b{}.u32(packBits([3]uint32{0, 12, 0xabc}, [3]uint32{12, 4, 0xf})), want: `{"a":"0xabc","b":-1}`,
		},
		{
			name: "anonymous member path", typ: strct("s", 8, mem("", union("", 8, mem("v4", tdU32, 0)), 0)),
			formats: map[string]string{"v4": "ipv4"}, data: b{}.raw(9, 9, 9, 9).zero(4), want: `{"v4":"9.9.9.9"}`,
		},
	})
}

func TestFormatErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		typ     btf.Type
		formats map[string]string
		want    string
	}{
		{"unknown path", rec, map[string]string{"nope": "hex"}, "unknown format path"},
		{"unknown nested path", rec, map[string]string{"pair.z": "hex"}, "unknown format path"},
		{"path inside a leaf", rec, map[string]string{"a4.x": "hex"}, "unknown format path"},
		{"unknown format", rec, map[string]string{"a4": "base64"}, "unknown format"},
		{"ipv4 on 8 bytes", rec, map[string]string{"id": "ipv4"}, "does not fit"},
		{"ipv6 on 4 bytes", rec, map[string]string{"a4": "ipv6"}, "does not fit"},
		{"ip on 6 bytes", rec, map[string]string{"hw": "ip"}, "does not fit"},
		{"mac on 4 bytes", rec, map[string]string{"a4": "mac"}, "does not fit"},
		{"string on u32", rec, map[string]string{"a4": "string"}, "does not fit"},
		{"string on u32[2]", rec, map[string]string{"addrs": "string"}, "does not fit"},
		{"number on a 6-byte struct", strct("s", 6, mem("m", strct("x", 6, mem("a", tU16, 0), mem("b", tU16, 2), mem("c", tU16, 4)), 0)), map[string]string{"m": "number"}, "does not fit"},
		{"number on float", rec, map[string]string{"f": "number"}, "does not fit"},
		{"ipv4 on bitfield", strct("bf", 4, bitMem("a", tU32, 0, 12)), map[string]string{"a": "ipv4"}, "does not fit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.typ, Options{Formats: tc.formats})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// hexOf returns the lowercase hex digits of p.
func hexOf(p []byte) string {
	return string(appendHex(len(p))(nil, p))[2:]
}
