package btfjson

import (
	"errors"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

func TestShortInput(t *testing.T) {
	d := mustNew(t, stats, nil)
	data := statsData()
	for _, n := range []int{0, 1, d.Size() - 1} {
		out, err := d.AppendJSON([]byte("keep"), data[:n])
		if !errors.Is(err, ErrShort) {
			t.Errorf("len %d: err = %v, want ErrShort", n, err)
		}
		if string(out) != "keep" {
			t.Errorf("len %d: dst changed to %q", n, out)
		}
	}
	// Appends to dst.
	out, err := d.AppendJSON([]byte("x="), data)
	if err != nil || !strings.HasPrefix(string(out), `x={"packets":10,`) {
		t.Errorf("AppendJSON did not append: %s, %v", out, err)
	}
}

func TestNewErrors(t *testing.T) {
	self := &btf.Struct{Name: "loop", Size: 4}
	self.Members = []btf.Member{mem("me", self, 0)}
	for _, tc := range []struct {
		name string
		typ  btf.Type
		want string
	}{
		{"nil", nil, "nil type"},
		{"void", &btf.Void{}, ""},
		{"func proto", &btf.FuncProto{Return: tS32}, ""},
		{"forward declaration", &btf.Fwd{Name: "sock"}, ""},
		{"typedef of fwd", td("sock_t", &btf.Fwd{Name: "sock"}), ""},
		{"int of 3 bytes", &btf.Int{Name: "odd", Size: 3}, "integer size"},
		{"long double", &btf.Float{Name: "long double", Size: 16}, "float size"},
		{"enum of 3 bytes", &btf.Enum{Name: "odd", Size: 3}, "enum size"},
		{"member overflows", strct("s", 4, mem("a", tdU64, 0)), "overflows"},
		{"member not byte aligned", strct("s", 8, btf.Member{Name: "a", Type: tdU32, Offset: 3}), "bit offset"},
		{"bitfield overflows", strct("s", 1, bitMem("a", tU32, 4, 6)), "overflows"},
		{"bitfield wider than type", strct("s", 4, bitMem("a", tU8, 0, 9)), "bitfield"},
		{"bitfield of struct", strct("s", 4, bitMem("a", point, 0, 3)), "bitfield"},
		{"datasec var overflows", &btf.Datasec{Name: ".bss", Size: 4, Vars: []btf.VarSecinfo{{Type: &btf.Var{Name: "v", Type: tdU64}}}}, "overflows"},
		{"self-containing struct", self, "too deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.typ, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
