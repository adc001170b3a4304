package btfjson

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// fuzzType is a record with every kind of leaf, fixed for FuzzDecode.
var fuzzType = strct("event", 200,
	mem("key", strct("flow_key", 40,
		mem("saddr", tdIPAddr, 0), mem("daddr", tdIPv6, 16), mem("sport", tdBe16, 32), mem("dport", tdRpBe16, 34),
		mem("proto", tdU8, 36), mem("state", state, 36)), 0), // state overlaps proto on purpose: overlapping members must still work
	mem("comm", arr(tChar, 16), 40),
	mem("raw", arr(tdU8, 8), 56),
	mem("ts", tS64, 64),
	mem("f32", tF32, 72),
	mem("f64", tF64, 76),
	bitMem("a", tU32, 84*8, 3),
	bitMem("b", tS32, 84*8+3, 13),
	bitMem("c", state, 84*8+16, 16),
	mem("", union("", 16, mem("v6", in6Addr, 0), mem("v4", inAddr, 0), mem("n", tU128, 0)), 88),
	mem("s128", tS128, 104),
	mem("ptr", &btf.Pointer{Target: tU8}, 120),
	mem("pts", arr(point, 3), 128),
	mem("mac", tdMAC, 140),
	mem("ok", tBool, 146),
	mem("ch", tCh, 147),
	mem("ip4", tdIPv4, 148),
	mem("tag", arr(tCh, 12), 152),
	mem("hexed", tdU32, 164),
	mem("addrs", arr(tdU32, 2), 168),
	mem("bytes", arr(tdU8, 16), 176),
	mem("num", tdBe32, 192),
	mem("flt", tdU32, 196),
)

var fuzzFormats = map[string]string{
	"hexed": "hex", "addrs": "ipv4", "bytes": "ip", "num": "number", "raw": "string", "pts.x": "hex",
}

func FuzzDecode(f *testing.F) {
	d, err := New(fuzzType, Options{Formats: fuzzFormats})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(make([]byte, d.Size()))
	f.Add(bytes.Repeat([]byte{0xff}, d.Size()))
	f.Add(bytes.Repeat([]byte{0x80, '"', '\\', 0xc3, 0x01, 'a'}, d.Size()/6+1))
	f.Add([]byte("short"))

	leaves := d.NumericLeaves()
	var texts []func([]byte) string
	for _, p := range append([]string{"", "key", "comm", "tag", "pts", "v6", "v4", "n", "c", "s128", "bytes", "raw", "addrs.1"}, leaves...) {
		fn, err := d.Text(p)
		if err != nil {
			f.Fatalf("Text(%q): %v", p, err)
		}
		texts = append(texts, fn)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := d.AppendJSON(nil, data)
		if len(data) < d.Size() {
			if err == nil {
				t.Fatal("short data decoded")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON: %s", out)
		}
		again, _ := d.AppendJSON(nil, data)
		if !bytes.Equal(out, again) {
			t.Fatalf("not deterministic:\n%s\n%s", out, again)
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatal(err)
		}
		for _, fn := range texts {
			fn(data)
		}
		for _, p := range leaves {
			fn, _ := d.Number(p)
			fn(data)
		}
		dst := make([]byte, d.Size())
		d.Sum(dst, [][]byte{data, data[len(data)-d.Size():], data})
		if sum, err := d.AppendJSON(nil, dst); err != nil || !json.Valid(sum) {
			t.Fatalf("Sum gave invalid JSON: %s, %v", sum, err)
		}
	})
}
