// Package threshold is rampart's FastNetMon-style detector: per destination
// host (and per host group), packets/s, bits/s, new source pairs/s, per
// protocol rates, TCP SYN rate and SYN-without-ACK share, UDP from
// amplification ports, fragments — IPv4 and IPv6 alike — against absolute
// thresholds and multiples of a learned per-host baseline. Every alert says
// which threshold fired, by how much, the top sources and ports, and
// suggests a mitigation: block the sources when a few carry the attack,
// else filter its signature while passing the clients known to be real
// (they completed connections before).
//
// The detector is a pure function of successive snapshots of the hoststat
// probe's counters; it never touches the kernel.
package threshold

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/probes/hoststat"
)

// Name is the detector's name in alerts.
const Name = "threshold"

// Limits are per-destination thresholds, per second; 0 disables one.
type Limits struct {
	// PPS counts every packet except TCP segments that carry data on
	// connections (ACK set): a full-rate download or upload is not a flood.
	PPS float64 `json:"pps,omitempty"`
	// Mbps counts all traffic; off by default (set it to the link's
	// capacity): a benign bulk transfer may fill a link.
	Mbps     float64 `json:"mbps,omitempty"`
	SynPPS   float64 `json:"syn-pps,omitempty"`   // TCP SYN without ACK
	UDPPPS   float64 `json:"udp-pps,omitempty"`   // UDP packets
	ICMPPPS  float64 `json:"icmp-pps,omitempty"`  // ICMP and ICMPv6 packets
	AmpPPS   float64 `json:"amp-pps,omitempty"`   // UDP from one amplification port
	FragPPS  float64 `json:"frag-pps,omitempty"`  // fragments
	NewPairs float64 `json:"new-pairs,omitempty"` // new (source, protocol) pairs
	// SynRatio: the share of TCP packets that are SYNs without ACK, above
	// which a SYN rate of at least SynPPS/10 is a flood (0 disables).
	SynRatio float64 `json:"syn-ratio,omitempty"`
}

// Group applies its own limits to destinations inside its prefixes.
type Group struct {
	Name     string   `json:"name"`
	Prefixes []string `json:"prefixes"`
	Limits   Limits   `json:"limits"`
	prefixes []netip.Prefix
}

// Config configures a Detector. Zero values take the defaults.
type Config struct {
	Limits Limits  `json:"limits,omitempty"`
	Groups []Group `json:"groups,omitempty"`
	// BaselineFactor: once a host's baseline is learned (BaselineMin
	// intervals without alerts), a metric above factor x its baseline
	// also fires, provided it is above MinPPS. 0 disables baselines.
	BaselineFactor float64 `json:"baseline-factor,omitempty"`
	BaselineMin    int     `json:"baseline-min,omitempty"`
	// MinPPS: nothing below this many packets/s is an attack (default 1000).
	MinPPS float64 `json:"min-pps,omitempty"`
	// TopN sources and ports in an alert (default 10).
	TopN int `json:"top,omitempty"`
	// Concentrated: when the top sources carry at least this share of
	// the attack's packets, they are blocked (default 0.8); otherwise its
	// signature is filtered.
	Concentrated float64 `json:"concentrated,omitempty"`
	// Every: an attack on the same host and kind is alerted again at most
	// this often while it goes on (default 5 s).
	Every time.Duration `json:"-"`
	// VerifiedFor: how long a client that completed a connection counts as
	// real (default 10 min).
	VerifiedFor time.Duration `json:"-"`
}

// DefaultLimits are thresholds for one ordinary server: far above what a
// busy web host receives, far below a flood.
var DefaultLimits = Limits{PPS: 100000, SynPPS: 5000, UDPPPS: 20000, ICMPPPS: 2000, AmpPPS: 2000, FragPPS: 5000, NewPairs: 5000, SynRatio: 0.8}

// Alert kinds.
const (
	KindSYN      = "syn-flood"
	KindUDP      = "udp-flood"
	KindICMP     = "icmp-flood"
	KindFrag     = "fragment-flood"
	KindNewPairs = "new-flows-flood"
	KindPackets  = "packet-flood"
	KindBits     = "bandwidth-flood"
	KindAmp      = "amplification-" // + dns, ntp, ssdp, memcached
)

// Detector keeps the previous snapshot and per-host baselines.
type Detector struct {
	cfg      Config
	prev     map[netip.Addr]hoststat.Host
	prevSrc  map[hoststat.SourceKey]hoststat.Source
	prevAt   time.Time
	base     map[netip.Addr]*baseline
	last     map[string]time.Time // host+kind -> last alert
	verified map[netip.Addr]map[netip.Addr]time.Time
}

type baseline struct {
	n                        int
	pps, bps, syn, udp, icmp float64
}

// New checks the config and fills its defaults.
func New(cfg Config) (*Detector, error) {
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits
	}
	if cfg.MinPPS == 0 {
		cfg.MinPPS = 1000
	}
	if cfg.TopN == 0 {
		cfg.TopN = 10
	}
	if cfg.Concentrated == 0 {
		cfg.Concentrated = 0.8
	}
	if cfg.Every == 0 {
		cfg.Every = 5 * time.Second
	}
	if cfg.VerifiedFor == 0 {
		cfg.VerifiedFor = 10 * time.Minute
	}
	if cfg.BaselineMin == 0 {
		cfg.BaselineMin = 60
	}
	if cfg.Concentrated < 0 || cfg.Concentrated > 1 || cfg.BaselineFactor < 0 || cfg.TopN < 0 {
		return nil, fmt.Errorf("threshold: concentrated must be 0..1, baseline-factor and top >= 0")
	}
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		if g.Name == "" {
			return nil, fmt.Errorf("threshold: groups[%d] has no name", i)
		}
		for _, s := range g.Prefixes {
			p, err := alert.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("threshold: group %s: prefix %q: %v", g.Name, s, err)
			}
			g.prefixes = append(g.prefixes, p)
		}
	}
	return &Detector{cfg: cfg, base: map[netip.Addr]*baseline{}, last: map[string]time.Time{}, verified: map[netip.Addr]map[netip.Addr]time.Time{}}, nil
}

// limitsFor returns the limits of the host's group, or the defaults.
func (d *Detector) limitsFor(a netip.Addr) (Limits, string) {
	for _, g := range d.cfg.Groups {
		for _, p := range g.prefixes {
			if p.Contains(a) {
				return g.Limits, g.Name
			}
		}
	}
	return d.cfg.Limits, ""
}

// rates is one host's traffic over an interval, per second.
type rates struct {
	pps, bps, syn, synack, tcp, udp, icmp, frag, pairs float64
	amp                                                map[string]float64
}

func perSec(cur, prev uint64, dt float64) float64 {
	if cur < prev { // the entry was recreated
		return float64(cur) / dt
	}
	return float64(cur-prev) / dt
}

func diff(cur, prev hoststat.Host, dt float64) rates {
	return rates{
		pps: perSec(cur.Packets, prev.Packets, dt) - perSec(cur.TcpData, prev.TcpData, dt), bps: 8 * perSec(cur.Bytes, prev.Bytes, dt),
		syn: perSec(cur.Syn, prev.Syn, dt), synack: perSec(cur.Synack, prev.Synack, dt),
		tcp: perSec(cur.TcpPackets, prev.TcpPackets, dt), udp: perSec(cur.UdpPackets, prev.UdpPackets, dt),
		icmp: perSec(cur.IcmpPackets, prev.IcmpPackets, dt), frag: perSec(cur.Frags, prev.Frags, dt),
		pairs: perSec(cur.NewPairs, prev.NewPairs, dt),
		amp: map[string]float64{
			"dns": perSec(cur.AmpDns, prev.AmpDns, dt), "ntp": perSec(cur.AmpNtp, prev.AmpNtp, dt),
			"ssdp": perSec(cur.AmpSsdp, prev.AmpSsdp, dt), "memcached": perSec(cur.AmpMemcached, prev.AmpMemcached, dt),
		},
	}
}

// fired is one threshold crossed.
type fired struct {
	kind, metric string
	value, limit float64
	baseline     float64
	proto        string
	srcPort      uint16
}

// check lists the thresholds a host's rates cross, most specific first.
func (d *Detector) check(r rates, lim Limits, b *baseline) []fired {
	var out []fired
	over := func(kind, metric, proto string, v, limit, base float64) {
		learned := d.cfg.BaselineFactor > 0 && b != nil && b.n >= d.cfg.BaselineMin && base > 0
		switch {
		case limit > 0 && v > limit:
			out = append(out, fired{kind: kind, metric: metric, value: v, limit: limit, baseline: base, proto: proto})
		case learned && v > d.cfg.MinPPS && v > d.cfg.BaselineFactor*base && metric != "bits/s":
			out = append(out, fired{kind: kind, metric: metric + " vs baseline", value: v, limit: d.cfg.BaselineFactor * base, baseline: base, proto: proto})
		}
	}
	var bb baseline
	if b != nil {
		bb = *b
	}
	for _, name := range []string{"dns", "ntp", "ssdp", "memcached"} {
		if lim.AmpPPS > 0 && r.amp[name] > lim.AmpPPS {
			port := map[string]uint16{"dns": 53, "ntp": 123, "ssdp": 1900, "memcached": 11211}[name]
			out = append(out, fired{kind: KindAmp + name, metric: "udp from port " + fmt.Sprint(port) + " packets/s", value: r.amp[name], limit: lim.AmpPPS, proto: "udp", srcPort: port})
		}
	}
	over(KindSYN, "tcp syn/s", "tcp", r.syn, lim.SynPPS, bb.syn)
	if lim.SynRatio > 0 && r.tcp > 0 && r.syn >= math.Max(lim.SynPPS/10, d.cfg.MinPPS/10) && r.syn/r.tcp > lim.SynRatio &&
		!slices.ContainsFunc(out, func(f fired) bool { return f.kind == KindSYN }) {
		out = append(out, fired{kind: KindSYN, metric: "syn share of tcp packets", value: r.syn / r.tcp, limit: lim.SynRatio, proto: "tcp"})
	}
	over(KindUDP, "udp packets/s", "udp", r.udp, lim.UDPPPS, bb.udp)
	over(KindICMP, "icmp packets/s", "icmp", r.icmp, lim.ICMPPPS, bb.icmp)
	over(KindFrag, "fragments/s", "", r.frag, lim.FragPPS, 0)
	over(KindNewPairs, "new source pairs/s", "", r.pairs, lim.NewPairs, 0)
	over(KindPackets, "packets/s", "", r.pps, lim.PPS, bb.pps)
	if lim.Mbps > 0 && r.bps/1e6 > lim.Mbps {
		out = append(out, fired{kind: KindBits, metric: "Mbit/s", value: r.bps / 1e6, limit: lim.Mbps})
	}
	return out
}

// learn folds a quiet interval into the host's baseline (EWMA).
func (b *baseline) learn(r rates) {
	const alpha = 0.05
	if b.n == 0 {
		b.pps, b.bps, b.syn, b.udp, b.icmp = r.pps, r.bps, r.syn, r.udp, r.icmp
	} else {
		ew := func(old, v float64) float64 { return old + alpha*(v-old) }
		b.pps, b.bps, b.syn, b.udp, b.icmp = ew(b.pps, r.pps), ew(b.bps, r.bps), ew(b.syn, r.syn), ew(b.udp, r.udp), ew(b.icmp, r.icmp)
	}
	b.n++
}

// srcRate is one source's packets/s to a host over the interval.
type srcRate struct {
	src   netip.Addr
	proto uint8
	pps   float64
	dport uint16
}

var protoNum = map[string]uint8{"tcp": 6, "udp": 17, "icmp": 1}

// Observe takes a snapshot of hoststat's hosts and sources at now and
// returns the alerts it raises.
func (d *Detector) Observe(now time.Time, hosts map[netip.Addr]hoststat.Host, sources map[hoststat.SourceKey]hoststat.Source) []alert.Alert {
	defer func() { d.prev, d.prevSrc, d.prevAt = hosts, sources, now }()
	// Clients that completed connections are real (spoofed floods do not).
	for k, s := range sources {
		if s.Established > 0 {
			m := d.verified[k.Dst]
			if m == nil {
				m = map[netip.Addr]time.Time{}
				d.verified[k.Dst] = m
			}
			if p, ok := d.prevSrc[k]; !ok || s.Established > p.Established {
				m[k.Src] = now
			}
		}
	}
	for dst, m := range d.verified {
		for src, t := range m {
			if now.Sub(t) > d.cfg.VerifiedFor {
				delete(m, src)
			}
		}
		if len(m) == 0 {
			delete(d.verified, dst)
		}
	}
	if d.prev == nil {
		return nil
	}
	dt := now.Sub(d.prevAt).Seconds()
	if dt <= 0 {
		return nil
	}
	// Per-source rates, grouped by destination.
	bySrc := map[netip.Addr][]srcRate{}
	for k, s := range sources {
		p := d.prevSrc[k]
		r := perSec(s.Packets, p.Packets, dt)
		if r > 0 {
			bySrc[k.Dst] = append(bySrc[k.Dst], srcRate{k.Src, k.Proto, r, s.Dport})
		}
	}
	var out []alert.Alert
	for dst, cur := range hosts {
		r := diff(cur, d.prev[dst], dt)
		lim, group := d.limitsFor(dst)
		b := d.base[dst]
		if b == nil {
			b = &baseline{}
			d.base[dst] = b
		}
		fs := d.check(r, lim, b)
		if len(fs) == 0 {
			b.learn(r)
			continue
		}
		key := dst.String() + " " + fs[0].kind
		if t, ok := d.last[key]; ok && now.Sub(t) < d.cfg.Every {
			continue
		}
		d.last[key] = now
		out = append(out, d.explain(now, dst, group, r, fs, bySrc[dst]))
	}
	slices.SortFunc(out, func(a, b alert.Alert) int { return cmp.Compare(a.Subject.Dst, b.Subject.Dst) })
	return out
}

// explain builds the alert for the first (most specific) threshold fired.
func (d *Detector) explain(now time.Time, dst netip.Addr, group string, r rates, fs []fired, srcs []srcRate) alert.Alert {
	f := fs[0]
	a := alert.Alert{
		Time: now, Detector: Name, Model: "thresholds", Kind: f.kind,
		Score: f.value, Thresh: f.limit,
		Subject: alert.Subject{Dst: dst.String(), Proto: f.proto},
	}
	for _, x := range fs {
		a.Features = append(a.Features, alert.Feature{Name: x.metric, Value: x.value, Baseline: x.baseline, Contribution: x.value / x.limit})
	}
	// The attack's packets: the protocol's rate, or all.
	total := r.pps
	proto := protoNum[f.proto]
	switch f.proto {
	case "tcp":
		total = r.tcp
	case "udp":
		total = r.udp
	case "icmp":
		total = r.icmp
	}
	var mine []srcRate
	for _, s := range srcs {
		if proto == 0 || s.proto == proto || (proto == 1 && s.proto == 58) {
			mine = append(mine, s)
		}
	}
	slices.SortFunc(mine, func(a, b srcRate) int { return cmp.Compare(b.pps, a.pps) })
	var top float64
	ports := map[uint16]float64{}
	for i, s := range mine {
		if i < d.cfg.TopN {
			top += s.pps
			a.Samples = append(a.Samples, fmt.Sprintf("%s -> %s proto %d dport %d: %.0f packets/s", s.src, dst, s.proto, s.dport, s.pps))
		}
		ports[s.dport] += s.pps
	}
	share := 0.0
	if total > 0 {
		share = math.Min(top/total, 1)
	}
	// The dominant destination port, if one carries most of it.
	var port uint16
	var portPPS float64
	for p, v := range ports {
		if v > portPPS {
			port, portPPS = p, v
		}
	}
	if f.proto == "tcp" || f.proto == "udp" {
		if total > 0 && portPPS/total >= d.cfg.Concentrated && f.srcPort == 0 {
			a.Subject.Port = port
		}
	}
	what := fmt.Sprintf("%s %.0f > %.0f", f.metric, f.value, f.limit)
	if strings.HasSuffix(f.metric, "share of tcp packets") {
		what = fmt.Sprintf("%s %.2f > %.2f", f.metric, f.value, f.limit)
	}
	if group != "" {
		what += " (group " + group + ")"
	}
	if share >= d.cfg.Concentrated && len(mine) > 0 {
		a.Suggested = "block"
		for i, s := range mine {
			if i >= d.cfg.TopN {
				break
			}
			a.Subject.Sources = append(a.Subject.Sources, s.src.String())
		}
		a.Summary = fmt.Sprintf("%s to %s; the top %d sources send %.0f%% of it: block them", what, dst, len(a.Subject.Sources), 100*share)
	} else {
		a.Suggested = "filter"
		a.Subject.SrcPort = f.srcPort
		if f.kind == KindSYN {
			a.Subject.TCPFlags = "syn,!ack"
		}
		for src := range d.verified[dst] {
			a.Subject.Verified = append(a.Subject.Verified, src.String())
		}
		slices.Sort(a.Subject.Verified)
		a.Summary = fmt.Sprintf("%s to %s from %d+ sources (the top %d send %.0f%%): filter the attack's signature, passing %d verified clients",
			what, dst, len(mine), min(len(mine), d.cfg.TopN), 100*share, len(a.Subject.Verified))
	}
	return a
}
