// Package firewall is the firewall built-in probe: an XDP program (ingress)
// and a TC program (egress) that match packets against rules kept in LPM
// tries and an array, with an allowlist checked first. The C source is
// bpf/firewall.bpf.c; internal/firewall compiles rules into its maps. Its
// maps and links are pinned, so drops continue while the agent is down.
package firewall

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type fw_rule -type fw_cand -type fw_key4 -type fw_key6 -type fw_pkey4 -type fw_pkey6 -type fw_lenset -type fw_counter firewall ../../bpf/firewall.bpf.c -- -I../../bpf/include
