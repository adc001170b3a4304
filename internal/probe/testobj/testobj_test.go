package testobj

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// The fixed values written by fill, as bytes in memory (little-endian host),
// spelled out as documented in bpf/testdata/maptypes.bpf.c.
func recBytes() []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint64(b, 0x123456789)
	b = binary.LittleEndian.AppendUint32(b, 1500)
	b = binary.LittleEndian.AppendUint16(b, 443)
	b = append(b, 6, 0x12)
	b = append(b, 192, 0, 2, 1)
	b = append(b, "rampart\x00"...)
	b = binary.LittleEndian.AppendUint32(b, 2) // BLUE
	b = append(b, 1, 2, 3, 4)
	b = binary.LittleEndian.AppendUint16(b, 1)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 1024)
	b = binary.LittleEndian.AppendUint16(b, 65535)
	return append(b, 0, 0, 0, 0) // tail padding to 8-byte alignment
}

var (
	k5Bytes = []byte{10, 0, 0, 1, 10, 0, 0, 2, 0x30, 0x39, 0, 80, 6, 0, 0, 0}
	k6Bytes = []byte{
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
		0x02, 0, 0, 0, 0, 0x01,
		0, 100,
	}
	kaBytes = []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 7, 0, 0, 0x10, 0}
)

func eventBytes() []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint64(b, 1)
	b = append(b, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2)
	b = append(b, "hello\x00\x00\x00"...)
	return append(b, recBytes()...)
}

func TestSpec(t *testing.T) {
	spec, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name       string
		typ        ebpf.MapType
		key, value string
	}{
		{"hash", ebpf.Hash, "k5", "rec"},
		{"array", ebpf.Array, "__u32", "rec"},
		{"lru_hash", ebpf.LRUHash, "k6", "rec"},
		{"percpu_hash", ebpf.PerCPUHash, "k5", "rec"},
		{"percpu_array", ebpf.PerCPUArray, "__u32", "rec"},
		{"lru_percpu_hash", ebpf.LRUCPUHash, "kaddr", "rec"},
		{"queue", ebpf.Queue, "", "rec"},
		{"stack", ebpf.Stack, "", "rec"},
		{"lpm_trie", ebpf.LPMTrie, "lpm_v4", "rec"},
		{"ringbuf", ebpf.RingBuf, "", ""},
	}
	for _, w := range want {
		m, ok := spec.Maps[w.name]
		if !ok {
			t.Errorf("map %s missing", w.name)
			continue
		}
		if m.Type != w.typ {
			t.Errorf("map %s: type %v, want %v", w.name, m.Type, w.typ)
		}
		if got := typeName(m.Key); got != w.key {
			t.Errorf("map %s: key type %q, want %q", w.name, got, w.key)
		}
		if got := typeName(m.Value); got != w.value {
			t.Errorf("map %s: value type %q, want %q", w.name, got, w.value)
		}
	}
	if spec.Maps["lpm_trie"].Flags&1 == 0 { // BPF_F_NO_PREALLOC
		t.Error("lpm_trie lacks BPF_F_NO_PREALLOC")
	}
	if _, err := spec.Types.AnyTypeByName("event"); err != nil {
		t.Errorf("struct event (the ring buffer's record) is not in the BTF: %v", err)
	}
	if len(recBytes()) != int(spec.Maps["hash"].ValueSize) {
		t.Errorf("struct rec is %d bytes, the test expects %d", spec.Maps["hash"].ValueSize, len(recBytes()))
	}
}

func typeName(t btf.Type) string {
	if t == nil {
		return ""
	}
	return t.TypeName()
}

func TestFill(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: loading BPF programs needs root")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("skipping: cannot lift the memlock limit: %v", err)
	}
	var objs maptypesObjects
	if err := loadMaptypesObjects(&objs, nil); err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) || (errors.Is(err, syscall.EPERM) && !isVerifierError(err)) {
			t.Skipf("skipping: cannot load BPF here: %v", err)
		}
		t.Fatalf("loading: %+v", err)
	}
	defer objs.Close()

	rd, err := ringbuf.NewReader(objs.Ringbuf)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()

	ret, err := objs.Fill.Run(&ebpf.RunOptions{Data: make([]byte, 64)})
	if err != nil {
		t.Fatalf("running fill: %v", err)
	}
	if ret != 2 {
		t.Fatalf("fill returned %d, want XDP_PASS (2)", ret)
	}

	rec := recBytes()
	var wantRec maptypesRec
	if err := binary.Read(bytes.NewReader(rec), binary.LittleEndian, &wantRec); err != nil {
		t.Fatal(err)
	}

	count := func(name string, m *ebpf.Map, want int) {
		t.Helper()
		n := 0
		it := m.Iterate()
		k := make([]byte, m.KeySize())
		var v any = new([]byte)
		if t := m.Type(); t == ebpf.PerCPUHash || t == ebpf.PerCPUArray || t == ebpf.LRUCPUHash {
			v = new([]maptypesRec)
		}
		for it.Next(&k, v) {
			n++
		}
		if err := it.Err(); err != nil {
			t.Errorf("%s: iterate: %v", name, err)
		}
		if m.Type() != ebpf.Array && m.Type() != ebpf.PerCPUArray && n != want {
			t.Errorf("%s: %d entries, want %d", name, n, want)
		}
	}
	lookup := func(name string, m *ebpf.Map, key []byte) {
		t.Helper()
		val := make([]byte, m.ValueSize())
		if err := m.Lookup(key, val); err != nil {
			t.Errorf("%s: lookup %x: %v", name, key, err)
			return
		}
		if !bytes.Equal(val, rec) {
			t.Errorf("%s: value\n got %x\nwant %x", name, val, rec)
		}
		count(name, m, 1)
	}
	perCPU := func(name string, m *ebpf.Map, key []byte) {
		t.Helper()
		var vals []maptypesRec
		if err := m.Lookup(key, &vals); err != nil {
			t.Errorf("%s: lookup %x: %v", name, key, err)
			return
		}
		filled := 0
		for cpu, v := range vals {
			switch v {
			case wantRec:
				filled++
			case maptypesRec{}:
			default:
				t.Errorf("%s: cpu %d: unexpected value %+v", name, cpu, v)
			}
		}
		if filled != 1 {
			t.Errorf("%s: %d CPUs hold the entry, want exactly 1", name, filled)
		}
		count(name, m, 1)
	}

	lookup("hash", objs.Hash, k5Bytes)
	lookup("array", objs.Array, binary.LittleEndian.AppendUint32(nil, 1))
	lookup("lru_hash", objs.LruHash, k6Bytes)
	perCPU("percpu_hash", objs.PercpuHash, k5Bytes)
	perCPU("percpu_array", objs.PercpuArray, binary.LittleEndian.AppendUint32(nil, 1))
	perCPU("lru_percpu_hash", objs.LruPercpuHash, kaBytes)

	// The rest of the arrays stays zero.
	zero := make([]byte, len(rec))
	val := make([]byte, len(rec))
	if err := objs.Array.Lookup(uint32(0), val); err != nil || !bytes.Equal(val, zero) {
		t.Errorf("array[0]: %x, %v; want zeros", val, err)
	}

	// LPM: a /32 lookup inside 192.168.1.0/24 finds the entry.
	lpmKey := append(binary.LittleEndian.AppendUint32(nil, 32), 192, 168, 1, 77)
	if err := objs.LpmTrie.Lookup(lpmKey, val); err != nil || !bytes.Equal(val, rec) {
		t.Errorf("lpm_trie 192.168.1.77/32: %x, %v; want the /24 entry", val, err)
	}
	lpmExact := append(binary.LittleEndian.AppendUint32(nil, 24), 192, 168, 1, 0)
	lookup("lpm_trie", objs.LpmTrie, lpmExact)

	// Queue and stack: one item each.
	for _, q := range []struct {
		name string
		m    *ebpf.Map
	}{{"queue", objs.Queue}, {"stack", objs.Stack}} {
		if err := q.m.LookupAndDelete(nil, val); err != nil || !bytes.Equal(val, rec) {
			t.Errorf("%s: pop: %x, %v; want the entry", q.name, val, err)
		}
		if err := q.m.LookupAndDelete(nil, val); !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Errorf("%s: second pop: %v, want empty", q.name, err)
		}
	}

	// Ring buffer: one record.
	rd.SetDeadline(time.Now().Add(2 * time.Second))
	r, err := rd.Read()
	if err != nil {
		t.Fatalf("ring buffer: %v", err)
	}
	if want := eventBytes(); !bytes.Equal(r.RawSample, want) {
		t.Errorf("ring buffer record\n got %x\nwant %x", r.RawSample, want)
	}
	var ev maptypesEvent
	if err := binary.Read(bytes.NewReader(r.RawSample), binary.LittleEndian, &ev); err != nil || ev.Seq != 1 || ev.Rec != wantRec || ev.Rec.Color != maptypesColorBLUE {
		t.Errorf("ring buffer record decodes to %+v (%v)", ev, err)
	}
	rd.SetDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := rd.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ring buffer: a second record or error: %v", err)
	}
}

func isVerifierError(err error) bool {
	var ve *ebpf.VerifierError
	return errors.As(err, &ve)
}
