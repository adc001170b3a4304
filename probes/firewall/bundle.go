package firewall

import _ "embed"

//go:embed manifest.yaml
var manifest []byte

// Manifest returns the probe's manifest (YAML). The slice is shared: do not
// modify it.
func Manifest() []byte { return manifest }

// Object returns the compiled eBPF object (little-endian, with BTF) that
// bpf2go generated from bpf/firewall.bpf.c. The slice is shared: do not
// modify it.
func Object() []byte { return _FirewallBytes }

// The kernel's types, as bpf2go generated them from bpf/firewall.bpf.c.
type (
	// KernelRule is struct fw_rule, one slot of the fw_rules array.
	KernelRule = firewallFwRule
	// Candidates is struct fw_cand, the value of the rule tries.
	Candidates = firewallFwCand
	// Key4 and Key6 are the keys of the IPv4 and IPv6 allowlist tries.
	Key4 = firewallFwKey4
	Key6 = firewallFwKey6
	// PKey4 and PKey6 are the keys of the rule prefix hashes.
	PKey4 = firewallFwPkey4
	PKey6 = firewallFwPkey6
	// Lens is the prefix lengths in use for one direction and family.
	Lens = firewallFwLenset
	// Counter is one CPU's packets and bytes of a rule (fw_counters).
	Counter = firewallFwCounter
)

// MaxCandidates is how many rules one remote prefix may have, its own and
// those of the prefixes that cover it (FW_MAX_CANDIDATES).
const MaxCandidates = len(Candidates{}.Slot)

// MaxRules is the size of the rules array (FW_MAX_RULES).
const MaxRules = 65536

// MaxLens is how many prefix lengths one direction and family may use
// (FW_MAX_LENS): a packet costs one hash lookup per length.
const MaxLens = len(Lens{}.Len)

// Indexes of fw_stats (enum fw_stat).
const (
	StatPackets = iota
	StatPassed
	StatDropped
	StatAllowlisted
	StatRateLimited
	StatNotIP
	StatMalformed
	StatExpiredSkipped
	NumStats
)
