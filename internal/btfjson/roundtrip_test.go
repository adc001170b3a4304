package btfjson

import (
	"bytes"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// TestMarshaledBTF decodes types that went through the BTF wire format, as
// types loaded from an object file do, and expects the same output as the
// hand-built originals.
func TestMarshaledBTF(t *testing.T) {
	for _, tc := range []struct {
		typ  btf.Type
		data []byte
	}{
		{stats, statsData()},
		{fuzzType, bytes.Repeat([]byte{0xa5, 0x00, 0xff, 0x41}, 50)},
		{benchKey, benchKeyData},
	} {
		name := tc.typ.TypeName()
		t.Run(name, func(t *testing.T) {
			builder, err := btf.NewBuilder([]btf.Type{tc.typ}, nil)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := builder.Marshal(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			spec, err := btf.LoadSpecFromReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			loaded, err := spec.AnyTypeByName(name)
			if err != nil {
				t.Fatal(err)
			}
			want := render(t, mustNew(t, tc.typ, nil), tc.data)
			if got := render(t, mustNew(t, loaded, nil), tc.data); got != want {
				t.Errorf("loaded type renders\n %s\nhand-built\n %s", got, want)
			}
		})
	}
}
