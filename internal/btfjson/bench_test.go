package btfjson

import (
	"testing"

	"github.com/cilium/ebpf/btf"
)

// The 5-tuple flow key and a typical flow value.
var (
	benchKey = strct("flow_key", 16,
		mem("saddr", tdIPv4, 0), mem("daddr", tdIPv4, 4),
		mem("sport", tdBe16, 8), mem("dport", tdBe16, 10), mem("proto", tdU8, 12))
	benchVal = strct("flow_val", 88,
		mem("packets", tdU64, 0), mem("bytes", tdU64, 8), mem("first_ns", tdU64, 16), mem("last_ns", tdU64, 24),
		mem("syn", tdU32, 32), mem("fin", tdU32, 36), mem("rst", tdU32, 40), mem("retrans", tdU32, 44),
		mem("min_len", tdU16, 48), mem("max_len", tdU16, 50), mem("state", state, 52),
		mem("comm", arr(tChar, 16), 56), mem("rtt_us", tdU64, 72), mem("ifindex", tdU32, 80), mem("dropped", tBool, 84))
	benchKeyData = b{}.raw(192, 0, 2, 1, 198, 51, 100, 7).be16(51234).be16(443).u8(6).zero(3)
	benchValData = b{}.u64(123456).u64(987654321).u64(1700000000000000000).u64(1700000000123456789).
			u32(1).u32(1).u32(0).u32(3).u16(40).u16(1500).u32(1).str("nginx", 16).u64(250).u32(2).u8(0).zero(3)
)

// BenchmarkDecode5Tuple decodes one flow entry (key and value) per op.
func BenchmarkDecode5Tuple(b *testing.B) {
	kd := mustNew(b, benchKey, nil)
	vd := mustNew(b, benchVal, nil)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchKeyData) + len(benchValData)))
	for b.Loop() {
		buf = append(buf[:0], `{"key":`...)
		buf, _ = kd.AppendJSON(buf, benchKeyData)
		buf = append(buf, `,"value":`...)
		buf, _ = vd.AppendJSON(buf, benchValData)
		buf = append(buf, '}')
	}
}

// BenchmarkSum merges a flow value over 64 CPUs per op.
func BenchmarkSum(b *testing.B) {
	vd := mustNew(b, benchVal, nil)
	cpus := make([][]byte, 64)
	for i := range cpus {
		cpus[i] = benchValData
	}
	dst := make([]byte, vd.Size())
	b.ReportAllocs()
	for b.Loop() {
		vd.Sum(dst, cpus)
	}
}

// BenchmarkNew compiles the flow value type per op.
func BenchmarkNew(b *testing.B) {
	var t btf.Type = benchVal
	for b.Loop() {
		if _, err := New(t, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
