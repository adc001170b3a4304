package flowmon

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/rampart-shield/rampart/internal/probe"
)

// goField maps the C member names to the Go field names of the records.
var goField = map[string]string{
	"saddr": "Saddr", "daddr": "Daddr", "sport": "Sport", "dport": "Dport",
	"proto": "Proto", "dir": "Dir", "pad": "Pad", "ifindex": "Ifindex",
	"first_ns": "FirstNs", "last_ns": "LastNs", "packets": "Packets", "bytes": "Bytes",
	"tcp_flags": "TCPFlags", "tos": "TOS",
}

// TestRecordLayout checks that Key and Stats mirror the C structs: the same
// size and every member at the same offset with the same size.
func TestRecordLayout(t *testing.T) {
	spec, err := loadFlowmon()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		m      string
		typ    btf.Type
		goType reflect.Type
	}{
		{FlowsMap, spec.Maps[FlowsMap].Key, reflect.TypeFor[Key]()},
		{FlowsMap, spec.Maps[FlowsMap].Value, reflect.TypeFor[Stats]()},
	} {
		st, ok := btf.UnderlyingType(c.typ).(*btf.Struct)
		if !ok {
			t.Fatalf("map %s: %v is not a struct", c.m, c.typ)
		}
		size, err := btf.Sizeof(st)
		if err != nil {
			t.Fatal(err)
		}
		if uintptr(size) != c.goType.Size() {
			t.Errorf("%s: C size %d, Go size %d", st.Name, size, c.goType.Size())
		}
		if c.goType.NumField() != len(st.Members) {
			t.Errorf("%s: %d C members, %d Go fields", st.Name, len(st.Members), c.goType.NumField())
		}
		for _, m := range st.Members {
			f, ok := c.goType.FieldByName(goField[m.Name])
			if !ok {
				t.Errorf("%s.%s: no Go field", st.Name, m.Name)
				continue
			}
			msize, err := btf.Sizeof(m.Type)
			if err != nil {
				t.Fatal(err)
			}
			if uintptr(m.Offset.Bytes()) != f.Offset || uintptr(msize) != f.Type.Size() {
				t.Errorf("%s.%s: C offset %d size %d, Go %s offset %d size %d",
					st.Name, m.Name, m.Offset.Bytes(), msize, f.Name, f.Offset, f.Type.Size())
			}
		}
	}
	if KeySize != 44 || StatsSize != 40 {
		t.Errorf("KeySize %d, StatsSize %d; want 44, 40", KeySize, StatsSize)
	}
	if got := spec.Maps[FlowsMap].MaxEntries; got != MaxFlows {
		t.Errorf("flows: max_entries %d, want %d", got, MaxFlows)
	}
	if got := spec.Maps[FlowsMap].Type; got != ebpf.LRUCPUHash {
		t.Errorf("flows: type %v", got)
	}
	st := spec.Maps[StatsMap]
	if st.Type != ebpf.PerCPUArray || st.MaxEntries != uint32(NumStats) || st.KeySize != 4 || st.ValueSize != 8 {
		t.Errorf("stats: %v, %d entries, key %d, value %d bytes", st.Type, st.MaxEntries, st.KeySize, st.ValueSize)
	}
}

func TestDecode(t *testing.T) {
	raw := make([]byte, 0, KeySize)
	for i := range 16 {
		raw = append(raw, 0x20+byte(i)) // saddr 2021:2223:...
	}
	raw = append(raw, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1) // daddr ::ffff:192.0.2.1
	raw = append(raw, 0x01, 0xbb, 0x9c, 0x40)                                 // sport 443, dport 40000
	raw = append(raw, 6, 1, 0, 0)                                             // proto, dir, pad
	raw = append(raw, 7, 0, 0, 0)                                             // ifindex 7 (little-endian)
	k, err := DecodeKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	if k.Sport != 443 || k.Dport != 40000 || k.Proto != 6 || k.Dir != DirEgress || k.Ifindex != 7 {
		t.Errorf("decoded %+v", k)
	}
	src, dst := k.Addrs()
	if src != netip.MustParseAddr("2021:2223:2425:2627:2829:2a2b:2c2d:2e2f") || dst != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("Addrs() = %v, %v", src, dst)
	}
	if got := k.String(); got != "egress 2021:2223:2425:2627:2829:2a2b:2c2d:2e2f:443 -> 192.0.2.1:40000 proto 6 if 7" {
		t.Errorf("String() = %q", got)
	}
	back, err := k.MarshalBinary()
	if err != nil || !bytes.Equal(back, raw) {
		t.Errorf("MarshalBinary() = %x, %v; want %x", back, err, raw)
	}
	if _, err := DecodeKey(raw[:KeySize-1]); err == nil {
		t.Error("DecodeKey accepted a short key")
	}

	v := []byte{
		1, 0, 0, 0, 0, 0, 0, 0, // first_ns 1
		0, 1, 0, 0, 0, 0, 0, 0, // last_ns 256
		3, 0, 0, 0, 0, 0, 0, 0, // packets 3
		0, 0, 1, 0, 0, 0, 0, 0, // bytes 65536
		0x12, 0xb8, 0, 0, 0, 0, 0, 0, // tcp_flags SYN|ACK, tos 0xb8
	}
	s, err := DecodeStats(v)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Stats{FirstNs: 1, LastNs: 256, Packets: 3, Bytes: 65536, TCPFlags: TCPSyn | TCPAck, TOS: 0xb8}); s != want {
		t.Errorf("DecodeStats = %+v, want %+v", s, want)
	}
	if _, err := DecodeStats(v[1:]); err == nil {
		t.Error("DecodeStats accepted a short value")
	}
	if n, err := DecodeCounter([]byte{5, 0, 0, 0, 0, 0, 0, 1}); err != nil || n != 1<<56|5 {
		t.Errorf("DecodeCounter = %d, %v", n, err)
	}
	if _, err := DecodeCounter(nil); err == nil {
		t.Error("DecodeCounter accepted an empty value")
	}
}

func TestSumStats(t *testing.T) {
	got := SumStats([]Stats{
		{},
		{FirstNs: 200, LastNs: 900, Packets: 2, Bytes: 100, TCPFlags: TCPAck, TOS: 2},
		{FirstNs: 100, LastNs: 500, Packets: 1, Bytes: 60, TCPFlags: TCPSyn, TOS: 1},
		{FirstNs: 0, LastNs: 0, Packets: 0, Bytes: 0, TCPFlags: TCPRst, TOS: 9}, // counted nothing
		{FirstNs: 300, LastNs: 300, Packets: 4, Bytes: 40, TCPFlags: TCPFin, TOS: 3},
	})
	want := Stats{FirstNs: 100, LastNs: 900, Packets: 7, Bytes: 200, TCPFlags: TCPSyn | TCPAck | TCPFin, TOS: 1}
	if got != want {
		t.Errorf("SumStats = %+v, want %+v", got, want)
	}
	if got := SumStats(nil); got != (Stats{}) {
		t.Errorf("SumStats(nil) = %+v", got)
	}
}

// TestManifest checks the manifest against the object: programs of the
// right type, maps, value fields and label fields that exist.
func TestManifest(t *testing.T) {
	m, err := probe.ParseManifest(Manifest())
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "flowmon" {
		t.Errorf("name %q", m.Name)
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(Object()))
	if err != nil {
		t.Fatal(err)
	}
	hooks := map[string]string{}
	for _, p := range m.Programs {
		hooks[p.Name] = p.Hook
		ps, ok := spec.Programs[p.Name]
		if !ok {
			t.Errorf("program %q is not in the object", p.Name)
		} else if ps.Type != ebpf.SchedCLS {
			t.Errorf("program %q is a %v", p.Name, ps.Type)
		}
	}
	if want := map[string]string{"flow_ingress": "tc-ingress", "flow_egress": "tc-egress"}; !reflect.DeepEqual(hooks, want) {
		t.Errorf("programs %v, want %v", hooks, want)
	}
	metrics := map[string]bool{}
	for _, mt := range m.Metrics {
		metrics[mt.Name] = true
		ms, ok := spec.Maps[mt.Map]
		if !ok {
			t.Errorf("metric %q: no map %q", mt.Name, mt.Map)
			continue
		}
		val := btf.UnderlyingType(ms.Value).(*btf.Struct)
		if !hasMember(val, mt.ValueField) {
			t.Errorf("metric %q: value has no field %q", mt.Name, mt.ValueField)
		}
		for _, l := range mt.Labels {
			if l.Field == "." {
				if _, ok := btf.UnderlyingType(ms.Key).(*btf.Int); !ok {
					t.Errorf("metric %q: label %q: the key is not a scalar", mt.Name, l.Name)
				}
				continue
			}
			key, ok := btf.UnderlyingType(ms.Key).(*btf.Struct)
			if !ok || !hasMember(key, l.Field) {
				t.Errorf("metric %q: label %q: key has no field %q", mt.Name, l.Name, l.Field)
			}
		}
	}
	for _, name := range []string{"flowmon_stats", "flow_packets", "flow_bytes"} {
		if !metrics[name] {
			t.Errorf("metric %q is missing", name)
		}
	}
}

func hasMember(s *btf.Struct, name string) bool {
	for _, m := range s.Members {
		if m.Name == name {
			return true
		}
	}
	return false
}
