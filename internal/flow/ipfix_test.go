package flow

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

var testT0 = time.Date(2026, 3, 14, 15, 9, 26, 535_000_000, time.UTC)

// testFlows are records of every kind the encoder handles.
func testFlows() []Flow {
	ms := time.Millisecond
	return []Flow{
		{ // IPv4 TCP, > 2^32 bytes, ingress
			Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("192.0.2.80"),
			SrcPort: 51234, DstPort: 443, Proto: 6, TOS: 0x28, TCPFlags: 0x1b,
			Ifindex: 7, Direction: Ingress,
			First: testT0.Add(-90 * time.Second), Last: testT0.Add(-1*time.Second + 7*ms),
			Packets: 3_500_001, Bytes: 5_000_000_123, EndReason: EndOfFlow,
		},
		{ // IPv4 UDP, egress
			Src: netip.MustParseAddr("192.0.2.53"), Dst: netip.MustParseAddr("10.1.2.3"),
			SrcPort: 53, DstPort: 40000, Proto: 17, Ifindex: 3, Direction: Egress,
			First: testT0.Add(-2 * time.Second), Last: testT0.Add(-2*time.Second + 1*ms),
			Packets: 1, Bytes: 131, EndReason: IdleTimeout,
		},
		{ // ICMP echo request: type 8 code 0
			Src: netip.MustParseAddr("10.1.2.3"), Dst: netip.MustParseAddr("198.51.100.1"),
			DstPort: 8 << 8, Proto: 1, Ifindex: 7, Direction: Egress,
			First: testT0.Add(-10 * time.Second), Last: testT0.Add(-5 * time.Second),
			Packets: 5, Bytes: 420, EndReason: ActiveTimeout,
		},
		{ // IPv6 TCP, ingress, > 2^32 packets
			Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8:ffff::abcd"),
			SrcPort: 8080, DstPort: 60001, Proto: 6, TOS: 0xb8, TCPFlags: 0x12,
			Ifindex: 9, Direction: Ingress,
			First: testT0.Add(-3600 * time.Second), Last: testT0.Add(-999 * ms),
			Packets: 1<<32 + 5, Bytes: 1<<40 + 77, EndReason: ForcedEnd,
		},
		{ // ICMPv6 destination unreachable: type 1 code 4
			Src: netip.MustParseAddr("fe80::1"), Dst: netip.MustParseAddr("2001:db8::2"),
			DstPort: 1<<8 | 4, Proto: 58, Ifindex: 9, Direction: Egress,
			First: testT0.Add(-1 * time.Second), Last: testT0.Add(-1 * time.Second),
			Packets: 1, Bytes: 1280, EndReason: LackOfRes,
		},
	}
}

func mustDecodeAll(t *testing.T, msgs [][]byte) ([]*decodedMsg, []Flow) {
	t.Helper()
	d := newTestDecoder()
	var ms []*decodedMsg
	var flows []Flow
	for i, b := range msgs {
		m, err := d.decode(b)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		ms = append(ms, m)
		for _, r := range m.records {
			f, err := r.flow()
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			flows = append(flows, f)
		}
	}
	return ms, flows
}

func flowKey(f Flow) string {
	return fmt.Sprintf("%v %v %d %d %d %d", f.Src, f.Dst, f.SrcPort, f.DstPort, f.Proto, f.Bytes)
}

// sameFlows compares as multisets: a message carries the IPv4 set before the
// IPv6 set, so the order within a message may differ from the input.
func sameFlows(t *testing.T, got, want []Flow) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	norm := func(fs []Flow) []Flow {
		fs = slices.Clone(fs)
		for i := range fs {
			// The wire carries milliseconds in UTC.
			if !fs[i].First.IsZero() {
				fs[i].First = time.UnixMilli(fs[i].First.UnixMilli())
			}
			if !fs[i].Last.IsZero() {
				fs[i].Last = time.UnixMilli(fs[i].Last.UnixMilli())
			}
		}
		slices.SortFunc(fs, func(a, b Flow) int { return bytes.Compare([]byte(flowKey(a)), []byte(flowKey(b))) })
		return fs
	}
	g, w := norm(got), norm(want)
	for i := range g {
		if g[i] != w[i] {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, g[i], w[i])
		}
	}
}

func TestIPFIXHeaderTemplatesAndRecordBytes(t *testing.T) {
	e := NewEncoder(0xdeadbeef)
	f := testFlows()[0]
	msgs, err := e.Encode(testT0, []Flow{f})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	b := msgs[0]
	be := binary.BigEndian

	// Message header.
	wantLen := 16 + 140 + 4 + 60
	if len(b) != wantLen {
		t.Fatalf("message is %d bytes, want %d", len(b), wantLen)
	}
	hdr := []byte{0, 10, byte(wantLen >> 8), byte(wantLen), 0, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef}
	be.PutUint32(hdr[4:], uint32(testT0.Unix()))
	if !bytes.Equal(b[:16], hdr) {
		t.Errorf("header % x, want % x", b[:16], hdr)
	}

	// Template set: id 2, both templates, 16 fields each.
	ts := b[16 : 16+140]
	if id, l := be.Uint16(ts[0:]), be.Uint16(ts[2:]); id != 2 || l != 140 {
		t.Fatalf("template set id %d length %d", id, l)
	}
	spec := func(tid uint16, ids ...uint16) []byte {
		out := be.AppendUint16(nil, tid)
		out = be.AppendUint16(out, uint16(len(ids)/2))
		for _, v := range ids {
			out = be.AppendUint16(out, v)
		}
		return out
	}
	want4 := spec(256, 1, 8, 2, 8, 152, 8, 153, 8, 8, 4, 12, 4, 10, 4, 14, 4,
		7, 2, 11, 2, 6, 2, 32, 2, 4, 1, 5, 1, 61, 1, 136, 1)
	want6 := spec(257, 1, 8, 2, 8, 152, 8, 153, 8, 27, 16, 28, 16, 10, 4, 14, 4,
		7, 2, 11, 2, 6, 2, 139, 2, 4, 1, 5, 1, 61, 1, 136, 1)
	if !bytes.Equal(ts[4:4+68], want4) {
		t.Errorf("IPv4 template\n got % x\nwant % x", ts[4:4+68], want4)
	}
	if !bytes.Equal(ts[4+68:], want6) {
		t.Errorf("IPv6 template\n got % x\nwant % x", ts[4+68:], want6)
	}

	// Data set and the record, field by field.
	ds := b[16+140:]
	if id, l := be.Uint16(ds[0:]), be.Uint16(ds[2:]); id != 256 || l != 64 {
		t.Fatalf("data set id %d length %d", id, l)
	}
	var rec []byte
	rec = be.AppendUint64(rec, 5_000_000_123)
	rec = be.AppendUint64(rec, 3_500_001)
	rec = be.AppendUint64(rec, uint64(testT0.UnixMilli()-90_000))
	rec = be.AppendUint64(rec, uint64(testT0.UnixMilli()-993))
	rec = append(rec, 10, 1, 2, 3, 192, 0, 2, 80)
	rec = append(rec, 0, 0, 0, 7, 0, 0, 0, 0)      // ingress 7, egress 0
	rec = append(rec, 0xc8, 0x22, 0x01, 0xbb)      // ports 51234, 443
	rec = append(rec, 0x00, 0x1b, 0x00, 0x00)      // tcpControlBits, icmpTypeCode 0
	rec = append(rec, 6, 0x28, 0, byte(EndOfFlow)) // proto, tos, direction, end reason
	if !bytes.Equal(ds[4:], rec) {
		t.Errorf("record\n got % x\nwant % x", ds[4:], rec)
	}
	if e.Sequence() != 1 {
		t.Errorf("sequence after one record: %d", e.Sequence())
	}
}

func TestIPFIXRoundTripMixedFamilies(t *testing.T) {
	e := NewEncoder(42)
	in := testFlows()
	msgs, err := e.Encode(testT0, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	ms, out := mustDecodeAll(t, msgs)
	m := ms[0]
	if m.domain != 42 || m.seq != 0 || m.exportTime != uint32(testT0.Unix()) {
		t.Errorf("header: %+v", m)
	}
	// Template set, then one set per family.
	var ids []uint16
	for _, s := range m.sets {
		ids = append(ids, s.id)
		if s.length%4 != 0 || s.padding != 0 {
			t.Errorf("set %d: length %d padding %d", s.id, s.length, s.padding)
		}
	}
	if !slices.Equal(ids, []uint16{2, 256, 257}) {
		t.Errorf("sets %v", ids)
	}
	if m.sets[1].length != 4+3*60 || m.sets[2].length != 4+2*84 {
		t.Errorf("data set lengths %d %d", m.sets[1].length, m.sets[2].length)
	}
	sameFlows(t, out, in)

	// ICMP type/code also in icmpTypeCodeIPv4/IPv6, 0 for other protocols.
	for _, r := range m.records {
		var id uint16 = ieICMPTypeCodeIPv4
		if r.template == TemplateIPv6 {
			id = ieICMPTypeCodeIPv6
		}
		want := uint64(0)
		if p := r.uint(ieProtocolIdentifier); p == 1 || p == 58 {
			want = r.uint(ieDestinationTransportPort)
		}
		if got := r.uint(id); got != want {
			t.Errorf("proto %d: icmpTypeCode %#x, want %#x", r.uint(ieProtocolIdentifier), got, want)
		}
	}
}

func TestIPFIXPadding(t *testing.T) {
	for n, want := range map[int]int{0: 0, 1: 3, 2: 2, 3: 1, 4: 0, 61: 3, 64: 0} {
		if got := ipfixPad(n); got != want {
			t.Errorf("ipfixPad(%d) = %d, want %d", n, got, want)
		}
	}
	// Padding is always shorter than the shortest record, as RFC 7011
	// section 3.3.1 requires.
	if ipfixRecordLenV4 <= 3 || ipfixRecordLenV6 <= 3 {
		t.Fatal("records shorter than the largest padding")
	}
	// A set of odd length gets padded to a multiple of 4.
	if got := ipfixSetLen(3, 5); got != 20 { // 4 + 15 = 19 -> 20
		t.Errorf("ipfixSetLen(3, 5) = %d", got)
	}
	if ipfixSetLen(0, 60) != 0 {
		t.Error("empty set is not sent")
	}
	// The real layouts need no padding: every set and every field of every
	// record is naturally aligned.
	if ipfixRecordLenV4 != 60 || ipfixRecordLenV6 != 84 || len(ipfixTemplateSet) != 140 {
		t.Errorf("record lengths %d %d, template set %d", ipfixRecordLenV4, ipfixRecordLenV6, len(ipfixTemplateSet))
	}
	for _, fs := range [][]ipfixField{ipfixFieldsV4, ipfixFieldsV6} {
		off := 0
		for _, f := range fs {
			if a := min(int(f.length), 8); off%a != 0 {
				t.Errorf("element %d at offset %d", f.id, off)
			}
			off += int(f.length)
		}
	}
	// Every set in every message has a length that is a multiple of 4 and
	// zero padding (checked by the decoder).
	e := NewEncoder(1)
	e.MTU = 700
	var flows []Flow
	for i := range 37 {
		flows = append(flows, testFlows()[i%5])
	}
	msgs, err := e.Encode(testT0, flows)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := mustDecodeAll(t, msgs)
	for _, m := range ms {
		for _, s := range m.sets {
			if s.length%4 != 0 || s.padding != 0 {
				t.Errorf("set %d: length %d padding %d", s.id, s.length, s.padding)
			}
		}
	}
}

func TestIPFIXSequenceNumbersAndMTUSplit(t *testing.T) {
	for _, mtu := range []int{0, 244, 300, 512, 1400, 1500, 9000, 65535} {
		t.Run(fmt.Sprint(mtu), func(t *testing.T) {
			e := NewEncoder(7)
			e.MTU = mtu
			limit := mtu
			if limit == 0 {
				limit = DefaultMTU
			}
			var all []Flow
			var msgs [][]byte
			// Several calls: sequence numbers continue across them.
			for call := range 4 {
				var flows []Flow
				for i := range 50 + 31*call {
					f := testFlows()[(i*7+call)%5]
					f.SrcPort = uint16(i)
					f.Bytes = uint64(call*1000 + i)
					flows = append(flows, f)
				}
				out, err := e.Encode(testT0.Add(time.Duration(call)*time.Second), flows)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, flows...)
				msgs = append(msgs, out...)
			}
			ms, got := mustDecodeAll(t, msgs)
			sameFlows(t, got, all)
			seq := uint32(0)
			for i, m := range ms {
				if len(msgs[i]) > limit {
					t.Errorf("message %d: %d bytes > MTU %d", i, len(msgs[i]), limit)
				}
				if m.seq != seq {
					t.Errorf("message %d: sequence %d, want %d", i, m.seq, seq)
				}
				seq += uint32(len(m.records))
				if len(m.records) == 0 {
					t.Errorf("message %d without records", i)
				}
				// Greedy packing: no message but the last of a call could
				// have taken one more record of the size of the largest.
				if i+1 < len(ms) && ms[i+1].exportTime == m.exportTime && len(msgs[i])+84+4 <= limit {
					t.Errorf("message %d: %d bytes, room left under MTU %d", i, len(msgs[i]), limit)
				}
			}
			if e.Sequence() != seq || int(seq) != len(all) {
				t.Errorf("final sequence %d, decoded %d, sent %d", e.Sequence(), seq, len(all))
			}
		})
	}
}

func TestIPFIXMTUExactFit(t *testing.T) {
	// IPv4 only: a message holds exactly floor((MTU-16-4[-140])/60) records.
	e := NewEncoder(1)
	e.MTU = 1400
	e.TemplateRefreshMessages = -1
	flows := make([]Flow, 100)
	for i := range flows {
		flows[i] = testFlows()[0]
	}
	msgs, err := e.Encode(testT0, flows)
	if err != nil {
		t.Fatal(err)
	}
	per := []int{(1400 - 16 - 140 - 4) / 60, (1400 - 16 - 4) / 60} // 20, 23
	want := []int{per[0], per[1], per[1], per[1], 100 - per[0] - 3*per[1]}
	ms, _ := mustDecodeAll(t, msgs)
	var got []int
	for _, m := range ms {
		got = append(got, len(m.records))
	}
	if !slices.Equal(got, want) {
		t.Errorf("records per message %v, want %v", got, want)
	}
	if len(msgs[1]) != 16+4+23*60 {
		t.Errorf("full message is %d bytes", len(msgs[1]))
	}
}

func TestIPFIXTemplateResend(t *testing.T) {
	hasTemplates := func(b []byte) bool { return binary.BigEndian.Uint16(b[16:]) == ipfixTemplateSetID }
	one := []Flow{testFlows()[0]}

	t.Run("every N messages", func(t *testing.T) {
		e := NewEncoder(1)
		e.TemplateRefreshMessages = 3
		e.TemplateRefreshInterval = -1
		var got []bool
		for i := range 10 {
			msgs, err := e.Encode(testT0.Add(time.Duration(i)*time.Hour), one)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, hasTemplates(msgs[0]))
		}
		want := []bool{true, false, false, true, false, false, true, false, false, true}
		if !slices.Equal(got, want) {
			t.Errorf("templates %v, want %v", got, want)
		}
	})

	t.Run("default 20 messages, also within one call", func(t *testing.T) {
		e := NewEncoder(1)
		e.MTU = 300 // IPv6 records: 1 with templates, 3 without
		flows := make([]Flow, 150)
		for i := range flows {
			flows[i] = testFlows()[3]
		}
		msgs, err := e.Encode(testT0, flows)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) < 45 {
			t.Fatalf("%d messages", len(msgs))
		}
		for i, b := range msgs {
			if hasTemplates(b) != (i%20 == 0) {
				t.Errorf("message %d: templates %v", i, hasTemplates(b))
			}
		}
		if len(msgs[0]) != 16+140+4+84 || len(msgs[1]) != 16+4+3*84 {
			t.Errorf("messages of %d and %d bytes", len(msgs[0]), len(msgs[1]))
		}
		// The decoder, starting at message 0, knows the templates throughout.
		mustDecodeAll(t, msgs)
		// A decoder starting later fails until templates come again, as
		// a collector that started late would.
		if _, err := decodeForTest(msgs[1]); err == nil {
			t.Error("decoded a data set without its template")
		}
	})

	t.Run("every T seconds", func(t *testing.T) {
		e := NewEncoder(1)
		e.TemplateRefreshMessages = -1
		e.TemplateRefreshInterval = 10 * time.Second
		var got []bool
		for _, s := range []int{0, 5, 9, 10, 11, 19, 20, 45, 46} {
			msgs, err := e.Encode(testT0.Add(time.Duration(s)*time.Second), one)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, hasTemplates(msgs[0]))
		}
		want := []bool{true, false, false, true, false, false, true, true, false}
		if !slices.Equal(got, want) {
			t.Errorf("templates %v, want %v", got, want)
		}
	})

	t.Run("default 60 s", func(t *testing.T) {
		e := NewEncoder(1)
		var got []bool
		for _, s := range []int{0, 59, 60, 61} {
			msgs, _ := e.Encode(testT0.Add(time.Duration(s)*time.Second), one)
			got = append(got, hasTemplates(msgs[0]))
		}
		if want := []bool{true, false, true, false}; !slices.Equal(got, want) {
			t.Errorf("templates %v, want %v", got, want)
		}
	})

	t.Run("ResendTemplates", func(t *testing.T) {
		e := NewEncoder(1)
		m1, _ := e.Encode(testT0, one)
		m2, _ := e.Encode(testT0, one)
		e.ResendTemplates()
		m3, _ := e.Encode(testT0, one)
		if !hasTemplates(m1[0]) || hasTemplates(m2[0]) || !hasTemplates(m3[0]) {
			t.Error("templates not re-sent on request")
		}
	})
}

func TestIPFIXEdgeCases(t *testing.T) {
	t.Run("no flows", func(t *testing.T) {
		e := NewEncoder(1)
		msgs, err := e.Encode(testT0, nil)
		if err != nil || msgs != nil {
			t.Errorf("%v %v", msgs, err)
		}
		// Templates are still due for the first real message.
		msgs, _ = e.Encode(testT0, testFlows()[:1])
		if binary.BigEndian.Uint16(msgs[0][16:]) != 2 {
			t.Error("first message without templates")
		}
	})

	t.Run("invalid records skipped", func(t *testing.T) {
		e := NewEncoder(1)
		fs := testFlows()
		bad1 := fs[0]
		bad1.Dst = netip.MustParseAddr("2001:db8::1")
		bad2 := Flow{} // no addresses
		in := []Flow{fs[0], bad1, fs[3], bad2, fs[1]}
		msgs, err := e.Encode(testT0, in)
		if !errors.Is(err, ErrInvalidFlow) {
			t.Fatalf("err %v", err)
		}
		_, out := mustDecodeAll(t, msgs)
		sameFlows(t, out, []Flow{fs[0], fs[3], fs[1]})
		if e.Sequence() != 3 {
			t.Errorf("sequence %d", e.Sequence())
		}
	})

	t.Run("4-in-6 mapped addresses are sent as IPv4", func(t *testing.T) {
		f := testFlows()[0]
		f.Src = netip.AddrFrom16(f.Src.As16())
		msgs, err := NewEncoder(1).Encode(testT0, []Flow{f})
		if err != nil {
			t.Fatal(err)
		}
		_, out := mustDecodeAll(t, msgs)
		sameFlows(t, out, testFlows()[:1])
	})

	t.Run("unknown times", func(t *testing.T) {
		f := testFlows()[1]
		f.First, f.Last = time.Time{}, time.Time{}
		msgs, _ := NewEncoder(1).Encode(testT0, []Flow{f})
		_, out := mustDecodeAll(t, msgs)
		sameFlows(t, out, []Flow{f})
	})

	t.Run("MTU out of range", func(t *testing.T) {
		for _, mtu := range []int{-1, 100, minMTU() - 1, 65536} {
			e := NewEncoder(1)
			e.MTU = mtu
			if msgs, err := e.Encode(testT0, testFlows()); err == nil || msgs != nil {
				t.Errorf("MTU %d: %d messages, err %v", mtu, len(msgs), err)
			}
			if e.Sequence() != 0 {
				t.Errorf("MTU %d: state changed", mtu)
			}
		}
		if minMTU() != 244 {
			t.Errorf("minMTU %d", minMTU())
		}
	})

	t.Run("sequence wraps", func(t *testing.T) {
		e := NewEncoder(1)
		e.seq = 1<<32 - 2
		msgs, _ := e.Encode(testT0, testFlows())
		ms, _ := mustDecodeAll(t, msgs)
		if ms[0].seq != 1<<32-2 || e.Sequence() != 3 {
			t.Errorf("seq %d then %d", ms[0].seq, e.Sequence())
		}
	})
}
