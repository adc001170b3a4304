// Package packetcounter is the packet-counter example probe: two TC programs
// (ingress and egress) that count packets and bytes per direction and IP
// protocol in a per-CPU hash map. See README.md and manifest.yaml.
package packetcounter

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type direction packetCounter packet-counter.bpf.c -- -I../../bpf/include
