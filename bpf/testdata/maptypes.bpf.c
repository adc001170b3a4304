// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * maptypes: one map of every type rampart reads, with key and value types
 * that exercise the BTF decoder (internal/btfjson) and the map readers
 * (internal/probe). Compiled by bpf2go into internal/probe/testobj.
 *
 * The XDP program `fill`, run once with BPF_PROG_TEST_RUN (any packet),
 * writes exactly one known entry into every map and returns XDP_PASS:
 *
 *   struct rec R = {
 *     .packets = 4886718345 (0x123456789: needs more than 32 bits),
 *     .bytes   = 1500,
 *     .port    = 443,                  host order __u16
 *     .proto   = 6,
 *     .flags   = 0x12,
 *     .addr    = 192.0.2.1,            rp_ipv4_t, network order
 *     .tag     = "rampart",            char[8], NUL-terminated
 *     .color   = BLUE (2),
 *     .u.u32   = 0x04030201,           i.e. .u.b = {1, 2, 3, 4} (little endian)
 *     .range   = {{1, 2}, {1024, 65535}},
 *   };
 *
 *   map              type                      key                               value
 *   hash             BPF_MAP_TYPE_HASH         struct k5 K5                      R
 *   array            BPF_MAP_TYPE_ARRAY        __u32 1                           R (indices 0, 2..15: zero)
 *   lru_hash         BPF_MAP_TYPE_LRU_HASH     struct k6 K6                      R
 *   percpu_hash      BPF_MAP_TYPE_PERCPU_HASH  struct k5 K5                      R on the CPU that ran fill, zero on the others
 *   percpu_array     BPF_MAP_TYPE_PERCPU_ARRAY __u32 1                           R on the CPU that ran fill, zero elsewhere
 *   lru_percpu_hash  BPF_MAP_TYPE_LRU_PERCPU_HASH struct kaddr KA                R on the CPU that ran fill, zero on the others
 *   queue            BPF_MAP_TYPE_QUEUE        (none)                            R, pushed once
 *   stack            BPF_MAP_TYPE_STACK        (none)                            R, pushed once
 *   lpm_trie         BPF_MAP_TYPE_LPM_TRIE     struct lpm_v4 {24, 192.168.1.0}   R
 *   ringbuf          BPF_MAP_TYPE_RINGBUF      (none)                            one struct event EV
 *
 *   K5 = { .saddr = 10.0.0.1, .daddr = 10.0.0.2, .sport = 12345, .dport = 80
 *          (rp_be16_t: network order in memory, rendered in host order),
 *          .proto = 6, .pad = {0} }
 *   K6 = { .addr = 2001:db8::1, .mac = 02:00:00:00:00:01, .vlan = 100 (rp_be16_t) }
 *   KA = { .addr = ::ffff:198.51.100.7 (rendered 198.51.100.7), .spi = 4096 (rp_be32_t) }
 *   EV = { .seq = 1, .addr = 2001:db8::2, .msg = "hello", .rec = R }
 *
 * Every run adds another item to queue and stack and another record to
 * ringbuf; the other maps are overwritten with the same values.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "rampart.h"

enum color { RED, GREEN, BLUE };

struct rec {
	__u64 packets;
	__u32 bytes;
	__u16 port;
	__u8 proto;
	__u8 flags;
	rp_ipv4_t addr;
	char tag[8];
	enum color color;
	union {
		__u32 u32;
		__u8 b[4];
	} u;
	struct {
		__u16 lo, hi;
	} range[2];
};

struct k5 {
	rp_ipv4_t saddr, daddr;
	rp_be16_t sport, dport;
	__u8 proto;
	__u8 pad[3];
};

struct k6 {
	rp_ipv6_t addr;
	rp_mac_t mac;
	rp_be16_t vlan;
};

struct kaddr {
	rp_ipaddr_t addr;
	rp_be32_t spi;
};

struct lpm_v4 {
	__u32 prefixlen;
	rp_ipv4_t addr;
};

struct event {
	__u64 seq;
	rp_ipaddr_t addr;
	char msg[8];
	struct rec rec;
};

/* Ring buffers carry no value type: keep struct event in the BTF. */
struct event *unused_event __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, struct k5);
	__type(value, struct rec);
} hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct rec);
} array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 64);
	__type(key, struct k6);
	__type(value, struct rec);
} lru_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16);
	__type(key, struct k5);
	__type(value, struct rec);
} percpu_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, struct rec);
} percpu_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 64);
	__type(key, struct kaddr);
	__type(value, struct rec);
} lru_percpu_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 16);
	__type(value, struct rec);
} queue SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 16);
	__type(value, struct rec);
} stack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4);
	__type(value, struct rec);
} lpm_trie SEC(".maps");

/* The smallest ring buffer: one page. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} ringbuf SEC(".maps");

SEC("xdp")
int fill(struct xdp_md *ctx)
{
	struct rec r;
	struct k5 k5;
	struct k6 k6;
	struct kaddr ka;
	struct lpm_v4 lpm;
	struct event ev;
	__u32 idx = 1;

	/* Zero everything, padding included: map values are compared bytewise. */
	__builtin_memset(&r, 0, sizeof(r));
	r.packets = 0x123456789ULL;
	r.bytes = 1500;
	r.port = 443;
	r.proto = 6;
	r.flags = 0x12;
	r.addr = bpf_htonl(0xC0000201); /* 192.0.2.1 */
	__builtin_memcpy(r.tag, "rampart", 8);
	r.color = BLUE;
	r.u.u32 = 0x04030201;
	r.range[0].lo = 1;
	r.range[0].hi = 2;
	r.range[1].lo = 1024;
	r.range[1].hi = 65535;

	__builtin_memset(&k5, 0, sizeof(k5));
	k5.saddr = bpf_htonl(0x0A000001); /* 10.0.0.1 */
	k5.daddr = bpf_htonl(0x0A000002); /* 10.0.0.2 */
	k5.sport = bpf_htons(12345);
	k5.dport = bpf_htons(80);
	k5.proto = 6;

	__builtin_memset(&k6, 0, sizeof(k6));
	k6.addr[0] = 0x20; /* 2001:db8::1 */
	k6.addr[1] = 0x01;
	k6.addr[2] = 0x0d;
	k6.addr[3] = 0xb8;
	k6.addr[15] = 0x01;
	k6.mac[0] = 0x02;
	k6.mac[5] = 0x01;
	k6.vlan = bpf_htons(100);

	__builtin_memset(&ka, 0, sizeof(ka));
	ka.addr[10] = 0xff; /* ::ffff:198.51.100.7 */
	ka.addr[11] = 0xff;
	ka.addr[12] = 198;
	ka.addr[13] = 51;
	ka.addr[14] = 100;
	ka.addr[15] = 7;
	ka.spi = bpf_htonl(4096);

	lpm.prefixlen = 24;
	lpm.addr = bpf_htonl(0xC0A80100); /* 192.168.1.0 */

	__builtin_memset(&ev, 0, sizeof(ev));
	ev.seq = 1;
	ev.addr[0] = 0x20; /* 2001:db8::2 */
	ev.addr[1] = 0x01;
	ev.addr[2] = 0x0d;
	ev.addr[3] = 0xb8;
	ev.addr[15] = 0x02;
	__builtin_memcpy(ev.msg, "hello", 6);
	ev.rec = r;

	bpf_map_update_elem(&hash, &k5, &r, BPF_ANY);
	bpf_map_update_elem(&array, &idx, &r, BPF_ANY);
	bpf_map_update_elem(&lru_hash, &k6, &r, BPF_ANY);
	bpf_map_update_elem(&percpu_hash, &k5, &r, BPF_ANY);
	bpf_map_update_elem(&percpu_array, &idx, &r, BPF_ANY);
	bpf_map_update_elem(&lru_percpu_hash, &ka, &r, BPF_ANY);
	bpf_map_push_elem(&queue, &r, BPF_ANY);
	bpf_map_push_elem(&stack, &r, BPF_ANY);
	bpf_map_update_elem(&lpm_trie, &lpm, &r, BPF_ANY);
	bpf_ringbuf_output(&ringbuf, &ev, sizeof(ev), 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
