package lab

import (
	"context"
	"fmt"
	"net/netip"
)

// Uplink is the usual server setup: client hosts reach the root namespace
// (the server, where the agent runs) through one router namespace, so all
// of their traffic, benign and hostile alike, arrives on one root
// interface, Root.BIface, the one a firewall guards.
//
// Floods from spoofed sources stay inside the lab: the root end has strict
// reverse-path filtering (IPv4 packets from sources not routed back through
// it are dropped before the stack answers them), and IPv6 spoofing uses
// prefixes routed back to a client (RouteBack), since IPv6 has no rp_filter.
type Uplink struct {
	Router  *Host
	Root    *Link // Router (A end) to the root namespace (B end)
	Server  netip.Addr
	Server6 netip.Addr // valid with UplinkOptions.IPv6
	Clients []*Host
	// Links[i] joins Clients[i] (A end) to the router (B end); the
	// client's addresses are Links[i].AAddr and AAddr6.
	Links []*Link
	lab   *Lab
}

// UplinkOptions tune Uplink.
type UplinkOptions struct {
	// IPv6 gives every link IPv6 addresses and routes too (the links are
	// then not quiet: neighbour discovery runs).
	IPv6 bool
}

// Uplink builds a router host and one client host per name, each client
// on its own link to the router, and routes between the clients and the
// server address. The routes go with the links when the lab closes.
func (l *Lab) Uplink(ctx context.Context, opts UplinkOptions, clients ...string) (*Uplink, error) {
	lo := LinkOptions{Quiet: !opts.IPv6}
	r, err := l.AddHost("router")
	if err != nil {
		return nil, err
	}
	root, err := l.ConnectRoot(r, lo)
	if err != nil {
		return nil, err
	}
	u := &Uplink{Router: r, Root: root, Server: root.BAddr, lab: l}
	if err := runCmd("sysctl", "-q", "-w", "net.ipv4.conf."+root.BIface+".rp_filter=1"); err != nil {
		return nil, err
	}
	sysctls := []string{"net.ipv4.ip_forward=1"}
	if opts.IPv6 {
		u.Server6 = root.BAddr6
		sysctls = append(sysctls, "net.ipv6.conf.all.forwarding=1")
	}
	for _, s := range sysctls {
		if _, err := r.Run(ctx, cmdTimeout, "sysctl", "-q", "-w", s); err != nil {
			return nil, err
		}
	}
	for _, name := range clients {
		h, err := l.AddHost(name)
		if err != nil {
			return nil, err
		}
		lk, err := l.Connect(h, r, lo)
		if err != nil {
			return nil, err
		}
		if _, err := h.Run(ctx, cmdTimeout, "ip", "route", "add", u.Server.String()+"/32", "via", lk.BAddr.String()); err != nil {
			return nil, err
		}
		if err := ipCmd("route", "add", lk.AAddr.String()+"/32", "via", root.AAddr.String(), "dev", root.BIface); err != nil {
			return nil, fmt.Errorf("lab: route to %s: %w", name, err)
		}
		if opts.IPv6 {
			if _, err := h.Run(ctx, cmdTimeout, "ip", "-6", "route", "add", u.Server6.String()+"/128", "via", lk.BAddr6.String()); err != nil {
				return nil, err
			}
			if err := ipCmd("-6", "route", "add", lk.AAddr6.String()+"/128", "via", root.AAddr6.String(), "dev", root.BIface); err != nil {
				return nil, fmt.Errorf("lab: route to %s: %w", name, err)
			}
		}
		u.Clients = append(u.Clients, h)
		u.Links = append(u.Links, lk)
	}
	return u, nil
}

// SpoofPrefix6 is a /64 from fd00:72:71::/48 that client i may send from:
// RouteBack routes it back to that client.
func (u *Uplink) SpoofPrefix6(i int) netip.Prefix {
	a := netip.AddrFrom16([16]byte{0xfd, 0x00, 0x00, 0x72, 0x00, 0x71, byte(u.lab.base >> 8), byte(u.lab.base) + byte(i)})
	return netip.PrefixFrom(a, 64)
}

// RouteBack routes prefix p from the root namespace and the router to
// client i, so the server's answers to packets spoofed from p stay in the
// lab (the client, which does not own the addresses, drops them).
func (u *Uplink) RouteBack(ctx context.Context, i int, p netip.Prefix) error {
	lk := u.Links[i]
	via, rootVia := lk.AAddr6, u.Root.AAddr6
	if p.Addr().Is4() {
		via, rootVia = lk.AAddr, u.Root.AAddr
	}
	if !via.IsValid() || !rootVia.IsValid() {
		return fmt.Errorf("lab: route back %s: the uplink has no addresses of that family", p)
	}
	fam := "-4"
	if p.Addr().Is6() {
		fam = "-6"
	}
	if _, err := u.Router.Run(ctx, cmdTimeout, "ip", fam, "route", "add", p.String(), "via", via.String()); err != nil {
		return err
	}
	return ipCmd(fam, "route", "add", p.String(), "via", rootVia.String(), "dev", u.Root.BIface)
}
