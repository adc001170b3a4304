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
type Uplink struct {
	Router  *Host
	Root    *Link // Router (A end) to the root namespace (B end)
	Server  netip.Addr
	Clients []*Host
	// Links[i] joins Clients[i] (A end) to the router (B end); the
	// client's address is Links[i].AAddr.
	Links []*Link
}

// Uplink builds a router host and one client host per name, each client
// on its own link to the router, and routes between the clients and the
// server address (IPv4, quiet links). The routes are removed with the
// links when the lab closes.
func (l *Lab) Uplink(ctx context.Context, clients ...string) (*Uplink, error) {
	r, err := l.AddHost("router")
	if err != nil {
		return nil, err
	}
	root, err := l.ConnectRoot(r, LinkOptions{Quiet: true})
	if err != nil {
		return nil, err
	}
	u := &Uplink{Router: r, Root: root, Server: root.BAddr}
	if _, err := r.Run(ctx, cmdTimeout, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
		return nil, err
	}
	for _, name := range clients {
		h, err := l.AddHost(name)
		if err != nil {
			return nil, err
		}
		lk, err := l.Connect(h, r, LinkOptions{Quiet: true})
		if err != nil {
			return nil, err
		}
		if _, err := h.Run(ctx, cmdTimeout, "ip", "route", "add", u.Server.String()+"/32", "via", lk.BAddr.String()); err != nil {
			return nil, err
		}
		if err := ipCmd("route", "add", lk.AAddr.String()+"/32", "via", root.AAddr.String(), "dev", root.BIface); err != nil {
			return nil, fmt.Errorf("lab: route to %s: %w", name, err)
		}
		u.Clients = append(u.Clients, h)
		u.Links = append(u.Links, lk)
	}
	return u, nil
}
