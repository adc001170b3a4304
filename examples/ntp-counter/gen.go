// Package ntpcounter is the ntp-counter example probe: an XDP program that
// counts NTP packets per source address (LRU hash) and per NTP mode (array),
// with the NTP port as a load-time parameter. See README.md and
// manifest.yaml.
package ntpcounter

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel ntpCounter ntp-counter.bpf.c -- -I../../bpf/include
