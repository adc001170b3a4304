/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * rp_parse.h: the packet parser rampart's filtering and accounting probes
 * share (firewall, hoststat): Ethernet with up to two VLAN tags, IPv4 (with
 * options) or IPv6 (extension headers skipped), TCP and UDP ports and the
 * TCP flags when the L4 header is there.
 */
#ifndef __RP_PARSE_H__
#define __RP_PARSE_H__

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_HOPOPTS 0
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_DSTOPTS 60
#define IPPROTO_MH 135

struct rp_pkt {
	__u8 family;
	__u8 proto;
	__u8 has_l4;
	__u8 tcp_flags;
	__u8 frag;    /* part of a fragmented datagram */
	__u8 pad[3];
	__u16 sport, dport; /* host order */
	__u32 payload; /* TCP data bytes (IP length - headers), UDP length - 8 */
	__u8 saddr[16];
	__u8 daddr[16];
};

/* rp_parse fills p; returns 0 for IP, 1 for not IP, -1 for malformed.
 * Without an L4 header (truncated, or a non-first fragment) has_l4 is 0. */
static __always_inline int rp_parse(void *data, void *data_end, struct rp_pkt *p)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return -1;
	__u16 proto = eth->h_proto;
	void *cur = eth + 1;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vh = cur;
		if ((void *)(vh + 1) > data_end)
			return -1;
		proto = vh->h_vlan_encapsulated_proto;
		cur = vh + 1;
	}
	__u8 l4;
	int first_frag = 1;
	__u32 ip_len, l3hdr;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cur;
		if ((void *)(ip + 1) > data_end)
			return -1;
		if (ip->version != 4 || ip->ihl < 5)
			return -1;
		__u32 hl = ip->ihl * 4;
		if (cur + hl > data_end)
			return -1;
		p->family = 4;
		ip_len = bpf_ntohs(ip->tot_len);
		l3hdr = hl;
		__builtin_memcpy(p->saddr, &ip->saddr, 4);
		__builtin_memcpy(p->daddr, &ip->daddr, 4);
		l4 = ip->protocol;
		if (ip->frag_off & bpf_htons(0x3fff)) /* MF or an offset */
			p->frag = 1;
		if (ip->frag_off & bpf_htons(0x1fff))
			first_frag = 0;
		cur += hl;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cur;
		if ((void *)(ip6 + 1) > data_end)
			return -1;
		if (ip6->version != 6)
			return -1;
		p->family = 6;
		ip_len = 40 + bpf_ntohs(ip6->payload_len);
		l3hdr = 40;
		__builtin_memcpy(p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->daddr, &ip6->daddr, 16);
		l4 = ip6->nexthdr;
		cur = ip6 + 1;
#pragma unroll
		for (int i = 0; i < 6; i++) {
			if (l4 == IPPROTO_FRAGMENT) {
				struct frag_hdr *fh = cur;
				if ((void *)(fh + 1) > data_end) {
					first_frag = 0;
					break;
				}
				p->frag = 1;
				if (fh->frag_off & bpf_htons(0xfff8))
					first_frag = 0;
				l4 = fh->nexthdr;
				cur = fh + 1;
				l3hdr += 8;
				continue;
			}
			if (l4 != IPPROTO_HOPOPTS && l4 != IPPROTO_ROUTING && l4 != IPPROTO_DSTOPTS && l4 != IPPROTO_MH)
				break;
			struct ipv6_opt_hdr *oh = cur;
			if ((void *)(oh + 1) > data_end) {
				first_frag = 0; /* L4 unknown */
				break;
			}
			l4 = oh->nexthdr;
			cur += (oh->hdrlen + 1) * 8;
			l3hdr += (oh->hdrlen + 1) * 8;
		}
	} else {
		return 1;
	}
	p->proto = l4;
	if (!first_frag)
		return 0;
	if (l4 == IPPROTO_TCP) {
		struct tcphdr *th = cur;
		if ((void *)(th + 1) > data_end)
			return 0;
		p->has_l4 = 1;
		p->sport = bpf_ntohs(th->source);
		p->dport = bpf_ntohs(th->dest);
		p->tcp_flags = ((__u8 *)th)[13];
		__u32 hdrs = l3hdr + th->doff * 4;
		p->payload = ip_len > hdrs ? ip_len - hdrs : 0;
	} else if (l4 == IPPROTO_UDP) {
		struct udphdr *uh = cur;
		if ((void *)(uh + 1) > data_end)
			return 0;
		p->has_l4 = 1;
		p->sport = bpf_ntohs(uh->source);
		p->dport = bpf_ntohs(uh->dest);
		__u16 ul = bpf_ntohs(uh->len);
		p->payload = ul > 8 ? ul - 8 : 0;
	}
	return 0;
}

#endif /* __RP_PARSE_H__ */
