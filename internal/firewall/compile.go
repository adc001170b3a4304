package firewall

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	fwprobe "github.com/rampart-shield/rampart/probes/firewall"
)

// trieKey is one entry of a rule trie: direction and remote prefix (its
// address family says which trie).
type trieKey struct {
	dir    uint8
	prefix netip.Prefix
}

// entry is one rule in the list with the kernel slot that holds it.
type entry struct {
	slot uint32
	n    norm
}

var (
	any4 = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	any6 = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
)

// remotes are the trie prefixes a rule is filed under: its remote prefix,
// or the whole address space of its family (both families when it names
// no address at all).
func (n norm) remotes() []netip.Prefix {
	switch {
	case n.remote.IsValid():
		return []netip.Prefix{n.remote}
	case n.family == 4:
		return []netip.Prefix{any4}
	case n.family == 6:
		return []netip.Prefix{any6}
	}
	return []netip.Prefix{any4, any6}
}

// compile turns the ordered rule list into the contents of the rule tries:
// for every remote prefix that has rules, the slots of its own rules in
// list order, then those of the nearest covering prefix (recursively), so
// the data plane's single longest-prefix lookup finds every rule that can
// apply, most specific first. A list longer than the kernel's candidate
// array is an error naming the prefix.
func compile(rules []entry) (map[trieKey][]uint32, error) {
	own := map[trieKey][]uint32{}
	for _, e := range rules {
		for _, p := range e.n.remotes() {
			k := trieKey{e.n.dir, p}
			own[k] = append(own[k], e.slot)
		}
	}
	keys := make([]trieKey, 0, len(own))
	for k := range own {
		keys = append(keys, k)
	}
	// Shorter prefixes first, so a prefix's ancestor is done before it.
	slices.SortFunc(keys, func(a, b trieKey) int { return cmp.Compare(a.prefix.Bits(), b.prefix.Bits()) })
	out := make(map[trieKey][]uint32, len(keys))
	for _, k := range keys {
		list := append([]uint32(nil), own[k]...)
		for b := k.prefix.Bits() - 1; b >= 0; b-- {
			anc := trieKey{k.dir, netip.PrefixFrom(k.prefix.Addr(), b).Masked()}
			if l, ok := out[anc]; ok {
				list = append(list, l...)
				break
			}
		}
		if len(list) > fwprobe.MaxCandidates {
			return nil, fmt.Errorf("remote prefix %s would have %d candidate rules (its own plus those of covering prefixes); the data plane checks at most %d: merge rules or use narrower prefixes", k.prefix, len(list), fwprobe.MaxCandidates)
		}
		out[k] = list
	}
	for fam, n := range lensInUse(out) {
		if len(n) > fwprobe.MaxLens {
			return nil, fmt.Errorf("the rules use %d prefix lengths for %s; the data plane tries at most %d (one hash lookup each): use fewer distinct lengths", len(n), fam, fwprobe.MaxLens)
		}
	}
	return out, nil
}

// lenKey names one lens set: a direction and a family.
type lenKey struct {
	dir uint8
	v6  bool
}

func (k lenKey) String() string {
	d, f := "ingress", "IPv4"
	if k.dir == 1 {
		d = "egress"
	}
	if k.v6 {
		f = "IPv6"
	}
	return d + " " + f
}

// index is the lens set's slot in fw_lens.
func (k lenKey) index() uint32 {
	i := uint32(k.dir) * 2
	if k.v6 {
		i++
	}
	return i
}

// lensInUse lists the prefix lengths of every direction and family in
// use, longest first: the order the data plane tries them in.
func lensInUse(prefixes map[trieKey][]uint32) map[lenKey][]int {
	set := map[lenKey]map[int]bool{}
	for k := range prefixes {
		lk := lenKey{k.dir, k.prefix.Addr().Is6()}
		if set[lk] == nil {
			set[lk] = map[int]bool{}
		}
		set[lk][k.prefix.Bits()] = true
	}
	out := map[lenKey][]int{}
	for lk, bits := range set {
		for b := range bits {
			out[lk] = append(out[lk], b)
		}
		slices.SortFunc(out[lk], func(a, b int) int { return b - a })
	}
	return out
}

// lenset is the kernel's fw_lens value for a list of lengths.
func lenset(lens []int) fwprobe.Lens {
	var l fwprobe.Lens
	l.N = uint32(len(lens))
	for i, b := range lens {
		l.Len[i] = uint8(b)
	}
	return l
}

// kernel encodings of trie keys and values.

func key4(k trieKey) fwprobe.Key4 {
	return fwprobe.Key4{Prefixlen: 32 + uint32(k.prefix.Bits()), Dir: uint32(k.dir), Addr: k.prefix.Addr().As4()}
}

func key6(k trieKey) fwprobe.Key6 {
	return fwprobe.Key6{Prefixlen: 32 + uint32(k.prefix.Bits()), Dir: uint32(k.dir), Addr: k.prefix.Addr().As16()}
}

func pkey4(k trieKey) fwprobe.PKey4 {
	return fwprobe.PKey4{Dir: k.dir, Plen: uint8(k.prefix.Bits()), Addr: k.prefix.Addr().As4()}
}

func pkey6(k trieKey) fwprobe.PKey6 {
	return fwprobe.PKey6{Dir: k.dir, Plen: uint8(k.prefix.Bits()), Addr: k.prefix.Addr().As16()}
}

func fromPKey4(k fwprobe.PKey4) trieKey {
	return trieKey{k.Dir, netip.PrefixFrom(netip.AddrFrom4(k.Addr), int(k.Plen))}
}

func fromPKey6(k fwprobe.PKey6) trieKey {
	return trieKey{k.Dir, netip.PrefixFrom(netip.AddrFrom16(k.Addr), int(k.Plen))}
}

func fromKey4(k fwprobe.Key4) trieKey {
	return trieKey{uint8(k.Dir), netip.PrefixFrom(netip.AddrFrom4(k.Addr), int(k.Prefixlen)-32)}
}

func fromKey6(k fwprobe.Key6) trieKey {
	return trieKey{uint8(k.Dir), netip.PrefixFrom(netip.AddrFrom16(k.Addr), int(k.Prefixlen)-32)}
}

func candidates(slots []uint32) fwprobe.Candidates {
	var c fwprobe.Candidates
	c.N = uint32(len(slots))
	copy(c.Slot[:], slots)
	return c
}

func fromCandidates(c fwprobe.Candidates) []uint32 {
	n := min(int(c.N), len(c.Slot))
	return append([]uint32(nil), c.Slot[:n]...)
}

// addrBytes is an address as the kernel stores it: 16 bytes, IPv4 in the
// first four.
func addrBytes(p netip.Prefix) [16]byte {
	var b [16]byte
	if !p.IsValid() {
		return b
	}
	if p.Addr().Is4() {
		a := p.Addr().As4()
		copy(b[:], a[:])
		return b
	}
	return p.Addr().As16()
}

func maskBytes(p netip.Prefix) [16]byte {
	var b [16]byte
	if !p.IsValid() {
		return b
	}
	for i := 0; i < p.Bits(); i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return b
}

func prefixFromBytes(b [16]byte, bits int, family uint8) netip.Prefix {
	if family == 4 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(b[:4])), bits)
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), bits)
}
