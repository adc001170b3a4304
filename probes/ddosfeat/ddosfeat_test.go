package ddosfeat

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/rampart-shield/rampart/internal/probe"
)

var (
	v4a = netip.MustParseAddr("192.0.2.10")
	v4b = netip.MustParseAddr("198.51.100.20")
	v4c = netip.MustParseAddr("203.0.113.7")
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8::2")
	lo4 = netip.MustParseAddr("127.0.0.1")
)

func monotonicNow(t testing.TB) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

func runProg(t testing.TB, objs *ddosFeatObjects, dir Direction, frame []byte) {
	t.Helper()
	prog := objs.DdosIngress
	if dir == Egress {
		prog = objs.DdosEgress
	}
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("run %s: %v", dir, err)
	}
	if ret != tcActUnspec {
		t.Fatalf("%s returned %d, want TC_ACT_UNSPEC (-1)", dir, int32(ret))
	}
}

func newReader(t testing.TB, objs *ddosFeatObjects) *Reader {
	t.Helper()
	rd, err := NewReader(objs.Features)
	if err != nil {
		t.Fatalf("ring buffer reader: %v", err)
	}
	t.Cleanup(func() { rd.Close() })
	return rd
}

// readN reads exactly n records and then checks that no more are queued.
func readN(t testing.TB, rd *Reader, n int) []PacketFeatures {
	t.Helper()
	out := make([]PacketFeatures, 0, n)
	rd.SetDeadline(time.Now().Add(5 * time.Second))
	for len(out) < n {
		r, err := rd.Read()
		if err != nil {
			t.Fatalf("reading record %d of %d: %v", len(out)+1, n, err)
		}
		out = append(out, r)
	}
	rd.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if r, err := rd.Read(); err == nil {
		t.Fatalf("an extra record after %d: %+v", n, r)
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("reading: %v", err)
	}
	return out
}

func readStats(t testing.TB, objs *ddosFeatObjects) Stats {
	t.Helper()
	s, err := ReadStats(objs.DdosStats)
	if err != nil {
		t.Fatal(err)
	}
	if sum := s.Submitted + s.Capped + s.RingBufFull + s.Malformed + s.NonIP + s.NoSession; sum != s.Packets {
		t.Errorf("stats do not add up: %+v (outcomes %d)", s, sum)
	}
	return s
}

func kernelKey(k SessionKey) ddosFeatSessionKey {
	var kk ddosFeatSessionKey
	lo, hi := k.LoAddr, k.HiAddr
	if lo.Is4() {
		lo = netip.AddrFrom16(lo.As16())
	}
	if hi.Is4() {
		hi = netip.AddrFrom16(hi.As16())
	}
	kk.LoAddr, kk.HiAddr = lo.As16(), hi.As16()
	// rp_be16_t: network order in memory; the Go field is little-endian.
	kk.LoPort = k.LoPort>>8 | k.LoPort<<8
	kk.HiPort = k.HiPort>>8 | k.HiPort<<8
	kk.Proto = k.Proto
	return kk
}

func sessionState(t testing.TB, objs *ddosFeatObjects, k SessionKey) ddosFeatSessionState {
	t.Helper()
	var st ddosFeatSessionState
	kk := kernelKey(k)
	if err := objs.Sessions.Lookup(&kk, &st); err != nil {
		t.Fatalf("session %s: %v", k, err)
	}
	return st
}

// TestSessionCapBothDirections sends 15 packets of one TCP connection,
// alternating directions: both directions must share one session, and only
// the first n_packets (10) may be submitted, with every field right.
func TestSessionCapBothDirections(t *testing.T) {
	objs := load(t, nil, nil)
	rd := newReader(t, objs)

	key := SessionKey{LoAddr: v4a, HiAddr: v4b, LoPort: 40000, HiPort: 80, Proto: protoTCP}
	var want []PacketFeatures
	before := monotonicNow(t)
	for i := range 15 {
		var (
			frame []byte
			w     PacketFeatures
		)
		w.Session, w.Proto = key, protoTCP
		s := seg{seq: uint32(1000 * i), ack: uint32(7000 + i), window: uint16(1000 + i), payload: 10 * i}
		if i%2 == 0 {
			// Client to server: ingress, from the lo side.
			s.sport, s.dport, s.flags = 40000, 80, ack|psh
			if i == 0 {
				s.flags, s.ack = syn, 0
			}
			frame = eth(etherIPv4, v4{proto: protoTCP, src: v4a, dst: v4b, df: true}.packet(s.bytes()))
			w.Dir, w.FromHi = Ingress, false
		} else {
			// Server to client: egress, from the hi side, with 8 bytes of
			// TCP options.
			s.sport, s.dport, s.flags, s.optWords = 80, 40000, ack, 2
			if i == 1 {
				s.flags = syn | ack
			}
			frame = eth(etherIPv4, v4{proto: protoTCP, src: v4b, dst: v4a}.packet(s.bytes()))
			w.Dir, w.FromHi = Egress, true
		}
		w.IPLen = uint16(20 + 20 + 4*s.optWords + s.payload)
		if i%2 == 0 {
			w.IPFlagsFrag = FlagDF
		}
		w.TCPFlags, w.TCPAck, w.TCPWindow, w.TCPPayloadLen = s.flags, s.ack, s.window, uint16(s.payload)
		runProg(t, objs, w.Dir, frame)
		want = append(want, w)
	}
	after := monotonicNow(t)

	got := readN(t, rd, 10)
	var prev uint64
	for i, g := range got {
		if g.TimestampNs < before || g.TimestampNs > after || g.TimestampNs < prev {
			t.Errorf("record %d: timestamp %d outside [%d, %d] or before the previous %d", i, g.TimestampNs, before, after, prev)
		}
		prev = g.TimestampNs
		g.TimestampNs = 0
		if g != want[i] {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, g, want[i])
		}
	}
	if src := got[1].Source(); src != netip.AddrPortFrom(v4b, 80) {
		t.Errorf("record 1: source %s, want %s", src, netip.AddrPortFrom(v4b, 80))
	}
	if dst := got[1].Destination(); dst != netip.AddrPortFrom(v4a, 40000) {
		t.Errorf("record 1: destination %s", dst)
	}

	st := sessionState(t, objs, key)
	if st.PacketsSeen != 15 || st.PacketsSent != 10 || st.FirstNs < before || st.FirstNs > after {
		t.Errorf("session state %+v: want 15 seen, 10 sent, first_ns in [%d, %d]", st, before, after)
	}
	if n := countSessions(t, objs); n != 1 {
		t.Errorf("%d sessions, want 1", n)
	}
	if s := readStats(t, objs); s != (Stats{Packets: 15, Submitted: 10, Capped: 5}) {
		t.Errorf("stats %+v", s)
	}
}

func countSessions(t testing.TB, objs *ddosFeatObjects) int {
	var (
		k ddosFeatSessionKey
		v ddosFeatSessionState
		n int
	)
	it := objs.Sessions.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWindowRestart: after window_ns the session's count starts again. The
// parameters are set through the spec's variables, as the agent does.
func TestWindowRestart(t *testing.T) {
	const window = 300 * time.Millisecond
	objs := load(t, map[string]any{"window_ns": uint64(window), "n_packets": uint32(4)}, nil)
	rd := newReader(t, objs)

	key := SessionKey{LoAddr: v4a, HiAddr: v4b, LoPort: 5000, HiPort: 5001, Proto: protoUDP}
	send := func(n int) {
		for i := range n {
			runProg(t, objs, Ingress, eth(etherIPv4, ipv4(protoUDP, v4b, v4a, udp(5001, 5000, i))))
		}
	}
	start := time.Now()
	send(6)
	if time.Since(start) >= window {
		t.Skip("skipping: sending 6 packets took longer than the window")
	}
	first := readN(t, rd, 4)
	st := sessionState(t, objs, key)
	if st.PacketsSeen != 6 || st.PacketsSent != 4 {
		t.Errorf("first window: state %+v, want 6 seen, 4 sent", st)
	}

	time.Sleep(window + 50*time.Millisecond)
	send(5)
	second := readN(t, rd, 4)
	if d := second[0].TimestampNs - first[0].TimestampNs; d < uint64(window) {
		t.Errorf("second window starts %v after the first, want >= %v", time.Duration(d), window)
	}
	st2 := sessionState(t, objs, key)
	if st2.PacketsSeen != 5 || st2.PacketsSent != 4 || st2.FirstNs != second[0].TimestampNs {
		t.Errorf("second window: state %+v, want 5 seen, 4 sent, first_ns %d", st2, second[0].TimestampNs)
	}
	for _, r := range append(first, second...) {
		if r.Session != key || !r.FromHi || r.UDPLen < 8 {
			t.Errorf("record %+v", r)
		}
	}
	if s := readStats(t, objs); s != (Stats{Packets: 11, Submitted: 8, Capped: 3}) {
		t.Errorf("stats %+v", s)
	}
}

// TestNoWindow: window_ns 0 never restarts a session's count.
func TestNoWindow(t *testing.T) {
	objs := load(t, map[string]any{"window_ns": uint64(0), "n_packets": uint32(2)}, nil)
	rd := newReader(t, objs)
	for range 3 {
		runProg(t, objs, Ingress, eth(etherIPv4, ipv4(protoICMP, v4a, v4b, icmp(8, 0))))
	}
	time.Sleep(10 * time.Millisecond)
	runProg(t, objs, Ingress, eth(etherIPv4, ipv4(protoICMP, v4a, v4b, icmp(8, 0))))
	readN(t, rd, 2)
	if s := readStats(t, objs); s != (Stats{Packets: 4, Submitted: 2, Capped: 2}) {
		t.Errorf("stats %+v", s)
	}
}

// TestFeatures checks the fields of one record per kind of packet, each in
// a session of its own.
func TestFeatures(t *testing.T) {
	objs := load(t, nil, nil)
	rd := newReader(t, objs)

	big := udp(53, 33333, 1400) // UDP length 1408 > 255: all 16 bits kept
	cases := []struct {
		name  string
		dir   Direction
		frame []byte
		want  PacketFeatures
	}{
		{"udp length above 255", Ingress, eth(etherIPv4, ipv4(protoUDP, v4c, v4a, big)),
			PacketFeatures{Session: SessionKey{v4a, v4c, 33333, 53, protoUDP}, IPLen: 1428, Proto: protoUDP, UDPLen: 1408, FromHi: true}},
		{"udp length field as sent", Egress, eth(etherIPv4, ipv4(protoUDP, v4a, v4c, setUDPLen(udp(1, 2, 100), 60000))),
			PacketFeatures{Session: SessionKey{v4a, v4c, 1, 2, protoUDP}, IPLen: 128, Proto: protoUDP, UDPLen: 60000}},
		{"icmp echo request", Ingress, eth(etherIPv4, ipv4(protoICMP, v4b, v4a, icmp(8, 56))),
			PacketFeatures{Session: SessionKey{v4a, v4b, 0, 0, protoICMP}, IPLen: 84, Proto: protoICMP, ICMPType: 8, FromHi: true}},
		{"icmp unreachable", Egress, eth(etherIPv4, ipv4(protoICMP, v4a, v4c, icmp(3, 28))),
			PacketFeatures{Session: SessionKey{v4a, v4c, 0, 0, protoICMP}, IPLen: 56, Proto: protoICMP, ICMPType: 3}},
		{"ipv6 tcp syn", Ingress, eth(etherIPv6, ipv6(protoTCP, v6b, v6a, seg{sport: 443, dport: 50000, flags: syn | ack, ack: 99, window: 64800, optWords: 5}.bytes())),
			PacketFeatures{Session: SessionKey{v6a, v6b, 50000, 443, protoTCP}, IPLen: 80, Proto: protoTCP, TCPFlags: syn | ack, TCPAck: 99, TCPWindow: 64800, FromHi: true}},
		{"ipv6 hop-by-hop udp", Egress, eth(etherIPv6, ipv6(protoHop, v6a, v6b, hopByHop(protoUDP, udp(546, 547, 300)))),
			PacketFeatures{Session: SessionKey{v6a, v6b, 546, 547, protoUDP}, IPLen: 356, Proto: protoUDP, UDPLen: 308}},
		{"ipv6 ah udp", Ingress, eth(etherIPv6, ipv6(protoAH, v6a, v6b, ah(protoUDP, udp(4500, 4500, 10)))),
			PacketFeatures{Session: SessionKey{v6a, v6b, 4500, 4500, protoUDP}, IPLen: 40 + 24 + 18, Proto: protoUDP, UDPLen: 18}},
		{"ipv6 four extension headers", Egress, eth(etherIPv6, ipv6(protoHop, v6a, v6b, hopByHop(protoDest, hopByHop(protoRouting, hopByHop(protoFrag, frag6(protoTCP, 0, false, seg{sport: 1, dport: 2, flags: syn}.bytes())))))),
			PacketFeatures{Session: SessionKey{v6a, v6b, 1, 2, protoTCP}, IPLen: 40 + 32 + 20, Proto: protoTCP, TCPFlags: syn}},
		{"ipv6 five extension headers: not followed", Egress, eth(etherIPv6, ipv6(protoHop, v6a, v6b, hopByHop(protoDest, hopByHop(protoDest, hopByHop(protoDest, hopByHop(protoDest, hopByHop(protoUDP, udp(1, 2, 0)))))))),
			PacketFeatures{Session: SessionKey{v6a, v6b, 0, 0, protoDest}, IPLen: 40 + 40 + 8, Proto: protoDest}},
		{"icmpv6 echo", Ingress, eth(etherIPv6, ipv6(protoICMPv6, v6b, v6a, icmp(128, 16))),
			PacketFeatures{Session: SessionKey{v6a, v6b, 0, 0, protoICMPv6}, IPLen: 64, Proto: protoICMPv6, ICMPType: 128, FromHi: true}},
		{"ipv6 first fragment", Ingress, eth(etherIPv6, ipv6(protoFrag, v6a, v6b, frag6(protoUDP, 0, true, udp(7000, 7001, 1200)))),
			PacketFeatures{Session: SessionKey{v6a, v6b, 7000, 7001, protoUDP}, IPLen: 1256, IPFlagsFrag: FlagMF, Proto: protoUDP, UDPLen: 1208}},
		{"ipv6 later fragment", Ingress, eth(etherIPv6, ipv6(protoFrag, v6a, v6b, frag6(protoUDP, 1208, false, make([]byte, 100)))),
			PacketFeatures{Session: SessionKey{v6a, v6b, 0, 0, protoUDP}, IPLen: 148, IPFlagsFrag: 1208 / 8, Proto: protoUDP}},
		{"ipv4 later fragment", Ingress, eth(etherIPv4, v4{proto: protoUDP, src: v4c, dst: v4b, mf: true, fragOff: 1480}.packet(udp(9, 9, 100))),
			PacketFeatures{Session: SessionKey{v4b, v4c, 0, 0, protoUDP}, IPLen: 128, IPFlagsFrag: FlagMF | 185, Proto: protoUDP, FromHi: true}},
		{"ipv4 options", Ingress, eth(etherIPv4, v4{proto: protoTCP, src: v4a, dst: v4c, options: []byte{1, 1, 1, 0}}.packet(seg{sport: 1234, dport: 22, flags: ack, window: 501, payload: 36}.bytes())),
			PacketFeatures{Session: SessionKey{v4a, v4c, 1234, 22, protoTCP}, IPLen: 80, Proto: protoTCP, TCPFlags: ack, TCPWindow: 501, TCPPayloadLen: 36}},
		{"vlan udp", Ingress, vlanTags(etherIPv4, 1, ipv4(protoUDP, v4b, v4c, udp(123, 123, 48))),
			PacketFeatures{Session: SessionKey{v4b, v4c, 123, 123, protoUDP}, IPLen: 76, Proto: protoUDP, UDPLen: 56}},
		{"qinq tcp", Ingress, vlanTags(etherIPv4, 2, ipv4(protoTCP, v4c, v4a, seg{sport: 80, dport: 8080, flags: rst}.bytes())),
			PacketFeatures{Session: SessionKey{v4a, v4c, 8080, 80, protoTCP}, IPLen: 40, Proto: protoTCP, TCPFlags: rst, FromHi: true}},
		{"gre has no ports", Ingress, eth(etherIPv4, ipv4(protoGRE, v4a, v4b, make([]byte, 24))),
			PacketFeatures{Session: SessionKey{v4a, v4b, 0, 0, protoGRE}, IPLen: 44, Proto: protoGRE}},
		{"equal addresses: lower port first", Ingress, eth(etherIPv4, ipv4(protoTCP, lo4, lo4, seg{sport: 5000, dport: 4000, flags: fin | ack}.bytes())),
			PacketFeatures{Session: SessionKey{lo4, lo4, 4000, 5000, protoTCP}, IPLen: 40, Proto: protoTCP, TCPFlags: fin | ack, FromHi: true}},
		{"ethernet padding is not payload", Ingress, append(eth(etherIPv4, ipv4(protoTCP, v4b, v4c, seg{sport: 1, dport: 2, flags: ack}.bytes())), 0, 0, 0, 0, 0, 0),
			PacketFeatures{Session: SessionKey{v4b, v4c, 1, 2, protoTCP}, IPLen: 40, Proto: protoTCP, TCPFlags: ack}},
	}
	for _, c := range cases {
		runProg(t, objs, c.dir, c.frame)
	}
	got := readN(t, rd, len(cases))
	for i, c := range cases {
		g := got[i]
		g.TimestampNs = 0
		c.want.Dir = c.dir
		if g != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, g, c.want)
		}
	}
	if s := readStats(t, objs); s.Submitted != uint64(len(cases)) || s.Packets != uint64(len(cases)) {
		t.Errorf("stats %+v", s)
	}
}

func setUDPLen(b []byte, n uint16) []byte {
	b[4], b[5] = byte(n>>8), byte(n)
	return b
}

// TestMalformed: truncated and inconsistent packets are only counted.
func TestMalformed(t *testing.T) {
	objs := load(t, nil, nil)
	rd := newReader(t, objs)

	withByte := func(b []byte, off int, v byte) []byte { b[off] = v; return b }
	tcpOK := seg{sport: 1, dport: 2, flags: syn}.bytes()
	// The kernel's BPF_PROG_TEST_RUN for TC refuses frames whose ethertype
	// says IPv4/IPv6 but that are shorter than the fixed IP header: such
	// truncated headers sit behind a VLAN tag, which it does not look into.
	malformed := []struct {
		name  string
		frame []byte
	}{
		{"truncated ipv4 header", vlanTags(etherIPv4, 1, ipv4(protoUDP, v4a, v4b, nil)[:12])},
		{"truncated ipv6 header", vlanTags(etherIPv6, 1, ipv6(protoUDP, v6a, v6b, nil)[:39])},
		{"truncated vlan tag", eth(etherVLAN, []byte{0, 100})},
		{"three vlan tags", vlanTags(etherIPv4, 3, ipv4(protoUDP, v4a, v4b, udp(1, 2, 0)))},
		{"ipv4 ihl 4", eth(etherIPv4, withByte(ipv4(protoTCP, v4a, v4b, tcpOK), 0, 0x44))},
		{"ipv4 ihl past the end", eth(etherIPv4, withByte(ipv4(protoTCP, v4a, v4b, tcpOK), 0, 0x4f))},
		{"ipv6 header in ipv4 frame", eth(etherIPv4, ipv6(protoUDP, v6a, v6b, udp(1, 2, 20)))},
		{"ipv4 header in ipv6 frame", eth(etherIPv6, ipv4(protoUDP, v4a, v4b, udp(1, 2, 40)))},
		{"ipv4 total length past the frame", eth(etherIPv4, ipv4(protoUDP, v4a, v4b, udp(1, 2, 10))[:30])},
		{"ipv4 total length below the header", eth(etherIPv4, withByte(withByte(ipv4(protoUDP, v4a, v4b, udp(1, 2, 10)), 2, 0), 3, 16))},
		{"ipv6 payload length past the frame", eth(etherIPv6, ipv6(protoUDP, v6a, v6b, udp(1, 2, 10))[:50])},
		{"tcp header truncated", eth(etherIPv4, ipv4(protoTCP, v4a, v4b, tcpOK[:12]))},
		{"tcp data offset 4", eth(etherIPv4, ipv4(protoTCP, v4a, v4b, withByte(seg{sport: 1, dport: 2}.bytes(), 12, 0x40)))},
		{"tcp data offset past the payload", eth(etherIPv4, ipv4(protoTCP, v4a, v4b, withByte(seg{sport: 1, dport: 2}.bytes(), 12, 0xf0)))},
		{"udp header truncated", eth(etherIPv6, ipv6(protoUDP, v6a, v6b, udp(1, 2, 0)[:6]))},
		{"icmp without a header", eth(etherIPv4, ipv4(protoICMP, v4a, v4b, nil))},
		{"ipv6 extension header truncated", eth(etherIPv6, ipv6(protoHop, v6a, v6b, []byte{protoUDP, 0}))},
		{"ipv6 extension header past the end", eth(etherIPv6, ipv6(protoHop, v6a, v6b, []byte{protoUDP, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 0, 8, 0, 0}))},
	}
	for _, m := range malformed {
		runProg(t, objs, Ingress, m.frame)
	}
	runProg(t, objs, Egress, eth(etherARP, make([]byte, 28)))
	// A valid packet after all that still gets through.
	runProg(t, objs, Egress, eth(etherIPv4, ipv4(protoUDP, v4a, v4b, udp(1, 2, 0))))

	got := readN(t, rd, 1)
	if got[0].Session != (SessionKey{v4a, v4b, 1, 2, protoUDP}) {
		t.Errorf("record %+v", got[0])
	}
	want := Stats{Packets: uint64(len(malformed)) + 2, Submitted: 1, Malformed: uint64(len(malformed)), NonIP: 1}
	if s := readStats(t, objs); s != want {
		t.Errorf("stats %+v, want %+v", s, want)
	}
	if n := countSessions(t, objs); n != 1 {
		t.Errorf("%d sessions, want 1 (malformed packets must not create sessions)", n)
	}
}

// TestRingBufferFull: with a ring buffer of one page, records that do not
// fit are counted as DS_RB_FULL and do not use up the session's quota.
func TestRingBufferFull(t *testing.T) {
	objs := load(t, map[string]any{"n_packets": uint32(1000)}, func(s *ebpf.CollectionSpec) {
		s.Maps["features"].MaxEntries = uint32(os.Getpagesize())
	})
	perPage := os.Getpagesize() / (RecordSize + 8)
	for i := range perPage + 5 {
		runProg(t, objs, Ingress, eth(etherIPv4, ipv4(protoUDP, v4a, v4b, udp(1, 2, i))))
	}
	s := readStats(t, objs)
	if s.Submitted != uint64(perPage) || s.RingBufFull != 5 {
		t.Errorf("stats %+v, want %d submitted, 5 ring buffer full", s, perPage)
	}
	st := sessionState(t, objs, SessionKey{v4a, v4b, 1, 2, protoUDP})
	if st.PacketsSent != uint32(perPage) {
		t.Errorf("packets_sent %d, want %d", st.PacketsSent, perPage)
	}
}

// TestDecode checks the Go decoder against the object's BTF: offsets and
// sizes of every field of struct pkt_features.
func TestDecode(t *testing.T) {
	if unsafe.Sizeof(ddosFeatPktFeatures{}) != RecordSize || unsafe.Sizeof(ddosFeatSessionKey{}) != keySize {
		t.Fatalf("record %d bytes, key %d bytes", unsafe.Sizeof(ddosFeatPktFeatures{}), unsafe.Sizeof(ddosFeatSessionKey{}))
	}
	spec, err := loadDdosFeat()
	if err != nil {
		t.Fatal(err)
	}
	var st *btf.Struct
	if err := spec.Types.TypeByName("pkt_features", &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != RecordSize {
		t.Fatalf("BTF size %d", st.Size)
	}
	offsets := map[string]uint32{"key": 0, "ts_ns": 40, "ip_len": 48, "ip_flags_frag": 50, "proto": 52, "tcp_flags": 53,
		"tcp_payload_len": 54, "tcp_ack": 56, "tcp_window": 60, "udp_len": 62, "icmp_type": 64, "dir": 65, "from_hi": 66, "pad": 67}
	for _, m := range st.Members {
		off, ok := offsets[m.Name]
		if !ok {
			t.Errorf("member %s is not decoded", m.Name)
			continue
		}
		if m.Offset.Bytes() != off {
			t.Errorf("member %s at %d, decoder reads %d", m.Name, m.Offset.Bytes(), off)
		}
	}

	// Round trip through the generated Go type.
	rec := ddosFeatPktFeatures{TsNs: 1 << 40, IpLen: 1500, IpFlagsFrag: 0x4000, Proto: 6, TcpFlags: 0x12, TcpPayloadLen: 1448,
		TcpAck: 0xdeadbeef, TcpWindow: 65535, UdpLen: 0xfffe, IcmpType: 11, Dir: 1, FromHi: 1}
	rec.Key = kernelKey(SessionKey{v4a, v6b, 443, 65000, 6})
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&rec)), RecordSize)
	got, err := DecodePacketFeatures(bytes.Clone(raw))
	if err != nil {
		t.Fatal(err)
	}
	want := PacketFeatures{Session: SessionKey{v4a, v6b, 443, 65000, 6}, TimestampNs: 1 << 40, IPLen: 1500, IPFlagsFrag: FlagDF, Proto: 6,
		TCPFlags: 0x12, TCPPayloadLen: 1448, TCPAck: 0xdeadbeef, TCPWindow: 65535, UDPLen: 0xfffe, ICMPType: 11, Dir: Egress, FromHi: true}
	if got != want {
		t.Errorf("decoded\n got %+v\nwant %+v", got, want)
	}
	if _, err := DecodePacketFeatures(raw[:RecordSize-1]); err == nil {
		t.Error("a short record decoded")
	}
	if got.FragOffset() != 0 || (PacketFeatures{IPFlagsFrag: FlagMF | 185}).FragOffset() != 1480 {
		t.Error("FragOffset")
	}
	if fmt.Sprint(Ingress, Egress, Direction(7)) != "ingress egress direction(7)" {
		t.Error("Direction.String")
	}
}

// TestManifest checks the manifest against the object: programs, the
// event record type, the metric's map and the parameters with their
// defaults.
func TestManifest(t *testing.T) {
	m, err := probe.ParseManifest(Manifest())
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(Object()))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "ddosfeat" || len(m.Programs) != 2 {
		t.Errorf("manifest %+v", m)
	}
	for _, p := range m.Programs {
		ps, ok := spec.Programs[p.Name]
		if !ok || ps.Type != ebpf.SchedCLS {
			t.Errorf("program %s: %v", p.Name, ps)
		}
	}
	for _, mt := range m.Metrics {
		if ms, ok := spec.Maps[mt.Map]; !ok || ms.Type != ebpf.PerCPUArray {
			t.Errorf("metric %s: map %s", mt.Name, mt.Map)
		}
	}
	if len(m.Events) != 1 || m.Events[0].Map != "features" || spec.Maps["features"].Type != ebpf.RingBuf {
		t.Errorf("events %+v", m.Events)
	}
	if _, err := spec.Types.AnyTypeByName("pkt_features"); err != nil {
		t.Error(err)
	}
	defaults := map[string]any{"n_packets": new(uint32), "window_ns": new(uint64)}
	if len(m.Parameters) != len(defaults) {
		t.Errorf("parameters %v", m.Parameters)
	}
	for name, def := range defaults {
		v, ok := spec.Variables[name]
		if !ok || !v.Constant() {
			t.Errorf("parameter %s is not a constant of the object", name)
			continue
		}
		if err := v.Get(def); err != nil {
			t.Fatal(err)
		}
		var got string
		switch d := def.(type) {
		case *uint32:
			got = fmt.Sprint(*d)
		case *uint64:
			got = fmt.Sprint(*d)
		}
		if want := fmt.Sprint(m.Parameters[name]); got != want {
			t.Errorf("parameter %s: object default %s, manifest %s", name, got, want)
		}
	}
}

// BenchmarkDdosfeatPerPacket measures the program per packet with
// BPF_PROG_TEST_RUN: a packet of a session over its cap (the flood case),
// and packets that are submitted (the ring buffer is drained between
// runs, outside the timing).
func BenchmarkDdosfeatPerPacket(b *testing.B) {
	const repeat = 10000
	tcp4 := eth(etherIPv4, ipv4(protoTCP, v4a, v4b, seg{sport: 40000, dport: 80, flags: ack, payload: 64}.bytes()))
	udp6 := eth(etherIPv6, ipv6(protoUDP, v6a, v6b, udp(5000, 53, 64)))
	cases := []struct {
		name   string
		frame  []byte
		submit bool
	}{
		{"capped-ipv4-tcp", tcp4, false},
		{"capped-ipv6-udp", udp6, false},
		{"submitted-ipv4-tcp", tcp4, true},
		{"submitted-ipv6-udp", udp6, true},
		{"non-ip", eth(etherARP, make([]byte, 28)), false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			params := map[string]any{}
			if c.submit {
				params["n_packets"] = uint32(1 << 31)
			}
			objs := load(b, params, nil)
			rd := newReader(b, objs)
			var total time.Duration
			for i := 0; i < b.N; i++ {
				ret, d, err := objs.DdosIngress.Benchmark(c.frame, repeat, nil)
				if err != nil || ret != tcActUnspec {
					b.Fatalf("benchmark: %d, %v", ret, err)
				}
				total += d
				if c.submit {
					b.StopTimer()
					rd.SetDeadline(time.Now().Add(time.Second))
					for range repeat {
						if _, err := rd.Read(); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
				}
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/packet")
			if s := readStats(b, objs); s.RingBufFull != 0 || (c.submit && s.Submitted != s.Packets) {
				b.Errorf("stats %+v", s)
			}
		})
	}
}
