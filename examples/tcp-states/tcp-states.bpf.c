//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tcp-states: TCP state transitions, counted and streamed.
 *
 * on_state runs on the stable tracepoint sock/inet_sock_set_state, which the
 * kernel fires for every socket state change. For TCP sockets it
 *   - counts the transition (oldstate -> newstate) in the hash `transitions`;
 *   - submits a struct state_event to the ring buffer `events` with the
 *     time, the task that was current (for transitions driven by incoming
 *     packets that is whatever task the softirq interrupted), both
 *     addresses and ports.
 * A full ring buffer drops the event; the counter is still updated, and
 * drops are counted in `dropped_events`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "rampart.h"

#define AF_INET 2
#define AF_INET6 10

/*
 * The kernel's TCP states (include/net/tcp_states.h: TCP_ESTABLISHED = 1 ...
 * TCP_BOUND_INACTIVE = 13). vmlinux.h already has them as TCP_*; this named
 * enum gives the map key and the event record types whose BTF carries the
 * names, so the agent renders "SYN_SENT" rather than 2.
 */
enum tcp_state_name {
	ESTABLISHED = 1,
	SYN_SENT = 2,
	SYN_RECV = 3,
	FIN_WAIT1 = 4,
	FIN_WAIT2 = 5,
	TIME_WAIT = 6,
	CLOSE = 7,
	CLOSE_WAIT = 8,
	LAST_ACK = 9,
	LISTEN = 10,
	CLOSING = 11,
	NEW_SYN_RECV = 12,
	BOUND_INACTIVE = 13,
};

struct transition {
	enum tcp_state_name oldstate;
	enum tcp_state_name newstate;
};

/* One ring-buffer record per transition. Addresses are rp_ipaddr_t (IPv4 as
 * IPv4-mapped IPv6); ports are in host order, as the tracepoint gives them. */
struct state_event {
	__u64 ts_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 pid;   /* thread group id of the current task */
	char comm[16];
	rp_ipaddr_t saddr;
	rp_ipaddr_t daddr;
	__u16 sport;
	__u16 dport;
	enum tcp_state_name oldstate;
	enum tcp_state_name newstate;
};

/* Ring buffers carry no value type: this (otherwise unused) global keeps
 * struct state_event in the object's BTF so the manifest can name it. */
struct state_event *unused_state_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct transition);
	__type(value, __u64);
} transitions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Events lost because the ring buffer was full. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} dropped_events SEC(".maps");

/*
 * The address fields are arrays inside the tracepoint's record. With CO-RE
 * (vmlinux.h types are preserve_access_index) a copy of an array member is
 * compiled as "ctx + relocated offset" followed by loads, and the verifier
 * refuses loads through a modified context pointer; a helper read of the
 * member is accepted and stays relocatable.
 */
static __always_inline void copy_addr(rp_ipaddr_t dst, __u16 family,
				      const __u8 *v4, const __u8 *v6)
{
	if (family == AF_INET) {
		__builtin_memset(dst, 0, 10);
		dst[10] = 0xff;
		dst[11] = 0xff;
		bpf_probe_read_kernel(&dst[12], 4, v4);
	} else {
		bpf_probe_read_kernel(dst, 16, v6);
	}
}

SEC("tracepoint/sock/inet_sock_set_state")
int on_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	struct transition key = {};
	struct state_event *ev;
	__u64 *cnt;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;

	key.oldstate = ctx->oldstate;
	key.newstate = ctx->newstate;
	cnt = bpf_map_lookup_elem(&transitions, &key);
	if (cnt) {
		__sync_fetch_and_add(cnt, 1);
	} else {
		__u64 one = 1;

		/* BPF_NOEXIST: if another CPU inserted it first, add to that. */
		if (bpf_map_update_elem(&transitions, &key, &one, BPF_NOEXIST)) {
			cnt = bpf_map_lookup_elem(&transitions, &key);
			if (cnt)
				__sync_fetch_and_add(cnt, 1);
		}
	}

	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev) {
		__u32 zero = 0;
		__u64 *d = bpf_map_lookup_elem(&dropped_events, &zero);

		if (d)
			__sync_fetch_and_add(d, 1);
		return 0;
	}
	ev->ts_ns = bpf_ktime_get_ns();
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	copy_addr(ev->saddr, ctx->family, ctx->saddr, ctx->saddr_v6);
	copy_addr(ev->daddr, ctx->family, ctx->daddr, ctx->daddr_v6);
	ev->sport = ctx->sport;
	ev->dport = ctx->dport;
	ev->oldstate = ctx->oldstate;
	ev->newstate = ctx->newstate;
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
