//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ddosfeat: per-packet features of the first packets of every bidirectional
 * session, for LUCID-style DDoS detection (the "DDoS probe" of TOSHI).
 *
 * Two TC programs share every map:
 *   ddos_ingress  attached at tc-ingress of an interface
 *   ddos_egress   attached at tc-egress of the same (or another) interface
 * Both return TC_ACT_UNSPEC: the probe only observes.
 *
 * Sessions. A packet belongs to the session of its (address, port) pairs,
 * ordered so that both directions give the same key: the lower address
 * first (bytes compared in network order), and when both addresses are
 * equal the lower port (host order) first. IPv4 addresses are stored
 * IPv4-mapped (::ffff:a.b.c.d). Protocols without ports (ICMP, ICMPv6,
 * anything else) and non-first fragments have ports 0.
 *
 * Windows and the cap. A session's window starts at its first packet and
 * lasts window_ns. Within a window only the first n_packets packets are
 * submitted to the ring buffer `features`, one struct pkt_features each;
 * later ones are counted as DS_CAPPED. The first packet after the window
 * starts a new window and the count starts again. window_ns 0 disables
 * windows: a session then submits its first n_packets packets until the
 * LRU map evicts it. This is LUCID's n x t sampling (n = t = 10 by default)
 * done in the kernel: user space receives at most n records per session
 * and window, however hard the session floods. Capped packets check the
 * window with the coarse clock (see handle()), so a window may last up to
 * one scheduler tick longer than window_ns.
 *
 * The cap is enforced with an atomic add on a map value shared by all
 * CPUs, checked before the add. CPUs that handle packets of the same
 * session at the same instant can each pass the check, so a window may
 * hold a few more records than n_packets (about one per racing CPU). The
 * add itself loses no counts. (bpf2go compiles for BPF v1, whose atomic
 * add returns nothing; an exact cap needs fetch-and-add, -mcpu=v3.)
 *
 * Records are per skb: a GSO/GRO skb is one record whose ip_len is the
 * aggregate length (saturated at 65535), as the stack sees it.
 *
 * Parsing. Ethernet frames (not L3 devices such as tun or WireGuard), up
 * to two 802.1Q/802.1ad tags in the packet data (a tag the driver moved
 * into skb metadata is not in the data), IPv4 with options, IPv6 with up
 * to four extension headers (hop-by-hop, routing, fragment, destination
 * options, AH) within the first 2 KiB; after more, proto is the next
 * extension header and there are no ports (six would double the
 * verifier's work, to 130,000 instructions). Headers are read with direct
 * packet access (bpf_skb_load_bytes costs about 30 ns a call on our
 * machines); when a header lies past the linear part of a non-linear skb
 * the programs pull the first 256 bytes (bpf_skb_pull_data) and parse
 * again.
 * A frame is
 *   - DS_NON_IP when its ethertype is not IPv4/IPv6 (ARP, LLDP, ...),
 *   - DS_MALFORMED when a header it announces is missing, truncated or
 *     inconsistent (IP version, IHL < 5, IP length shorter than the header
 *     or longer than the frame, TCP data offset < 5 or past the IP payload,
 *     UDP/ICMP header past the IP payload, an extension header past the
 *     end); such frames only count in ddos_stats.
 *
 * Counters. ddos_stats (per-CPU array, index enum ddos_stat) counts every
 * packet once as DS_PACKETS and once as one of: DS_SUBMITTED, DS_CAPPED,
 * DS_RB_FULL (ring buffer full: the record is lost), DS_MALFORMED,
 * DS_NON_IP, DS_NO_SESSION (the session map refused the insert).
 *
 * Sizes. Map sizes are compile-time: the session table holds
 * DDOS_MAX_SESSIONS (16384) sessions (LRU: the least recently used session
 * is evicted; an evicted session that returns starts a new window), the
 * ring buffer is 1 MiB (about 13,000 records of 72 bytes plus an 8-byte
 * header). A loader may resize both before loading (MaxEntries in the
 * collection spec); n_packets and window_ns are load-time constants.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "rampart.h"
#include "rp_clock.h"

#ifndef TC_ACT_UNSPEC
#define TC_ACT_UNSPEC (-1)
#endif

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

#define P_ICMP 1
#define P_TCP 6
#define P_UDP 17
#define P_ICMPV6 58
#define NH_HOP 0
#define NH_ROUTING 43
#define NH_FRAGMENT 44
#define NH_AH 51
#define NH_DEST 60

#define MAX_VLAN_TAGS 2
#define MAX_EXT_HDRS 4

/* IPv4 frag_off bits (host order). */
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

/* Map sizes cannot be load-time constants: see the header comment. */
#define DDOS_MAX_SESSIONS 16384
#define DDOS_RINGBUF_BYTES (1 << 20)

/* Records per session and window (LUCID's n). */
RP_PARAM(__u32, n_packets, 10);
/* Window length in nanoseconds (LUCID's t); 0: no windows. */
RP_PARAM(__u64, window_ns, 10000000000ULL);

/* Program direction, in pkt_features.dir. */
enum ddos_dir {
	DDOS_DIR_INGRESS = 0,
	DDOS_DIR_EGRESS = 1,
};

/* Indexes of ddos_stats. */
enum ddos_stat {
	DS_PACKETS = 0,
	DS_SUBMITTED = 1,
	DS_CAPPED = 2,
	DS_RB_FULL = 3,
	DS_MALFORMED = 4,
	DS_NON_IP = 5,
	DS_NO_SESSION = 6,
};
#define DS_COUNT 7

/* Bidirectional session key: 40 bytes, no holes, fully written. */
struct session_key {
	rp_ipaddr_t lo_addr;
	rp_ipaddr_t hi_addr;
	rp_be16_t lo_port; /* the port of lo_addr's side */
	rp_be16_t hi_port;
	__u8 proto;
	__u8 pad[3];
};

struct session_state {
	__u64 first_ns;     /* start of the current window */
	__u32 packets_seen; /* packets in the current window */
	__u32 packets_sent; /* records submitted in the current window */
};

/*
 * One ring-buffer record: LUCID's per-packet features. Numbers are in host
 * byte order (the key's ports excepted). 72 bytes, every byte written.
 */
struct pkt_features {
	struct session_key key;
	__u64 ts_ns;            /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u16 ip_len;           /* IPv4 total length; IPv6 40 + payload length; saturated at 65535 */
	__u16 ip_flags_frag;    /* IPv4 flags<<13 | fragment offset (8-byte units); IPv6: MF (0x2000) | offset from a fragment header */
	__u8 proto;             /* upper-layer protocol (after IPv6 extension headers) */
	__u8 tcp_flags;         /* TCP flags byte (CWR ECE URG ACK PSH RST SYN FIN) */
	__u16 tcp_payload_len;  /* IP payload - TCP header */
	__u32 tcp_ack;          /* acknowledgment number */
	__u16 tcp_window;       /* raw window field (unscaled) */
	__u16 udp_len;          /* UDP length field (header + data), all 16 bits */
	__u8 icmp_type;         /* ICMP or ICMPv6 type */
	__u8 dir;               /* enum ddos_dir: the program that saw the packet */
	__u8 from_hi;           /* 1: sent by hi_addr's side; 0: by lo_addr's side */
	__u8 pad[5];
};

/* Keep the record and enum types in BTF for the manifest and bpf2go. */
struct pkt_features *unused_pkt_features __attribute__((unused));
enum ddos_stat *unused_ddos_stat __attribute__((unused));
enum ddos_dir *unused_ddos_dir __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DDOS_MAX_SESSIONS);
	__type(key, struct session_key);
	__type(value, struct session_state);
} sessions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DDOS_RINGBUF_BYTES);
} features SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DS_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} ddos_stats SEC(".maps");

/*
 * Parsing and the session key: the same code as bpf/cryptofeat.bpf.c (keep
 * the two in step).
 */

/* What the parser extracts from one packet. */
struct pkt_info {
	rp_ipaddr_t saddr;
	rp_ipaddr_t daddr;
	__be16 sport;
	__be16 dport;
	__u32 l3_len; /* bytes of the IP packet */
	__u32 tcp_ack;
	__u16 frag;
	__u16 tcp_payload_len;
	__u16 tcp_window;
	__u16 udp_len;
	__u8 proto;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 pad;
};

enum parse_result {
	PARSE_OK,
	PARSE_NON_IP,
	PARSE_MALFORMED,
	PARSE_SHORT, /* a header is past the linear part of the skb */
};

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&ddos_stats, &idx);

	if (c)
		*c += 1; /* per-CPU slot */
}

/*
 * The parser reads headers with direct packet access. A header that is not
 * in the linear part of a non-linear skb makes it return PARSE_SHORT; the
 * caller then pulls up to PULL_BYTES into the linear part and parses again
 * (rare: drivers and GRO leave the headers linear).
 */
#define PULL_BYTES 256
/* Bounds that keep the verifier's offset tracking small. */
#define MAX_L3_HDRS 2048

/* parse_l4 reads the transport header at l4; l4_len is the IP payload
 * length after all IP headers. */
static __always_inline int parse_l4(__u8 *l4, void *data_end, __u32 l4_len, struct pkt_info *p)
{
	if (p->proto == P_TCP) {
		__u32 thl;

		if (l4_len < 20)
			return PARSE_MALFORMED;
		if ((void *)(l4 + 20) > data_end)
			return PARSE_SHORT;
		thl = (l4[12] >> 4) * 4;
		if (thl < 20 || thl > l4_len)
			return PARSE_MALFORMED;
		__builtin_memcpy(&p->sport, &l4[0], 2);
		__builtin_memcpy(&p->dport, &l4[2], 2);
		p->tcp_ack = ((__u32)l4[8] << 24) | ((__u32)l4[9] << 16) | ((__u32)l4[10] << 8) | l4[11];
		p->tcp_flags = l4[13];
		p->tcp_window = ((__u16)l4[14] << 8) | l4[15];
		p->tcp_payload_len = l4_len - thl > 0xffff ? 0xffff : l4_len - thl;
		return PARSE_OK;
	}
	if (p->proto == P_UDP) {
		if (l4_len < 8)
			return PARSE_MALFORMED;
		if ((void *)(l4 + 8) > data_end)
			return PARSE_SHORT;
		__builtin_memcpy(&p->sport, &l4[0], 2);
		__builtin_memcpy(&p->dport, &l4[2], 2);
		p->udp_len = ((__u16)l4[4] << 8) | l4[5];
		return PARSE_OK;
	}
	if (p->proto == P_ICMP || p->proto == P_ICMPV6) {
		if (l4_len < 1)
			return PARSE_MALFORMED;
		if ((void *)(l4 + 1) > data_end)
			return PARSE_SHORT;
		p->icmp_type = l4[0];
		return PARSE_OK;
	}
	return PARSE_OK; /* other protocols: no transport fields */
}

/* avail: bytes of the skb from the IP header on. */
static __always_inline int parse_ipv4(__u8 *l3, void *data_end, __u32 avail, struct pkt_info *p)
{
	struct iphdr *iph = (void *)l3;
	__u32 hlen;

	if (avail < sizeof(*iph))
		return PARSE_MALFORMED;
	if ((void *)(iph + 1) > data_end)
		return PARSE_SHORT;
	hlen = (l3[0] & 0x0f) * 4;
	if ((l3[0] & 0xf0) != 0x40 || hlen < sizeof(*iph))
		return PARSE_MALFORMED;
	p->l3_len = bpf_ntohs(iph->tot_len);
	/* tot_len 0 on a packet larger than 64 KiB: IPv4 BIG TCP (GSO/GRO). */
	if (p->l3_len == 0 && avail > 0xffff)
		p->l3_len = avail;
	if (p->l3_len < hlen || p->l3_len > avail)
		return PARSE_MALFORMED;

	p->saddr[10] = 0xff;
	p->saddr[11] = 0xff;
	__builtin_memcpy(&p->saddr[12], &iph->saddr, 4);
	p->daddr[10] = 0xff;
	p->daddr[11] = 0xff;
	__builtin_memcpy(&p->daddr[12], &iph->daddr, 4);
	p->proto = iph->protocol;
	p->frag = bpf_ntohs(iph->frag_off);
	if (p->frag & IP_OFFSET)
		return PARSE_OK; /* non-first fragment: no transport header */
	return parse_l4(l3 + hlen, data_end, p->l3_len - hlen, p);
}

static __always_inline int parse_ipv6(__u8 *l3, void *data_end, __u32 avail, struct pkt_info *p)
{
	struct ipv6hdr *ip6h = (void *)l3;
	__u32 cur;
	__u8 nh;

	if (avail < sizeof(*ip6h))
		return PARSE_MALFORMED;
	if ((void *)(ip6h + 1) > data_end)
		return PARSE_SHORT;
	if ((l3[0] & 0xf0) != 0x60)
		return PARSE_MALFORMED;
	p->l3_len = sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
	/* payload_len 0 on a packet larger than 64 KiB: jumbogram or BIG TCP. */
	if (p->l3_len == sizeof(*ip6h) && avail > 0xffff)
		p->l3_len = avail;
	if (p->l3_len > avail)
		return PARSE_MALFORMED;
	__builtin_memcpy(p->saddr, &ip6h->saddr, 16);
	__builtin_memcpy(p->daddr, &ip6h->daddr, 16);

	nh = ip6h->nexthdr;
	cur = sizeof(*ip6h);
#pragma unroll
	for (int i = 0; i < MAX_EXT_HDRS; i++) {
		__u8 *eh;

		if (nh != NH_HOP && nh != NH_ROUTING && nh != NH_FRAGMENT &&
		    nh != NH_DEST && nh != NH_AH)
			break;
		if (cur + 8 > p->l3_len)
			return PARSE_MALFORMED;
		if (cur > MAX_L3_HDRS)
			return PARSE_SHORT; /* beyond what we pull: not parsed */
		eh = l3 + cur;
		if ((void *)(eh + 8) > data_end)
			return PARSE_SHORT;
		if (nh == NH_FRAGMENT) {
			__u16 fo = ((__u16)eh[2] << 8) | eh[3];

			/* Same layout as IPv4: MF flag, offset in 8-byte units. */
			p->frag = (fo & 1 ? IP_MF : 0) | (fo >> 3);
			cur += 8;
			nh = eh[0];
			if (fo >> 3) {
				p->proto = nh;
				return PARSE_OK; /* non-first fragment */
			}
			continue;
		}
		if (nh == NH_AH)
			cur += ((__u32)eh[1] + 2) * 4;
		else
			cur += ((__u32)eh[1] + 1) * 8;
		if (cur > p->l3_len)
			return PARSE_MALFORMED;
		nh = eh[0];
	}
	p->proto = nh;
	if (nh == NH_HOP || nh == NH_ROUTING || nh == NH_FRAGMENT || nh == NH_DEST || nh == NH_AH)
		return PARSE_OK; /* more extension headers than we follow */
	if (cur > MAX_L3_HDRS)
		return PARSE_SHORT;
	return parse_l4(l3 + cur, data_end, p->l3_len - cur, p);
}

static __always_inline int parse_frame(struct __sk_buff *skb, struct pkt_info *p)
{
	__u8 *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 off = sizeof(struct ethhdr);
	__be16 type;

	if (skb->len < off)
		return PARSE_MALFORMED;
	if ((void *)(data + off) > data_end)
		return PARSE_SHORT;
	__builtin_memcpy(&type, data + 12, sizeof(type));
#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (type != bpf_htons(ETH_P_8021Q) && type != bpf_htons(ETH_P_8021AD))
			break;
		/* struct vlan_hdr: TCI, then the encapsulated ethertype. */
		if (skb->len < off + 4)
			return PARSE_MALFORMED;
		if ((void *)(data + off + 4) > data_end)
			return PARSE_SHORT;
		__builtin_memcpy(&type, data + off + 2, sizeof(type));
		off += 4;
	}
	if (type == bpf_htons(ETH_P_IP))
		return parse_ipv4(data + off, data_end, skb->len - off, p);
	if (type == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(data + off, data_end, skb->len - off, p);
	if (type == bpf_htons(ETH_P_8021Q) || type == bpf_htons(ETH_P_8021AD))
		return PARSE_MALFORMED; /* more tags than we follow */
	return PARSE_NON_IP;
}

static __always_inline int parse(struct __sk_buff *skb, struct pkt_info *p)
{
	int r = parse_frame(skb, p);

	if (r != PARSE_SHORT)
		return r;
	/* A header lies past the linear part: pull and try once more. */
	if (skb->data_end - skb->data >= skb->len ||
	    bpf_skb_pull_data(skb, skb->len < PULL_BYTES ? skb->len : PULL_BYTES) < 0)
		return PARSE_MALFORMED;
	__builtin_memset(p, 0, sizeof(*p));
	r = parse_frame(skb, p);
	return r == PARSE_SHORT ? PARSE_MALFORMED : r;
}

/* addr_cmp returns -1, 0 or 1 as a is below, equal to or above b, comparing
 * the addresses as 128-bit big-endian numbers (bytes in network order). */
static __always_inline int addr_cmp(const __u8 *a, const __u8 *b)
{
	__u64 a0, a1, b0, b1;

	__builtin_memcpy(&a0, a, 8);
	__builtin_memcpy(&a1, a + 8, 8);
	__builtin_memcpy(&b0, b, 8);
	__builtin_memcpy(&b1, b + 8, 8);
	a0 = bpf_be64_to_cpu(a0);
	a1 = bpf_be64_to_cpu(a1);
	b0 = bpf_be64_to_cpu(b0);
	b1 = bpf_be64_to_cpu(b1);
	if (a0 != b0)
		return a0 < b0 ? -1 : 1;
	if (a1 != b1)
		return a1 < b1 ? -1 : 1;
	return 0;
}

/* make_key fills k (zeroed by the caller) and returns 1 when the packet's
 * source is the hi side. */
static __always_inline __u8 make_key(struct session_key *k, const struct pkt_info *p)
{
	int c = addr_cmp(p->saddr, p->daddr);
	__u8 from_hi = c > 0 || (c == 0 && bpf_ntohs(p->sport) > bpf_ntohs(p->dport));

	if (!from_hi) {
		__builtin_memcpy(k->lo_addr, p->saddr, 16);
		__builtin_memcpy(k->hi_addr, p->daddr, 16);
		k->lo_port = p->sport;
		k->hi_port = p->dport;
	} else {
		__builtin_memcpy(k->lo_addr, p->daddr, 16);
		__builtin_memcpy(k->hi_addr, p->saddr, 16);
		k->lo_port = p->dport;
		k->hi_port = p->sport;
	}
	k->proto = p->proto;
	return from_hi;
}

static __always_inline void handle(struct __sk_buff *skb, __u8 dir)
{
	struct pkt_info p;
	struct session_key key;
	struct session_state *s;
	struct pkt_features *rec;
	__u64 now = 0;
	__u8 from_hi;
	int r;

	stat_inc(DS_PACKETS);
	__builtin_memset(&p, 0, sizeof(p));
	r = parse(skb, &p);
	if (r == PARSE_NON_IP) {
		stat_inc(DS_NON_IP);
		return;
	}
	if (r != PARSE_OK) {
		stat_inc(DS_MALFORMED);
		return;
	}

	__builtin_memset(&key, 0, sizeof(key));
	from_hi = make_key(&key, &p);

	s = bpf_map_lookup_elem(&sessions, &key);
	if (!s) {
		struct session_state init = {};

		now = rp_now();
		init.first_ns = now;
		/* BPF_NOEXIST: another CPU may have created it meanwhile. */
		bpf_map_update_elem(&sessions, &key, &init, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&sessions, &key);
		if (!s) {
			stat_inc(DS_NO_SESSION);
			return;
		}
	}
	/*
	 * Clocks: bpf_ktime_get_ns() costs about 45 ns here, the coarse clock
	 * (same time base, one tick of resolution) about 20 ns. A packet that
	 * will probably be submitted reads the fine clock and uses it for the
	 * window too; a capped packet (the flood case) reads only the coarse
	 * one, so its window may end up to a tick late. Signed comparison:
	 * the coarse clock lags the fine one, and another CPU may just have
	 * started a window.
	 */
	if (!now && s->packets_sent < n_packets)
		now = rp_now();
	if (window_ns && (__s64)((now ? now : rp_now_coarse()) - s->first_ns) >= (__s64)window_ns) {
		if (!now)
			now = rp_now();
		s->first_ns = now;
		s->packets_seen = 0;
		s->packets_sent = 0;
	}
	__sync_fetch_and_add(&s->packets_seen, 1);
	if (s->packets_sent >= n_packets) {
		stat_inc(DS_CAPPED);
		return;
	}
	rec = bpf_ringbuf_reserve(&features, sizeof(*rec), 0);
	if (!rec) {
		stat_inc(DS_RB_FULL);
		return;
	}
	if (!now)
		now = rp_now();
	__sync_fetch_and_add(&s->packets_sent, 1);

	__builtin_memcpy(&rec->key, &key, sizeof(key));
	rec->ts_ns = now;
	rec->ip_len = p.l3_len > 0xffff ? 0xffff : p.l3_len;
	rec->ip_flags_frag = p.frag;
	rec->proto = p.proto;
	rec->tcp_flags = p.tcp_flags;
	rec->tcp_payload_len = p.tcp_payload_len;
	rec->tcp_ack = p.tcp_ack;
	rec->tcp_window = p.tcp_window;
	rec->udp_len = p.udp_len;
	rec->icmp_type = p.icmp_type;
	rec->dir = dir;
	rec->from_hi = from_hi;
	__builtin_memset(rec->pad, 0, sizeof(rec->pad));
	bpf_ringbuf_submit(rec, 0);
	stat_inc(DS_SUBMITTED);
}

SEC("tc")
int ddos_ingress(struct __sk_buff *skb)
{
	handle(skb, DDOS_DIR_INGRESS);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int ddos_egress(struct __sk_buff *skb)
{
	handle(skb, DDOS_DIR_EGRESS);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
