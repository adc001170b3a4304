// Package cryptofeat is the built-in cryptofeat probe: two TC programs
// (ingress and egress) that count packets and bytes per bidirectional
// TCP/UDP session in a per-CPU hash, with a guess of which side is the
// server, for crypto-mining detection. record.go merges the per-CPU copies
// and derives TOSHI's features. The C source is bpf/cryptofeat.bpf.c;
// manifest.yaml says how the agent loads and exports it.
package cryptofeat

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type crypto_session -type session_key -type crypto_method -type crypto_stat cryptoFeat ../../bpf/cryptofeat.bpf.c -- -I../../bpf/include
