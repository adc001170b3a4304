// Package netio is the built-in netio probe: per-socket network I/O events
// (accept, connect, recv, send, close, exit) of watched processes, from
// tracepoints, for Cogo-style models of how a server acquires and releases
// connections. The C source is bpf/netio.bpf.c; record.go decodes its
// ring-buffer records and per-process counters; manifest.yaml says how the
// agent loads and exports it. internal/netio is its collector.
package netio

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type netio_event -type netio_kind -type netio_owner -type netio_proc -type netio_stat -type rp_exec_key netio ../../bpf/netio.bpf.c -- -I../../bpf/include
