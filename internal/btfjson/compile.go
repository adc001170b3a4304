package btfjson

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/cilium/ebpf/btf"
)

// appendFn appends the rendering of the value that starts at b[0]. Bounds
// are checked once at compile time: b always holds at least the node's size.
type appendFn func(dst, b []byte) []byte

// node is one compiled type: a leaf, a struct/union/datasec or an array.
type node struct {
	size int      // bytes from b[0] the node reads
	json appendFn // JSON rendering
	text appendFn // label text; the JSON for numbers, structs and arrays

	num  func(b []byte) float64 // nil unless numeric
	code opcode                 // leaf: how a program renders it inline

	// Per-CPU merge of leaves. Numeric leaves have add; other leaves have
	// isZero and set (the first CPU with a non-zero value wins). Containers
	// have none of them and are merged member by member.
	add    func(dst, src []byte)
	isZero func(b []byte) bool
	set    func(dst, src []byte)

	object bool    // struct, union or datasec
	fields []field // object: members, anonymous ones flattened
	parts  []field // struct, datasec: direct members (anonymous ones unflattened)

	elem     *node // array that is not a leaf: its element
	nelems   int
	unrolled bool // array inlined into its parent's program

	calls int // object or unrolled array: leaf calls in its flat program
}

// cost returns the number of leaf calls n adds to its parent's program.
func (n *node) cost() int {
	if n.object || n.unrolled {
		return n.calls
	}
	return 1
}

// field is a member of a composite node.
type field struct {
	name string
	off  int    // byte offset in the parent
	key  string // `{"name":` or `,"name":`
	n    *node
}

const maxDepth = 64

var errDepth = errors.New("type nesting too deep")

// compiler holds the state of one New call.
type compiler struct {
	formats map[string]string
	used    map[string]bool
	depth   int
}

// compile builds the node for t found at path, applying the format set for
// path if any.
func (c *compiler) compile(t btf.Type, path string) (*node, error) {
	if f, ok := c.formats[path]; ok {
		c.used[path] = true
		return c.compileFormat(t, path, f)
	}
	return c.compilePlain(t, path)
}

// compilePlain builds the node for t ignoring any format for path itself;
// members below path still get theirs.
func (c *compiler) compilePlain(t btf.Type, path string) (*node, error) {
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
	if n := semanticNode(u, sems, size); n != nil {
		return n, nil
	}

	switch v := u.(type) {
	case *btf.Int:
		return intLeaf(v, nativeInt(size))
	case *btf.Enum:
		return enumLeaf(v, nativeInt(size))
	case *btf.Float:
		return floatLeaf(v)
	case *btf.Pointer:
		return pointerLeaf(nativeInt(size)), nil
	case *btf.Array:
		return c.array(v, path, size)
	case *btf.Struct:
		return c.composite(v.Members, size, false, path)
	case *btf.Union:
		return c.composite(v.Members, size, true, path)
	case *btf.Datasec:
		return c.datasec(v, path)
	default:
		return nil, fmt.Errorf("unsupported type %s", u)
	}
}

// array builds an array node, a string leaf for char arrays.
func (c *compiler) array(a *btf.Array, path string, size int) (*node, error) {
	if isCharType(a.Type) {
		return stringLeaf(size), nil
	}
	elem, err := c.compilePlain(a.Type, path)
	if err != nil {
		return nil, err
	}
	return arrayNode(elem, int(a.Nelems))
}

// arrayNode wraps elem into an array of n elements.
func arrayNode(elem *node, n int) (*node, error) {
	stride := elem.size
	if stride > 0 && n > maxSize/stride {
		return nil, errors.New("array too large")
	}
	arr := &node{size: stride * n, elem: elem, nelems: n}
	if c := elem.cost(); n <= maxUnroll && n*c <= maxUnroll {
		arr.unrolled = true
		arr.calls = n * c
		arr.json = arr.program()
	} else {
		arr.calls = 1
		ej := elem.json
		arr.json = func(dst, b []byte) []byte {
			dst = append(dst, '[')
			for i := range n {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = ej(dst, b[i*stride:])
			}
			return append(dst, ']')
		}
	}
	arr.text = arr.json
	return arr, nil
}

const maxSize = 1 << 30

// composite builds a struct or union node.
func (c *compiler) composite(members []btf.Member, size int, union bool, path string) (*node, error) {
	n := &node{size: size, object: true}
	for _, m := range members {
		if m.Name == "" {
			// Anonymous struct or union: flatten; anything else is padding.
			if m.BitfieldSize != 0 || !isComposite(m.Type) {
				continue
			}
			if m.Offset%8 != 0 {
				return nil, fmt.Errorf("anonymous member at bit offset %d", m.Offset)
			}
			child, err := c.compilePlain(m.Type, path)
			if err != nil {
				return nil, err
			}
			off := int(m.Offset / 8)
			if off+child.size > size {
				return nil, fmt.Errorf("anonymous member at offset %d overflows %d bytes", off, size)
			}
			for _, f := range child.fields {
				f.off += off
				n.fields = append(n.fields, f)
			}
			n.parts = append(n.parts, field{off: off, n: child})
			continue
		}

		mpath := joinPath(path, m.Name)
		var child *node
		var off int
		var err error
		if isBitfield(m) {
			off = int(m.Offset / 8)
			child, err = c.bitfield(m, mpath)
		} else {
			if m.Offset%8 != 0 {
				return nil, fmt.Errorf("member %s at bit offset %d", m.Name, m.Offset)
			}
			off = int(m.Offset / 8)
			child, err = c.compile(m.Type, mpath)
		}
		if err != nil {
			return nil, fmt.Errorf("member %s: %w", m.Name, err)
		}
		if off+child.size > size {
			return nil, fmt.Errorf("member %s at offset %d overflows %d bytes", m.Name, off, size)
		}
		n.fields = append(n.fields, field{name: m.Name, off: off, n: child})
		n.parts = append(n.parts, field{name: m.Name, off: off, n: child})
	}
	n.finishObject()
	if union {
		// Members overlap: merge the union as one opaque value.
		n.parts = nil
		n.isZero, n.set = blob(size)
	}
	return n, nil
}

// datasec builds an object of the section's variables.
func (c *compiler) datasec(ds *btf.Datasec, path string) (*node, error) {
	n := &node{size: int(ds.Size), object: true}
	for _, vs := range ds.Vars {
		v, ok := vs.Type.(*btf.Var)
		if !ok {
			continue
		}
		child, err := c.compile(v.Type, joinPath(path, v.Name))
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", v.Name, err)
		}
		off := int(vs.Offset)
		if off+child.size > n.size {
			return nil, fmt.Errorf("variable %s at offset %d overflows %d bytes", v.Name, off, n.size)
		}
		n.fields = append(n.fields, field{name: v.Name, off: off, n: child})
		n.parts = append(n.parts, field{name: v.Name, off: off, n: child})
	}
	n.finishObject()
	return n, nil
}

// finishObject sets the keys of an object's fields and compiles its JSON.
func (n *node) finishObject() {
	if n.fields == nil {
		n.fields = []field{} // an object, even when empty, for path lookups
	}
	for i := range n.fields {
		sep := byte(',')
		if i == 0 {
			sep = '{'
		}
		key := appendJSONString([]byte{sep}, []byte(n.fields[i].name))
		n.fields[i].key = string(append(key, ':'))
		n.calls += n.fields[i].n.cost()
	}
	n.json = n.program()
	n.text = n.json
}

// isBitfield reports whether m must be read bit by bit.
func isBitfield(m btf.Member) bool {
	if m.BitfieldSize == 0 {
		return false
	}
	if m.Offset%8 != 0 {
		return true
	}
	size, err := btf.Sizeof(m.Type)
	return err != nil || m.BitfieldSize != btf.Bits(size*8)
}

// bitfield builds the leaf for a bitfield member.
func (c *compiler) bitfield(m btf.Member, path string) (*node, error) {
	u, _, err := resolve(m.Type)
	if err != nil {
		return nil, err
	}
	size, err := btf.Sizeof(u)
	if err != nil {
		return nil, err
	}
	bits := int(m.BitfieldSize)
	if bits > size*8 || bits > 64 {
		return nil, fmt.Errorf("bitfield of %d bits in a %d-byte type", bits, size)
	}
	in := bitInt(int(m.Offset%8), bits)
	format, hasFormat := c.formats[path]
	if hasFormat {
		c.used[path] = true
	}
	switch v := u.(type) {
	case *btf.Int:
		if !hasFormat {
			return intLeaf(v, in)
		}
		signed := v.Encoding == btf.Signed || isPlainChar(v)
		switch format {
		case "number":
			return numberLeaf(in, signed), nil
		case "hex":
			return hexIntLeaf(in), nil
		}
	case *btf.Enum:
		if !hasFormat {
			return enumLeaf(v, in)
		}
		switch format {
		case "number":
			return numberLeaf(in, v.Signed), nil
		case "hex":
			return hexIntLeaf(in), nil
		}
	default:
		return nil, fmt.Errorf("bitfield of type %s", u)
	}
	return nil, fmt.Errorf("format %q does not fit a bitfield", format)
}

// resolve follows typedefs, qualifiers and variables to the underlying type,
// collecting semantic typedef names outermost first.
func resolve(t btf.Type) (btf.Type, []string, error) {
	var sems []string
	for range maxDepth {
		switch v := t.(type) {
		case *btf.Typedef:
			if _, ok := semantics[v.Name]; ok {
				sems = append(sems, v.Name)
			}
			t = v.Type
		case *btf.Const:
			t = v.Type
		case *btf.Volatile:
			t = v.Type
		case *btf.Restrict:
			t = v.Type
		case *btf.TypeTag:
			t = v.Type
		case *btf.Var:
			t = v.Type
		case nil:
			return nil, nil, errors.New("nil type")
		default:
			return t, sems, nil
		}
	}
	return nil, nil, errDepth
}

// isComposite reports whether t is a struct or union.
func isComposite(t btf.Type) bool {
	u, _, err := resolve(t)
	if err != nil {
		return false
	}
	switch u.(type) {
	case *btf.Struct, *btf.Union:
		return true
	}
	return false
}

// isCharType reports whether t is a character: a one-byte Int with the Char
// encoding, or the plain C "char" (which compilers emit as a signed Int).
func isCharType(t btf.Type) bool {
	u, _, err := resolve(t)
	if err != nil {
		return false
	}
	i, ok := u.(*btf.Int)
	return ok && i.Size == 1 && (i.Encoding == btf.Char || i.Name == "char")
}

// isPlainChar reports whether i is the C "char" as compilers emit it.
func isPlainChar(i *btf.Int) bool {
	return i.Name == "char" && i.Encoding == btf.Signed
}

// typeName returns a C-like name for t.
func typeName(t btf.Type, depth int) string {
	if depth > maxDepth {
		return "?"
	}
	named := func(kind, name string) string {
		if name == "" {
			return kind
		}
		return kind + " " + name
	}
	switch v := t.(type) {
	case *btf.Struct:
		return named("struct", v.Name)
	case *btf.Union:
		return named("union", v.Name)
	case *btf.Enum:
		return named("enum", v.Name)
	case *btf.Array:
		return typeName(v.Type, depth+1) + "[" + strconv.FormatUint(uint64(v.Nelems), 10) + "]"
	case *btf.Pointer:
		return typeName(v.Target, depth+1) + " *"
	case *btf.Const:
		return "const " + typeName(v.Type, depth+1)
	case *btf.Volatile:
		return "volatile " + typeName(v.Type, depth+1)
	case *btf.Restrict:
		return typeName(v.Type, depth+1)
	case *btf.TypeTag:
		return typeName(v.Type, depth+1)
	case *btf.Var:
		return typeName(v.Type, depth+1)
	case *btf.Void, nil:
		return "void"
	default:
		if name := t.TypeName(); name != "" {
			return name
		}
		return fmt.Sprintf("%T", t)
	}
}
