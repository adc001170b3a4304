//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bench_flows: the object bench/probecore measures.
 *
 * - flows: a hash map keyed by a 5-tuple with a TCP header's fields as value,
 *   up to 1M entries: the read + decode benchmark.
 * - flows128k: the same with room for 128k entries, to show how much of a
 *   read is the kernel walking a table's empty buckets.
 * - small: a 1k-entry hash map read with swap-on-read: the swap benchmark.
 * - fill (XDP, run with BPF_PROG_TEST_RUN): inserts `count` entries starting
 *   at `first` into flows (which = 0), small (which = 1) or flows128k
 *   (which = 2); the three numbers
 *   are the first 12 bytes of the test packet. It uses bpf_loop, so one run
 *   fills a million entries.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "rampart.h"

struct flow_key {
	rp_ipv4_t saddr;
	rp_ipv4_t daddr;
	rp_be16_t sport;
	rp_be16_t dport;
	__u8 proto;
	__u8 pad[3];
};

struct tcp_fields {
	__u32 seq;
	__u32 ack_seq;
	__u16 window;
	__u16 urg_ptr;
	__u16 checksum;
	__u8 doff;
	__u8 flags;
	__u8 fin, syn, rst, psh, ack, urg, ece, cwr;
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 20);
	__type(key, struct flow_key);
	__type(value, struct tcp_fields);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 17);
	__type(key, struct flow_key);
	__type(value, struct tcp_fields);
} flows128k SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow_key);
	__type(value, struct tcp_fields);
} small SEC(".maps");

struct fill_ctx {
	__u32 first;
	__u32 which;
};

static long fill_one(__u64 i, void *data)
{
	struct fill_ctx *c = data;
	__u32 n = c->first + (__u32)i;
	struct flow_key k = {
		.saddr = bpf_htonl(0x0A000000 | (n & 0xFFFFFF)),
		.daddr = bpf_htonl(0xC0A80001),
		.sport = bpf_htons(1024 + (n & 0x7FFF)),
		.dport = bpf_htons(443),
		.proto = 6,
	};
	struct tcp_fields v = {
		.seq = n * 1000,
		.ack_seq = n * 1000 + 1,
		.window = 65535,
		.doff = 5,
		.flags = 0x18,
		.psh = 1,
		.ack = 1,
		.packets = 1,
		.bytes = 1500,
	};
	struct tcp_fields *old;

	if (c->which == 2) {
		bpf_map_update_elem(&flows128k, &k, &v, BPF_ANY);
	} else if (c->which) {
		old = bpf_map_lookup_elem(&small, &k);
		if (old) {
			__sync_fetch_and_add(&old->packets, 1);
			return 0;
		}
		bpf_map_update_elem(&small, &k, &v, BPF_ANY);
	} else {
		bpf_map_update_elem(&flows, &k, &v, BPF_ANY);
	}
	return 0;
}

SEC("xdp")
int fill(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 *arg = data;
	struct fill_ctx c;

	if ((void *)(arg + 3) > end)
		return XDP_ABORTED;
	c.first = arg[0];
	c.which = arg[2];
	bpf_loop(arg[1], fill_one, &c, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
