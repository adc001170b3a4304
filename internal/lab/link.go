package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// LinkOptions tune a link made by Connect or ConnectRoot.
type LinkOptions struct {
	// Quiet disables IPv6 on both ends (before they go up) and installs
	// static neighbour entries both ways, so the only packets on the link
	// are those a test sends.
	Quiet bool
	// Channels, if > 0, sets that many rx/tx channels on both ends with
	// `ethtool -L` (receiving end B first) before up, as native XDP on veth
	// with several queues needs.
	Channels int
	// MTU, if > 0, is set on both ends.
	MTU int
}

// Link is a veth pair between host A and host B (or the root namespace).
type Link struct {
	A, B           *Host      // B is nil for ConnectRoot: that end is in the root netns
	AIface, BIface string     // interface names, each in its end's namespace
	AAddr, BAddr   netip.Addr // IPv4, a /30 pair from 198.18.0.0/15
	AAddr6, BAddr6 netip.Addr // IPv6, a /64 from fd00:72:70::/48; invalid when Quiet
	AIndex, BIndex int        // ifindex of each end in its own namespace
	AMAC, BMAC     net.HardwareAddr
}

// Connect joins a and b with a veth pair, addresses both ends and sets the
// links up.
func (l *Lab) Connect(a, b *Host, opts LinkOptions) (*Link, error) {
	if a == nil || b == nil || a == b {
		return nil, errors.New("lab: connect needs two different hosts")
	}
	return l.connect(a, b, opts)
}

// ConnectRoot joins h with the root namespace, where the agent runs. The B
// end (BIface) stays in the root netns, with addresses, and Link.B is nil.
func (l *Lab) ConnectRoot(h *Host, opts LinkOptions) (*Link, error) {
	if h == nil {
		return nil, errors.New("lab: connect needs a host")
	}
	return l.connect(h, nil, opts)
}

// Subnets: index i is 198.18.0.0 + 4i /30 and fd00:72:70:i::/64.
const numSubnets = 1 << 15

func subnetAddrs(i int) (a4, b4, a6, b6 netip.Addr) {
	v4 := [4]byte{198, 18 + byte(i>>14), byte(i >> 6), byte(i<<2) | 1}
	a4 = netip.AddrFrom4(v4)
	v4[3]++
	b4 = netip.AddrFrom4(v4)
	v6 := [16]byte{0xfd, 0, 0, 0x72, 0, 0x70, byte(i >> 8), byte(i), 15: 1}
	a6 = netip.AddrFrom16(v6)
	v6[15] = 2
	b6 = netip.AddrFrom16(v6)
	return
}

// subnetUsedInRoot reports whether the root netns already has an address in
// subnet i (another lab's ConnectRoot).
func subnetUsedInRoot(i int) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	a4, _, a6, _ := subnetAddrs(i)
	p4, p6 := netip.PrefixFrom(a4, 30), netip.PrefixFrom(a6, 64)
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if ok && (p4.Contains(ip.Unmap()) || p6.Contains(ip)) {
			return true
		}
	}
	return false
}

// end is one side of a link being set up; h is nil for the root netns.
type end struct {
	h            *Host
	iface        string
	addr4, addr6 netip.Addr
	mac          net.HardwareAddr
	index        int
}

func (e *end) ip(args ...string) error {
	if e.h != nil {
		args = append([]string{"-n", e.h.NS}, args...)
	}
	return ipCmd(args...)
}

func (e *end) do(fn func() error) error {
	if e.h != nil {
		return e.h.Do(fn)
	}
	return fn()
}

func (e *end) sysctl(key, val string) error {
	path := "/proc/sys/net/ipv6/conf/" + e.iface + "/" + key
	return e.do(func() error { return os.WriteFile(path, []byte(val), 0o644) })
}

func (e *end) ethtool(args ...string) error {
	name, args := "ethtool", append([]string{}, args...)
	if e.h != nil {
		name, args = "ip", append([]string{"netns", "exec", e.h.NS, "ethtool"}, args...)
	}
	return runCmd(name, args...)
}

func (l *Lab) connect(a, b *Host, opts LinkOptions) (*Link, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errClosed
	}
	n := l.links
	l.links++
	idx := (l.base + n) % numSubnets
	if b == nil { // the root netns is shared with other labs
		for tries := 0; subnetUsedInRoot(idx) && tries < 64; tries++ {
			n = l.links
			l.links++
			idx = (l.base + n) % numSubnets
		}
	}
	lk := &Link{
		A: a, B: b,
		AIface: fmt.Sprintf("%sl%da", l.ID, n),
		BIface: fmt.Sprintf("%sl%db", l.ID, n),
	}
	lk.AAddr, lk.BAddr, lk.AAddr6, lk.BAddr6 = subnetAddrs(idx)
	if opts.Quiet {
		lk.AAddr6, lk.BAddr6 = netip.Addr{}, netip.Addr{}
	}
	ea := &end{h: a, iface: lk.AIface, addr4: lk.AAddr, addr6: lk.AAddr6}
	eb := &end{h: b, iface: lk.BIface, addr4: lk.BAddr, addr6: lk.BAddr6}

	q := strconv.Itoa(max(opts.Channels, 1))
	queues := []string{"numtxqueues", q, "numrxqueues", q}
	args := append([]string{"link", "add", lk.BIface}, queues...)
	if b != nil {
		args = append(args, "netns", b.NS)
	}
	args = append(args, "type", "veth", "peer", "name", lk.AIface)
	args = append(args, queues...)
	args = append(args, "netns", a.NS)
	if err := ipCmd(args...); err != nil {
		return nil, err
	}
	if b == nil {
		l.undo = append(l.undo, func() error { return deleteRootLink(lk.BIface) })
	}

	ends := []*end{eb, ea} // receiving end first
	for _, e := range ends {
		err := e.do(func() error {
			ifc, err := net.InterfaceByName(e.iface)
			if err != nil {
				return err
			}
			e.index, e.mac = ifc.Index, ifc.HardwareAddr
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("lab: %s: %w", e.iface, err)
		}
	}
	lk.AIndex, lk.BIndex = ea.index, eb.index
	lk.AMAC, lk.BMAC = ea.mac, eb.mac

	for _, e := range ends {
		peer := ea
		if e == ea {
			peer = eb
		}
		var err error
		if opts.Quiet {
			err = e.sysctl("disable_ipv6", "1")
		} else {
			err = e.sysctl("accept_dad", "0") // IPv6 usable at once
		}
		if err == nil && opts.MTU > 0 {
			err = e.ip("link", "set", "dev", e.iface, "mtu", strconv.Itoa(opts.MTU))
		}
		if err == nil && opts.Channels > 0 {
			c := strconv.Itoa(opts.Channels)
			err = e.ethtool("-L", e.iface, "rx", c, "tx", c)
		}
		if err == nil {
			err = e.ip("addr", "add", e.addr4.String()+"/30", "dev", e.iface)
		}
		if err == nil && e.addr6.IsValid() {
			err = e.ip("addr", "add", e.addr6.String()+"/64", "dev", e.iface, "nodad")
		}
		if err == nil && opts.Quiet {
			err = e.ip("neigh", "replace", peer.addr4.String(), "lladdr", peer.mac.String(),
				"dev", e.iface, "nud", "permanent")
		}
		if err != nil {
			return nil, fmt.Errorf("lab: %s: %w", e.iface, err)
		}
	}
	for _, e := range ends {
		if err := e.ip("link", "set", "dev", e.iface, "up"); err != nil {
			return nil, err
		}
	}
	return lk, nil
}

// cmdTimeout bounds the setup commands (ip, ethtool).
const cmdTimeout = 20 * time.Second

// runCmd runs a setup command in the calling process's netns.
func runCmd(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("lab: %s %q: %w: %s", name, args, err, Tail(out, 1024))
	}
	return nil
}

func ipCmd(args ...string) error { return runCmd("ip", args...) }

// deleteNetns deletes a namespace; one already gone is not an error.
func deleteNetns(ns string) error {
	if _, err := os.Stat(netnsDir + "/" + ns); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return ipCmd("netns", "del", ns)
}

// deleteRootLink deletes a root-netns link (and so its veth peer); one already
// gone is not an error.
func deleteRootLink(name string) error {
	if _, err := net.InterfaceByName(name); err != nil {
		return nil
	}
	return ipCmd("link", "del", "dev", name)
}

// rootLinks lists the interface names of the root netns.
func rootLinks() ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ifs))
	for i, ifc := range ifs {
		names[i] = ifc.Name
	}
	return names, nil
}
