package respond

import (
	"bufio"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// OwnAddresses lists the host's addresses (each as a full-length prefix)
// and its default gateways, IPv4 and IPv6: the responder never blocks them.
func OwnAddresses() []netip.Prefix {
	var out []netip.Prefix
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					ip = ip.Unmap()
					out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
				}
			}
		}
	}
	return append(out, gateways()...)
}

// gateways reads the default routes' gateways from /proc/net/route and
// /proc/net/ipv6_route.
func gateways() []netip.Prefix {
	var out []netip.Prefix
	if f, err := os.Open("/proc/net/route"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 3 || fl[1] != "00000000" || fl[2] == "00000000" {
				continue
			}
			v, err := strconv.ParseUint(fl[2], 16, 32)
			if err != nil {
				continue
			}
			// Little-endian hex of the network-order address.
			a := netip.AddrFrom4([4]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)})
			out = append(out, netip.PrefixFrom(a, 32))
		}
		f.Close()
	}
	if f, err := os.Open("/proc/net/ipv6_route"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			// dst dst_len src src_len next_hop ...
			if len(fl) < 5 || fl[0] != strings.Repeat("0", 32) || fl[1] != "00" {
				continue
			}
			b, err := hex.DecodeString(fl[4])
			if err != nil || len(b) != 16 {
				continue
			}
			a := netip.AddrFrom16([16]byte(b))
			if !a.IsUnspecified() {
				out = append(out, netip.PrefixFrom(a, 128))
			}
		}
		f.Close()
	}
	return out
}
