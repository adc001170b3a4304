package btfjson

import (
	"fmt"

	"github.com/cilium/ebpf/btf"
)

// semantic is how a well-known typedef renders.
type semantic struct {
	size int
	kind string // "ipv4", "ipv6", "ipaddr", "mac" or "be"
}

// semantics lists the typedef names rendered by meaning rather than by
// their underlying type.
var semantics = map[string]semantic{
	"rp_ipv4_t":   {4, "ipv4"},
	"rp_ipv6_t":   {16, "ipv6"},
	"rp_ipaddr_t": {16, "ipaddr"},
	"rp_mac_t":    {6, "mac"},
	"rp_be16_t":   {2, "be"},
	"rp_be32_t":   {4, "be"},
	"__be16":      {2, "be"},
	"__be32":      {4, "be"},
	"__be64":      {8, "be"},
}

// semanticOf returns the outermost semantic typedef among sems that fits
// size.
func semanticOf(sems []string, size int) (semantic, bool) {
	for _, name := range sems {
		if s := semantics[name]; s.size == size {
			return s, true
		}
	}
	return semantic{}, false
}

// ipv4Leaf renders four bytes as a dotted quad.
func ipv4Leaf() *node {
	n := textLeaf(4, appendIPv4)
	n.code = opIPv4
	return n
}

// semanticNode returns the leaf for a semantic typedef or a well-known
// address struct, or nil.
func semanticNode(u btf.Type, sems []string, size int) *node {
	if s, ok := semanticOf(sems, size); ok {
		switch s.kind {
		case "ipv4":
			return ipv4Leaf()
		case "ipv6":
			return textLeaf(16, appendIPv6)
		case "ipaddr":
			return textLeaf(16, appendIPAuto)
		case "mac":
			return textLeaf(6, appendMAC)
		case "be":
			return networkLeaf(size)
		}
	}
	if s, ok := u.(*btf.Struct); ok {
		switch {
		case s.Name == "in_addr" && size == 4:
			return ipv4Leaf()
		case s.Name == "in6_addr" && size == 16:
			return textLeaf(16, appendIPv6)
		}
	}
	return nil
}

// knownFormat reports whether f is a format name.
func knownFormat(f string) bool {
	switch f {
	case "ipv4", "ipv6", "ip", "mac", "hex", "string", "number":
		return true
	}
	return false
}

// compileFormat builds the leaf for t rendered in format f. An array the
// format does not fit as a whole gets the format on each element.
func (c *compiler) compileFormat(t btf.Type, path, f string) (*node, error) {
	c.depth++
	defer func() { c.depth-- }()
	if c.depth > maxDepth {
		return nil, errDepth
	}
	u, sems, err := resolve(t)
	if err != nil {
		return nil, err
	}
	size, err := btf.Sizeof(u)
	if err != nil {
		return nil, err
	}
	if n := formatLeaf(u, sems, size, f); n != nil {
		return n, nil
	}
	if arr, ok := u.(*btf.Array); ok {
		elem, err := c.compileFormat(arr.Type, path, f)
		if err != nil {
			return nil, err
		}
		return arrayNode(elem, int(arr.Nelems))
	}
	return nil, fmt.Errorf("format %q of %q does not fit %s (%d bytes)", f, path, typeName(t, 0), size)
}

// formatLeaf returns the leaf for u in format f, or nil if f does not fit.
func formatLeaf(u btf.Type, sems []string, size int, f string) *node {
	switch {
	case f == "ipv4" && size == 4, f == "ip" && size == 4:
		return ipv4Leaf()
	case f == "ipv6" && size == 16:
		return textLeaf(16, appendIPv6)
	case f == "ip" && size == 16:
		return textLeaf(16, appendIPAuto)
	case f == "mac" && size == 6:
		return textLeaf(6, appendMAC)
	case f == "hex":
		if !isIntLike(u) {
			return textLeaf(size, appendHex(size))
		}
		if size == 16 {
			return hex128Leaf()
		}
		if s, ok := semanticOf(sems, size); ok && (s.kind == "be" || s.kind == "ipv4") {
			return hexIntLeaf(bigInt(size))
		}
		return hexIntLeaf(nativeInt(size))
	case f == "string":
		if arr, ok := u.(*btf.Array); ok && isByteType(arr.Type) {
			return stringLeaf(size)
		}
	case f == "number":
		if _, isFloat := u.(*btf.Float); isFloat {
			return nil
		}
		if size == 1 || size == 2 || size == 4 || size == 8 {
			return numberLeaf(nativeInt(size), isSigned(u))
		}
	}
	return nil
}

// isIntLike reports whether u has an integer value: an Int, enum or pointer
// of 1, 2, 4 or 8 bytes, or a 16-byte Int.
func isIntLike(u btf.Type) bool {
	size, _ := btf.Sizeof(u)
	switch u.(type) {
	case *btf.Int:
		return size == 1 || size == 2 || size == 4 || size == 8 || size == 16
	case *btf.Enum, *btf.Pointer:
		return size == 1 || size == 2 || size == 4 || size == 8
	}
	return false
}

// isSigned reports whether u is a signed Int or enum.
func isSigned(u btf.Type) bool {
	switch v := u.(type) {
	case *btf.Int:
		return v.Encoding == btf.Signed
	case *btf.Enum:
		return v.Signed
	}
	return false
}

// isByteType reports whether t is a one-byte Int.
func isByteType(t btf.Type) bool {
	u, _, err := resolve(t)
	if err != nil {
		return false
	}
	i, ok := u.(*btf.Int)
	return ok && i.Size == 1
}
