package lucid

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/probes/ddosfeat"
)

// pcapWriter writes a classic microsecond pcap of Ethernet frames.
type pcapWriter struct {
	buf     bytes.Buffer
	snaplen int
}

func newPcap(snaplen int) *pcapWriter {
	w := &pcapWriter{snaplen: snaplen}
	var h [24]byte
	le := binary.LittleEndian
	le.PutUint32(h[0:], 0xa1b2c3d4)
	le.PutUint16(h[4:], 2)
	le.PutUint16(h[6:], 4)
	le.PutUint32(h[16:], uint32(snaplen))
	le.PutUint32(h[20:], 1)
	w.buf.Write(h[:])
	return w
}

func (w *pcapWriter) add(ts time.Time, frame []byte) {
	incl := min(len(frame), w.snaplen)
	var r [16]byte
	le := binary.LittleEndian
	le.PutUint32(r[0:], uint32(ts.Unix()))
	le.PutUint32(r[4:], uint32(ts.Nanosecond()/1000))
	le.PutUint32(r[8:], uint32(incl))
	le.PutUint32(r[12:], uint32(len(frame)))
	w.buf.Write(r[:])
	w.buf.Write(frame[:incl])
}

// frame builds an Ethernet + IPv4 or IPv6 frame with a TCP, UDP or ICMP
// header and payload bytes of data (checksums are not needed).
func frame(src, dst netip.Addr, proto uint8, sport, dport uint16, tcpFlags uint8, payload int) []byte {
	var l4 []byte
	switch proto {
	case 6:
		l4 = make([]byte, 20+payload)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		if tcpFlags&0x10 != 0 {
			binary.BigEndian.PutUint32(l4[8:], 12345)
		}
		l4[12] = 5 << 4
		l4[13] = tcpFlags
		binary.BigEndian.PutUint16(l4[14:], 29200)
	case 17:
		l4 = make([]byte, 8+payload)
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	default:
		l4 = make([]byte, 8+payload)
		l4[0] = 8
	}
	eth := make([]byte, 14)
	copy(eth, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1})
	if src.Is4() {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		binary.BigEndian.PutUint16(ip[6:], 0x4000)
		ip[8], ip[9] = 64, proto
		s, d := src.As4(), dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		return append(append(eth, ip...), l4...)
	}
	binary.BigEndian.PutUint16(eth[12:], 0x86DD)
	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
	ip[6], ip[7] = proto, 64
	s, d := src.As16(), dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	return append(append(eth, ip...), l4...)
}

func datasetManager(t *testing.T) *probe.Manager {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the ddosfeat probe to replay captures")
	}
	m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestSessionsFromPcap replays a hand-built capture: a TCP exchange of 14
// packets (capped at 10 per window, the rest in the next window), an
// ICMP ping pair, a UDP exchange that pauses 1.5 s (two sessions by the
// idle rule), an IPv6 SYN, and a 1400-byte frame cut to 128 bytes (padded
// back: its IP length is the original's).
func TestSessionsFromPcap(t *testing.T) {
	m := datasetManager(t)
	c, s := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	c6, s6 := netip.MustParseAddr("fd00:72:70::1"), netip.MustParseAddr("fd00:72:70::2")
	t0 := time.Unix(1_700_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	w := newPcap(128)
	// TCP: 14 packets 1 ms apart; the 10-second window caps it at 10.
	for i := range 14 {
		flags := uint8(0x10)
		if i == 0 {
			flags = 0x02
		}
		if i%2 == 0 {
			w.add(at(time.Duration(i)*time.Millisecond), frame(c, s, 6, 40000, 80, flags, 5*i))
		} else {
			w.add(at(time.Duration(i)*time.Millisecond), frame(s, c, 6, 80, 40000, flags|0x08, 1000))
		}
	}
	// ICMP echo request (reply omitted): one packet.
	w.add(at(20*time.Millisecond), frame(c, s, 1, 0, 0, 0, 56))
	// UDP: 2 packets, 1.5 s pause, 2 packets.
	for i, d := range []time.Duration{30, 31, 1531, 1532} {
		src, dst, sp, dp := c, s, uint16(5353), uint16(53)
		if i%2 == 1 {
			src, dst, sp, dp = s, c, 53, 5353
		}
		w.add(at(d*time.Millisecond), frame(src, dst, 17, sp, dp, 0, 40))
	}
	// IPv6 SYN.
	w.add(at(1600*time.Millisecond), frame(c6, s6, 6, 1234, 443, 0x02, 0))
	// The TCP session again 11 s later: a new window, 4 more records.
	for i := range 4 {
		w.add(at(11*time.Second+time.Duration(i)*time.Millisecond), frame(c, s, 6, 40000, 80, 0x10, 0))
	}

	var st DatasetStats
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sessions, err := SessionsFromPcap(ctx, m, bytes.NewReader(w.buf.Bytes()), DatasetOptions{Stats: &st})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats %+v", st)
	if st.Packets != 24 || st.Skipped != 0 || st.Records != 20 || st.Capped != 4 {
		t.Errorf("stats %+v: want 24 packets, 0 skipped, 20 records, 4 capped", st)
	}
	if st.Padded != 7 { // the 1000-byte TCP segments (7 of the 14)
		t.Errorf("padded %d frames, want 7", st.Padded)
	}
	type got struct {
		key     string
		packets int
	}
	var gs []got
	for _, se := range sessions {
		gs = append(gs, got{se.Key.String(), len(se.Packets)})
	}
	want := []got{
		{"6 198.18.0.1:40000 <-> 198.18.0.2:80", 10},          // complete at 10
		{"1 198.18.0.1:0 <-> 198.18.0.2:0", 1},                // idle at 1.531 s
		{"17 198.18.0.1:5353 <-> 198.18.0.2:53", 2},           // idle at 1.531 s
		{"17 198.18.0.1:5353 <-> 198.18.0.2:53", 2},           // idle (flushed at 11 s)
		{"6 [fd00:72:70::1]:1234 <-> [fd00:72:70::2]:443", 1}, // idle (flushed at 11 s)
		{"6 198.18.0.1:40000 <-> 198.18.0.2:80", 4},           // the end
	}
	if !slices.Equal(gs, want) {
		t.Errorf("sessions\n got %v\nwant %v", gs, want)
	}
	tcp := sessions[0]
	if tcp.Packets[1].IPLen != 20+20+1000 || tcp.Packets[1].TCPPayloadLen != 1000 || !tcp.Packets[1].FromHi {
		t.Errorf("padded frame decoded as %+v", tcp.Packets[1])
	}
	if tcp.FirstNs != uint64(t0.UnixNano()) || tcp.Packets[9].TimestampNs != uint64(at(9*time.Millisecond).UnixNano()) {
		t.Errorf("capture times not kept: first %d, 10th %d", tcp.FirstNs, tcp.Packets[9].TimestampNs)
	}

	samples := SamplesFrom(sessions, 1, 0)
	if len(samples) != len(sessions) || len(samples[0].Packets) != DefaultN || samples[0].Label != 1 || samples[1].Packets[1][FeatIPLen] != 0 {
		t.Errorf("samples: %d, first %d rows", len(samples), len(samples[0].Packets))
	}

	// The session file round trip keeps every feature.
	var buf bytes.Buffer
	if err := WriteSessions(&buf, sessions, SessionsMeta{N: DefaultN, WindowNs: DefaultWindowNs, Source: "hand"}); err != nil {
		t.Fatal(err)
	}
	back, meta, err := ReadSessions(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Source != "hand" || len(back) != len(sessions) {
		t.Fatalf("read back %d sessions, meta %+v", len(back), meta)
	}
	for i := range back {
		if !slices.Equal(back[i].Packets, sessions[i].Packets) || back[i].Key != sessions[i].Key || back[i].FirstNs != sessions[i].FirstNs || back[i].LastNs != sessions[i].LastNs {
			t.Errorf("session %d changed in the file:\n%+v\n%+v", i, back[i], sessions[i])
		}
	}
}

// TestSessionsFromPcapLossless replays 60,000 one-packet sessions, four
// times what the 1 MiB ring buffer holds: pacing must deliver every one.
func TestSessionsFromPcapLossless(t *testing.T) {
	m := datasetManager(t)
	s := netip.MustParseAddr("198.18.0.2")
	t0 := time.Unix(1_700_000_000, 0)
	w := newPcap(96)
	const count = 60000
	for i := range count {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		w.add(t0.Add(time.Duration(i)*10*time.Microsecond), frame(src, s, 6, uint16(1024+i%60000), 80, 0x02, 0))
	}
	var st DatasetStats
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	sessions, err := SessionsFromPcap(ctx, m, bytes.NewReader(w.buf.Bytes()), DatasetOptions{Stats: &st})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d packets -> %d sessions in %v; stats %+v", count, len(sessions), time.Since(start).Round(time.Millisecond), st)
	if len(sessions) != count || st.Records != count {
		t.Fatalf("%d sessions, %d records; want %d", len(sessions), st.Records, count)
	}
	seen := map[ddosfeat.SessionKey]bool{}
	for _, se := range sessions {
		if len(se.Packets) != 1 || seen[se.Key] {
			t.Fatalf("session %v: %d packets (or twice)", se.Key, len(se.Packets))
		}
		seen[se.Key] = true
	}
	if m.List() != nil && len(m.List()) != 0 {
		t.Errorf("the replay probe is still loaded: %+v", m.List())
	}
}

// TestSessionsFromPcapAggregates replays GSO/GRO aggregates as a capture
// on a host with offloads on has them (cut to 128 bytes): a 20,000-byte
// IPv4 TCP segment, a 9,000-byte IPv6 one and a 64 KiB one, among small
// frames of the same sessions. They are replayed cut and their records
// get their real lengths back; samples saturate them at one MTU.
func TestSessionsFromPcapAggregates(t *testing.T) {
	m := datasetManager(t)
	c, s := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	c6, s6 := netip.MustParseAddr("fd00:72:70::1"), netip.MustParseAddr("fd00:72:70::2")
	t0 := time.Unix(1_700_000_000, 0)
	w := newPcap(128)
	w.add(t0, frame(c, s, 6, 40000, 80, 0x18, 50))
	w.add(t0, frame(s, c, 6, 80, 40000, 0x18, 20000-40)) // same capture time
	w.add(t0.Add(time.Millisecond), frame(c, s, 6, 40000, 80, 0x10, 0))
	w.add(t0.Add(2*time.Millisecond), frame(s, c, 6, 80, 40000, 0x18, 65535-40))
	w.add(t0.Add(3*time.Millisecond), frame(s6, c6, 6, 443, 50000, 0x18, 9000-60))
	w.add(t0.Add(4*time.Millisecond), frame(c6, s6, 6, 50000, 443, 0x10, 0))
	w.add(t0.Add(5*time.Millisecond), frame(s, c, 17, 53, 5353, 0, 3500)) // UDP, 3528 bytes of IP
	var st DatasetStats
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sessions, err := SessionsFromPcap(ctx, m, bytes.NewReader(w.buf.Bytes()), DatasetOptions{Stats: &st})
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != 7 || st.Aggregates != 4 || st.Skipped != 0 || st.Records != 7 {
		t.Fatalf("stats %+v: want 7 packets, 4 aggregates, 0 skipped, 7 records", st)
	}
	type lens struct{ ip, tcp, udp uint16 }
	var got [][]lens
	for _, se := range sessions {
		var l []lens
		for _, p := range se.Packets {
			l = append(l, lens{p.IPLen, p.TCPPayloadLen, p.UDPLen})
		}
		got = append(got, l)
	}
	want := [][]lens{
		{{90, 50, 0}, {20000, 20000 - 40, 0}, {40, 0, 0}, {65535, 65535 - 40, 0}},
		{{9000, 9000 - 60, 0}, {60, 0, 0}},
		{{3528, 0, 3508}},
	}
	if len(got) != len(want) {
		t.Fatalf("sessions %v, want %v", got, want)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("session %d lengths %v, want %v", i, got[i], want[i])
		}
	}
	samples := SamplesFrom(sessions, 0, 0)
	r := samples[0].Packets
	if r[0][FeatIPLen] != 90 || r[1][FeatIPLen] != SaturateIPLen || r[1][FeatTCPLen] != SaturateTCPLen || r[3][FeatIPLen] != SaturateIPLen {
		t.Errorf("saturated rows %v", r[:4])
	}
	if u := samples[2].Packets[0]; u[FeatIPLen] != SaturateIPLen || u[FeatUDPLen] != SaturateUDPLen {
		t.Errorf("saturated UDP row %v", u)
	}
}
