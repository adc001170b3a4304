//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * firewall: rampart's packet filter at XDP (ingress) and TC (egress).
 *
 * Per packet: parse Ethernet (up to two VLAN tags), IPv4 or IPv6 (extension
 * headers skipped), and the TCP/UDP ports and TCP flags when the L4 header is
 * present. Then:
 *
 *   1. allowlist: one LPM lookup of the remote address (the source on
 *      ingress, the destination on egress); a hit passes the packet.
 *   2. rules: the longest remote prefix with rules, found by hash lookups
 *      of the remote address masked to each prefix length in use (the agent
 *      keeps the lengths of each direction and family in `fw_lens`, longest
 *      first; at most FW_MAX_LENS). The value is the list of candidate rule
 *      slots for that prefix, already ordered by the agent (longest remote
 *      prefix first, then the rule order), with every rule of a covering
 *      (shorter) prefix included. The first candidate whose other fields
 *      match decides.
 *   3. no rule matched: pass.
 *
 * So a packet costs an allowlist trie lookup, one hash lookup per prefix
 * length in use until one hits (a blocklist of /24s and /32s: one or two),
 * and a scan of at most FW_MAX_CANDIDATES small structs, whatever the number
 * of rules: a hash lookup does not slow down with ten thousand entries as a
 * trie walk does.
 *
 * Malformed packets (truncated or invalid IP header) and non-IP frames are
 * counted and passed: nothing is dropped by accident. A packet whose L4
 * header is missing (truncated, or a non-first fragment) has no ports: rules
 * that test ports or TCP flags do not match it, rules on addresses and
 * protocol still do.
 *
 * The agent (internal/firewall) is the only writer of these maps; they are
 * pinned so drops continue while the agent is down.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "rampart.h"
#include "rp_parse.h"


#define TC_ACT_UNSPEC (-1) /* TCX_NEXT: let later programs (flowmon) see it */
#define TC_ACT_SHOT 2

#define FW_MAX_CANDIDATES 16
#define FW_MAX_RULES 65536
#define FW_MAX_LENS 16

enum fw_action {
	FW_PASS = 0,
	FW_DROP = 1,
	FW_RATELIMIT = 2,
};

enum fw_dir {
	FW_INGRESS = 0,
	FW_EGRESS = 1,
};

/* Rule match flags. */
#define FW_M_PROTO (1 << 0)
#define FW_M_SPORT (1 << 1)
#define FW_M_DPORT (1 << 2)
#define FW_M_FLAGS (1 << 3)
#define FW_M_LOCAL (1 << 4) /* the local (non-key) prefix */

/* One rule, in slot `id` of the rules array. The remote prefix is the trie
 * key; everything else is checked here. */
struct fw_rule {
	__u32 in_use;
	__u32 id;         /* the rule's user-visible id (stable) */
	__u32 position;   /* order in the rule list, 1-based */
	__u8 family;      /* 4 or 6 */
	__u8 dir;         /* enum fw_dir */
	__u8 action;      /* enum fw_action */
	__u8 match;       /* FW_M_* */
	__u8 proto;
	__u8 flags_mask;  /* TCP flags: (flags & mask) == value */
	__u8 flags_value;
	__u8 remote_plen;
	__u8 local_plen;
	__u8 pad[3];
	__u16 sport_lo, sport_hi, dport_lo, dport_hi;
	rp_ipv6_t remote;  /* v4 in the first 4 bytes */
	rp_ipv6_t local;   /* masked to local_plen */
	__u8 local_mask[16]; /* local_plen leading one bits */
	__u32 rate_pps;    /* FW_RATELIMIT: tokens per second */
	__u32 burst;       /* FW_RATELIMIT: bucket size */
	__u64 created_unix_ns;
	__u64 expires_mono_ns; /* CLOCK_MONOTONIC; 0: never */
	__u64 expires_unix_ns; /* for people */
	char description[64];
};

struct fw_cand {
	__u32 n;
	__u32 slot[FW_MAX_CANDIDATES];
};

struct fw_key4 {
	__u32 prefixlen; /* 32 (dir) + prefix length */
	__u32 dir;
	__u8 addr[4];
};

struct fw_key6 {
	__u32 prefixlen;
	__u32 dir;
	__u8 addr[16];
};

struct fw_counter {
	__u64 packets;
	__u64 bytes;
};

struct fw_bucket_key {
	__u32 slot;
	__u32 pad;
	rp_ipv6_t addr;
};

struct fw_bucket {
	__s64 tokens_milli; /* tokens x 1000 */
	__u64 last_ns;
};

enum fw_stat {
	FW_STAT_PACKETS = 0, /* unused: passed + dropped */
	FW_STAT_PASSED,
	FW_STAT_DROPPED,
	FW_STAT_ALLOWLISTED,
	FW_STAT_RATELIMITED,
	FW_STAT_NOT_IP,
	FW_STAT_MALFORMED,
	FW_STAT_EXPIRED_SKIPPED,
	FW_STAT_MAX,
};

struct fw_stat_val {
	__u64 n;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FW_MAX_RULES);
	__type(key, __u32);
	__type(value, struct fw_rule);
} fw_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FW_MAX_RULES);
	__type(key, __u32);
	__type(value, struct fw_counter);
} fw_counters SEC(".maps");

/* Rule prefixes by (direction, length, masked address). */
struct fw_pkey4 {
	__u8 dir;
	__u8 plen;
	__u16 pad;
	__u8 addr[4];
};

struct fw_pkey6 {
	__u8 dir;
	__u8 plen;
	__u16 pad;
	__u8 addr[16];
};

/* The prefix lengths in use for one direction and family, longest first. */
struct fw_lenset {
	__u32 n;
	__u8 len[FW_MAX_LENS];
	__u32 allow; /* allowlist prefixes of this family: 0 skips the lookup */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FW_MAX_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fw_pkey4);
	__type(value, struct fw_cand);
} fw_pfx_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FW_MAX_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fw_pkey6);
	__type(value, struct fw_cand);
} fw_pfx_v6 SEC(".maps");

/* Index: dir * 2 + (IPv6). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct fw_lenset);
} fw_lens SEC(".maps");

/* Allowlist: remote prefixes never filtered, in both directions. The key's
 * dir word is always 0. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fw_key4);
	__type(value, __u32);
} fw_allow_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fw_key6);
	__type(value, __u32);
} fw_allow_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fw_bucket_key);
	__type(value, struct fw_bucket);
} fw_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FW_STAT_MAX);
	__type(key, __u32);
	__type(value, struct fw_stat_val);
} fw_stats SEC(".maps");

static __always_inline void stat_inc(__u32 i)
{
	struct fw_stat_val *v = bpf_map_lookup_elem(&fw_stats, &i);
	if (v)
		v->n++;
}

/* local_eq: the local address equals the rule's local prefix under its
 * mask (both precomputed by the agent, so no loop over prefix bits). */
static __always_inline int local_eq(const __u8 *addr, const struct fw_rule *r)
{
	__u32 w[4];
	__builtin_memcpy(w, addr, 16);
	const __u32 *v = (const __u32 *)r->local;
	const __u32 *m = (const __u32 *)r->local_mask;
	return ((w[0] ^ v[0]) & m[0]) == 0 && ((w[1] ^ v[1]) & m[1]) == 0 &&
	       ((w[2] ^ v[2]) & m[2]) == 0 && ((w[3] ^ v[3]) & m[3]) == 0;
}

static __always_inline int rule_matches(const struct fw_rule *r, const struct rp_pkt *p, const __u8 *local, __u64 *now)
{
	if (!r->in_use)
		return 0;
	if (r->expires_mono_ns) {
		/* Expiry at tick resolution: the coarse clock is cheaper. */
		if (!*now)
			*now = bpf_ktime_get_coarse_ns();
		if (*now >= r->expires_mono_ns) {
			stat_inc(FW_STAT_EXPIRED_SKIPPED);
			return 0;
		}
	}
	__u8 m = r->match;
	if ((m & FW_M_PROTO) && r->proto != p->proto)
		return 0;
	if (m & (FW_M_SPORT | FW_M_DPORT | FW_M_FLAGS)) {
		if (!p->has_l4)
			return 0;
		if ((m & FW_M_SPORT) && (p->sport < r->sport_lo || p->sport > r->sport_hi))
			return 0;
		if ((m & FW_M_DPORT) && (p->dport < r->dport_lo || p->dport > r->dport_hi))
			return 0;
		if ((m & FW_M_FLAGS) && (p->proto != IPPROTO_TCP || (p->tcp_flags & r->flags_mask) != r->flags_value))
			return 0;
	}
	if ((m & FW_M_LOCAL) && !local_eq(local, r))
		return 0;
	return 1;
}

/* ratelimit takes a token from the bucket of (slot, remote); 1: conforms.
 * Spin locks are not allowed in LRU maps, and a plain hash would fail open
 * once a random-source flood filled it, so the bucket is updated with
 * atomic adds: two CPUs refilling at once may each add the same elapsed
 * time, at most one refill interval extra per CPU. */
static __always_inline int ratelimit(__u32 slot, const struct fw_rule *r, const __u8 *remote, __u64 now)
{
	struct fw_bucket_key k = {.slot = slot};
	__builtin_memcpy(k.addr, remote, 16);
	struct fw_bucket *b = bpf_map_lookup_elem(&fw_buckets, &k);
	if (!b) {
		struct fw_bucket nb = {};
		nb.tokens_milli = (__s64)r->burst * 1000 - 1000; /* this packet takes one */
		nb.last_ns = now;
		bpf_map_update_elem(&fw_buckets, &k, &nb, BPF_NOEXIST);
		return r->burst > 0;
	}
	__s64 cap = (__s64)r->burst * 1000;
	__u64 last = b->last_ns;
	if (now > last) {
		__u64 el = now - last;
		if (el > 10000000000ULL)
			el = 10000000000ULL;
		__s64 add = el * r->rate_pps / 1000000;
		if (add > 0) {
			b->last_ns = now;
			__s64 t = b->tokens_milli;
			if (t + add > cap)
				add = cap - t;
			if (add > 0)
				__sync_fetch_and_add(&b->tokens_milli, add);
		}
	}
	if (b->tokens_milli < 1000)
		return 0;
	__sync_fetch_and_add(&b->tokens_milli, -1000);
	return 1;
}

/* mask32 is the network-order mask of the first bits bits of a word. */
static __always_inline __u32 mask32(__s32 bits)
{
	if (bits <= 0)
		return 0;
	if (bits >= 32)
		return 0xffffffff;
	return bpf_htonl(0xffffffff << (32 - bits));
}

static __always_inline struct fw_cand *lookup4(const __u8 *remote, __u32 dir, const struct fw_lenset *l)
{
	__u32 a;
	__builtin_memcpy(&a, remote, 4);
	struct fw_pkey4 k = {.dir = dir};
	for (__u32 i = 0; i < FW_MAX_LENS; i++) {
		if (i >= l->n)
			break;
		__u8 plen = l->len[i];
		__u32 m = a & mask32(plen);
		k.plen = plen;
		__builtin_memcpy(k.addr, &m, 4);
		struct fw_cand *c = bpf_map_lookup_elem(&fw_pfx_v4, &k);
		if (c)
			return c;
	}
	return 0;
}

static __always_inline struct fw_cand *lookup6(const __u8 *remote, __u32 dir, const struct fw_lenset *l)
{
	__u32 a[4];
	__builtin_memcpy(a, remote, 16);
	struct fw_pkey6 k = {.dir = dir};
	for (__u32 i = 0; i < FW_MAX_LENS; i++) {
		if (i >= l->n)
			break;
		__s32 plen = l->len[i];
		__u32 m[4] = {a[0] & mask32(plen), a[1] & mask32(plen - 32), a[2] & mask32(plen - 64), a[3] & mask32(plen - 96)};
		k.plen = plen;
		__builtin_memcpy(k.addr, m, 16);
		struct fw_cand *c = bpf_map_lookup_elem(&fw_pfx_v6, &k);
		if (c)
			return c;
	}
	return 0;
}

/* decide returns 1 to drop. */
static __always_inline int decide(void *data, void *data_end, __u32 dir, __u64 len)
{
	struct rp_pkt p = {};
	/* Every packet counts once as passed or dropped: their sum is the
	 * packet count (the agent adds them up). */
	int rc = rp_parse(data, data_end, &p);
	if (rc != 0) {
		stat_inc(rc > 0 ? FW_STAT_NOT_IP : FW_STAT_MALFORMED);
		stat_inc(FW_STAT_PASSED);
		return 0;
	}
	const __u8 *remote = dir == FW_INGRESS ? p.saddr : p.daddr;
	const __u8 *local = dir == FW_INGRESS ? p.daddr : p.saddr;
	__u32 idx = dir * 2 + (p.family == 6);
	struct fw_lenset *l = bpf_map_lookup_elem(&fw_lens, &idx);
	if (!l) {
		stat_inc(FW_STAT_PASSED);
		return 0;
	}
	struct fw_cand *c;
	if (p.family == 4) {
		struct fw_key4 k = {.prefixlen = 64, .dir = 0};
		__builtin_memcpy(k.addr, remote, 4);
		if (l->allow && bpf_map_lookup_elem(&fw_allow_v4, &k)) {
			stat_inc(FW_STAT_ALLOWLISTED);
			stat_inc(FW_STAT_PASSED);
			return 0;
		}
		c = lookup4(remote, dir, l);
	} else {
		struct fw_key6 k = {.prefixlen = 160, .dir = 0};
		__builtin_memcpy(k.addr, remote, 16);
		if (l->allow && bpf_map_lookup_elem(&fw_allow_v6, &k)) {
			stat_inc(FW_STAT_ALLOWLISTED);
			stat_inc(FW_STAT_PASSED);
			return 0;
		}
		c = lookup6(remote, dir, l);
	}
	if (!c) {
		stat_inc(FW_STAT_PASSED);
		return 0;
	}
	__u64 now = 0;
	__u32 n = c->n;
	for (__u32 i = 0; i < FW_MAX_CANDIDATES; i++) {
		if (i >= n)
			break;
		__u32 slot = c->slot[i];
		struct fw_rule *r = bpf_map_lookup_elem(&fw_rules, &slot);
		if (!r || !rule_matches(r, &p, local, &now))
			continue;
		struct fw_counter *ct = bpf_map_lookup_elem(&fw_counters, &slot);
		if (ct) {
			ct->packets++;
			ct->bytes += len;
		}
		int drop = 0;
		if (r->action == FW_DROP) {
			drop = 1;
		} else if (r->action == FW_RATELIMIT) {
			drop = !ratelimit(slot, r, remote, bpf_ktime_get_ns());
			if (drop)
				stat_inc(FW_STAT_RATELIMITED);
		}
		stat_inc(drop ? FW_STAT_DROPPED : FW_STAT_PASSED);
		return drop;
	}
	stat_inc(FW_STAT_PASSED);
	return 0;
}

SEC("xdp")
int fw_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	return decide(data, data_end, FW_INGRESS, data_end - data) ? XDP_DROP : XDP_PASS;
}

SEC("tc")
int fw_tc_egress(struct __sk_buff *skb)
{
	/* Headers may sit beyond the linear part of an skb. */
	bpf_skb_pull_data(skb, 128 < skb->len ? 128 : skb->len);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	return decide(data, data_end, FW_EGRESS, skb->len) ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
