//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * packet-counter: counts packets and bytes per direction and IP protocol.
 *
 * Two TC programs share one per-CPU hash map:
 *   count_ingress  attached at tc-ingress of an interface
 *   count_egress   attached at tc-egress of the same (or another) interface
 *
 * Every packet is counted exactly once per program run, under the key
 * (direction, protocol), where protocol is
 *   - the IPv4 "protocol" field,
 *   - for IPv6 the upper-layer protocol after skipping up to four extension
 *     headers (hop-by-hop, routing, fragment, destination options),
 *   - 0 for anything else: non-IP frames, and IP packets whose header does
 *     not fit in the packet (truncated or malformed).
 * One 802.1Q/802.1ad VLAN tag in the packet data is skipped.
 *
 * The programs never change a packet's fate: they return TC_ACT_UNSPEC
 * ("continue with the next program / the default action").
 *
 * This mirrors the ingress/egress packet counter of the Dynmon thesis: the
 * kernel does the counting in a per-CPU map, the agent sums the CPUs when it
 * reads the map.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "rampart.h"

#ifndef TC_ACT_UNSPEC
#define TC_ACT_UNSPEC (-1)
#endif

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60
#define MAX_EXT_HDRS 4

/* Traffic direction; the agent renders the enum's names ("DIR_INGRESS"). */
enum direction {
	DIR_INGRESS = 0,
	DIR_EGRESS = 1,
};

/* Map key. pad keeps the key free of holes: every byte is written. */
struct counter_key {
	enum direction dir;
	__u8 proto;
	__u8 pad[3];
};

struct counter_value {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct counter_key);
	__type(value, struct counter_value);
} counters SEC(".maps");

/* ip_proto returns the IP protocol number of the frame in [data, data_end),
 * or 0 when it is not IP or the IP header is incomplete. */
static __always_inline __u8 ip_proto(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	void *cur = eth + 1;
	__u16 type;

	if (cur > data_end)
		return 0;
	type = eth->h_proto;
	if (type == bpf_htons(ETH_P_8021Q) || type == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = cur;

		if ((void *)(vh + 1) > data_end)
			return 0;
		type = vh->h_vlan_encapsulated_proto;
		cur = vh + 1;
	}

	if (type == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = cur;

		if ((void *)(iph + 1) > data_end)
			return 0;
		/* version and IHL share the first byte: version 4, IHL >= 5 words. */
		if ((*(__u8 *)iph & 0xf0) != 0x40 || (*(__u8 *)iph & 0x0f) < 5)
			return 0;
		return iph->protocol;
	}

	if (type == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = cur;
		__u8 nh;

		if ((void *)(ip6h + 1) > data_end)
			return 0;
		if ((*(__u8 *)ip6h & 0xf0) != 0x60)
			return 0;
		nh = ip6h->nexthdr;
		cur = ip6h + 1;

#pragma unroll
		for (int i = 0; i < MAX_EXT_HDRS; i++) {
			struct ipv6_opt_hdr *oh = cur;

			if (nh != NEXTHDR_HOP && nh != NEXTHDR_ROUTING &&
			    nh != NEXTHDR_FRAGMENT && nh != NEXTHDR_DEST)
				break;
			if ((void *)(oh + 1) > data_end)
				return 0;
			if (nh == NEXTHDR_FRAGMENT)
				cur += sizeof(struct frag_hdr);
			else
				cur += (oh->hdrlen + 1) * 8;
			/* The whole extension header must be in the packet. */
			if (cur > data_end)
				return 0;
			nh = oh->nexthdr;
		}
		return nh;
	}

	return 0;
}

static __always_inline void count(struct __sk_buff *skb, enum direction dir)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct counter_key key = {};
	struct counter_value *val;

	key.dir = dir;
	key.proto = ip_proto(data, data_end);

	val = bpf_map_lookup_elem(&counters, &key);
	if (!val) {
		struct counter_value zero = {};

		/* BPF_NOEXIST: another CPU may have created it meanwhile. */
		bpf_map_update_elem(&counters, &key, &zero, BPF_NOEXIST);
		val = bpf_map_lookup_elem(&counters, &key);
		if (!val)
			return; /* map full */
	}
	/* Per-CPU value: no other CPU writes it, plain increments are safe. */
	val->packets += 1;
	val->bytes += skb->len;
}

SEC("tc")
int count_ingress(struct __sk_buff *skb)
{
	count(skb, DIR_INGRESS);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int count_egress(struct __sk_buff *skb)
{
	count(skb, DIR_EGRESS);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
