// Command probecore measures the probe core against the targets of the
// foundation issue and Dynmon's figures: load + attach time, read + decode of
// large struct-keyed hash maps, and the cost of a swap-on-read cycle.
//
//	sudo go run ./bench/probecore
package main

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel benchFlows ../../bpf/bench_flows.bpf.c -- -I../../bpf/include
