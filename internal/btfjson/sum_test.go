package btfjson

import (
	"bytes"
	"math"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// statsVal is one CPU's copy of a stats value.
type statsVal struct {
	packets, bytes uint64
	state          uint32
	up             uint8
	delta          int32
	rate           float64
	port           uint16
	comm           string
	addr           [4]byte
	hist           [3]uint32
	lo, hi         uint32
	flags, level   uint32
	un             uint32
	ptr            uint64
	bigHi, bigLo   uint64
}

func (v statsVal) encode() []byte {
	return b{}.u64(v.packets).u64(v.bytes).u32(v.state).u8(v.up).zero(3).u32(uint32(v.delta)).
		u64(math.Float64bits(v.rate)).be16(v.port).str(v.comm, 6).raw(v.addr[:]...).
		u32(v.hist[0]).u32(v.hist[1]).u32(v.hist[2]).u32(v.lo).u32(v.hi).
		u32(packBits([3]uint32{0, 4, v.flags}, [3]uint32{4, 4, v.level})).u32(v.un).u64(v.ptr).
		raw(le128(v.bigHi, v.bigLo)...)
}

func TestSum(t *testing.T) {
	d := mustNew(t, stats, nil)
	cpus := [][]byte{
		statsVal{packets: 1, bytes: 100, delta: -5, rate: 0.25, hist: [3]uint32{1, 0, 0}, lo: 1, flags: 9, level: 0xf, bigLo: math.MaxUint64}.encode(),
		statsVal{packets: 2, bytes: 200, state: 1, up: 1, delta: 2, rate: 0.5, port: 80, comm: "curl", addr: [4]byte{10, 0, 0, 1},
			hist: [3]uint32{0, 2, 0}, hi: 7, flags: 8, level: 0xe, un: 3, ptr: 0xffff, bigLo: 1}.encode(),
		statsVal{packets: 4, bytes: 400, state: 2, up: 1, delta: 1, rate: 1, port: 443, comm: "wget", addr: [4]byte{10, 0, 0, 2},
			hist: [3]uint32{0, 0, 3}, lo: 1, hi: 1, flags: 1, level: 1, un: 4, ptr: 0xaaaa, bigHi: 1}.encode(),
	}
	dst := make([]byte, d.Size())
	d.Sum(dst, cpus)
	// Counters add (the 4-bit flags wrap: 9+8+1 = 18 = 2 mod 16; level -1-2+1 = -2);
	// enums, bools, be16, strings, addresses, unions and pointers come from the first CPU with non-zero bytes.
	want := `{"packets":7,"bytes":700,"state":"ST_OPEN","up":true,"delta":-2,"rate":1.75,"port":80,` +
		`"comm":"curl","addr":"10.0.0.1","hist":[1,2,3],"inner":{"lo":2,"hi":8},"flags":2,"level":-2,` +
		`"u":3,"s":3,"ptr":"0xffff","big":"36893488147419103232"}`
	if got := render(t, d, dst); got != want {
		t.Errorf("Sum:\n got  %s\n want %s", got, want)
	}
	for i, c := range cpus {
		if d2 := render(t, d, c); d2 == "" {
			t.Errorf("cpu %d unreadable", i)
		}
	}

	// A single CPU is copied; no CPU gives zero; short copies are ignored.
	one := make([]byte, d.Size())
	d.Sum(one, cpus[1:2])
	if !bytes.Equal(one, cpus[1]) {
		t.Error("Sum of one CPU is not a copy")
	}
	d.Sum(one, nil)
	if !bytes.Equal(one, make([]byte, d.Size())) {
		t.Error("Sum of no CPU is not zero")
	}
	d.Sum(one, [][]byte{cpus[0][:10], cpus[1], cpus[2][:50]})
	if !bytes.Equal(one, cpus[1]) {
		t.Error("short CPU copies were not ignored")
	}
}

func TestSumKinds(t *testing.T) {
	f32 := math.Float32bits
	for _, tc := range []struct {
		name string
		typ  btf.Type
		cpus [][]byte
		want string
	}{
		{"u8 wraps", tU8, [][]byte{{200}, {100}}, `44`},
		{"s16", tS16, [][]byte{b{}.u16(0xffff), b{}.u16(0xffff)}, `-2`},
		{"u32", tdU32, [][]byte{b{}.u32(1), b{}.u32(2), b{}.u32(3)}, `6`},
		{"f32", tF32, [][]byte{b{}.u32(f32(1.5)), b{}.u32(f32(2))}, `3.5`},
		{"char is first non-zero", tCh, [][]byte{{0}, {'a'}, {'b'}}, `97`},
		{"plain char is first non-zero", tChar, [][]byte{{0}, {'a'}, {'b'}}, `97`},
		{"bool", tBool, [][]byte{{0}, {1}, {1}}, `true`},
		{"enum", state, [][]byte{b{}.u32(0), b{}.u32(2), b{}.u32(1)}, `"ST_CLOSED"`},
		{"be32", tdBe32, [][]byte{b{}.be32(0), b{}.be32(5), b{}.be32(6)}, `5`},
		{"mac", tdMAC, [][]byte{b{}.zero(6), b{}.raw(2, 0, 0, 0, 0, 1), b{}.raw(2, 0, 0, 0, 0, 2)}, `"02:00:00:00:00:01"`},
		{"u8 array adds", arr(tdU8, 2), [][]byte{{1, 2}, {3, 4}}, `[4,6]`},
		{"union is one value", union("u", 4, mem("a", tdU32, 0), mem("b", tdU16, 0)), [][]byte{b{}.u32(0), b{}.u32(7), b{}.u32(9)},
			func() string {
				if littleEndian {
					return `{"a":7,"b":7}`
				}
				return `{"a":7,"b":0}`
			}()},
		{"all zero", tdMAC, [][]byte{b{}.zero(6), b{}.zero(6)}, `"00:00:00:00:00:00"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustNew(t, tc.typ, nil)
			dst := make([]byte, d.Size())
			d.Sum(dst, tc.cpus)
			if got := render(t, d, dst); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSumFormatted(t *testing.T) {
	// A formatted counter is no longer summed.
	typ := strct("s", 8, mem("a", tdU32, 0), mem("b", tdU32, 4))
	d := mustNew(t, typ, map[string]string{"b": "hex"})
	dst := make([]byte, 8)
	d.Sum(dst, [][]byte{b{}.u32(1).u32(0), b{}.u32(2).u32(5), b{}.u32(3).u32(6)})
	if got, want := render(t, d, dst), `{"a":6,"b":"0x5"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
