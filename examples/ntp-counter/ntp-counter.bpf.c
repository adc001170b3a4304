//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ntp-counter: NTP packets per source address and per NTP mode, from XDP.
 *
 * count_ntp parses Ethernet (and one 802.1Q/802.1ad VLAN tag), IPv4 or IPv6
 * (skipping up to four IPv6 extension headers) and UDP, checking every
 * header against the end of the packet. A UDP packet with ntp_port (123 by
 * default) as its source or destination port is counted
 *   - in ntp_sources, keyed by the IP source address (IPv4 as an
 *     IPv4-mapped IPv6 address, ::ffff:a.b.c.d): packets, bytes (the whole
 *     frame) and the time of the last packet (bpf_ktime_get_ns, monotonic);
 *   - in ntp_modes, indexed by the NTP mode (the low three bits of the first
 *     UDP payload byte), when the payload has at least one byte.
 * Not counted: non-UDP traffic, truncated or malformed headers, and IP
 * fragments other than the first (they carry no UDP header).
 *
 * The program only observes: it always returns XDP_PASS.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "rampart.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60
#define MAX_EXT_HDRS 4

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

/*
 * Load-time parameter: the UDP port that identifies NTP. RP_PARAM expands to
 *   volatile const __u16 ntp_port = 123;
 * The manifest's `parameters: {ntp_port: 123}` lets the agent set it when it
 * loads the object (the value is frozen into .rodata; the verifier then
 * treats it as a constant).
 */
RP_PARAM(__u16, ntp_port, 123);

/* rp_ipaddr_t (rampart.h): the agent renders the key as "192.0.2.1" or
 * "2001:db8::1" without any format hint in the manifest. */
struct ntp_src {
	rp_ipaddr_t addr;
};

struct ntp_stats {
	__u64 packets;
	__u64 bytes;
	__u64 last_seen_ns;
};

/* LRU: a flood of spoofed sources evicts old entries instead of failing. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct ntp_src);
	__type(value, struct ntp_stats);
} ntp_sources SEC(".maps");

/* NTP modes 0..7: 1 symmetric active, 2 symmetric passive, 3 client,
 * 4 server, 5 broadcast, 6 control (ntpq), 7 private (ntpdc, monlist). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} ntp_modes SEC(".maps");

SEC("xdp")
int count_ntp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ntp_src key = {};
	struct ntp_stats *st;
	struct udphdr *udp;
	void *cur = eth + 1;
	__u16 type;
	__u8 proto;

	if (cur > data_end)
		return XDP_PASS;
	type = eth->h_proto;
	if (type == bpf_htons(ETH_P_8021Q) || type == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = cur;

		if ((void *)(vh + 1) > data_end)
			return XDP_PASS;
		type = vh->h_vlan_encapsulated_proto;
		cur = vh + 1;
	}

	if (type == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = cur;
		__u8 ihl;

		if ((void *)(iph + 1) > data_end)
			return XDP_PASS;
		/* version and IHL share the first byte */
		if ((*(__u8 *)iph & 0xf0) != 0x40)
			return XDP_PASS;
		ihl = *(__u8 *)iph & 0x0f;
		if (ihl < 5)
			return XDP_PASS;
		/* a non-first fragment has no UDP header */
		if (iph->frag_off & bpf_htons(IP_OFFSET))
			return XDP_PASS;
		proto = iph->protocol;
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &iph->saddr, 4);
		cur += ihl * 4;
	} else if (type == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = cur;

		if ((void *)(ip6h + 1) > data_end)
			return XDP_PASS;
		if ((*(__u8 *)ip6h & 0xf0) != 0x60)
			return XDP_PASS;
		proto = ip6h->nexthdr;
		__builtin_memcpy(key.addr, &ip6h->saddr, 16);
		cur = ip6h + 1;

#pragma unroll
		for (int i = 0; i < MAX_EXT_HDRS; i++) {
			struct ipv6_opt_hdr *oh = cur;

			if (proto != NEXTHDR_HOP && proto != NEXTHDR_ROUTING &&
			    proto != NEXTHDR_FRAGMENT && proto != NEXTHDR_DEST)
				break;
			if ((void *)(oh + 1) > data_end)
				return XDP_PASS;
			if (proto == NEXTHDR_FRAGMENT) {
				struct frag_hdr *fh = cur;

				if ((void *)(fh + 1) > data_end)
					return XDP_PASS;
				/* offset in the upper 13 bits: not the first fragment */
				if (fh->frag_off & bpf_htons(0xFFF8))
					return XDP_PASS;
				cur = fh + 1;
			} else {
				cur += (oh->hdrlen + 1) * 8;
			}
			proto = oh->nexthdr;
		}
	} else {
		return XDP_PASS;
	}

	if (proto != IPPROTO_UDP)
		return XDP_PASS;
	udp = cur;
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	if (udp->source != bpf_htons(ntp_port) && udp->dest != bpf_htons(ntp_port))
		return XDP_PASS;

	st = bpf_map_lookup_elem(&ntp_sources, &key);
	if (!st) {
		struct ntp_stats init = {};

		/* BPF_NOEXIST: if another CPU created the entry meanwhile, the
		 * update fails and the lookup below finds that entry. */
		bpf_map_update_elem(&ntp_sources, &key, &init, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&ntp_sources, &key);
	}
	if (st) {
		/* Shared (not per-CPU) value: add atomically. */
		__sync_fetch_and_add(&st->packets, 1);
		__sync_fetch_and_add(&st->bytes, data_end - data);
		st->last_seen_ns = bpf_ktime_get_ns();
	}

	/* The NTP header's first byte: LI (2 bits), version (3), mode (3). */
	if ((void *)(udp + 1) + 1 <= data_end) {
		__u32 mode = *(__u8 *)(udp + 1) & 0x7;
		__u64 *cnt = bpf_map_lookup_elem(&ntp_modes, &mode);

		if (cnt)
			__sync_fetch_and_add(cnt, 1);
	}
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
