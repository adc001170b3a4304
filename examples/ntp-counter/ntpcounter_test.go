package ntpcounter

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/rampart-shield/rampart/internal/bpftest"
)

const xdpPass = 2

var (
	v4a = netip.MustParseAddr("192.0.2.1")
	v4b = netip.MustParseAddr("198.51.100.2")
	v4c = netip.MustParseAddr("203.0.113.9")
	v4d = netip.MustParseAddr("192.0.2.77")
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8::2")
	v6c = netip.MustParseAddr("2001:db8::3")
)

// ntp returns a 48-byte NTPv4 header with the given mode.
func ntp(mode byte) []byte {
	b := make([]byte, 48)
	b[0] = 4<<3 | mode // LI 0, version 4
	return b
}

type pkt struct {
	name string
	data []byte
	// src is the source the packet must be counted under; invalid: not counted.
	src  netip.Addr
	mode int // -1: no mode counted
}

func eth4(proto uint8, src, dst netip.Addr, l4 []byte) []byte {
	return bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv4(proto, src, dst, l4))
}

func eth6(proto uint8, src, dst netip.Addr, l4 []byte) []byte {
	return bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(proto, src, dst, l4))
}

// withIPv4Options inserts 4 bytes of NOP options into the IPv4 header of an
// Ethernet frame (IHL 6).
func withIPv4Options(frame []byte) []byte {
	out := append([]byte{}, frame[:14+20]...)
	out = append(out, 1, 1, 1, 0) // NOP NOP NOP EOL
	out = append(out, frame[14+20:]...)
	out[14] = 0x46
	return out
}

// withIHL overwrites the IPv4 header length (in 32-bit words).
func withIHL(frame []byte, ihl byte) []byte {
	frame[14] = 0x40 | ihl
	return frame
}

func packets() []pkt {
	none := netip.Addr{}
	return []pkt{
		{"ipv4 server reply", eth4(bpftest.ProtoUDP, v4a, v4b, bpftest.UDP(123, 40000, ntp(4))), v4a, 4},
		{"ipv4 client request", eth4(bpftest.ProtoUDP, v4b, v4a, bpftest.UDP(40000, 123, ntp(3))), v4b, 3},
		{"ipv4 client request again", eth4(bpftest.ProtoUDP, v4b, v4a, bpftest.UDP(40001, 123, ntp(3))), v4b, 3},
		{"ipv6 client request", eth6(bpftest.ProtoUDP, v6a, v6b, bpftest.UDP(40000, 123, ntp(3))), v6a, 3},
		{"ipv6 hop-by-hop private mode", bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(bpftest.ProtoHopByHop, v6b, v6a, bpftest.HopByHop(bpftest.ProtoUDP, bpftest.UDP(123, 123, ntp(7))))), v6b, 7},
		{"ipv6 first fragment", bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(bpftest.ProtoFragment, v6c, v6a, bpftest.Fragment(bpftest.ProtoUDP, 0, true, bpftest.UDP(123, 5000, ntp(5))))), v6c, 5},
		{"vlan ipv4 control", bpftest.EthVLAN(42, bpftest.EtherTypeIPv4, bpftest.IPv4(bpftest.ProtoUDP, v4c, v4a, bpftest.UDP(123, 50000, []byte{0x16, 0x02}))), v4c, 6},
		{"ipv4 with options", withIPv4Options(eth4(bpftest.ProtoUDP, v4d, v4a, bpftest.UDP(1023, 123, ntp(1)))), v4d, 1},
		{"ipv4 no payload", eth4(bpftest.ProtoUDP, v4d, v4a, bpftest.UDP(1023, 123, nil)), v4d, -1},

		{"tcp port 123", eth4(bpftest.ProtoTCP, v4c, v4a, bpftest.TCP(123, 123, ntp(3))), none, -1},
		{"udp port 53", eth4(bpftest.ProtoUDP, v4c, v4a, bpftest.UDP(53, 53, ntp(3))), none, -1},
		{"ipv6 tcp port 123", eth6(bpftest.ProtoTCP, v6c, v6a, bpftest.TCP(123, 123, nil)), none, -1},
		{"arp", bpftest.Eth(bpftest.EtherTypeARP, make([]byte, 28)), none, -1},
		// A non-first fragment starts with payload bytes, here made to look
		// like a UDP header with port 123: it must not be counted.
		{"ipv4 non-first fragment", bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv4Frag(bpftest.ProtoUDP, v4c, v4a, 1480, false, bpftest.UDP(123, 123, ntp(3)))), none, -1},
		{"ipv6 non-first fragment", bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(bpftest.ProtoFragment, v6c, v6a, bpftest.Fragment(bpftest.ProtoUDP, 1448, false, bpftest.UDP(123, 123, ntp(3))))), none, -1},
		// Truncated and malformed headers.
		{"ethernet header only", bpftest.Eth(bpftest.EtherTypeIPv4, nil), none, -1},
		{"truncated vlan tag", bpftest.Eth(bpftest.EtherTypeVLAN, []byte{0, 42}), none, -1},
		{"truncated ipv4", bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv4(bpftest.ProtoUDP, v4c, v4a, nil)[:19]), none, -1},
		{"truncated udp", eth4(bpftest.ProtoUDP, v4c, v4a, bpftest.UDP(123, 123, nil)[:7]), none, -1},
		{"ipv4 ihl past the end", withIHL(eth4(bpftest.ProtoUDP, v4c, v4a, bpftest.UDP(123, 123, ntp(3))), 15), none, -1},
		{"ipv4 ihl 4", withIHL(eth4(bpftest.ProtoUDP, v4c, v4a, bpftest.UDP(123, 123, ntp(3))), 4), none, -1},
		{"ipv6 header in ipv4 frame", bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv6(bpftest.ProtoUDP, v6c, v6a, bpftest.UDP(123, 123, ntp(3)))), none, -1},
		{"truncated ipv6", bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(bpftest.ProtoUDP, v6c, v6a, nil)[:39]), none, -1},
		{"truncated ipv6 extension header", bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(bpftest.ProtoHopByHop, v6c, v6a, []byte{bpftest.ProtoUDP, 0})), none, -1},
		{"ipv6 extension header past the end", bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(bpftest.ProtoHopByHop, v6c, v6a, []byte{bpftest.ProtoUDP, 255, 0, 0, 0, 0, 0, 0, 0, 123, 0, 123, 0, 8, 0, 0})), none, -1},
	}
}

type stats struct{ packets, bytes uint64 }

func monotonicNow(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

func TestCountNTP(t *testing.T) {
	bpftest.Require(t)

	var objs ntpCounterObjects
	bpftest.CheckLoad(t, loadNtpCounterObjects(&objs, nil))
	defer objs.Close()

	wantSrc := map[netip.Addr]stats{}
	var wantModes [8]uint64
	before := monotonicNow(t)
	for _, p := range packets() {
		ret, err := objs.CountNtp.Run(&ebpf.RunOptions{Data: p.data})
		if err != nil {
			t.Fatalf("%s: run: %v", p.name, err)
		}
		if ret != xdpPass {
			t.Errorf("%s: returned %d, want XDP_PASS", p.name, ret)
		}
		if p.src.IsValid() {
			s := wantSrc[p.src]
			s.packets++
			s.bytes += uint64(len(p.data))
			wantSrc[p.src] = s
		}
		if p.mode >= 0 {
			wantModes[p.mode]++
		}
	}
	after := monotonicNow(t)

	var (
		key ntpCounterNtpSrc
		val ntpCounterNtpStats
	)
	got := map[netip.Addr]stats{}
	it := objs.NtpSources.Iterate()
	for it.Next(&key, &val) {
		addr := netip.AddrFrom16(key.Addr).Unmap()
		got[addr] = stats{val.Packets, val.Bytes}
		if val.LastSeenNs < before || val.LastSeenNs > after {
			t.Errorf("%s: last_seen_ns %d not within the test's run [%d, %d]", addr, val.LastSeenNs, before, after)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	for a, w := range wantSrc {
		if got[a] != w {
			t.Errorf("source %s: got %+v, want %+v", a, got[a], w)
		}
	}
	for a, g := range got {
		if _, ok := wantSrc[a]; !ok {
			t.Errorf("unexpected source %s: %+v", a, g)
		}
	}

	for mode := uint32(0); mode < 8; mode++ {
		var n uint64
		if err := objs.NtpModes.Lookup(mode, &n); err != nil {
			t.Fatalf("mode %d: %v", mode, err)
		}
		if n != wantModes[mode] {
			t.Errorf("mode %d: got %d, want %d", mode, n, wantModes[mode])
		}
	}
}

// TestNTPPortParameter sets the load-time constant ntp_port the way the agent
// does for the manifest's parameters, before loading.
func TestNTPPortParameter(t *testing.T) {
	bpftest.Require(t)

	spec, err := loadNtpCounter()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := spec.Variables["ntp_port"]
	if !ok {
		t.Fatal("the object has no variable ntp_port")
	}
	if !v.Constant() {
		t.Error("ntp_port is not a constant (volatile const) in the object")
	}
	var def uint16
	if err := v.Get(&def); err != nil || def != 123 {
		t.Fatalf("ntp_port default: %d, %v; want 123", def, err)
	}
	if err := v.Set(uint16(4123)); err != nil {
		t.Fatal(err)
	}
	var objs ntpCounterObjects
	bpftest.CheckLoad(t, spec.LoadAndAssign(&objs, nil))
	defer objs.Close()

	for _, data := range [][]byte{
		eth4(bpftest.ProtoUDP, v4a, v4b, bpftest.UDP(123, 123, ntp(3))),
		eth4(bpftest.ProtoUDP, v4c, v4b, bpftest.UDP(50000, 4123, ntp(3))),
	} {
		if _, err := objs.CountNtp.Run(&ebpf.RunOptions{Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	var val ntpCounterNtpStats
	if err := objs.NtpSources.Lookup(srcKey(v4c), &val); err != nil || val.Packets != 1 {
		t.Errorf("port 4123 from %s: packets %d, %v; want 1", v4c, val.Packets, err)
	}
	if err := objs.NtpSources.Lookup(srcKey(v4a), &val); err == nil {
		t.Errorf("port 123 from %s counted although ntp_port is 4123", v4a)
	}
}

func srcKey(a netip.Addr) ntpCounterNtpSrc {
	return ntpCounterNtpSrc{Addr: a.As16()}
}
