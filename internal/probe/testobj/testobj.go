// Package testobj holds a compiled test object with one map of every type
// rampart reads (hash, array, LRU hash, per-CPU hash and array, LRU per-CPU
// hash, queue, stack, LPM trie, ring buffer), each with struct keys and
// values that exercise BTF decoding: typedef'd addresses (rp_ipv4_t,
// rp_ipv6_t, rp_ipaddr_t, rp_mac_t), network-order ports (rp_be16_t,
// rp_be32_t), a char array, an enum, a union, an array of anonymous structs.
//
// The source is bpf/testdata/maptypes.bpf.c; its header comment lists the
// fixed entry that the XDP program "fill" writes into every map when it is
// run once with BPF_PROG_TEST_RUN. The package exports only the loader; the
// rest is bpf2go output for its own test.
package testobj

import (
	"bytes"

	"github.com/cilium/ebpf"
)

// Load returns the object's CollectionSpec (a fresh copy on every call).
func Load() (*ebpf.CollectionSpec, error) { return loadMaptypes() }

// Object returns a copy of the compiled ELF object (little-endian BPF with
// BTF), e.g. for a probe.LoadRequest.
func Object() []byte { return bytes.Clone(_MaptypesBytes) }
