// Package firewall is the rule model of rampart's firewall probe: rules,
// the batch semantics of Polycube's firewall (insert at id, append, update,
// delete by id or by match, all or nothing), and the compiler that turns the
// ordered rule list into the probe's maps (LPM tries of candidate lists and
// an array of rules). It is the only writer of those maps.
package firewall

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Actions.
const (
	ActionPass      = "pass"
	ActionDrop      = "drop"
	ActionRateLimit = "ratelimit"
)

// Directions.
const (
	Ingress = "ingress"
	Egress  = "egress"
)

// Rule is one firewall rule. Fields left empty match anything.
type Rule struct {
	// ID is the rule's position in the list, 1-based: rules are tried in
	// this order among those of the same remote prefix length (a longer
	// remote prefix always comes first). Inserting or deleting a rule
	// renumbers the ones after it, as in Polycube's firewall.
	ID int `json:"id"`
	// Direction is ingress (XDP, the default) or egress (TC).
	Direction string `json:"direction,omitempty"`
	// Family restricts a rule that names no address to ipv4 or ipv6;
	// a rule with an address has that address's family.
	Family string `json:"family,omitempty"`
	// Src and Dst are prefixes ("192.0.2.0/24", "2001:db8::/32") or
	// addresses. The remote side (Src on ingress, Dst on egress) is looked
	// up in an LPM trie.
	Src string `json:"src,omitempty"`
	Dst string `json:"dst,omitempty"`
	// Proto is tcp, udp, icmp, icmpv6 or an IP protocol number.
	Proto string `json:"proto,omitempty"`
	// Sport and Dport are a port or a range "LO-HI" (TCP and UDP only).
	Sport string `json:"sport,omitempty"`
	Dport string `json:"dport,omitempty"`
	// TCPFlags lists flags that must be set or (with "!") clear, e.g.
	// "syn,!ack" for connection attempts.
	TCPFlags string `json:"tcpflags,omitempty"`
	Action   string `json:"action"`
	// Rate and Burst configure ratelimit: packets per second and bucket
	// size per source address (burst defaults to the rate).
	Rate  uint32 `json:"rate,omitempty"`
	Burst uint32 `json:"burst,omitempty"`
	// TTL, when set on input, makes the rule expire that long after it is
	// applied ("10m", "1h"); Expires is when it expires. The data plane
	// ignores an expired rule even when the agent is not running.
	TTL         string    `json:"ttl,omitempty"`
	Expires     time.Time `json:"expires,omitempty"`
	Description string    `json:"description,omitempty"`

	// Set by the firewall.
	Created time.Time `json:"created,omitempty"`
	Packets uint64    `json:"packets"`
	Bytes   uint64    `json:"bytes"`
}

// norm is a validated rule in the form the kernel stores.
type norm struct {
	family      uint8 // 4, 6, or 0 for both
	dir         uint8
	action      uint8
	match       uint8
	proto       uint8
	flagsMask   uint8
	flagsValue  uint8
	remote      netip.Prefix // invalid: any
	local       netip.Prefix
	sport       [2]uint16
	dport       [2]uint16
	rate, burst uint32
	created     time.Time
	expires     time.Time
	description string
}

// Kernel encodings (bpf/firewall.bpf.c).
const (
	kPass      = 0
	kDrop      = 1
	kRateLimit = 2

	mProto = 1 << 0
	mSport = 1 << 1
	mDport = 1 << 2
	mFlags = 1 << 3
	mLocal = 1 << 4

	maxDescription = 63
	maxRate        = 100_000_000
)

var protoNames = map[string]uint8{"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "gre": 47, "esp": 50}

var flagBits = map[string]uint8{"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20, "ece": 0x40, "cwr": 0x80}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "any" {
		return netip.Prefix{}, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%q is not a prefix (want 192.0.2.0/24 or 2001:db8::/32)", s)
		}
		if p.Addr().Is4In6() {
			return p, fmt.Errorf("%q: write IPv4 prefixes as IPv4", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parsePorts(s string) ([2]uint16, bool, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "any" {
		return [2]uint16{}, false, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	if err != nil {
		return [2]uint16{}, false, fmt.Errorf("port %q: want a number 0-65535 or a range LO-HI", s)
	}
	b := a
	if isRange {
		if b, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 16); err != nil || b < a {
			return [2]uint16{}, false, fmt.Errorf("port range %q: want LO-HI with LO <= HI", s)
		}
	}
	return [2]uint16{uint16(a), uint16(b)}, true, nil
}

func parseFlags(s string) (mask, value uint8, err error) {
	for _, f := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return r == ',' || r == ' ' || r == '|' }) {
		neg := strings.HasPrefix(f, "!")
		bit, ok := flagBits[strings.TrimPrefix(f, "!")]
		if !ok {
			return 0, 0, fmt.Errorf("TCP flag %q: want fin, syn, rst, psh, ack, urg, ece or cwr, with ! for clear", f)
		}
		mask |= bit
		if !neg {
			value |= bit
		}
	}
	return mask, value, nil
}

// normalize validates a rule given at time now and returns its kernel form.
func normalize(r Rule, now time.Time) (norm, error) {
	var n norm
	switch strings.ToLower(r.Direction) {
	case "", Ingress, "in":
		n.dir = 0
	case Egress, "out":
		n.dir = 1
	default:
		return n, fmt.Errorf("direction %q: want ingress or egress", r.Direction)
	}
	switch strings.ToLower(r.Action) {
	case ActionDrop, "deny", "block":
		n.action = kDrop
	case ActionPass, "accept", "allow":
		n.action = kPass
	case ActionRateLimit, "rate-limit":
		n.action = kRateLimit
		if r.Rate == 0 || r.Rate > maxRate {
			return n, fmt.Errorf("ratelimit needs rate (packets per second, 1-%d)", maxRate)
		}
		n.rate, n.burst = r.Rate, r.Burst
		if n.burst == 0 {
			n.burst = r.Rate
		}
	case "":
		return n, fmt.Errorf("no action: want drop, pass or ratelimit")
	default:
		return n, fmt.Errorf("action %q: want drop, pass or ratelimit", r.Action)
	}
	src, err := parsePrefix(r.Src)
	if err != nil {
		return n, fmt.Errorf("src: %w", err)
	}
	dst, err := parsePrefix(r.Dst)
	if err != nil {
		return n, fmt.Errorf("dst: %w", err)
	}
	if src.IsValid() && dst.IsValid() && src.Addr().Is4() != dst.Addr().Is4() {
		return n, fmt.Errorf("src %s and dst %s are of different IP versions", src, dst)
	}
	switch strings.ToLower(r.Family) {
	case "":
	case "ipv4", "ip4", "4", "inet":
		n.family = 4
	case "ipv6", "ip6", "6", "inet6":
		n.family = 6
	default:
		return n, fmt.Errorf("family %q: want ipv4 or ipv6", r.Family)
	}
	for _, p := range []netip.Prefix{src, dst} {
		if p.IsValid() {
			f := uint8(6)
			if p.Addr().Is4() {
				f = 4
			}
			if n.family != 0 && n.family != f {
				return n, fmt.Errorf("%s is not of family %s", p, r.Family)
			}
			n.family = f
		}
	}
	// A zero-length prefix is "any address of its family".
	if src.IsValid() && src.Bits() == 0 {
		src = netip.Prefix{}
	}
	if dst.IsValid() && dst.Bits() == 0 {
		dst = netip.Prefix{}
	}
	n.remote, n.local = src, dst
	if n.dir == 1 {
		n.remote, n.local = dst, src
	}
	if n.local.IsValid() {
		n.match |= mLocal
	}
	if p := strings.ToLower(strings.TrimSpace(r.Proto)); p != "" && p != "any" {
		if v, ok := protoNames[p]; ok {
			n.proto = v
		} else if v, err := strconv.ParseUint(p, 10, 8); err == nil {
			n.proto = uint8(v)
		} else {
			return n, fmt.Errorf("proto %q: want tcp, udp, icmp, icmpv6 or a number 0-255", r.Proto)
		}
		n.match |= mProto
	}
	var has bool
	if n.sport, has, err = parsePorts(r.Sport); err != nil {
		return n, fmt.Errorf("sport: %w", err)
	} else if has {
		n.match |= mSport
	}
	if n.dport, has, err = parsePorts(r.Dport); err != nil {
		return n, fmt.Errorf("dport: %w", err)
	} else if has {
		n.match |= mDport
	}
	if n.match&(mSport|mDport) != 0 && n.proto != 6 && n.proto != 17 {
		return n, fmt.Errorf("ports need proto tcp or udp")
	}
	if r.TCPFlags != "" {
		if n.flagsMask, n.flagsValue, err = parseFlags(r.TCPFlags); err != nil {
			return n, err
		}
		if n.proto != 6 {
			return n, fmt.Errorf("tcpflags need proto tcp")
		}
		n.match |= mFlags
	}
	if len(r.Description) > maxDescription {
		return n, fmt.Errorf("description is %d bytes; at most %d", len(r.Description), maxDescription)
	}
	n.description = r.Description
	n.created = r.Created
	if n.created.IsZero() {
		n.created = now
	}
	switch {
	case r.TTL != "":
		d, err := time.ParseDuration(r.TTL)
		if err != nil || d <= 0 {
			return n, fmt.Errorf("ttl %q: want a positive duration such as 90s, 10m or 24h", r.TTL)
		}
		n.expires = now.Add(d)
	case !r.Expires.IsZero():
		if !r.Expires.After(now) {
			return n, fmt.Errorf("expires %s is in the past", r.Expires.Format(time.RFC3339))
		}
		n.expires = r.Expires
	}
	return n, nil
}

// rule renders a kernel-form rule back to the API form (without ID and
// counters).
func (n norm) rule() Rule {
	r := Rule{Direction: Ingress, Created: n.created, Expires: n.expires, Description: n.description}
	switch n.family {
	case 4:
		r.Family = "ipv4"
	case 6:
		r.Family = "ipv6"
	}
	src, dst := n.remote, n.local
	if n.dir == 1 {
		r.Direction = Egress
		src, dst = dst, src
	}
	if src.IsValid() {
		r.Src = prefixString(src)
	}
	if dst.IsValid() {
		r.Dst = prefixString(dst)
	}
	switch n.action {
	case kDrop:
		r.Action = ActionDrop
	case kPass:
		r.Action = ActionPass
	case kRateLimit:
		r.Action, r.Rate, r.Burst = ActionRateLimit, n.rate, n.burst
	}
	if n.match&mProto != 0 {
		r.Proto = strconv.Itoa(int(n.proto))
		for name, v := range protoNames {
			if v == n.proto && name != "ipv6-icmp" {
				r.Proto = name
			}
		}
	}
	if n.match&mSport != 0 {
		r.Sport = portString(n.sport)
	}
	if n.match&mDport != 0 {
		r.Dport = portString(n.dport)
	}
	if n.match&mFlags != 0 {
		var fs []string
		for _, name := range []string{"fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"} {
			bit := flagBits[name]
			if n.flagsMask&bit != 0 {
				if n.flagsValue&bit == 0 {
					name = "!" + name
				}
				fs = append(fs, name)
			}
		}
		r.TCPFlags = strings.Join(fs, ",")
	}
	return r
}

// sameMatch reports whether two rules match the same packets with the same
// action (delete by match ignores description, expiry and counters).
func (n norm) sameMatch(o norm) bool {
	return n.family == o.family && n.dir == o.dir && n.action == o.action && n.match == o.match &&
		n.proto == o.proto && n.flagsMask == o.flagsMask && n.flagsValue == o.flagsValue &&
		n.remote == o.remote && n.local == o.local && n.sport == o.sport && n.dport == o.dport &&
		n.rate == o.rate && n.burst == o.burst
}

func prefixString(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

func portString(p [2]uint16) string {
	if p[0] == p[1] {
		return strconv.Itoa(int(p[0]))
	}
	return fmt.Sprintf("%d-%d", p[0], p[1])
}
