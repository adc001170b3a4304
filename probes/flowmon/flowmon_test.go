package flowmon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// tcActUnspec is TC_ACT_UNSPEC (-1) as BPF_PROG_TEST_RUN reports it.
const tcActUnspec = ^uint32(0)

var (
	v4a = netip.MustParseAddr("192.0.2.1")
	v4b = netip.MustParseAddr("198.51.100.2")
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8::2")
)

// requireBPF skips the test unless it runs as root and BPF is usable.
func requireBPF(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("skipping: loading BPF programs needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		tb.Skipf("skipping: cannot lift the memlock limit for BPF maps: %v", err)
	}
}

// load loads the object; it skips when the kernel cannot load BPF here and
// fails with the verifier log when the verifier refuses a program.
func load(tb testing.TB) *flowmonObjects { return loadPath(tb, false) }

// loadPath loads the object; helperOnly sets fm_direct_max_off to 0, so
// every header is read with bpf_skb_load_bytes, the path paged buffers take
// (BPF_PROG_TEST_RUN only makes linear ones).
func loadPath(tb testing.TB, helperOnly bool) *flowmonObjects {
	tb.Helper()
	requireBPF(tb)
	spec, err := loadFlowmon()
	if err != nil {
		tb.Fatal(err)
	}
	if helperOnly {
		if err := spec.Variables["fm_direct_max_off"].Set(uint32(0)); err != nil {
			tb.Fatal(err)
		}
	}
	var objs flowmonObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, syscall.ENOSYS) ||
			(errors.Is(err, syscall.EPERM) && !errors.As(err, &ve)) {
			tb.Skipf("skipping: cannot load BPF here: %v", err)
		}
		tb.Fatalf("loading the object: %+v", err)
	}
	tb.Cleanup(func() { objs.Close() })
	return &objs
}

func monotonicNow(tb testing.TB) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		tb.Fatal(err)
	}
	return uint64(ts.Nano())
}

// loIndex is the interface BPF_PROG_TEST_RUN runs on when the context names
// none: the loopback device of the current network namespace.
func loIndex(tb testing.TB) uint32 {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		tb.Fatalf("loopback: %v", err)
	}
	return uint32(lo.Index)
}

// flowKey builds the key a flow must be counted under (Dir and Ifindex are
// set by the runner). As16 maps IPv4 to ::ffff:a.b.c.d, as the programs do.
func flowKey(src, dst netip.Addr, sport, dport uint16, proto uint8) Key {
	return Key{Saddr: src.As16(), Daddr: dst.As16(), Sport: sport, Dport: dport, Proto: proto}
}

// A packet and what it must do: be counted under flow (with the TCP flags
// and TOS it carries), or else only in stat.
type pkt struct {
	name   string
	egress bool
	frame  []byte
	flow   *Key
	flags  uint8
	tos    uint8
	stat   Stat // StatNonIP or StatMalformed when flow is nil
}

func flowPkt(name string, egress bool, frame []byte, k Key, flags, tos uint8) pkt {
	return pkt{name: name, egress: egress, frame: frame, flow: &k, flags: flags, tos: tos}
}

func statPkt(name string, frame []byte, s Stat) pkt {
	return pkt{name: name, frame: frame, stat: s}
}

// truncated cuts b to n bytes.
func truncated(b []byte, n int) []byte { return b[:n] }

// ihl sets the IPv4 header length field of the IPv4 header ip.
func ihl(ip []byte, words uint8) []byte {
	ip[0] = 0x40 | words
	return ip
}

// chain6 wraps payload in IPv6 extension headers, innermost last: hdrs are
// the protocol numbers in packet order; the last one's next header is nh.
func chain6(hdrs []uint8, nh uint8, payload []byte) (first uint8, b []byte) {
	b = payload
	for i := len(hdrs) - 1; i >= 0; i-- {
		switch hdrs[i] {
		case protoHopByHop, protoDestOpts:
			b = optsHdr(nh, i%2, b)
		case protoRouting:
			b = routingHdr(nh, 2, b)
		case protoAH:
			b = ahHdr(nh, b)
		case protoFragment:
			b = fragHdr(nh, 0, false, b)
		}
		nh = hdrs[i]
	}
	return nh, b
}

func packets() []pkt {
	payload := []byte("rampart flowmon")
	tcp4 := func(flags uint8, tos uint8) []byte {
		return eth(etherIPv4, ipv4(ip4{proto: protoTCP, tos: tos, src: v4a, dst: v4b}, tcp(40000, 443, flags, payload)))
	}
	ext3, ext3Payload := chain6([]uint8{protoHopByHop, protoDestOpts, protoRouting}, protoTCP, tcp(50000, 22, TCPSyn, nil))
	ah, ahPayload := chain6([]uint8{protoHopByHop, protoAH}, protoUDP, udp(500, 4500, payload))
	six, sixPayload := chain6([]uint8{protoHopByHop, protoDestOpts, protoRouting, protoFragment, protoAH, protoDestOpts}, protoUDP, udp(7, 9, nil))
	seven, sevenPayload := chain6([]uint8{protoHopByHop, protoDestOpts, protoRouting, protoFragment, protoAH, protoDestOpts, protoDestOpts}, protoUDP, udp(7, 9, nil))
	truncExt, truncExtPayload := chain6([]uint8{protoHopByHop, protoDestOpts}, protoUDP, nil)
	nopOptions := []byte{1, 1, 1, 0} // NOP NOP NOP EOL
	longOptions := make([]byte, 40)  // IHL 15: the longest header
	for i := range longOptions {
		longOptions[i] = 1
	}

	return []pkt{
		// IPv4 TCP: one flow, flags ORed over SYN, ACK, FIN|ACK; the TOS
		// of the first packet.
		flowPkt("ipv4 tcp syn", false, tcp4(TCPSyn, 0x10), flowKey(v4a, v4b, 40000, 443, protoTCP), TCPSyn, 0x10),
		flowPkt("ipv4 tcp ack", false, tcp4(TCPAck, 0), flowKey(v4a, v4b, 40000, 443, protoTCP), TCPAck, 0),
		flowPkt("ipv4 tcp fin", false, tcp4(TCPFin|TCPAck, 0), flowKey(v4a, v4b, 40000, 443, protoTCP), TCPFin|TCPAck, 0),
		// The reverse direction is its own flow, at egress.
		flowPkt("egress ipv4 tcp syn-ack", true,
			eth(etherIPv4, ipv4(ip4{proto: protoTCP, src: v4b, dst: v4a}, tcp(443, 40000, TCPSyn|TCPAck, nil))),
			flowKey(v4b, v4a, 443, 40000, protoTCP), TCPSyn|TCPAck, 0),
		// The same 5-tuple at egress is another flow than at ingress.
		flowPkt("egress ipv4 tcp same tuple", true, tcp4(TCPPsh|TCPAck, 0xb8), flowKey(v4a, v4b, 40000, 443, protoTCP), TCPPsh|TCPAck, 0xb8),

		flowPkt("ipv4 udp", false, eth(etherIPv4, ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b}, udp(5353, 53, payload))), flowKey(v4a, v4b, 5353, 53, protoUDP), 0, 0),
		flowPkt("egress ipv4 udp", true, eth(etherIPv4, ipv4(ip4{proto: protoUDP, src: v4b, dst: v4a}, udp(53, 5353, payload))), flowKey(v4b, v4a, 53, 5353, protoUDP), 0, 0),
		flowPkt("egress ipv4 udp again", true, eth(etherIPv4, ipv4(ip4{proto: protoUDP, src: v4b, dst: v4a}, udp(53, 5353, nil))), flowKey(v4b, v4a, 53, 5353, protoUDP), 0, 0),
		// A valid short packet in a padded 60-byte frame: bytes count the frame.
		flowPkt("ipv4 udp padded frame", false, pad(eth(etherIPv4, ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b}, udp(1, 2, nil))), 60), flowKey(v4a, v4b, 1, 2, protoUDP), 0, 0),
		flowPkt("ipv4 sctp", false, eth(etherIPv4, ipv4(ip4{proto: protoSCTP, src: v4a, dst: v4b}, sctp(38412, 38412, payload))), flowKey(v4a, v4b, 38412, 38412, protoSCTP), 0, 0),

		// ICMP: sport 0, dport type<<8|code.
		flowPkt("ipv4 icmp echo", false, eth(etherIPv4, ipv4(ip4{proto: protoICMP, src: v4a, dst: v4b}, icmp(8, 0, payload))), flowKey(v4a, v4b, 0, 8<<8, protoICMP), 0, 0),
		flowPkt("egress ipv4 icmp echo reply", true, eth(etherIPv4, ipv4(ip4{proto: protoICMP, src: v4b, dst: v4a}, icmp(0, 0, payload))), flowKey(v4b, v4a, 0, 0, protoICMP), 0, 0),
		flowPkt("ipv4 icmp port unreachable", false, eth(etherIPv4, ipv4(ip4{proto: protoICMP, src: v4b, dst: v4a}, icmp(3, 3, payload))), flowKey(v4b, v4a, 0, 3<<8|3, protoICMP), 0, 0),

		// IPv4 options: the L4 header is after IHL*4 bytes.
		flowPkt("ipv4 ihl 6 tcp", false, eth(etherIPv4, ipv4(ip4{proto: protoTCP, src: v4a, dst: v4b, options: nopOptions}, tcp(1234, 80, TCPSyn, nil))), flowKey(v4a, v4b, 1234, 80, protoTCP), TCPSyn, 0),
		flowPkt("ipv4 ihl 15 udp", false, eth(etherIPv4, ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b, options: longOptions}, udp(4000, 4001, payload))), flowKey(v4a, v4b, 4000, 4001, protoUDP), 0, 0),

		// IPv4 fragments: the first has the ports, the others count under ports 0.
		flowPkt("ipv4 first fragment", false, eth(etherIPv4, ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b, more: true}, udp(6000, 6001, payload))), flowKey(v4a, v4b, 6000, 6001, protoUDP), 0, 0),
		flowPkt("ipv4 middle fragment", false, eth(etherIPv4, ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b, offset: 1480, more: true}, payload)), flowKey(v4a, v4b, 0, 0, protoUDP), 0, 0),
		flowPkt("ipv4 last fragment (2 bytes)", false, eth(etherIPv4, ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b, offset: 2960}, []byte{1, 2})), flowKey(v4a, v4b, 0, 0, protoUDP), 0, 0),
		flowPkt("ipv4 tcp fragment without l4 header", false, eth(etherIPv4, ipv4(ip4{proto: protoTCP, src: v4a, dst: v4b, offset: 8}, nil)), flowKey(v4a, v4b, 0, 0, protoTCP), 0, 0),

		// VLAN and QinQ.
		flowPkt("vlan ipv4 udp", false, ethTagged([]uint16{etherVLAN}, etherIPv4, ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b}, udp(7000, 7001, payload))), flowKey(v4a, v4b, 7000, 7001, protoUDP), 0, 0),
		flowPkt("qinq ipv4 tcp", false, ethTagged([]uint16{etherQinQ, etherVLAN}, etherIPv4, ipv4(ip4{proto: protoTCP, tos: 0x02, src: v4a, dst: v4b}, tcp(7002, 7003, TCPRst, nil))), flowKey(v4a, v4b, 7002, 7003, protoTCP), TCPRst, 0x02),
		flowPkt("qinq ipv6 udp", false, ethTagged([]uint16{etherQinQ, etherVLAN}, etherIPv6, ipv6(protoUDP, 0, v6a, v6b, udp(7004, 7005, payload))), flowKey(v6a, v6b, 7004, 7005, protoUDP), 0, 0),
		statPkt("three vlan tags", ethTagged([]uint16{etherQinQ, etherVLAN, etherVLAN}, etherIPv4, ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b}, udp(1, 2, nil))), StatNonIP),

		// Protocols without ports.
		flowPkt("ipv4 gre", false, eth(etherIPv4, ipv4(ip4{proto: protoGRE, src: v4a, dst: v4b}, gre(ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b}, udp(1, 2, nil))))), flowKey(v4a, v4b, 0, 0, protoGRE), 0, 0),
		flowPkt("icmpv6 number inside ipv4", false, eth(etherIPv4, ipv4(ip4{proto: protoICMPv6, src: v4a, dst: v4b}, icmp(128, 0, nil))), flowKey(v4a, v4b, 0, 0, protoICMPv6), 0, 0),
		flowPkt("ipv6 no next header", false, eth(etherIPv6, ipv6(protoNoNext, 0, v6a, v6b, nil)), flowKey(v6a, v6b, 0, 0, protoNoNext), 0, 0),

		// IPv6.
		flowPkt("ipv6 tcp", false, eth(etherIPv6, ipv6(protoTCP, 0x28, v6a, v6b, tcp(40001, 443, TCPSyn|TCPEce|TCPCwr, payload))), flowKey(v6a, v6b, 40001, 443, protoTCP), TCPSyn|TCPEce|TCPCwr, 0x28),
		flowPkt("egress ipv6 tcp", true, eth(etherIPv6, ipv6(protoTCP, 0, v6b, v6a, tcp(443, 40001, TCPSyn|TCPAck|TCPEce, nil))), flowKey(v6b, v6a, 443, 40001, protoTCP), TCPSyn|TCPAck|TCPEce, 0),
		flowPkt("ipv6 udp", false, eth(etherIPv6, ipv6(protoUDP, 0xff, v6a, v6b, udp(5353, 53, payload))), flowKey(v6a, v6b, 5353, 53, protoUDP), 0, 0xff),
		flowPkt("ipv6 hop-by-hop, dest opts, routing, tcp", false, eth(etherIPv6, ipv6(ext3, 0, v6a, v6b, ext3Payload)), flowKey(v6a, v6b, 50000, 22, protoTCP), TCPSyn, 0),
		flowPkt("ipv6 hop-by-hop, ah, udp", false, eth(etherIPv6, ipv6(ah, 0, v6a, v6b, ahPayload)), flowKey(v6a, v6b, 500, 4500, protoUDP), 0, 0),
		flowPkt("ipv6 six extension headers, udp", false, eth(etherIPv6, ipv6(six, 0, v6a, v6b, sixPayload)), flowKey(v6a, v6b, 7, 9, protoUDP), 0, 0),
		// A seventh extension header is not parsed: the flow is counted under
		// that header's number, without ports.
		flowPkt("ipv6 seven extension headers", false, eth(etherIPv6, ipv6(seven, 0, v6a, v6b, sevenPayload)), flowKey(v6a, v6b, 0, 0, protoDestOpts), 0, 0),
		flowPkt("ipv6 icmpv6 echo", false, eth(etherIPv6, ipv6(protoICMPv6, 0, v6a, v6b, icmp(128, 0, payload))), flowKey(v6a, v6b, 0, 128<<8, protoICMPv6), 0, 0),
		flowPkt("ipv6 hop-by-hop icmpv6 mld report", false, eth(etherIPv6, ipv6(protoHopByHop, 0, v6a, v6b, optsHdr(protoICMPv6, 0, icmp(143, 0, make([]byte, 20))))), flowKey(v6a, v6b, 0, 143<<8, protoICMPv6), 0, 0),
		flowPkt("icmp number inside ipv6", false, eth(etherIPv6, ipv6(protoICMP, 0, v6a, v6b, icmp(8, 0, nil))), flowKey(v6a, v6b, 0, 0, protoICMP), 0, 0),
		flowPkt("ipv6 first fragment", false, eth(etherIPv6, ipv6(protoFragment, 0, v6a, v6b, fragHdr(protoUDP, 0, true, udp(8000, 8001, payload)))), flowKey(v6a, v6b, 8000, 8001, protoUDP), 0, 0),
		flowPkt("ipv6 non-first fragment", false, eth(etherIPv6, ipv6(protoFragment, 0, v6a, v6b, fragHdr(protoUDP, 1232, false, payload))), flowKey(v6a, v6b, 0, 0, protoUDP), 0, 0),
		flowPkt("ipv6 non-first fragment, empty", false, eth(etherIPv6, ipv6(protoHopByHop, 0, v6a, v6b, optsHdr(protoFragment, 0, fragHdr(protoTCP, 8, true, nil)))), flowKey(v6a, v6b, 0, 0, protoTCP), 0, 0),
		flowPkt("vlan ipv6 sctp", false, ethTagged([]uint16{etherVLAN}, etherIPv6, ipv6(protoSCTP, 0, v6a, v6b, sctp(9, 10, nil))), flowKey(v6a, v6b, 9, 10, protoSCTP), 0, 0),

		// Not IP: stats only.
		statPkt("arp", eth(etherARP, arp(v4a, v4b)), StatNonIP),
		statPkt("truncated vlan tag", eth(etherVLAN, []byte{0, 100}), StatNonIP),
		statPkt("lldp", eth(0x88cc, make([]byte, 46)), StatNonIP),

		// Malformed: stats only, never a flow with garbage ports. The
		// kernel's BPF_PROG_TEST_RUN for TC refuses frames whose ethertype
		// says IPv4/IPv6 but that are shorter than the fixed IP header, so
		// the truncated headers sit behind a VLAN tag.
		statPkt("truncated ipv4 header", ethTagged([]uint16{etherVLAN}, etherIPv4, truncated(ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b}, nil), 19)), StatMalformed),
		statPkt("truncated ipv6 header", ethTagged([]uint16{etherVLAN}, etherIPv6, truncated(ipv6(protoUDP, 0, v6a, v6b, nil), 39)), StatMalformed),
		statPkt("ipv4 ihl 4", eth(etherIPv4, ihl(ipv4(ip4{proto: protoTCP, src: v4a, dst: v4b}, tcp(1, 2, TCPSyn, nil)), 4)), StatMalformed),
		statPkt("ipv4 ihl 0", eth(etherIPv4, ihl(ipv4(ip4{proto: protoTCP, src: v4a, dst: v4b}, tcp(1, 2, TCPSyn, nil)), 0)), StatMalformed),
		statPkt("ipv4 ihl 15, options cut short", eth(etherIPv4, ihl(ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b, totLen: 60}, udp(1, 2, nil)), 15)), StatMalformed),
		statPkt("ipv4 total length < header length", eth(etherIPv4, ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b, totLen: 19}, udp(1, 2, nil))), StatMalformed),
		statPkt("ipv4 ethertype, ipv6 header", eth(etherIPv4, ipv6(protoUDP, 0, v6a, v6b, udp(1, 2, nil))), StatMalformed),
		statPkt("ipv6 ethertype, ipv4 header", eth(etherIPv6, ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b}, make([]byte, 40))), StatMalformed),
		statPkt("truncated tcp header", eth(etherIPv4, ipv4(ip4{proto: protoTCP, src: v4a, dst: v4b}, truncated(tcp(1, 2, TCPSyn, nil), 19))), StatMalformed),
		statPkt("truncated udp header", eth(etherIPv4, ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b}, truncated(udp(1, 2, nil), 7))), StatMalformed),
		statPkt("truncated sctp header", eth(etherIPv4, ipv4(ip4{proto: protoSCTP, src: v4a, dst: v4b}, truncated(sctp(1, 2, nil), 11))), StatMalformed),
		statPkt("truncated icmp header", eth(etherIPv4, ipv4(ip4{proto: protoICMP, src: v4a, dst: v4b}, truncated(icmp(8, 0, nil), 4))), StatMalformed),
		statPkt("ipv4 first fragment, tcp header cut short", eth(etherIPv4, ipv4(ip4{proto: protoTCP, src: v4a, dst: v4b, more: true}, truncated(tcp(1, 2, TCPSyn, nil), 8))), StatMalformed),
		// Ethernet padding is not part of the IP packet: a cut-short UDP header
		// in a padded frame is malformed, whatever the padding holds.
		statPkt("truncated udp header, padded frame", pad(eth(etherIPv4, ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b}, truncated(udp(1, 2, nil), 4))), 60), StatMalformed),
		statPkt("ipv6 truncated tcp header", eth(etherIPv6, ipv6(protoTCP, 0, v6a, v6b, truncated(tcp(1, 2, TCPSyn, nil), 13))), StatMalformed),
		statPkt("ipv6 truncated icmpv6 header", eth(etherIPv6, ipv6(protoICMPv6, 0, v6a, v6b, []byte{128, 0})), StatMalformed),
		statPkt("ipv6 truncated extension header", eth(etherIPv6, ipv6(protoHopByHop, 0, v6a, v6b, []byte{protoUDP, 0})), StatMalformed),
		statPkt("ipv6 extension header longer than the packet", eth(etherIPv6, ipv6(protoHopByHop, 0, v6a, v6b, optsHdr(protoUDP, 0, udp(1, 2, nil))[:8+4])), StatMalformed),
		statPkt("ipv6 truncated fragment header", eth(etherIPv6, ipv6(protoFragment, 0, v6a, v6b, fragHdr(protoUDP, 0, false, nil)[:6])), StatMalformed),
		statPkt("ipv6 headers cut short after two extension headers", eth(etherIPv6, ipv6(truncExt, 0, v6a, v6b, truncExtPayload)), StatMalformed),
	}
}

// merged is what a flow must hold after the test: per-CPU values summed.
type merged struct {
	packets, bytes uint64
	flags, tos     uint8
}

// readPaths runs a test with headers read directly and with the helper.
func readPaths(t *testing.T, f func(t *testing.T, objs *flowmonObjects)) {
	t.Run("direct", func(t *testing.T) { f(t, loadPath(t, false)) })
	t.Run("helper", func(t *testing.T) { f(t, loadPath(t, true)) })
}

// TestFlows runs both programs over every kind of packet and checks the
// flows map and the stats exactly.
func TestFlows(t *testing.T) { readPaths(t, testFlows) }

func testFlows(t *testing.T, objs *flowmonObjects) {
	ifindex := loIndex(t)
	start := monotonicNow(t)

	want := map[Key]merged{}
	var order []Key
	wantStats := [NumStats]uint64{}
	for _, p := range packets() {
		prog := objs.FlowIngress
		if p.egress {
			prog = objs.FlowEgress
		}
		ret, err := prog.Run(&ebpf.RunOptions{Data: p.frame})
		if err != nil {
			t.Fatalf("%s: run: %v", p.name, err)
		}
		if ret != tcActUnspec {
			t.Errorf("%s: returned %d, want TC_ACT_UNSPEC (-1)", p.name, int32(ret))
		}
		wantStats[StatPackets]++
		if p.flow == nil {
			wantStats[p.stat]++
			continue
		}
		k := *p.flow
		k.Ifindex = ifindex
		if p.egress {
			k.Dir = DirEgress
		}
		w, seen := want[k]
		if !seen {
			wantStats[StatNewFlows]++
			order = append(order, k)
			w.tos = p.tos
		}
		w.packets++
		w.bytes += uint64(len(p.frame))
		w.flags |= p.flags
		want[k] = w
	}
	end := monotonicNow(t)

	got := readFlows(t, objs.Flows)
	for _, k := range order {
		g, ok := got[k]
		if !ok {
			t.Errorf("flow %v: missing", k)
			continue
		}
		w := want[k]
		m := merged{g.Packets, g.Bytes, g.TCPFlags, g.TOS}
		if m != w {
			t.Errorf("flow %v: got %+v, want %+v", k, m, w)
		}
		if g.FirstNs < start || g.LastNs > end || g.FirstNs > g.LastNs {
			t.Errorf("flow %v: first %d, last %d: not within the test's [%d, %d] or out of order", k, g.FirstNs, g.LastNs, start, end)
		}
		if w.packets > 1 && g.FirstNs == g.LastNs {
			t.Errorf("flow %v: %d packets at the same nanosecond %d", k, w.packets, g.FirstNs)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected flow %v = %+v", k, g)
		}
	}

	if gotStats := readStats(t, objs.Stats); gotStats != wantStats {
		t.Errorf("stats:\n got %v\nwant %v", fmtStats(gotStats), fmtStats(wantStats))
	}
}

// TestSegments checks GSO/GRO buffers: a buffer counts as one packet (as
// the interface counters count it), whatever its gso_segs,
// and an IPv4 GSO buffer with total length 0 (BIG TCP) is not malformed.
func TestSegments(t *testing.T) { readPaths(t, testSegments) }

func testSegments(t *testing.T, objs *flowmonObjects) {
	ctx, err := skbContext()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	ifindex := loIndex(t)
	big := make([]byte, 2000) // test runs take at most a page, skb_shared_info included
	tso := eth(etherIPv4, ipv4(ip4{proto: protoTCP, src: v4a, dst: v4b}, tcp(1, 2, TCPAck, big)))
	bigTCP := eth(etherIPv4, ipv4(ip4{proto: protoTCP, src: v4a, dst: v4b, totLen: 0x10000}, tcp(3, 4, TCPAck, big))) // 0x10000 wraps to 0
	noGSO := eth(etherIPv4, ipv4(ip4{proto: protoTCP, src: v4a, dst: v4b, totLen: 0x10000}, tcp(5, 6, TCPAck, big)))
	gsoV6 := eth(etherIPv6, ipv6(protoTCP, 0, v6a, v6b, tcp(7, 8, TCPAck, big)))

	runs := []struct {
		frame     []byte
		segs      uint32
		egress    bool
		flow      Key
		malformed bool
	}{
		{tso, 3, true, flowKey(v4a, v4b, 1, 2, protoTCP), false},
		{tso, 0, true, flowKey(v4a, v4b, 1, 2, protoTCP), false}, // gso_segs 0: one packet
		{bigTCP, 3, true, flowKey(v4a, v4b, 3, 4, protoTCP), false},
		{noGSO, 0, false, Key{}, true},
		{gsoV6, 2, false, flowKey(v6a, v6b, 7, 8, protoTCP), false},
	}
	want := map[Key]merged{}
	for i, r := range runs {
		var size uint32
		if r.segs > 0 {
			size = 1448
		}
		opts := &ebpf.RunOptions{Data: r.frame, Context: ctx.with(r.segs, size)}
		prog := objs.FlowIngress
		if r.egress {
			prog = objs.FlowEgress
		}
		ret, err := prog.Run(opts)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if ret != tcActUnspec {
			t.Errorf("run %d: returned %d", i, int32(ret))
		}
		if r.malformed {
			continue
		}
		k := r.flow
		k.Ifindex = ifindex
		if r.egress {
			k.Dir = DirEgress
		}
		w := want[k]
		w.packets++
		w.bytes += uint64(len(r.frame))
		w.flags = TCPAck
		want[k] = w
	}
	got := readFlows(t, objs.Flows)
	if len(got) != len(want) {
		t.Errorf("%d flows, want %d", len(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if m := (merged{g.Packets, g.Bytes, g.TCPFlags, g.TOS}); m != w {
			t.Errorf("flow %v: got %+v, want %+v", k, m, w)
		}
	}
	st := readStats(t, objs.Stats)
	if st[StatPackets] != uint64(len(runs)) || st[StatMalformed] != 1 || st[StatNewFlows] != uint64(len(want)) {
		t.Errorf("stats %v", fmtStats(st))
	}
}

// TestPerCPU runs the same flow on two CPUs and checks each CPU's value:
// the CPU that created the flow holds its first packet, the other starts
// from zero (first_ns and TOS of its own first packet), and SumStats
// merges them.
func TestPerCPU(t *testing.T) {
	objs := load(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var saved unix.CPUSet
	if err := unix.SchedGetaffinity(0, &saved); err != nil {
		t.Skipf("skipping: affinity: %v", err)
	}
	var cpus []int
	for c := 0; c < 1024 && len(cpus) < 2; c++ {
		if saved.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		t.Skip("skipping: needs two CPUs")
	}
	defer unix.SchedSetaffinity(0, &saved)

	frame := func(tos uint8) []byte {
		return eth(etherIPv4, ipv4(ip4{proto: protoUDP, tos: tos, src: v4a, dst: v4b}, udp(1000, 2000, nil)))
	}
	runOn := func(cpu int, f []byte) {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			t.Fatalf("pin to cpu %d: %v", cpu, err)
		}
		if _, err := objs.FlowIngress.Run(&ebpf.RunOptions{Data: f}); err != nil {
			t.Fatal(err)
		}
	}
	runOn(cpus[0], frame(0x10))
	runOn(cpus[1], frame(0x20))
	runOn(cpus[1], frame(0x30))

	k := flowKey(v4a, v4b, 1000, 2000, protoUDP)
	k.Ifindex = loIndex(t)
	kb, _ := k.MarshalBinary()
	var vals [][StatsSize]byte
	if err := objs.Flows.Lookup(kb, &vals); err != nil {
		t.Fatalf("lookup %v: %v", k, err)
	}
	per := make([]Stats, len(vals))
	for i := range vals {
		per[i], _ = DecodeStats(vals[i][:])
	}
	a, b := per[cpus[0]], per[cpus[1]]
	if a.Packets != 1 || a.TOS != 0x10 || a.FirstNs != a.LastNs {
		t.Errorf("cpu %d: %+v", cpus[0], a)
	}
	if b.Packets != 2 || b.TOS != 0x20 || b.FirstNs <= a.LastNs || b.LastNs <= b.FirstNs {
		t.Errorf("cpu %d: %+v (cpu %d: %+v)", cpus[1], b, cpus[0], a)
	}
	for i, s := range per {
		if i != cpus[0] && i != cpus[1] && s != (Stats{}) {
			t.Errorf("cpu %d: %+v, want zero", i, s)
		}
	}
	sum := SumStats(per)
	if sum.Packets != 3 || sum.TOS != 0x10 || sum.FirstNs != a.FirstNs || sum.LastNs != b.LastNs {
		t.Errorf("SumStats = %+v", sum)
	}
	if st := readStats(t, objs.Stats); st[StatNewFlows] != 1 || st[StatPackets] != 3 {
		t.Errorf("stats %v", fmtStats(st))
	}
}

// skbCtx is a struct __sk_buff for BPF_PROG_TEST_RUN, up to gso_size, with
// the field offsets from the kernel's BTF.
type skbCtx struct {
	segsOff, sizeOff uint32
}

func skbContext() (skbCtx, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return skbCtx{}, fmt.Errorf("kernel BTF: %w", err)
	}
	var s *btf.Struct
	if err := spec.TypeByName("__sk_buff", &s); err != nil {
		return skbCtx{}, fmt.Errorf("kernel BTF: %w", err)
	}
	var c skbCtx
	for _, m := range s.Members {
		switch m.Name {
		case "gso_segs":
			c.segsOff = m.Offset.Bytes()
		case "gso_size":
			c.sizeOff = m.Offset.Bytes()
		}
	}
	if c.segsOff == 0 || c.sizeOff == 0 {
		return c, fmt.Errorf("struct __sk_buff has no gso_segs/gso_size")
	}
	return c, nil
}

func (c skbCtx) with(segs, size uint32) []byte {
	b := make([]byte, c.sizeOff+4)
	binary.NativeEndian.PutUint32(b[c.segsOff:], segs)
	binary.NativeEndian.PutUint32(b[c.sizeOff:], size)
	return b
}

// readFlows reads the flows map raw, decodes it with DecodeKey and
// DecodeStats and merges the CPUs with SumStats.
func readFlows(tb testing.TB, m *ebpf.Map) map[Key]Stats {
	tb.Helper()
	out := map[Key]Stats{}
	var (
		kb   []byte
		vals [][StatsSize]byte
	)
	it := m.Iterate()
	for it.Next(&kb, &vals) {
		k, err := DecodeKey(kb)
		if err != nil {
			tb.Fatal(err)
		}
		if k.Pad != [2]byte{} {
			tb.Errorf("flow %v: padding %x is not zero", k, k.Pad)
		}
		cpus := make([]Stats, len(vals))
		for i := range vals {
			if cpus[i], err = DecodeStats(vals[i][:]); err != nil {
				tb.Fatal(err)
			}
			if cpus[i].Pad != [6]byte{} {
				tb.Errorf("flow %v: cpu %d: padding %x is not zero", k, i, cpus[i].Pad)
			}
		}
		if _, dup := out[k]; dup {
			tb.Errorf("flow %v listed twice", k)
		}
		out[k] = SumStats(cpus)
	}
	if err := it.Err(); err != nil {
		tb.Fatalf("iterating flows: %v", err)
	}
	return out
}

func readStats(tb testing.TB, m *ebpf.Map) [NumStats]uint64 {
	tb.Helper()
	var out [NumStats]uint64
	for s := range NumStats {
		var vals [][8]byte
		if err := m.Lookup(uint32(s), &vals); err != nil {
			tb.Fatalf("stats[%v]: %v", s, err)
		}
		for _, v := range vals {
			n, err := DecodeCounter(v[:])
			if err != nil {
				tb.Fatal(err)
			}
			out[s] += n
		}
	}
	return out
}

func fmtStats(s [NumStats]uint64) string {
	var parts []string
	for i, n := range s {
		parts = append(parts, fmt.Sprintf("%v=%d", Stat(i), n))
	}
	return fmt.Sprint(parts)
}

func TestStatNames(t *testing.T) {
	var names []string
	for s := range NumStats + 1 {
		names = append(names, s.String())
	}
	want := []string{"packets", "non_ip", "malformed", "new_flows", "update_failed", "stat(5)"}
	if !slices.Equal(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
}
