package netio

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

func raw(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func mapped(s string) [16]uint8 { return netip.MustParseAddr(s).As16() }

func TestDecodeEvent(t *testing.T) {
	if EventSize != 88 {
		t.Fatalf("struct netio_event is %d bytes, want 88", EventSize)
	}
	v4 := mapped // As16 of an IPv4 address is IPv4-mapped, as the probe writes it
	for _, tc := range []struct {
		name string
		in   netioNetioEvent
		want Event
	}{{
		name: "accept v4",
		in: netioNetioEvent{TsNs: 123456789, Cookie: 4242, Sk: 0xffff888012345678, Tgid: 100, Tid: 101, Kind: netioNetioKindNETIO_ACCEPT,
			Family: AFInet, Proto: ProtoTCP, Sport: 8080, Dport: 40000, Saddr: v4("127.0.0.1"), Daddr: v4("192.0.2.7"), Netns: 4026531833, State: 1},
		want: Event{Time: 123456789, Cookie: 4242, Sock: 0xffff888012345678, TGID: 100, TID: 101, Kind: Accept, Family: AFInet, Proto: ProtoTCP,
			Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("192.0.2.7:40000"), NetNS: 4026531833, State: 1},
	}, {
		name: "recv v6",
		in: netioNetioEvent{TsNs: 5, Cookie: 9, Sk: 1, Tgid: 7, Tid: 8, Kind: netioNetioKindNETIO_RECV, Size: 10000, Family: AFInet6, Proto: ProtoTCP,
			Sport: 443, Dport: 51000, Saddr: mapped("2001:db8::1"), Daddr: mapped("2001:db8::2"), Flags: FlagNew},
		want: Event{Time: 5, Cookie: 9, Sock: 1, TGID: 7, TID: 8, Kind: Recv, Size: 10000, Family: AFInet6, Proto: ProtoTCP, Flags: FlagNew,
			Local: netip.MustParseAddrPort("[2001:db8::1]:443"), Remote: netip.MustParseAddrPort("[2001:db8::2]:51000")},
	}, {
		name: "v4 peer of a dual-stack socket",
		in: netioNetioEvent{Kind: netioNetioKindNETIO_SEND, Size: 1, Family: AFInet6, Proto: ProtoTCP, Sport: 80, Dport: 1234,
			Saddr: mapped("::ffff:10.0.0.1"), Daddr: mapped("::ffff:10.0.0.2")},
		want: Event{Kind: Send, Size: 1, Family: AFInet6, Proto: ProtoTCP,
			Local: netip.MustParseAddrPort("10.0.0.1:80"), Remote: netip.MustParseAddrPort("10.0.0.2:1234")},
	}, {
		name: "unconnected udp",
		in: netioNetioEvent{Kind: netioNetioKindNETIO_SEND, Size: 512, Family: AFInet, Proto: ProtoUDP, Sport: 5060,
			Saddr: v4("0.0.0.0"), Daddr: v4("0.0.0.0"), State: TCPClose},
		want: Event{Kind: Send, Size: 512, Family: AFInet, Proto: ProtoUDP, State: TCPClose,
			Local: netip.MustParseAddrPort("0.0.0.0:5060"), Remote: netip.MustParseAddrPort("0.0.0.0:0")},
	}, {
		name: "close on behalf of the owner",
		in: netioNetioEvent{Kind: netioNetioKindNETIO_CLOSE, Cookie: 3, Family: AFInet, Proto: ProtoTCP, Sport: 80,
			Saddr: v4("127.0.0.1"), Daddr: v4("127.0.0.1"), State: 9, Flags: FlagOwner},
		want: Event{Kind: Close, Cookie: 3, Family: AFInet, Proto: ProtoTCP, State: 9, Flags: FlagOwner,
			Local: netip.MustParseAddrPort("127.0.0.1:80"), Remote: netip.MustParseAddrPort("127.0.0.1:0")},
	}, {
		name: "exit has no addresses",
		in:   netioNetioEvent{TsNs: 77, Tgid: 12, Tid: 12, Kind: netioNetioKindNETIO_EXIT},
		want: Event{Time: 77, TGID: 12, TID: 12, Kind: Exit},
	}, {
		name: "listen",
		in: netioNetioEvent{Kind: netioNetioKindNETIO_LISTEN, Family: AFInet6, Proto: ProtoTCP, Sport: 8443, State: TCPListen, Flags: FlagOwner,
			Saddr: mapped("::"), Daddr: mapped("::")},
		want: Event{Kind: Listen, Family: AFInet6, Proto: ProtoTCP, State: TCPListen, Flags: FlagOwner,
			Local: netip.MustParseAddrPort("[::]:8443"), Remote: netip.MustParseAddrPort("[::]:0")},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			b := raw(t, tc.in)
			if len(b) != EventSize {
				t.Fatalf("%d bytes", len(b))
			}
			got, err := DecodeEvent(b)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if _, err := DecodeEvent(b[:EventSize-1]); err == nil {
				t.Error("a short record decoded")
			}
		})
	}
}

func TestKindAndString(t *testing.T) {
	for k, s := range map[Kind]string{Accept: "accept", Connect: "connect", Recv: "recv", Send: "send", Close: "close", Exit: "exit", Listen: "listen", 0: "kind-0", 99: "kind-99"} {
		if k.String() != s {
			t.Errorf("Kind(%d) = %q, want %q", k, k.String(), s)
		}
	}
	e := Event{Time: 1, TGID: 2, TID: 3, Kind: Recv, Size: 10, Proto: ProtoTCP, Cookie: 5,
		Local: netip.MustParseAddrPort("127.0.0.1:80"), Remote: netip.MustParseAddrPort("127.0.0.1:999")}
	if s := e.String(); !strings.Contains(s, "recv tcp 127.0.0.1:999->127.0.0.1:80 cookie 5 10 bytes") {
		t.Errorf("String() = %q", s)
	}
	// The Go constants match the C enum.
	if Accept != Kind(netioNetioKindNETIO_ACCEPT) || Listen != Kind(netioNetioKindNETIO_LISTEN) || Exit != Kind(netioNetioKindNETIO_EXIT) {
		t.Error("Kind constants differ from enum netio_kind")
	}
}

func TestDecodeProcAndStats(t *testing.T) {
	want := Proc{Open: -1, Accepts: 2, RecvBytes: 300, SendBytes: 400, RecvEagain: 5, Lost: 6}
	pid, p, err := DecodeProc([]byte{0x39, 0x30, 0, 0}, [][]byte{raw(t, want)})
	if err != nil || pid != 12345 || p != want {
		t.Errorf("DecodeProc = %d, %+v, %v", pid, p, err)
	}
	if _, _, err := DecodeProc([]byte{1, 2}, nil); err == nil {
		t.Error("a bad procs entry decoded")
	}
	key := func(i uint32) []byte { return binary.LittleEndian.AppendUint32(nil, i) }
	val := func(n uint64) []byte { return binary.LittleEndian.AppendUint64(nil, n) }
	keys := [][]byte{key(0), key(1), key(2), key(3), key(4), key(5), key(6), key(9)}
	vals := [][][]byte{{val(10), val(5)}, {val(1), val(2)}, {val(3)}, {val(4)}, {val(0), val(5)}, {val(6)}, {val(7)}, {val(1000)}}
	s, err := DecodeStats(keys, vals)
	if err != nil {
		t.Fatal(err)
	}
	if s != (Stats{Events: 15, RingFull: 3, ProcsFull: 3, OwnersFull: 4, NoSock: 5, NoCookie: 6, Peek: 7}) {
		t.Errorf("DecodeStats = %+v", s)
	}
	if Kind(netioNetioStatNS_MAX) != 7 {
		t.Error("the stats array grew: update Stats")
	}
}
