//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * hoststat: per-destination traffic counters for the threshold detector, at
 * TC ingress (after the firewall's XDP program, so it sees what the
 * firewall let through).
 *
 * hosts: per destination address, cumulative packets and bytes by
 *        protocol, TCP SYN (without ACK), SYN-ACK, RST, fragments, UDP from
 *        the amplification ports (DNS 53, NTP 123, SSDP 1900, memcached
 *        11211), and how many (source, destination, protocol) pairs were
 *        new to the `sources` table (a new-flows rate).
 * sources: per (destination, source, protocol), cumulative packets, bytes,
 *        SYNs, segments that carried an ACK and data (evidence of an
 *        established connection: spoofed floods do not complete handshakes)
 *        and the last destination port. LRU: under a flood from random
 *        sources it forgets the oldest pairs; the hosts counters stay exact.
 *
 * Both are per-CPU; the agent sums the CPUs and takes differences between
 * reads. Nothing here changes a packet or its fate.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "rampart.h"
#include "rp_parse.h"

#define TC_ACT_UNSPEC (-1)

struct host_key {
	rp_ipaddr_t addr; /* v4 as ::ffff:a.b.c.d */
};

struct host_stats {
	__u64 packets;
	__u64 bytes;
	__u64 tcp_packets;
	__u64 tcp_bytes;
	__u64 udp_packets;
	__u64 udp_bytes;
	__u64 icmp_packets;
	__u64 icmp_bytes;
	__u64 other_packets;
	__u64 tcp_data; /* segments with ACK and data: established transfers */
	__u64 syn;    /* SYN without ACK */
	__u64 synack; /* SYN+ACK */
	__u64 rst;
	__u64 frags;
	__u64 amp_dns;
	__u64 amp_ntp;
	__u64 amp_ssdp;
	__u64 amp_memcached;
	__u64 new_pairs;
};

struct src_key {
	rp_ipaddr_t dst;
	rp_ipaddr_t src;
	__u8 proto;
	__u8 pad[3];
};

struct src_stats {
	__u64 packets;
	__u64 bytes;
	__u64 syn;
	__u64 established; /* ACK with payload */
	__u16 dport;
	__u16 sport;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct host_key);
	__type(value, struct host_stats);
} hosts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 32768);
	__type(key, struct src_key);
	__type(value, struct src_stats);
} sources SEC(".maps");

enum hs_stat {
	HS_PACKETS = 0,
	HS_NOT_IP,
	HS_MALFORMED,
	HS_HOSTS_FULL,
	HS_MAX,
};

struct hs_stat_val {
	__u64 n;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HS_MAX);
	__type(key, __u32);
	__type(value, struct hs_stat_val);
} hs_stats SEC(".maps");

static __always_inline void hs_inc(__u32 i)
{
	struct hs_stat_val *v = bpf_map_lookup_elem(&hs_stats, &i);
	if (v)
		v->n++;
}

static __always_inline void to_mapped(__u8 *out, const __u8 *addr, __u8 family)
{
	if (family == 4) {
		__builtin_memset(out, 0, 10);
		out[10] = 0xff;
		out[11] = 0xff;
		__builtin_memcpy(out + 12, addr, 4);
	} else {
		__builtin_memcpy(out, addr, 16);
	}
}

SEC("tc")
int hoststat_ingress(struct __sk_buff *skb)
{
	bpf_skb_pull_data(skb, 128 < skb->len ? 128 : skb->len);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct rp_pkt p = {};
	hs_inc(HS_PACKETS);
	int rc = rp_parse(data, data_end, &p);
	if (rc != 0) {
		hs_inc(rc > 0 ? HS_NOT_IP : HS_MALFORMED);
		return TC_ACT_UNSPEC;
	}
	__u64 len = skb->len;
	/* A GSO/GRO buffer counts as its segments. */
	__u64 segs = skb->gso_segs > 1 ? skb->gso_segs : 1;

	struct host_key hk;
	to_mapped(hk.addr, p.daddr, p.family);
	struct host_stats *h = bpf_map_lookup_elem(&hosts, &hk);
	if (!h) {
		struct host_stats zero = {};
		bpf_map_update_elem(&hosts, &hk, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hosts, &hk);
		if (!h) {
			hs_inc(HS_HOSTS_FULL);
			return TC_ACT_UNSPEC;
		}
	}
	h->packets += segs;
	h->bytes += len;
	__u8 fl = p.tcp_flags;
	switch (p.proto) {
	case IPPROTO_TCP:
		h->tcp_packets += segs;
		h->tcp_bytes += len;
		if (p.has_l4) {
			if ((fl & 0x12) == 0x02)
				h->syn++;
			else if ((fl & 0x12) == 0x12)
				h->synack++;
			else if ((fl & 0x10) && p.payload > 0)
				h->tcp_data += segs;
			if (fl & 0x04)
				h->rst++;
		}
		break;
	case IPPROTO_UDP:
		h->udp_packets += segs;
		h->udp_bytes += len;
		if (p.has_l4) {
			switch (p.sport) {
			case 53:
				h->amp_dns += segs;
				break;
			case 123:
				h->amp_ntp += segs;
				break;
			case 1900:
				h->amp_ssdp += segs;
				break;
			case 11211:
				h->amp_memcached += segs;
				break;
			}
		}
		break;
	case 1:
	case 58:
		h->icmp_packets += segs;
		h->icmp_bytes += len;
		break;
	default:
		h->other_packets += segs;
	}
	if (p.frag)
		h->frags += segs;

	struct src_key sk = {.proto = p.proto};
	__builtin_memcpy(sk.dst, hk.addr, 16);
	to_mapped(sk.src, p.saddr, p.family);
	struct src_stats *s = bpf_map_lookup_elem(&sources, &sk);
	if (!s) {
		struct src_stats ns = {};
		if (bpf_map_update_elem(&sources, &sk, &ns, BPF_NOEXIST) == 0)
			h->new_pairs++;
		s = bpf_map_lookup_elem(&sources, &sk);
		if (!s)
			return TC_ACT_UNSPEC;
	}
	s->packets += segs;
	s->bytes += len;
	s->dport = p.dport;
	s->sport = p.sport;
	if (p.proto == IPPROTO_TCP && p.has_l4) {
		if ((fl & 0x12) == 0x02)
			s->syn++;
		else if ((fl & 0x10) && p.payload > 0)
			s->established += segs;
	}
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
