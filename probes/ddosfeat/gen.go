// Package ddosfeat is the built-in ddosfeat probe: two TC programs (ingress
// and egress) that stream LUCID's per-packet features of the first
// n_packets packets of every bidirectional session and time window through
// a ring buffer, for DDoS detection. The C source is bpf/ddosfeat.bpf.c;
// manifest.yaml says how the agent loads and exports it; record.go decodes
// the records.
package ddosfeat

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type pkt_features -type session_key -type session_state -type ddos_stat -type ddos_dir ddosFeat ../../bpf/ddosfeat.bpf.c -- -I../../bpf/include
