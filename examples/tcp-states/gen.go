// Package tcpstates is the tcp-states example probe: a tracepoint program on
// sock/inet_sock_set_state that counts TCP state transitions in a hash map
// and streams every transition through a ring buffer. See README.md and
// manifest.yaml.
package tcpstates

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type state_event -type tcp_state_name tcpStates tcp-states.bpf.c -- -I../../bpf/include
