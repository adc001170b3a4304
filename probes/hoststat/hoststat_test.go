package hoststat_test

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/rampart-shield/rampart/internal/bpftest"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/probes"
	"github.com/rampart-shield/rampart/probes/hoststat"
)

func tcp(flags uint8, payload int) []byte {
	b := bpftest.TCP(40000, 80, make([]byte, payload))
	b[13] = flags
	return b
}

// TestCounts drives the program with crafted packets through
// BPF_PROG_TEST_RUN and checks every counter it keeps.
func TestCounts(t *testing.T) {
	bpftest.Require(t)
	m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Builtin: probes.Lookup})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = m.Load(context.Background(), probe.LoadRequest{Name: "hoststat", Detached: true})
	bpftest.CheckLoad(t, err)
	srv := netip.MustParseAddr("192.0.2.1")
	srv6 := netip.MustParseAddr("2001:db8::1")
	a := netip.MustParseAddr("198.51.100.7")
	b := netip.MustParseAddr("198.51.100.8")
	a6 := netip.MustParseAddr("2001:db8:1::7")
	v4 := func(src netip.Addr, proto uint8, l4 []byte) []byte {
		return bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv4(proto, src, srv, l4))
	}
	pkts := [][]byte{
		v4(a, bpftest.ProtoTCP, tcp(0x02, 0)),  // SYN
		v4(a, bpftest.ProtoTCP, tcp(0x10, 0)),  // pure ACK
		v4(a, bpftest.ProtoTCP, tcp(0x18, 18)), // ACK with a small request: established
		v4(b, bpftest.ProtoTCP, tcp(0x02, 0)),  // SYN from another source
		v4(b, bpftest.ProtoTCP, tcp(0x12, 0)),  // SYN-ACK
		v4(b, bpftest.ProtoTCP, tcp(0x04, 0)),  // RST
		v4(a, bpftest.ProtoUDP, bpftest.UDP(53, 5000, make([]byte, 30))),
		v4(a, bpftest.ProtoUDP, bpftest.UDP(123, 5000, nil)),
		v4(a, bpftest.ProtoUDP, bpftest.UDP(1900, 5000, nil)),
		v4(a, bpftest.ProtoUDP, bpftest.UDP(11211, 5000, nil)),
		v4(a, bpftest.ProtoICMP, bpftest.ICMPEcho(8, nil)),
		bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv4Frag(bpftest.ProtoUDP, a, srv, 64, false, bpftest.UDP(1, 2, nil))),
		bpftest.Eth(bpftest.EtherTypeIPv6, bpftest.IPv6(bpftest.ProtoTCP, a6, srv6, tcp(0x02, 0))),
		bpftest.Eth(bpftest.EtherTypeARP, make([]byte, 28)),
	}
	var bytes4 uint64
	for i, p := range pkts {
		if _, err := m.TestRun("hoststat", "hoststat_ingress", p, 1); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if i < 12 {
			bytes4 += uint64(len(p))
		}
	}
	raw, err := m.ReadRaw("hoststat", "hosts")
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[netip.Addr]hoststat.Host{}
	for _, e := range raw {
		k, h, err := hoststat.DecodeHost(e.Key, e.Values)
		if err != nil {
			t.Fatal(err)
		}
		hosts[k] = h
	}
	h := hosts[srv]
	want := hoststat.Host{Packets: 12, Bytes: bytes4, TcpPackets: 6, TcpData: 1, UdpPackets: 5, IcmpPackets: 1, Syn: 2, Synack: 1, Rst: 1, Frags: 1,
		AmpDns: 1, AmpNtp: 1, AmpSsdp: 1, AmpMemcached: 1, NewPairs: 4}
	want.TcpBytes, want.UdpBytes, want.IcmpBytes = h.TcpBytes, h.UdpBytes, h.IcmpBytes
	if h != want {
		t.Errorf("host %s:\n got %+v\nwant %+v", srv, h, want)
	}
	if h.TcpBytes+h.UdpBytes+h.IcmpBytes != h.Bytes {
		t.Errorf("per-protocol bytes %d+%d+%d != %d", h.TcpBytes, h.UdpBytes, h.IcmpBytes, h.Bytes)
	}
	if h6 := hosts[srv6]; h6.Syn != 1 || h6.NewPairs != 1 {
		t.Errorf("IPv6 host: %+v", h6)
	}
	raw, err = m.ReadRaw("hoststat", "sources")
	if err != nil {
		t.Fatal(err)
	}
	srcs := map[hoststat.SourceKey]hoststat.Source{}
	for _, e := range raw {
		k, s, err := hoststat.DecodeSource(e.Key, e.Values)
		if err != nil {
			t.Fatal(err)
		}
		srcs[k] = s
	}
	if s := srcs[hoststat.SourceKey{Dst: srv, Src: a, Proto: 6}]; s.Packets != 3 || s.Syn != 1 || s.Established != 1 || s.Dport != 80 {
		t.Errorf("source a/tcp: %+v", s)
	}
	if s := srcs[hoststat.SourceKey{Dst: srv, Src: b, Proto: 6}]; s.Packets != 3 || s.Syn != 1 || s.Established != 0 {
		t.Errorf("source b/tcp: %+v", s)
	}
	if s := srcs[hoststat.SourceKey{Dst: srv, Src: a, Proto: 17}]; s.Packets != 5 {
		t.Errorf("source a/udp: %+v", s)
	}
	if len(srcs) != 5 {
		t.Errorf("%d source pairs, want 5: %v", len(srcs), srcs)
	}
}
