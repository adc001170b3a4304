//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * flowmon: NetFlow-like unidirectional flow accounting at TC.
 *
 * Two TC programs share the maps:
 *   flow_ingress  attached at tc-ingress of an interface
 *   flow_egress   attached at tc-egress of the same (or another) interface
 * Both return TC_ACT_UNSPEC and never change a packet, its fate or the
 * layout of its socket buffer. Headers are read directly from the linear
 * part of the buffer; one that is not there (a paged buffer) is copied out
 * with bpf_skb_load_bytes instead, never pulled.
 *
 * flows (LRU per-CPU hash, FLOWMON_MAX_FLOWS entries)
 *   key   struct flow_key: addresses, ports, IP protocol, direction and
 *         interface index of a unidirectional flow
 *         - IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d);
 *         - TCP, UDP, SCTP: the ports;
 *         - ICMP (in IPv4) and ICMPv6 (in IPv6): sport 0, dport holds
 *           type<<8 | code, stored in network order like a port;
 *         - every other protocol, and every IP fragment but the first
 *           (they carry no L4 header): ports 0. A flow's non-first
 *           fragments are therefore counted under a separate flow with
 *           ports 0, the first fragment under the real ports.
 *         - IPv6: up to FM_MAX_EXT_HDRS extension headers (hop-by-hop,
 *           routing, fragment, destination options, AH) are skipped; when
 *           there are more, proto is the next header still unparsed and the
 *           ports are 0.
 *         The key is zeroed before it is filled: no byte is left undefined.
 *   value struct flow_stats, one per CPU (so the hot path needs no atomic
 *         operation; a reader merges the CPUs):
 *         - first_ns / last_ns: rp_now(): bpf_ktime_get_ns() (CLOCK_MONOTONIC), or the capture time in a replay, of the
 *           first and last packet this CPU counted for the flow;
 *         - packets: socket buffers counted, one per buffer even for a
 *           GSO/GRO buffer that stands for several wire segments: this is
 *           what the interface's own counters count (veth, loopback), so
 *           flowmon's totals equal them exactly;
 *         - bytes: skb->len, the whole frame as TC sees it, link-layer
 *           header (Ethernet and VLAN tags in the data) included, no FCS; a
 *           GSO/GRO buffer counts its length once (its segments' repeated
 *           headers are not in it);
 *         - tcp_flags: OR of the TCP flag bytes (FIN 0x01 .. CWR 0x80);
 *         - tos: IPv4 TOS / IPv6 traffic class byte (DSCP and ECN) of the
 *           first packet this CPU counted.
 *
 * stats (per-CPU array indexed by enum flowmon_stat, value struct counter)
 *   FM_PACKETS        every packet (socket buffer) either program saw
 *   FM_NON_IP         not IPv4/IPv6 after at most FM_MAX_VLAN VLAN tags
 *                     (ARP, LLDP, a third VLAN tag, a truncated tag, ...)
 *   FM_MALFORMED      the ethertype says IP but the IP header (IPv6: with
 *                     its extension headers) is truncated or invalid (wrong
 *                     version, IPv4 IHL < 5, total length < header length),
 *                     or the TCP/UDP/SCTP/ICMP header that should follow is
 *                     cut short. Such packets never create a flow.
 *   FM_NEW_FLOWS      flows the programs created (the LRU map evicts the
 *                     least recently used flows to make room; evictions
 *                     are not counted)
 *   FM_UPDATE_FAILED  the flow could neither be found nor created
 * Packets in flows = FM_PACKETS - FM_NON_IP - FM_MALFORMED - FM_UPDATE_FAILED
 * (counting a GSO buffer as one).
 *
 * Frames are parsed as Ethernet. On devices without a link-layer header
 * (tun, WireGuard) the programs misread every packet: attach them to
 * Ethernet-like devices only. VLAN tags that the NIC stripped into the
 * socket buffer's metadata are not in the data and need no skipping.
 */
/* vmlinux.h has a struct flow_stats of its own (Open vSwitch); rename it
 * out of the way so ours keeps the name the manifest and readers use. */
#define flow_stats flow_stats___kernel
#include "vmlinux.h"
#undef flow_stats
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "rampart.h"
#include "rp_clock.h"

#ifndef TC_ACT_UNSPEC
#define TC_ACT_UNSPEC (-1)
#endif

/* Capacity of the flows map; the loader may override max_entries. */
#ifndef FLOWMON_MAX_FLOWS
#define FLOWMON_MAX_FLOWS 65536
#endif

#define FM_MAX_VLAN 2
#define FM_MAX_EXT_HDRS 6

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

#define IPPROTO_HOPOPTS 0
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH 51
#define IPPROTO_ICMPV6 58
#define IPPROTO_DSTOPTS 60
#define IPPROTO_SCTP 132

#define IPV4_FRAG_OFFSET 0x1fff
#define IPV6_FRAG_OFFSET 0xfff8

/* Minimum L4 header lengths: a shorter one is malformed. */
#define TCP_HLEN 20
#define UDP_HLEN 8
#define SCTP_HLEN 12
#define ICMP_HLEN 8

/* Traffic direction, the value of flow_key.dir. */
enum flow_dir {
	FLOW_INGRESS = 0,
	FLOW_EGRESS = 1,
};

/* Indexes of the stats array. */
enum flowmon_stat {
	FM_PACKETS = 0,
	FM_NON_IP = 1,
	FM_MALFORMED = 2,
	FM_NEW_FLOWS = 3,
	FM_UPDATE_FAILED = 4,
	FM_STAT_MAX,
};

struct flow_key {
	rp_ipaddr_t saddr;
	rp_ipaddr_t daddr;
	rp_be16_t sport;
	rp_be16_t dport;
	__u8 proto;
	__u8 dir; /* enum flow_dir */
	__u8 pad[2];
	__u32 ifindex;
};

struct flow_stats {
	__u64 first_ns;
	__u64 last_ns;
	__u64 packets;
	__u64 bytes;
	__u8 tcp_flags;
	__u8 tos;
	__u8 pad[6];
};

struct counter {
	__u64 n;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, FLOWMON_MAX_FLOWS);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flows SEC(".maps");

/* The kernel refuses an enum as an array's BTF key type (it must be a 4-byte
 * integer), so the key is a __u32 holding an enum flowmon_stat. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FM_STAT_MAX);
	__type(key, __u32);
	__type(value, struct counter);
} stats SEC(".maps");

/* Result of parse(): a stat index, or FM_COUNT_FLOW. */
#define FM_COUNT_FLOW (-1)

/* Headers starting beyond this offset are always read with the helper (the
 * verifier wants a small bound on variable packet offsets). */
#define FM_MAX_DIRECT_OFF 0x3fff

/* Load-time knob (deliberately not a manifest parameter): headers starting
 * beyond this offset are copied with bpf_skb_load_bytes even when they are
 * in the linear data. The tests set it to 0 to run every header through the
 * path paged buffers take. */
RP_PARAM(__u32, fm_direct_max_off, FM_MAX_DIRECT_OFF);

/*
 * fm_load copies the header *dst (sizeof(*dst) bytes) at offset off of the
 * frame into dst and evaluates to 0, or to a negative error when the frame
 * is shorter than off + sizeof(*dst). The fast path reads the linear data
 * directly; the helper covers paged buffers (and long header chains).
 */
#define fm_load(skb, off, dst)                                                 \
	({                                                                     \
		void *__data = (void *)(long)(skb)->data;                      \
		void *__end = (void *)(long)(skb)->data_end;                   \
		__u32 __off = (off);                                           \
		int __err = 0;                                                 \
		if (__off <= FM_MAX_DIRECT_OFF && __off <= fm_direct_max_off && \
		    __data + __off + sizeof(*(dst)) <= __end)                  \
			*(dst) = *(typeof(dst))(__data + __off);               \
		else                                                           \
			__err = bpf_skb_load_bytes(skb, __off, dst, sizeof(*(dst))); \
		__err;                                                         \
	})

/* The first 16 bytes of a TCP header. */
struct tcp_head {
	__be16 sport;
	__be16 dport;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff;
	__u8 flags;
	__be16 window;
};

struct l4_ports {
	__be16 sport;
	__be16 dport;
};

static __always_inline void stat_inc(__u32 idx)
{
	struct counter *c = bpf_map_lookup_elem(&stats, &idx);

	if (c)
		c->n += 1; /* per-CPU: no other CPU writes it */
}

/* parse_l4 fills the key's ports (and the TCP flags) from the L4 header at
 * off, which must end at or before end. */
static __always_inline int parse_l4(struct __sk_buff *skb, __u32 off, __u32 end,
				    struct flow_key *key, __u8 *tcp_flags, bool v6)
{
	struct l4_ports ports;

	switch (key->proto) {
	case IPPROTO_TCP: {
		struct tcp_head th;

		if (off + TCP_HLEN > end || fm_load(skb, off, &th))
			return FM_MALFORMED;
		key->sport = th.sport;
		key->dport = th.dport;
		*tcp_flags = th.flags;
		return FM_COUNT_FLOW;
	}
	case IPPROTO_UDP:
		if (off + UDP_HLEN > end || fm_load(skb, off, &ports))
			return FM_MALFORMED;
		break;
	case IPPROTO_SCTP:
		if (off + SCTP_HLEN > end || fm_load(skb, off, &ports))
			return FM_MALFORMED;
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		/* ICMP belongs to IPv4 and ICMPv6 to IPv6; the other way round
		 * it is just another protocol. */
		if (v6 != (key->proto == IPPROTO_ICMPV6))
			return FM_COUNT_FLOW;
		/* The type and code bytes, as they are: type<<8|code in network
		 * order. */
		if (off + ICMP_HLEN > end || fm_load(skb, off, &key->dport))
			return FM_MALFORMED;
		return FM_COUNT_FLOW;
	default:
		return FM_COUNT_FLOW;
	}
	key->sport = ports.sport;
	key->dport = ports.dport;
	return FM_COUNT_FLOW;
}

static __always_inline int parse_ipv4(struct __sk_buff *skb, __u32 off, struct flow_key *key,
				      __u8 *tos, __u8 *tcp_flags)
{
	struct iphdr ip;
	__u32 len = skb->len, end, hlen, tot;
	__u8 vihl;

	if (fm_load(skb, off, &ip))
		return FM_MALFORMED;
	/* version and IHL share the first byte: version 4, IHL >= 5 words. */
	vihl = *(__u8 *)&ip;
	if ((vihl >> 4) != 4 || (vihl & 0x0f) < 5)
		return FM_MALFORMED;
	hlen = (vihl & 0x0f) * 4;
	tot = bpf_ntohs(ip.tot_len);
	if (tot == 0 && skb->gso_size) {
		end = len; /* a BIG TCP GSO packet (> 64 KiB) has no length */
	} else {
		if (tot < hlen)
			return FM_MALFORMED;
		/* The packet ends at its total length: link-layer padding
		 * (short Ethernet frames) is not part of it. */
		end = off + tot;
		if (end > len)
			end = len;
	}
	if (off + hlen > end) /* options cut short */
		return FM_MALFORMED;

	key->saddr[10] = 0xff;
	key->saddr[11] = 0xff;
	__builtin_memcpy(&key->saddr[12], &ip.saddr, 4);
	key->daddr[10] = 0xff;
	key->daddr[11] = 0xff;
	__builtin_memcpy(&key->daddr[12], &ip.daddr, 4);
	key->proto = ip.protocol;
	*tos = ip.tos;

	if (ip.frag_off & bpf_htons(IPV4_FRAG_OFFSET))
		return FM_COUNT_FLOW; /* non-first fragment: no L4 header */
	return parse_l4(skb, off + hlen, end, key, tcp_flags, false);
}

static __always_inline int parse_ipv6(struct __sk_buff *skb, __u32 off, struct flow_key *key,
				      __u8 *tos, __u8 *tcp_flags)
{
	struct ipv6hdr ip6;
	__u32 len = skb->len, end, plen;
	__u8 b0, b1, nh;

	if (fm_load(skb, off, &ip6))
		return FM_MALFORMED;
	b0 = ((__u8 *)&ip6)[0];
	b1 = ((__u8 *)&ip6)[1];
	if ((b0 >> 4) != 6)
		return FM_MALFORMED;
	plen = bpf_ntohs(ip6.payload_len);
	end = off + sizeof(ip6) + plen;
	if (plen == 0 || end > len) /* 0: jumbogram or BIG TCP */
		end = len;

	__builtin_memcpy(key->saddr, &ip6.saddr, 16);
	__builtin_memcpy(key->daddr, &ip6.daddr, 16);
	*tos = (__u8)(b0 << 4) | (b1 >> 4);
	nh = ip6.nexthdr;
	off += sizeof(ip6);

#pragma unroll
	for (int i = 0; i < FM_MAX_EXT_HDRS; i++) {
		if (nh == IPPROTO_FRAGMENT) {
			struct frag_hdr fh;

			if (off + sizeof(fh) > end || fm_load(skb, off, &fh))
				return FM_MALFORMED;
			nh = fh.nexthdr;
			off += sizeof(fh);
			if (fh.frag_off & bpf_htons(IPV6_FRAG_OFFSET)) {
				key->proto = nh; /* non-first fragment: no L4 header */
				return FM_COUNT_FLOW;
			}
		} else if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING ||
			   nh == IPPROTO_DSTOPTS || nh == IPPROTO_AH) {
			struct ipv6_opt_hdr oh;

			if (off + sizeof(oh) > end || fm_load(skb, off, &oh))
				return FM_MALFORMED;
			if (nh == IPPROTO_AH)
				off += ((__u32)oh.hdrlen + 2) * 4;
			else
				off += ((__u32)oh.hdrlen + 1) * 8;
			nh = oh.nexthdr;
			if (off > end) /* extension header cut short */
				return FM_MALFORMED;
		} else {
			break;
		}
	}

	key->proto = nh;
	return parse_l4(skb, off, end, key, tcp_flags, true);
}

/* parse fills key (zeroed by the caller) but its dir and ifindex, the TOS
 * byte and the TCP flags; it returns FM_COUNT_FLOW or the stat to count
 * instead. */
static __always_inline int parse(struct __sk_buff *skb, struct flow_key *key, __u8 *tos,
				 __u8 *tcp_flags)
{
	__u32 off = sizeof(struct ethhdr);
	__be16 proto;

	if (fm_load(skb, offsetof(struct ethhdr, h_proto), &proto))
		return FM_NON_IP;

#pragma unroll
	for (int i = 0; i < FM_MAX_VLAN; i++) {
		struct vlan_hdr vh;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (fm_load(skb, off, &vh))
			return FM_NON_IP;
		proto = vh.h_vlan_encapsulated_proto;
		off += sizeof(vh);
	}

	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(skb, off, key, tos, tcp_flags);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(skb, off, key, tos, tcp_flags);
	return FM_NON_IP;
}

static __always_inline void account(struct __sk_buff *skb, __u8 dir)
{
	struct flow_key key;
	struct flow_stats *val;
	__u8 tos = 0, tcp_flags = 0;
	__u64 now;
	int r;

	__builtin_memset(&key, 0, sizeof(key));
	stat_inc(FM_PACKETS);
	r = parse(skb, &key, &tos, &tcp_flags);
	if (r != FM_COUNT_FLOW) {
		stat_inc(r);
		return;
	}
	key.dir = dir;
	key.ifindex = skb->ifindex;

	now = rp_now();

	val = bpf_map_lookup_elem(&flows, &key);
	if (!val) {
		struct flow_stats init;

		__builtin_memset(&init, 0, sizeof(init));
		init.first_ns = now;
		init.last_ns = now;
		init.packets = 1;
		init.bytes = skb->len;
		init.tcp_flags = tcp_flags;
		init.tos = tos;
		/* BPF_NOEXIST: another CPU may have created it meanwhile; the
		 * new element's other CPUs start at zero. */
		if (bpf_map_update_elem(&flows, &key, &init, BPF_NOEXIST) == 0) {
			stat_inc(FM_NEW_FLOWS);
			return;
		}
		val = bpf_map_lookup_elem(&flows, &key);
		if (!val) {
			stat_inc(FM_UPDATE_FAILED);
			return;
		}
	}
	/* This CPU's value: plain read-modify-write is safe. */
	if (val->packets == 0) { /* first packet of the flow on this CPU */
		val->first_ns = now;
		val->tos = tos;
	}
	val->last_ns = now;
	val->packets += 1;
	val->bytes += skb->len;
	val->tcp_flags |= tcp_flags;
}

SEC("tc")
int flow_ingress(struct __sk_buff *skb)
{
	account(skb, FLOW_INGRESS);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int flow_egress(struct __sk_buff *skb)
{
	account(skb, FLOW_EGRESS);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
