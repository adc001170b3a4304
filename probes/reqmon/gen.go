// Package reqmon is the built-in reqmon probe: per-request resource
// accounting for any TCP server through tracepoints (no symbols, no
// kprobes). bpf/reqmon.bpf.c says how requests are mapped; record.go decodes
// its maps and ring buffer; manifest.yaml says how the agent loads and
// exports it.
package reqmon

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type rq_key -type rq_req -type rq_thread -type rq_record -type rq_reason -type rq_stat -type rq_feature -type rq_box -type rq_filter_val -type rq_mapper -type rq_map_action -type rq_map_id -type rp_exec_key reqmon ../../bpf/reqmon.bpf.c -- -I../../bpf/include
