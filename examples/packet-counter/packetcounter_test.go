package packetcounter

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/rampart-shield/rampart/internal/bpftest"
)

// tcActUnspec is TC_ACT_UNSPEC (-1) as BPF_PROG_TEST_RUN reports it.
const tcActUnspec = ^uint32(0)

var (
	v4a = netip.MustParseAddr("192.0.2.1")
	v4b = netip.MustParseAddr("198.51.100.2")
	v6a = netip.MustParseAddr("2001:db8::1")
	v6b = netip.MustParseAddr("2001:db8::2")
)

type want struct{ packets, bytes uint64 }

func TestCountersByDirectionAndProtocol(t *testing.T) {
	bpftest.Require(t)

	var objs packetCounterObjects
	bpftest.CheckLoad(t, loadPacketCounterObjects(&objs, nil))
	defer objs.Close()

	payload := []byte("rampart")
	cases := []struct {
		name  string
		dir   packetCounterDirection
		pkt   []byte
		proto uint8 // the key the packet must be counted under
	}{
		{"ipv4 tcp", packetCounterDirectionDIR_INGRESS, bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv4(bpftest.ProtoTCP, v4a, v4b, bpftest.TCP(40000, 443, nil))), 6},
		{"ipv4 udp", packetCounterDirectionDIR_INGRESS, bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv4(bpftest.ProtoUDP, v4a, v4b, bpftest.UDP(5353, 53, payload))), 17},
		{"ipv4 icmp", packetCounterDirectionDIR_INGRESS, bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv4(bpftest.ProtoICMP, v4a, v4b, bpftest.ICMPEcho(8, payload))), 1},
		{"ipv6 udp", packetCounterDirectionDIR_INGRESS, bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(bpftest.ProtoUDP, v6a, v6b, bpftest.UDP(5353, 53, payload))), 17},
		{"ipv6 hop-by-hop icmpv6", packetCounterDirectionDIR_INGRESS, bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(bpftest.ProtoHopByHop, v6a, v6b, bpftest.HopByHop(bpftest.ProtoICMPv6, bpftest.ICMPEcho(128, payload)))), 58},
		{"ipv6 fragment tcp", packetCounterDirectionDIR_INGRESS, bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(bpftest.ProtoFragment, v6a, v6b, bpftest.Fragment(bpftest.ProtoTCP, 0, true, bpftest.TCP(40000, 443, payload)))), 6},
		{"vlan ipv4 udp", packetCounterDirectionDIR_INGRESS, bpftest.EthVLAN(100, bpftest.EtherTypeIPv4, bpftest.IPv4(bpftest.ProtoUDP, v4a, v4b, bpftest.UDP(1, 2, payload))), 17},
		{"arp is not ip", packetCounterDirectionDIR_INGRESS, bpftest.Eth(bpftest.EtherTypeARP, make([]byte, 28)), 0},
		// Malformed: must be counted (the packet was seen) but under protocol 0,
		// never under the protocol byte a truncated header happens to hold.
		// The kernel's BPF_PROG_TEST_RUN for TC refuses frames whose ethertype
		// says IPv4/IPv6 but that are shorter than the fixed IP header, so the
		// truncated headers sit behind a VLAN tag, which it does not look into.
		{"truncated ipv4 behind vlan", packetCounterDirectionDIR_INGRESS, bpftest.EthVLAN(7, bpftest.EtherTypeIPv4, bpftest.IPv4(bpftest.ProtoUDP, v4a, v4b, nil)[:12]), 0},
		{"truncated ipv6 behind vlan", packetCounterDirectionDIR_INGRESS, bpftest.EthVLAN(7, bpftest.EtherTypeIPv6, bpftest.IPv6(bpftest.ProtoUDP, v6a, v6b, nil)[:39]), 0},
		{"truncated vlan tag", packetCounterDirectionDIR_INGRESS, bpftest.Eth(bpftest.EtherTypeVLAN, []byte{0, 100}), 0},
		{"ipv4 ethertype, ipv6 header", packetCounterDirectionDIR_INGRESS, bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv6(bpftest.ProtoUDP, v6a, v6b, nil)), 0},
		{"ipv4 ihl 4", packetCounterDirectionDIR_INGRESS, bpftest.Eth(bpftest.EtherTypeIPv4, ihl4(bpftest.IPv4(bpftest.ProtoTCP, v4a, v4b, bpftest.TCP(1, 2, nil)))), 0},
		{"truncated ipv6 extension header", packetCounterDirectionDIR_INGRESS, bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(bpftest.ProtoHopByHop, v6a, v6b, []byte{bpftest.ProtoUDP, 0})), 0},

		{"egress ipv4 udp", packetCounterDirectionDIR_EGRESS, bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv4(bpftest.ProtoUDP, v4b, v4a, bpftest.UDP(53, 5353, payload))), 17},
		{"egress ipv4 udp again", packetCounterDirectionDIR_EGRESS, bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv4(bpftest.ProtoUDP, v4b, v4a, bpftest.UDP(53, 5353, append(payload, payload...)))), 17},
		{"egress ipv6 tcp", packetCounterDirectionDIR_EGRESS, bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(bpftest.ProtoTCP, v6b, v6a, bpftest.TCP(443, 40000, nil))), 6},
	}

	expect := map[packetCounterCounterKey]want{}
	for _, c := range cases {
		prog := objs.CountIngress
		if c.dir == packetCounterDirectionDIR_EGRESS {
			prog = objs.CountEgress
		}
		ret, err := prog.Run(&ebpf.RunOptions{Data: c.pkt})
		if err != nil {
			t.Fatalf("%s: run: %v", c.name, err)
		}
		if ret != tcActUnspec {
			t.Errorf("%s: returned %d, want TC_ACT_UNSPEC (-1)", c.name, int32(ret))
		}
		k := packetCounterCounterKey{Dir: c.dir, Proto: c.proto}
		w := expect[k]
		w.packets++
		w.bytes += uint64(len(c.pkt))
		expect[k] = w
	}

	got := map[packetCounterCounterKey]want{}
	var (
		k    packetCounterCounterKey
		vals []packetCounterCounterValue
	)
	it := objs.Counters.Iterate()
	for it.Next(&k, &vals) {
		var w want
		for _, v := range vals {
			w.packets += v.Packets
			w.bytes += v.Bytes
		}
		got[k] = w
	}
	if err := it.Err(); err != nil {
		t.Fatalf("iterating counters: %v", err)
	}

	for k, w := range expect {
		if got[k] != w {
			t.Errorf("key {dir %d proto %d}: got %+v, want %+v", k.Dir, k.Proto, got[k], w)
		}
	}
	for k, g := range got {
		if _, ok := expect[k]; !ok {
			t.Errorf("unexpected key {dir %d proto %d} = %+v", k.Dir, k.Proto, g)
		}
	}
}

// ihl4 sets the IPv4 header length to 4 words, which is invalid.
func ihl4(ip []byte) []byte {
	ip[0] = 0x44
	return ip
}
