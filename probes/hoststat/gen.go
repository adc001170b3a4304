// Package hoststat is the hoststat built-in probe: per-destination traffic
// counters (by protocol, TCP SYN/SYN-ACK/RST, fragments, amplification
// source ports, new source pairs) and a per-(destination, source) LRU table
// at TC ingress, read by the threshold detector. The C source is
// bpf/hoststat.bpf.c; record.go decodes its maps.
package hoststat

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type host_key -type host_stats -type src_key -type src_stats hoststat ../../bpf/hoststat.bpf.c -- -I../../bpf/include
