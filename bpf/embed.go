// Package bpf holds rampart's eBPF C sources and shared headers. The headers
// are embedded so the agent can compile user C sources (probe load --source)
// against the same vmlinux.h and rampart.h that the built-in probes use.
package bpf

import "embed"

// Include is bpf/include: vmlinux.h and rampart.h.
//
//go:embed include/*.h
var Include embed.FS
