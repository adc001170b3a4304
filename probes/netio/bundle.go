package netio

import _ "embed"

//go:embed manifest.yaml
var manifest []byte

// Manifest returns the probe's manifest (YAML). The slice is shared: do not
// modify it.
func Manifest() []byte { return manifest }

// Object returns the compiled eBPF object (little-endian, with BTF) that
// bpf2go generated from bpf/netio.bpf.c. The slice is shared: do not modify
// it.
func Object() []byte { return _NetioBytes }
