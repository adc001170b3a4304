package btfjson

import (
	"testing"

	"github.com/cilium/ebpf/btf"
)

// Semantic typedefs as the project's headers and the kernel declare them.
var (
	tdBe16   = td("__be16", tdU16)
	tdBe32   = td("__be32", tdU32)
	tdBe64   = td("__be64", tdU64)
	tdRpBe16 = td("rp_be16_t", tdU16)
	tdRpBe32 = td("rp_be32_t", tdU32)
	tdIPv4   = td("rp_ipv4_t", tdU32)
	tdIPv6   = td("rp_ipv6_t", arr(tdU8, 16))
	tdIPAddr = td("rp_ipaddr_t", arr(tdU8, 16))
	tdMAC    = td("rp_mac_t", arr(tdU8, 6))
	inAddr   = strct("in_addr", 4, mem("s_addr", tdBe32, 0))
	in6Addr  = strct("in6_addr", 16, mem("in6_u", union("", 16,
		mem("u6_addr8", arr(tdU8, 16), 0),
		mem("u6_addr16", arr(tdBe16, 8), 0),
		mem("u6_addr32", arr(tdBe32, 4), 0),
	), 0))
)

// ip6 returns the 16 bytes of an IPv6 address literal.
func ip6(t testing.TB, s string) []byte {
	t.Helper()
	a, err := parseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestSemanticTypedefs(t *testing.T) {
	runJSON(t, []jsonCase{
		{name: "rp_ipv4_t", typ: tdIPv4, data: b{}.raw(192, 0, 2, 1), want: `"192.0.2.1"`},
		{name: "rp_ipv6_t", typ: tdIPv6, data: ip6(t, "2001:db8::1"), want: `"2001:db8::1"`},
		{name: "rp_ipv6_t zero", typ: tdIPv6, data: b{}.zero(16), want: `"::"`},
		{name: "rp_ipv6_t mapped stays v6", typ: tdIPv6, data: ip6(t, "::ffff:192.0.2.1"), want: `"::ffff:192.0.2.1"`},
		{name: "rp_ipaddr_t v4-mapped", typ: tdIPAddr, data: ip6(t, "::ffff:198.51.100.7"), want: `"198.51.100.7"`},
		{name: "rp_ipaddr_t v6", typ: tdIPAddr, data: ip6(t, "fe80::1:0:0:2"), want: `"fe80::1:0:0:2"`},
		{name: "rp_ipaddr_t RFC 5952", typ: tdIPAddr, data: ip6(t, "2001:0db8:0000:0000:0001:0000:0000:0001"), want: `"2001:db8::1:0:0:1"`},
		{name: "rp_mac_t", typ: tdMAC, data: b{}.raw(0x02, 0, 0, 0, 0xab, 0x01), want: `"02:00:00:00:ab:01"`},
		{name: "__be16", typ: tdBe16, data: b{}.be16(443), want: `443`},
		{name: "__be32", typ: tdBe32, data: b{}.be32(0x01020304), want: `16909060`},
		{name: "__be64", typ: tdBe64, data: b{}.raw(0, 0, 0, 1, 0, 0, 0, 2), want: `4294967298`},
		{name: "rp_be16_t", typ: tdRpBe16, data: b{}.be16(8080), want: `8080`},
		{name: "rp_be32_t", typ: tdRpBe32, data: b{}.be32(70000), want: `70000`},
		{name: "struct in_addr", typ: inAddr, data: b{}.raw(10, 0, 0, 1), want: `"10.0.0.1"`},
		{name: "struct in6_addr", typ: in6Addr, data: ip6(t, "2001:db8::42"), want: `"2001:db8::42"`},
		{name: "outermost typedef wins", typ: td("rp_ipv4_t", tdBe32), data: b{}.raw(10, 1, 2, 3), want: `"10.1.2.3"`},
		{name: "outer be32 over inner ipv4", typ: td("__be32", tdIPv4), data: b{}.be32(5), want: `5`},
		{name: "below another typedef", typ: td("my_addr", &btf.Const{Type: tdIPv4}), data: b{}.raw(1, 2, 3, 4), want: `"1.2.3.4"`},
		{name: "size mismatch ignored", typ: td("rp_ipv4_t", tdU64), data: b{}.u64(7), want: `7`},
		{
			name: "inside a struct",
			typ: strct("flow_key", 40,
				mem("saddr", tdIPAddr, 0), mem("daddr", tdIPv4, 16), mem("sport", tdBe16, 20),
				mem("dport", tdBe16, 22), mem("mac", tdMAC, 24), mem("ifindex", tdU32, 32), mem("gw", inAddr, 36)),
			data: b{}.raw(ip6(t, "::ffff:192.0.2.9")...).raw(192, 0, 2, 1).be16(1234).be16(80).
				raw(2, 0, 0, 0, 0, 1).zero(2).u32(3).raw(10, 0, 0, 254),
			want: `{"saddr":"192.0.2.9","daddr":"192.0.2.1","sport":1234,"dport":80,"mac":"02:00:00:00:00:01","ifindex":3,"gw":"10.0.0.254"}`,
		},
	})
}
