package flow

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/probe"
)

// fakeMap is a flow map: key -> (first, last, packets, bytes, flags).
type fakeMap struct {
	entries map[string][5]uint64
	taken   int
}

func (f *fakeMap) ReadRaw(_, _ string) ([]probe.RawEntry, error) {
	var out []probe.RawEntry
	for k, v := range f.entries {
		out = append(out, probe.RawEntry{Key: []byte(k), Values: [][]byte{enc(v)}})
	}
	return out, nil
}

func (f *fakeMap) TakeRaw(_, _ string, key []byte) ([][]byte, bool, error) {
	v, ok := f.entries[string(key)]
	if !ok {
		return nil, false, nil
	}
	delete(f.entries, string(key))
	f.taken++
	return [][]byte{enc(v)}, true, nil
}

func enc(v [5]uint64) []byte {
	b := make([]byte, 40)
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[i*8:], x)
	}
	return b
}

func fakeDecode(key []byte, vals [][]byte) (Sample, error) {
	if len(vals) != 1 || len(vals[0]) != 40 {
		return Sample{}, errors.New("bad value")
	}
	v := vals[0]
	return Sample{
		Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.2"),
		SrcPort: uint16(key[0]), DstPort: 80, Proto: 6,
		FirstNs: binary.LittleEndian.Uint64(v), LastNs: binary.LittleEndian.Uint64(v[8:]),
		Packets: binary.LittleEndian.Uint64(v[16:]), Bytes: binary.LittleEndian.Uint64(v[24:]),
		TCPFlags: uint8(binary.LittleEndian.Uint64(v[32:])),
	}, nil
}

func TestCollectorDeltasAndTimeouts(t *testing.T) {
	sec := uint64(time.Second)
	base := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	mono := 1000 * sec
	clock := func() (uint64, time.Time) { return mono, base.Add(time.Duration(mono - 1000*sec)) }
	m := &fakeMap{entries: map[string][5]uint64{
		"\x01": {mono, mono, 10, 1000, 0x02},
		"\x02": {mono, mono, 5, 500, 0x02},
	}}
	c := NewCollector(m, Config{Probe: "flowmon", Map: "flows", Decode: fakeDecode, Active: 10 * time.Second, Idle: 5 * time.Second, Clock: clock})

	if out, _ := c.Poll(); len(out) != 0 {
		t.Fatalf("nothing is due yet: %+v", out)
	}
	// Flow 1 keeps sending; flow 2 ends with FIN and goes quiet.
	mono += 3 * sec
	m.entries["\x01"] = [5]uint64{1000 * sec, mono, 30, 3000, 0x12}
	m.entries["\x02"] = [5]uint64{1000 * sec, mono - 3*sec, 5, 500, 0x13}
	out, _ := c.Poll()
	if len(out) != 1 || out[0].SrcPort != 2 || out[0].EndReason != EndOfFlow || out[0].Packets != 5 || m.taken != 1 {
		t.Fatalf("FIN flow: %+v (taken %d)", out, m.taken)
	}
	// Active timeout: flow 1 reported with its delta so far.
	mono += 8 * sec
	m.entries["\x01"] = [5]uint64{1000 * sec, mono, 40, 4000, 0x12}
	out, _ = c.Poll()
	if len(out) != 1 || out[0].EndReason != ActiveTimeout || out[0].Packets != 40 || out[0].Bytes != 4000 {
		t.Fatalf("active: %+v", out)
	}
	if !out[0].First.Equal(base) || !out[0].Last.Equal(base.Add(11*time.Second)) {
		t.Fatalf("times: %v .. %v", out[0].First, out[0].Last)
	}
	// Then idle: only the new packets, and the entry leaves the map.
	m.entries["\x01"] = [5]uint64{1000 * sec, mono + sec, 45, 4500, 0x12}
	mono += 7 * sec
	out, _ = c.Poll()
	if len(out) != 1 || out[0].EndReason != IdleTimeout || out[0].Packets != 5 || out[0].Bytes != 500 {
		t.Fatalf("idle: %+v", out)
	}
	if len(m.entries) != 0 {
		t.Fatalf("idle flow still in the map: %v", m.entries)
	}
	// Eviction: a tracked flow that vanishes is counted.
	m.entries["\x03"] = [5]uint64{mono, mono, 1, 60, 0}
	c.Poll()
	delete(m.entries, "\x03")
	c.Poll()
	if c.Evicted != 1 {
		t.Fatalf("evicted = %d", c.Evicted)
	}
	// Flush reports what is unreported, whatever the timers say.
	m.entries["\x04"] = [5]uint64{mono, mono, 7, 700, 0}
	out, _ = c.Flush()
	if len(out) != 1 || out[0].EndReason != ForcedEnd || out[0].Packets != 7 {
		t.Fatalf("flush: %+v", out)
	}
}
