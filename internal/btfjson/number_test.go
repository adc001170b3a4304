package btfjson

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

var state = &btf.Enum{Name: "state", Size: 4, Values: []btf.EnumValue{{Name: "ST_OPEN", Value: 1}, {Name: "ST_CLOSED", Value: 2}}}

// stats is a value struct with leaves of every kind.
var stats = strct("stats", 100,
	mem("packets", tdU64, 0),
	mem("bytes", tdU64, 8),
	mem("state", state, 16),
	mem("up", tBool, 20),
	mem("delta", tS32, 24),
	mem("rate", tF64, 28),
	mem("port", tdBe16, 36),
	mem("comm", arr(tChar, 6), 38),
	mem("addr", tdIPv4, 44),
	mem("hist", arr(tdU32, 3), 48),
	mem("inner", strct("inner", 8, mem("lo", tdU32, 0), mem("hi", tdU32, 4)), 60),
	bitMem("flags", tU32, 68*8, 4),
	bitMem("level", tS32, 68*8+4, 4),
	mem("", union("", 4, mem("u", tdU32, 0), mem("s", tS32, 0)), 72),
	mem("ptr", &btf.Pointer{Target: tU8}, 76),
	mem("big", tU128, 84),
)

// statsData fills stats.
func statsData() []byte {
	return b{}.u64(10).u64(1500).u32(2).u8(1).zero(3).u32(0xfffffffd).u64(math.Float64bits(0.5)).be16(8080).
		str("nginx", 6).raw(10, 0, 0, 9).u32(1).u32(2).u32(3).u32(4).u32(5).
		u32(packBits([3]uint32{0, 4, 9}, [3]uint32{4, 4, 0xe})).u32(0xffffffff).u64(0x1000).raw(le128(1, 5)...)
}

func TestNumber(t *testing.T) {
	d := mustNew(t, stats, nil)
	data := statsData()
	for _, tc := range []struct {
		path string
		want float64
	}{
		{"packets", 10}, {"bytes", 1500}, {"state", 2}, {"up", 1}, {"delta", -3}, {"rate", 0.5},
		{"port", 8080}, {"hist.0", 1}, {"hist.2", 3}, {"inner.lo", 4}, {"inner.hi", 5},
		{"flags", 9}, {"level", -2}, {"u", 4294967295}, {"s", -1}, {"big", 18446744073709551621},
	} {
		fn, err := d.Number(tc.path)
		if err != nil {
			t.Errorf("Number(%q): %v", tc.path, err)
			continue
		}
		if got := fn(data); got != tc.want {
			t.Errorf("Number(%q) = %v, want %v", tc.path, got, tc.want)
		}
		if got := fn(data[:10]); !math.IsNaN(got) {
			t.Errorf("Number(%q) on short data = %v, want NaN", tc.path, got)
		}
	}
	for _, path := range []string{"", "comm", "addr", "hist", "inner", "ptr", "nope", "hist.3", "hist.x", "inner.lo.x", "packets.0"} {
		if _, err := d.Number(path); err == nil {
			t.Errorf("Number(%q) succeeded, want error", path)
		}
	}
	root, err := mustNew(t, tdBe32, nil).Number("")
	if err != nil || root(b{}.be32(123456)) != 123456 {
		t.Errorf("Number(\"\") of __be32: %v", err)
	}
	if _, err := mustNew(t, rec, map[string]string{"port": "hex"}).Number("port"); err == nil {
		t.Error("Number of a hex-formatted field succeeded")
	}
}

func TestText(t *testing.T) {
	d := mustNew(t, stats, map[string]string{"inner.hi": "hex"})
	data := statsData()
	for _, tc := range []struct{ path, want string }{
		{"packets", "10"},
		{"state", "ST_CLOSED"},
		{"up", "true"},
		{"delta", "-3"},
		{"rate", "0.5"},
		{"port", "8080"},
		{"comm", "nginx"},
		{"addr", "10.0.0.9"},
		{"hist", "[1,2,3]"},
		{"hist.1", "2"},
		{"inner", `{"lo":4,"hi":"0x5"}`},
		{"inner.hi", "0x5"},
		{"flags", "9"},
		{"level", "-2"},
		{"ptr", "0x1000"},
		{"big", "18446744073709551621"},
	} {
		fn, err := d.Text(tc.path)
		if err != nil {
			t.Errorf("Text(%q): %v", tc.path, err)
			continue
		}
		if got := fn(data); got != tc.want {
			t.Errorf("Text(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
	root, err := d.Text("")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := root(data), render(t, d, data); got != want {
		t.Errorf("Text(\"\") = %s, want the JSON %s", got, want)
	}
	if root(data[:1]) != "" {
		t.Error("Text on short data is not empty")
	}

	// Label text of strings is raw, not JSON-escaped, but always valid UTF-8.
	fn, err := mustNew(t, arr(tChar, 6), nil).Text("")
	if err != nil {
		t.Fatal(err)
	}
	if got := fn(b{}.raw('a', '"', 0xff, 'b', 0, 0)); got != "a\"\uFFFDb" {
		t.Errorf("Text of char array = %q", got)
	}
	enumText, _ := mustNew(t, state, nil).Text("")
	if got := enumText(b{}.u32(7)); got != "7" {
		t.Errorf("Text of unnamed enum = %q", got)
	}
	fnan, _ := mustNew(t, tF32, nil).Text("")
	if got := fnan(b{}.u32(math.Float32bits(float32(math.NaN())))); !strings.EqualFold(got, "nan") {
		t.Errorf("Text of NaN = %q", got)
	}
	if _, err := d.Text("nope"); err == nil {
		t.Error("Text of unknown path succeeded")
	}
}

func TestNumericLeaves(t *testing.T) {
	got := mustNew(t, stats, nil).NumericLeaves()
	want := []string{"packets", "bytes", "state", "up", "delta", "rate", "port", "hist.0", "hist.1", "hist.2",
		"inner.lo", "inner.hi", "flags", "level", "u", "s", "big"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NumericLeaves =\n %q\nwant\n %q", got, want)
	}
	if got := mustNew(t, tdU64, nil).NumericLeaves(); !reflect.DeepEqual(got, []string{""}) {
		t.Errorf("NumericLeaves of a number = %q", got)
	}
	if got := mustNew(t, arr(tChar, 4), nil).NumericLeaves(); len(got) != 0 {
		t.Errorf("NumericLeaves of a string = %q", got)
	}
	// Every leaf must be readable by Number.
	d := mustNew(t, stats, nil)
	for _, p := range d.NumericLeaves() {
		if _, err := d.Number(p); err != nil {
			t.Errorf("Number(%q): %v", p, err)
		}
	}
}
