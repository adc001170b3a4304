// Package flowmon is the flowmon built-in probe: NetFlow-like unidirectional
// flow accounting by two TC programs (ingress and egress) in a per-CPU LRU
// hash map, with counters of the packets it could not account. The C source
// is bpf/flowmon.bpf.c; manifest.yaml exports its maps; record.go decodes
// the raw map entries into typed records.
package flowmon

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel flowmon ../../bpf/flowmon.bpf.c -- -I../../bpf/include
