package cryptofeat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"runtime"
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
)

type dir int

const (
	in dir = iota
	out
)

func (d dir) String() string { return [...]string{"in", "out"}[d] }

func runProg(t testing.TB, objs *cryptoFeatObjects, d dir, frame []byte) {
	t.Helper()
	prog := objs.CryptoIngress
	if d == out {
		prog = objs.CryptoEgress
	}
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("run %s: %v", d, err)
	}
	if ret != tcActUnspec {
		t.Fatalf("%s returned %d, want TC_ACT_UNSPEC (-1)", d, int32(ret))
	}
}

func coarseNow(t testing.TB) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

func readSessions(t testing.TB, objs *cryptoFeatObjects, timeout uint64) map[SessionKey]Session {
	t.Helper()
	s, err := ReadSessions(objs.Sessions, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func readStats(t testing.TB, objs *cryptoFeatObjects) Stats {
	t.Helper()
	s, err := ReadStats(objs.CryptoStats)
	if err != nil {
		t.Fatal(err)
	}
	if sum := s.Counted + s.NonIP + s.OtherProto + s.Malformed + s.TableFull; sum != s.Packets {
		t.Errorf("stats do not add up: %+v (outcomes %d)", s, sum)
	}
	return s
}

// pinCPU keeps the test goroutine on one thread and that thread on one CPU,
// so every BPF_PROG_TEST_RUN writes the same per-CPU copy.
func pinCPU(t testing.TB) int {
	t.Helper()
	runtime.LockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	cpu := -1
	for i := 0; i < 1024; i++ {
		if old.IsSet(i) {
			cpu = i
			break
		}
	}
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	})
	return cpu
}

type pkt struct {
	d     dir
	frame []byte
}

func tcp4(src, dst netip.Addr, sport, dport uint16, flags uint8, payload int) []byte {
	return eth(etherIPv4, ipv4(protoTCP, src, dst, seg{sport: sport, dport: dport, flags: flags, payload: payload}.bytes()))
}

func udp4(src, dst netip.Addr, sport, dport uint16, payload int) []byte {
	return eth(etherIPv4, ipv4(protoUDP, src, dst, udp(sport, dport, payload)))
}

// TestSessions runs a few sessions through both programs and checks the
// merged counters and the server decision of each.
func TestSessions(t *testing.T) {
	objs := load(t, nil, nil)

	cases := []struct {
		name    string
		key     SessionKey
		packets []pkt
		want    Session // times are checked separately
	}{
		{
			// The local client (v4a) opens a connection to a pool (v4b:3333).
			name: "tcp handshake, local client",
			key:  SessionKey{v4a, v4b, 40000, 3333, protoTCP},
			packets: []pkt{
				{out, tcp4(v4a, v4b, 40000, 3333, syn, 0)},
				{in, tcp4(v4b, v4a, 3333, 40000, syn|ack, 0)},
				{out, tcp4(v4a, v4b, 40000, 3333, ack, 0)},
				{out, tcp4(v4a, v4b, 40000, 3333, ack|psh, 100)},
				{in, tcp4(v4b, v4a, 3333, 40000, ack|psh, 300)},
			},
			want: Session{PktsIn: 2, BytesIn: 40 + 340, PktsOut: 3, BytesOut: 40 + 40 + 140, Server: v4b, Method: MethodTCPHandshake},
		},
		{
			// Only the SYN+ACK is seen (e.g. the probe attached late): the
			// source is the server; here the server is local.
			name: "syn+ack only, local server",
			key:  SessionKey{v4a, v4c, 8080, 50000, protoTCP},
			packets: []pkt{
				{out, tcp4(v4a, v4c, 8080, 50000, syn|ack, 0)},
				{in, tcp4(v4c, v4a, 50000, 8080, ack, 10)},
			},
			want: Session{PktsIn: 1, BytesIn: 50, PktsOut: 1, BytesOut: 40, Server: v4a, Method: MethodTCPHandshake},
		},
		{
			name: "mid-stream tcp, one port below 1024",
			key:  SessionKey{v4b, v4c, 443, 50001, protoTCP},
			packets: []pkt{
				{in, tcp4(v4c, v4b, 50001, 443, ack, 0)},
				{out, tcp4(v4b, v4c, 443, 50001, ack|psh, 1000)},
			},
			want: Session{PktsIn: 1, BytesIn: 40, PktsOut: 1, BytesOut: 1040, Server: v4b, Method: MethodWellKnownPort},
		},
		{
			name: "udp, both ports above 1023: the lower one",
			key:  SessionKey{v4a, v4b, 50002, 3333, protoUDP},
			packets: []pkt{
				{in, udp4(v4b, v4a, 3333, 50002, 500)},
				{out, udp4(v4a, v4b, 50002, 3333, 20)},
				{out, udp4(v4a, v4b, 50002, 3333, 20)},
			},
			want: Session{PktsIn: 1, BytesIn: 528, PktsOut: 2, BytesOut: 96, Server: v4b, Method: MethodLowerPort},
		},
		{
			name: "udp, both ports below 1024: the lower one",
			key:  SessionKey{v4a, v4c, 1000, 123, protoUDP},
			packets: []pkt{
				{out, udp4(v4a, v4c, 1000, 123, 48)},
			},
			want: Session{PktsOut: 1, BytesOut: 76, Server: v4c, Method: MethodLowerPort},
		},
		{
			// Equal ports: the first packet's destination, kept when the
			// reply proposes the other side with the same method.
			name: "equal ports: first decision kept",
			key:  SessionKey{v4b, v4c, 7000, 7000, protoUDP},
			packets: []pkt{
				{in, udp4(v4c, v4b, 7000, 7000, 0)},
				{out, udp4(v4b, v4c, 7000, 7000, 0)},
			},
			want: Session{PktsIn: 1, BytesIn: 28, PktsOut: 1, BytesOut: 28, Server: v4b, Method: MethodLowerPort},
		},
		{
			// Decided by the lower port first (v4a:4000), then a SYN from
			// v4a to v4b:5000 is better evidence: v4b is the server.
			name: "better method replaces",
			key:  SessionKey{v4a, v4b, 4000, 5000, protoTCP},
			packets: []pkt{
				{out, tcp4(v4a, v4b, 4000, 5000, ack, 0)},
				{out, tcp4(v4a, v4b, 4000, 5000, syn, 0)},
				{in, tcp4(v4b, v4a, 5000, 4000, ack, 0)},
			},
			want: Session{PktsIn: 1, BytesIn: 40, PktsOut: 2, BytesOut: 80, Server: v4b, Method: MethodTCPHandshake},
		},
		{
			name: "ipv6 handshake, remote client",
			key:  SessionKey{v6a, v6b, 9999, 60000, protoTCP},
			packets: []pkt{
				{in, eth(etherIPv6, ipv6(protoTCP, v6b, v6a, seg{sport: 60000, dport: 9999, flags: syn}.bytes()))},
				{out, eth(etherIPv6, ipv6(protoTCP, v6a, v6b, seg{sport: 9999, dport: 60000, flags: syn | ack}.bytes()))},
				{in, eth(etherIPv6, ipv6(protoHop, v6b, v6a, hopByHop(protoTCP, seg{sport: 60000, dport: 9999, flags: ack, payload: 12}.bytes())))},
			},
			want: Session{PktsIn: 2, BytesIn: 60 + 80, PktsOut: 1, BytesOut: 60, Server: v6a, Method: MethodTCPHandshake},
		},
		{
			name: "ipv6 udp first fragment",
			key:  SessionKey{v6a, v6b, 53, 40000, protoUDP},
			packets: []pkt{
				{out, eth(etherIPv6, ipv6(protoFrag, v6a, v6b, frag6(protoUDP, 0, true, udp(53, 40000, 1000))))},
			},
			want: Session{PktsOut: 1, BytesOut: 1056, Server: v6a, Method: MethodWellKnownPort},
		},
	}

	before := coarseNow(t)
	n := 0
	for _, c := range cases {
		for _, p := range c.packets {
			runProg(t, objs, p.d, p.frame)
			n++
		}
	}
	// Not counted in any session.
	others := []pkt{
		{in, eth(etherIPv4, ipv4(protoICMP, v4a, v4b, icmp(8, 8)))},
		{in, eth(etherIPv4, v4{proto: protoUDP, src: v4a, dst: v4b, fragOff: 1480}.packet(udp(53, 53, 10)))},
		{out, eth(etherIPv6, ipv6(protoFrag, v6a, v6b, frag6(protoUDP, 8, false, make([]byte, 16))))},
		{in, eth(etherIPv4, ipv4(protoGRE, v4a, v4b, make([]byte, 8)))},
	}
	for _, p := range others {
		runProg(t, objs, p.d, p.frame)
	}
	runProg(t, objs, in, eth(etherARP, make([]byte, 28)))
	runProg(t, objs, in, vlanTags(etherIPv4, 1, ipv4(protoTCP, v4a, v4b, nil)[:12]))
	runProg(t, objs, in, eth(etherIPv4, ipv4(protoTCP, v4a, v4b, seg{sport: 1, dport: 2}.bytes()[:10])))
	after := coarseNow(t)

	got := readSessions(t, objs, 60e9)
	if len(got) != len(cases) {
		t.Errorf("%d sessions, want %d: %v", len(got), len(cases), got)
	}
	for _, c := range cases {
		g, ok := got[c.key]
		if !ok {
			t.Errorf("%s: no session %s", c.name, c.key)
			continue
		}
		if g.StartNs < before || g.LastNs > after || g.StartNs > g.LastNs {
			t.Errorf("%s: start %d last %d outside [%d, %d]", c.name, g.StartNs, g.LastNs, before, after)
		}
		g.StartNs, g.LastNs = 0, 0
		if g != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, g, c.want)
		}
	}
	want := Stats{Packets: uint64(n + len(others) + 3), Counted: uint64(n), OtherProto: uint64(len(others)), NonIP: 1, Malformed: 2}
	if s := readStats(t, objs); s != want {
		t.Errorf("stats %+v, want %+v", s, want)
	}
}

// TestTimeoutRestart: with a small session_timeout_ns, a session idle for
// longer restarts on its next packet: counters, start and server decision.
func TestTimeoutRestart(t *testing.T) {
	const timeout = 200 * time.Millisecond
	objs := load(t, map[string]any{"session_timeout_ns": uint64(timeout)}, nil)
	cpu := pinCPU(t)

	key := SessionKey{v4a, v4b, 40000, 3333, protoTCP}
	runProg(t, objs, out, tcp4(v4a, v4b, 40000, 3333, syn, 0))
	runProg(t, objs, in, tcp4(v4b, v4a, 3333, 40000, syn|ack, 0))
	runProg(t, objs, out, tcp4(v4a, v4b, 40000, 3333, ack, 0))
	first := readSessions(t, objs, uint64(timeout))[key]
	if first.PktsIn != 1 || first.PktsOut != 2 || first.Method != MethodTCPHandshake || first.Server != v4b {
		t.Fatalf("before the timeout: %+v", first)
	}

	time.Sleep(timeout + 100*time.Millisecond)
	// Mid-stream, both ports above 1023: the lower port (v4b:3333) again,
	// but now by method 3.
	runProg(t, objs, in, tcp4(v4b, v4a, 3333, 40000, ack|psh, 60))
	second := readSessions(t, objs, uint64(timeout))[key]
	if second.StartNs < first.LastNs+uint64(timeout) {
		t.Errorf("restarted session starts at %d, want >= %d", second.StartNs, first.LastNs+uint64(timeout))
	}
	second.StartNs, second.LastNs = 0, 0
	if want := (Session{PktsIn: 1, BytesIn: 100, Server: v4b, Method: MethodLowerPort}); second != want {
		t.Errorf("after the timeout:\n got %+v\nwant %+v", second, want)
	}

	// The kernel's copy on this CPU, and no other CPU's copy is used.
	var values []cryptoFeatCryptoSession
	kk := key.Bytes()
	if err := objs.Sessions.Lookup(kk, &values); err != nil {
		t.Fatal(err)
	}
	for i, v := range values {
		if i != cpu && v != (cryptoFeatCryptoSession{}) {
			t.Errorf("cpu %d has a copy: %+v", i, v)
		}
	}
	if v := values[cpu]; v.PktsIn != 1 || v.PktsOut != 0 || v.BytesIn != 100 || v.Method != cryptoFeatCryptoMethodMETHOD_LOWER_PORT {
		t.Errorf("cpu %d copy %+v", cpu, v)
	}
	if s := readStats(t, objs); s.Restarted != 1 || s.Counted != 4 {
		t.Errorf("stats %+v", s)
	}
}

// TestNoTimeout: session_timeout_ns 0 never restarts.
func TestNoTimeout(t *testing.T) {
	objs := load(t, map[string]any{"session_timeout_ns": uint64(0)}, nil)
	runProg(t, objs, out, udp4(v4a, v4b, 5000, 6000, 0))
	time.Sleep(20 * time.Millisecond)
	runProg(t, objs, out, udp4(v4a, v4b, 5000, 6000, 0))
	s := readSessions(t, objs, 0)[SessionKey{v4a, v4b, 5000, 6000, protoUDP}]
	if s.PktsOut != 2 || s.LastNs-s.StartNs < uint64(10*time.Millisecond) {
		t.Errorf("session %+v", s)
	}
}

// TestTableFull: new sessions beyond the table's size are counted, not
// tracked; known sessions still are.
func TestTableFull(t *testing.T) {
	objs := load(t, nil, func(s *ebpf.CollectionSpec) { s.Maps["sessions"].MaxEntries = 4 })
	for port := range uint16(6) {
		runProg(t, objs, in, udp4(v4a, v4b, 2000+port, 3000, 0))
	}
	runProg(t, objs, in, udp4(v4a, v4b, 2000, 3000, 0))
	if s := readStats(t, objs); s.TableFull != 2 || s.Counted != 5 {
		t.Errorf("stats %+v", s)
	}
	if got := readSessions(t, objs, 0); len(got) != 4 || got[SessionKey{v4a, v4b, 2000, 3000, protoUDP}].PktsIn != 2 {
		t.Errorf("sessions %v", got)
	}
}

// TestGSOSegments: a GSO/GRO skb counts as its segments.
func TestGSOSegments(t *testing.T) {
	objs := load(t, nil, nil)
	spec, err := loadCryptoFeat()
	if err != nil {
		t.Fatal(err)
	}
	var skb *btf.Struct
	if err := spec.Types.TypeByName("__sk_buff", &skb); err != nil {
		t.Fatal(err)
	}
	ctx := make([]byte, skb.Size)
	found := false
	for _, m := range skb.Members {
		if m.Name == "gso_segs" {
			off := m.Offset.Bytes()
			ctx[off] = 3 // little-endian __u32
			found = true
		}
	}
	if !found {
		t.Fatal("__sk_buff has no gso_segs")
	}
	// At most a page: BPF_PROG_TEST_RUN's limit for packet data.
	frame := tcp4(v4a, v4b, 40000, 443, ack, 3*400)
	ret, err := objs.CryptoIngress.Run(&ebpf.RunOptions{Data: frame, Context: ctx})
	if err != nil {
		t.Fatalf("run with gso_segs 3 in the context: %v", err)
	}
	if ret != tcActUnspec {
		t.Fatalf("returned %d", int32(ret))
	}
	s := readSessions(t, objs, 0)[SessionKey{v4a, v4b, 40000, 443, protoTCP}]
	if s.PktsIn != 3 || s.BytesIn != 40+3*400 {
		t.Errorf("session %+v, want 3 packets, %d bytes", s, 40+3*400)
	}
}

func TestMerge(t *testing.T) {
	const sec = uint64(time.Second)
	cases := []struct {
		name    string
		copies  []Session
		timeout uint64
		want    Session
	}{
		{"no copies", nil, 0, Session{}},
		{"only empty copies", []Session{{}, {}}, 60 * sec, Session{}},
		{
			"sum, min start, max last, best method",
			[]Session{
				{},
				{StartNs: 5 * sec, LastNs: 9 * sec, PktsIn: 3, BytesIn: 300, Server: v4a, Method: MethodLowerPort},
				{StartNs: 4 * sec, LastNs: 8 * sec, PktsOut: 2, BytesOut: 100, Server: v4b, Method: MethodTCPHandshake},
				{StartNs: 6 * sec, LastNs: 7 * sec, PktsIn: 1, BytesIn: 10, Server: v4c, Method: MethodTCPHandshake},
			},
			60 * sec,
			Session{StartNs: 4 * sec, LastNs: 9 * sec, PktsIn: 4, BytesIn: 310, PktsOut: 2, BytesOut: 100, Server: v4b, Method: MethodTCPHandshake},
		},
		{
			"a copy without a decision",
			[]Session{{StartNs: 1, LastNs: 2, PktsIn: 1}, {StartNs: 2, LastNs: 3, PktsOut: 1, Server: v6a, Method: MethodWellKnownPort}},
			0,
			Session{StartNs: 1, LastNs: 3, PktsIn: 1, PktsOut: 1, Server: v6a, Method: MethodWellKnownPort},
		},
		{
			// CPU 0 holds an earlier incarnation that ended 100 s before
			// CPU 1's copy started: stale with a 60 s timeout.
			"stale copy dropped",
			[]Session{
				{StartNs: 10 * sec, LastNs: 20 * sec, PktsIn: 50, Server: v4a, Method: MethodTCPHandshake},
				{StartNs: 120 * sec, LastNs: 130 * sec, PktsIn: 2, Server: v4b, Method: MethodLowerPort},
			},
			60 * sec,
			Session{StartNs: 120 * sec, LastNs: 130 * sec, PktsIn: 2, Server: v4b, Method: MethodLowerPort},
		},
		{
			"stale copy kept without a timeout",
			[]Session{
				{StartNs: 10 * sec, LastNs: 20 * sec, PktsIn: 50, Server: v4a, Method: MethodTCPHandshake},
				{StartNs: 120 * sec, LastNs: 130 * sec, PktsIn: 2, Server: v4b, Method: MethodLowerPort},
			},
			0,
			Session{StartNs: 10 * sec, LastNs: 130 * sec, PktsIn: 52, Server: v4a, Method: MethodTCPHandshake},
		},
		{
			// The middle copy bridges the gap: one incarnation.
			"chained copies",
			[]Session{
				{StartNs: 10 * sec, LastNs: 20 * sec, PktsIn: 1},
				{StartNs: 150 * sec, LastNs: 160 * sec, PktsIn: 1},
				{StartNs: 70 * sec, LastNs: 100 * sec, PktsIn: 1},
			},
			60 * sec,
			Session{StartNs: 10 * sec, LastNs: 160 * sec, PktsIn: 3},
		},
	}
	for _, c := range cases {
		if got := Merge(c.copies, c.timeout); got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}
}

func TestDerive(t *testing.T) {
	const sec = uint64(time.Second)
	s := Session{StartNs: 10 * sec, LastNs: 14 * sec, PktsIn: 100, BytesIn: 10000, PktsOut: 50, BytesOut: 2500, Server: v4b, Method: MethodLowerPort}
	cases := []struct {
		name          string
		s             Session
		serverIsLocal bool
		want          Features
	}{
		{"remote server", s, false, Features{
			Method: MethodLowerPort, ServerPackets: 100, ClientPackets: 50, ServerBits: 80000, ClientBits: 20000, Duration: 4,
			ServerPacketsPerSec: 25, ClientPacketsPerSec: 12.5, ServerBitsPerSec: 20000, ClientBitsPerSec: 5000,
			ServerBitsPerPacket: 800, ClientBitsPerPacket: 400, PacketRatio: 2, BitRatio: 4,
		}},
		{"local server", s, true, Features{
			Method: MethodLowerPort, ServerPackets: 50, ClientPackets: 100, ServerBits: 20000, ClientBits: 80000, Duration: 4,
			ServerPacketsPerSec: 12.5, ClientPacketsPerSec: 25, ServerBitsPerSec: 5000, ClientBitsPerSec: 20000,
			ServerBitsPerPacket: 400, ClientBitsPerPacket: 800, PacketRatio: 0.5, BitRatio: 0.25,
		}},
		{"one packet: no duration, rates 0", Session{StartNs: 5, LastNs: 5, PktsIn: 1, BytesIn: 60, Method: MethodTCPHandshake}, false, Features{
			Method: MethodTCPHandshake, ServerPackets: 1, ServerBits: 480, ServerBitsPerPacket: 480,
		}},
		{"client silent: ratios 0", Session{StartNs: 0, LastNs: 2 * sec, PktsIn: 4, BytesIn: 100}, false, Features{
			ServerPackets: 4, ServerBits: 800, Duration: 2, ServerPacketsPerSec: 2, ServerBitsPerSec: 400, ServerBitsPerPacket: 200,
		}},
		{"server silent: ratios 0", Session{StartNs: 0, LastNs: sec / 2, PktsOut: 3, BytesOut: 30}, false, Features{
			ClientPackets: 3, ClientBits: 240, Duration: 0.5, ClientPacketsPerSec: 6, ClientBitsPerSec: 480, ClientBitsPerPacket: 80,
		}},
		{"empty", Session{}, true, Features{}},
		{"last before start", Session{StartNs: 9, LastNs: 3, PktsIn: 1, PktsOut: 1, BytesIn: 1, BytesOut: 2}, true, Features{
			ServerPackets: 1, ClientPackets: 1, ServerBits: 16, ClientBits: 8, ServerBitsPerPacket: 16, ClientBitsPerPacket: 8, PacketRatio: 1, BitRatio: 2,
		}},
	}
	for _, c := range cases {
		got := Derive(c.s, c.serverIsLocal)
		if got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
		for _, v := range []float64{got.Duration, got.ServerBitsPerSec, got.ClientBitsPerSec, got.PacketRatio, got.BitRatio} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Errorf("%s: %v", c.name, got)
			}
		}
	}
	b, err := json.Marshal(Derive(s, false))
	if err != nil || !bytes.Contains(b, []byte(`"bit_ratio":4`)) || !bytes.Contains(b, []byte(`"method":3`)) {
		t.Errorf("JSON %s, %v", b, err)
	}
}

// TestDecode checks the Go decoders against the object's BTF and the
// generated types.
func TestDecode(t *testing.T) {
	if unsafe.Sizeof(cryptoFeatCryptoSession{}) != ValueSize || unsafe.Sizeof(cryptoFeatSessionKey{}) != KeySize {
		t.Fatalf("value %d bytes, key %d bytes", unsafe.Sizeof(cryptoFeatCryptoSession{}), unsafe.Sizeof(cryptoFeatSessionKey{}))
	}
	spec, err := loadCryptoFeat()
	if err != nil {
		t.Fatal(err)
	}
	var st *btf.Struct
	if err := spec.Types.TypeByName("crypto_session", &st); err != nil {
		t.Fatal(err)
	}
	offsets := map[string]uint32{"start_ns": 0, "last_ns": 8, "pkts_in": 16, "bytes_in": 24, "pkts_out": 32, "bytes_out": 40, "server": 48, "method": 64, "pad": 65}
	if st.Size != ValueSize || len(st.Members) != len(offsets) {
		t.Fatalf("crypto_session: %d bytes, %d members", st.Size, len(st.Members))
	}
	for _, m := range st.Members {
		if off, ok := offsets[m.Name]; !ok || off != m.Offset.Bytes() {
			t.Errorf("member %s at %d, decoder reads %d (%v)", m.Name, m.Offset.Bytes(), off, ok)
		}
	}
	if sz, _ := btf.Sizeof(st.Members[7].Type); sz != 1 {
		t.Errorf("method is %d bytes, want 1", sz)
	}

	v := cryptoFeatCryptoSession{StartNs: 1, LastNs: 2, PktsIn: 3, BytesIn: 4, PktsOut: 5, BytesOut: 6, Method: 2}
	v.Server = netip.AddrFrom16(v4c.As16()).As16()
	raw := bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(&v)), ValueSize))
	key := SessionKey{v4a, v6b, 1, 65535, 17}
	k, s, err := DecodeSession(key.Bytes(), [][]byte{make([]byte, ValueSize), raw}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if k != key || s != (Session{1, 2, 3, 4, 5, 6, v4c, MethodWellKnownPort}) {
		t.Errorf("decoded %v %+v", k, s)
	}
	if _, _, err := DecodeSession(key.Bytes(), [][]byte{raw[:10]}, 0); err == nil {
		t.Error("a short value decoded")
	}
	if _, err := DecodeSessionKey(make([]byte, 39)); err == nil {
		t.Error("a short key decoded")
	}
	if fmt.Sprint(MethodNone, MethodTCPHandshake, MethodWellKnownPort, MethodLowerPort, Method(9)) != "none tcp-handshake well-known-port lower-port method(9)" {
		t.Error("Method.String")
	}
}

func TestManifest(t *testing.T) {
	m, err := probe.ParseManifest(Manifest())
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(Object()))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "cryptofeat" || len(m.Programs) != 2 {
		t.Errorf("manifest %+v", m)
	}
	for _, p := range m.Programs {
		if ps, ok := spec.Programs[p.Name]; !ok || ps.Type != ebpf.SchedCLS {
			t.Errorf("program %s: %v", p.Name, ps)
		}
	}
	var st *btf.Struct
	if err := spec.Types.TypeByName("crypto_session", &st); err != nil {
		t.Fatal(err)
	}
	fields := map[string]bool{}
	for _, mb := range st.Members {
		fields[mb.Name] = true
	}
	var kt *btf.Struct
	if err := spec.Types.TypeByName("session_key", &kt); err != nil {
		t.Fatal(err)
	}
	keyFields := map[string]bool{}
	for _, mb := range kt.Members {
		keyFields[mb.Name] = true
	}
	for _, mt := range m.Metrics {
		ms, ok := spec.Maps[mt.Map]
		if !ok {
			t.Errorf("metric %s: no map %s", mt.Name, mt.Map)
			continue
		}
		if mt.Map == "sessions" {
			if ms.Type != ebpf.PerCPUHash || mt.Type != "gauge" || !fields[mt.ValueField] {
				t.Errorf("metric %s: %v %s value-field %q", mt.Name, ms.Type, mt.Type, mt.ValueField)
			}
			for _, l := range mt.Labels {
				if !keyFields[l.Field] {
					t.Errorf("metric %s: label %s: no key field %q", mt.Name, l.Name, l.Field)
				}
			}
		}
	}
	v, ok := spec.Variables["session_timeout_ns"]
	if !ok || !v.Constant() {
		t.Fatal("session_timeout_ns is not a constant of the object")
	}
	var def uint64
	if err := v.Get(&def); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(m.Parameters["session_timeout_ns"]); got != fmt.Sprint(def) || len(m.Parameters) != 1 {
		t.Errorf("parameters %v, object default %d", m.Parameters, def)
	}
}

// BenchmarkCryptofeatPerPacket measures the program per packet with
// BPF_PROG_TEST_RUN: packets of an existing session (the steady state) and
// packets that are only counted in crypto_stats.
func BenchmarkCryptofeatPerPacket(b *testing.B) {
	const repeat = 10000
	cases := []struct {
		name  string
		frame []byte
	}{
		{"session-ipv4-tcp", tcp4(v4a, v4b, 40000, 3333, ack|psh, 64)},
		{"session-ipv6-udp", eth(etherIPv6, ipv6(protoUDP, v6a, v6b, udp(5000, 3333, 64)))},
		{"other-proto-icmp", eth(etherIPv4, ipv4(protoICMP, v4a, v4b, icmp(8, 56)))},
		{"non-ip", eth(etherARP, make([]byte, 28))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			objs := load(b, nil, nil)
			var total time.Duration
			for i := 0; i < b.N; i++ {
				ret, d, err := objs.CryptoIngress.Benchmark(c.frame, repeat, nil)
				if err != nil || ret != tcActUnspec {
					b.Fatalf("benchmark: %d, %v", ret, err)
				}
				total += d
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/packet")
		})
	}
}
