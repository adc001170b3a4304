package probes

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/rampart-shield/rampart/internal/probe"
)

func TestNames(t *testing.T) {
	names := Names()
	want := []string{"cryptofeat", "ddosfeat", "firewall", "flowmon", "hoststat", "netio", "ntp-counter", "packet-counter", "reqmon", "tcp-states"}
	if !slices.Equal(names, want) {
		t.Errorf("Names() = %q, want %q", names, want)
	}
	if !slices.IsSorted(names) {
		t.Errorf("Names() not sorted: %q", names)
	}
	names[0] = "changed"
	if Names()[0] == "changed" {
		t.Error("Names() returns shared storage")
	}
	if m, obj, ok := Lookup("no-such-probe"); ok || m != nil || obj != nil {
		t.Error("Lookup of an unknown name succeeded")
	}
}

// progTypes: which program types may implement a hook kind.
var progTypes = map[string][]ebpf.ProgramType{
	probe.HookXDP:        {ebpf.XDP},
	probe.HookTCIngress:  {ebpf.SchedCLS},
	probe.HookTCEgress:   {ebpf.SchedCLS},
	probe.HookTracepoint: {ebpf.TracePoint},
	probe.HookRawTP:      {ebpf.RawTracepoint},
	probe.HookTPBTF:      {ebpf.Tracing},
	probe.HookUprobe:     {ebpf.Kprobe},
	probe.HookUretprobe:  {ebpf.Kprobe},
}

// TestBundles checks every built-in: the manifest parses, the object's
// CollectionSpec loads and holds every program (of a type that fits its
// hook), map, event record type and parameter the manifest names.
func TestBundles(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			m, obj, ok := Lookup(name)
			if !ok {
				t.Fatal("Lookup failed")
			}
			if m.Name != name {
				t.Errorf("manifest name %q", m.Name)
			}
			spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
			if err != nil {
				t.Fatalf("object: %v", err)
			}
			for _, p := range m.Programs {
				ps, ok := spec.Programs[p.Name]
				if !ok {
					t.Errorf("program %q is not in the object", p.Name)
					continue
				}
				h, err := probe.ParseHook(p.Hook)
				if err != nil {
					t.Errorf("program %q: %v", p.Name, err)
					continue
				}
				if !slices.Contains(progTypes[h.Kind], ps.Type) {
					t.Errorf("program %q: type %v cannot attach to hook %q", p.Name, ps.Type, p.Hook)
				}
			}
			for _, mt := range m.Metrics {
				ms, ok := spec.Maps[mt.Map]
				if !ok {
					t.Errorf("metric %q: map %q is not in the object", mt.Name, mt.Map)
					continue
				}
				if ms.Value == nil {
					t.Errorf("metric %q: map %q has no value BTF", mt.Name, mt.Map)
				}
			}
			for _, e := range m.Events {
				ms, ok := spec.Maps[e.Map]
				if !ok {
					t.Errorf("event stream %q: map %q is not in the object", e.Name, e.Map)
					continue
				}
				if ms.Type != ebpf.RingBuf {
					t.Errorf("event stream %q: map %q is a %v", e.Name, e.Map, ms.Type)
				}
				typ := e.Type
				if len(typ) > 7 && typ[:7] == "struct " {
					typ = typ[7:]
				}
				if _, err := spec.Types.AnyTypeByName(typ); err != nil {
					t.Errorf("event stream %q: type %q: %v", e.Name, e.Type, err)
				}
			}
			for p := range m.Parameters {
				v, ok := spec.Variables[p]
				if !ok {
					t.Errorf("parameter %q is not a variable of the object", p)
					continue
				}
				if !v.Constant() {
					t.Errorf("parameter %q is not a constant (declare it volatile const)", p)
				}
			}

			// The copies are the caller's.
			m.Name = "changed"
			obj[0] ^= 0xff
			m2, obj2, _ := Lookup(name)
			if m2.Name != name || obj2[0] == obj[0] {
				t.Error("Lookup returns shared storage")
			}
		})
	}
}

// TestBundlesVerify loads every built-in into the kernel (the verifier must
// accept each program), without attaching anything.
func TestBundlesVerify(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: loading BPF programs needs root")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("skipping: cannot lift the memlock limit: %v", err)
	}
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			_, obj, _ := Lookup(name)
			spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
			if err != nil {
				t.Fatal(err)
			}
			coll, err := ebpf.NewCollection(spec)
			if err != nil {
				var ve *ebpf.VerifierError
				if errors.Is(err, ebpf.ErrNotSupported) || (errors.Is(err, syscall.EPERM) && !errors.As(err, &ve)) {
					t.Skipf("skipping: cannot load BPF here: %v", err)
				}
				t.Fatalf("%+v", err)
			}
			coll.Close()
		})
	}
}
