package btfjson

import (
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// Hand-built BTF types shared by the tests, named as clang emits them.
var (
	tU8   = &btf.Int{Name: "unsigned char", Size: 1}
	tS8   = &btf.Int{Name: "signed char", Size: 1, Encoding: btf.Signed}
	tChar = &btf.Int{Name: "char", Size: 1, Encoding: btf.Signed}
	tCh   = &btf.Int{Name: "char", Size: 1, Encoding: btf.Char}
	tU16  = &btf.Int{Name: "unsigned short", Size: 2}
	tS16  = &btf.Int{Name: "short", Size: 2, Encoding: btf.Signed}
	tU32  = &btf.Int{Name: "unsigned int", Size: 4}
	tS32  = &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}
	tU64  = &btf.Int{Name: "unsigned long long", Size: 8}
	tS64  = &btf.Int{Name: "long long", Size: 8, Encoding: btf.Signed}
	tU128 = &btf.Int{Name: "unsigned __int128", Size: 16}
	tS128 = &btf.Int{Name: "__int128", Size: 16, Encoding: btf.Signed}
	tBool = &btf.Int{Name: "_Bool", Size: 1, Encoding: btf.Bool}
	tF32  = &btf.Float{Name: "float", Size: 4}
	tF64  = &btf.Float{Name: "double", Size: 8}

	tdU8  = &btf.Typedef{Name: "__u8", Type: tU8}
	tdU16 = &btf.Typedef{Name: "__u16", Type: tU16}
	tdU32 = &btf.Typedef{Name: "__u32", Type: tU32}
	tdU64 = &btf.Typedef{Name: "__u64", Type: tU64}
)

// td makes a typedef.
func td(name string, t btf.Type) *btf.Typedef { return &btf.Typedef{Name: name, Type: t} }

// arr makes an array of n elements.
func arr(t btf.Type, n uint32) *btf.Array { return &btf.Array{Index: tU32, Type: t, Nelems: n} }

// mem makes a member at a byte offset.
func mem(name string, t btf.Type, off int) btf.Member {
	return btf.Member{Name: name, Type: t, Offset: btf.Bits(off * 8)}
}

// bitMem makes a bitfield member at a bit offset.
func bitMem(name string, t btf.Type, bitOff, bits int) btf.Member {
	return btf.Member{Name: name, Type: t, Offset: btf.Bits(bitOff), BitfieldSize: btf.Bits(bits)}
}

// strct makes a struct.
func strct(name string, size uint32, members ...btf.Member) *btf.Struct {
	return &btf.Struct{Name: name, Size: size, Members: members}
}

// union makes a union.
func union(name string, size uint32, members ...btf.Member) *btf.Union {
	return &btf.Union{Name: name, Size: size, Members: members}
}

// mustNew compiles a decoder or fails the test.
func mustNew(t testing.TB, typ btf.Type, formats map[string]string) *Decoder {
	t.Helper()
	d, err := New(typ, Options{Formats: formats})
	if err != nil {
		t.Fatalf("New(%v): %v", typ, err)
	}
	return d
}

// render decodes data and checks that the output is valid JSON.
func render(t testing.TB, d *Decoder, data []byte) string {
	t.Helper()
	out, err := d.AppendJSON(nil, data)
	if err != nil {
		t.Fatalf("AppendJSON: %v", err)
	}
	if !json.Valid(out) {
		t.Fatalf("invalid JSON: %s", out)
	}
	return string(out)
}

// jsonCase is one row of a rendering table.
type jsonCase struct {
	name    string
	typ     btf.Type
	formats map[string]string
	data    []byte
	want    string
}

// runJSON runs a rendering table.
func runJSON(t *testing.T, cases []jsonCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := mustNew(t, tc.typ, tc.formats)
			if got := render(t, d, tc.data); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// b is a little builder of native-endian test data.
type b []byte

func (x b) u8(v uint8) b   { return append(x, v) }
func (x b) u16(v uint16) b { return binary.NativeEndian.AppendUint16(x, v) }
func (x b) u32(v uint32) b { return binary.NativeEndian.AppendUint32(x, v) }
func (x b) u64(v uint64) b { return binary.NativeEndian.AppendUint64(x, v) }
func (x b) be16(v uint16) b {
	return binary.BigEndian.AppendUint16(x, v)
}
func (x b) be32(v uint32) b { return binary.BigEndian.AppendUint32(x, v) }
func (x b) raw(v ...byte) b { return append(x, v...) }
func (x b) zero(n int) b    { return append(x, make([]byte, n)...) }
func (x b) str(s string, n int) b {
	out := append(x, s...)
	return out.zero(n - len(s))
}

// packBits lays out bitfields of a 32-bit storage unit as the host's
// compiler does, given (bit offset, width, value) triples.
func packBits(fields ...[3]uint32) uint32 {
	var v uint32
	for _, f := range fields {
		off, bits, val := f[0], f[1], f[2]&(1<<f[1]-1)
		if littleEndian {
			v |= val << off
		} else {
			v |= val << (32 - off - bits)
		}
	}
	return v
}

// parseAddr returns the 16-byte form of an IP address literal.
func parseAddr(s string) ([]byte, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil, err
	}
	b := a.As16()
	return b[:], nil
}
