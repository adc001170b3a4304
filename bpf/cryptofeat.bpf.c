//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cryptofeat: per-session traffic counters for crypto-mining detection (the
 * "crypto probe" of TOSHI). User space derives TOSHI's features from them:
 * server and client packets and bits, duration, rates, bits per packet and
 * server/client ratios (probes/cryptofeat/record.go, Derive).
 *
 * Two TC programs share every map:
 *   crypto_ingress  attached at tc-ingress of an interface
 *   crypto_egress   attached at tc-egress of the same interface
 * Both return TC_ACT_UNSPEC: the probe only observes.
 *
 * Sessions. TCP and UDP packets are counted per bidirectional session, with
 * the same key as ddosfeat: the lower address first (bytes compared in
 * network order), and for equal addresses the lower port (host order)
 * first; IPv4 addresses IPv4-mapped. Other protocols, non-first fragments
 * (no ports) and non-IP frames are only counted in crypto_stats.
 *
 * sessions is a per-CPU hash: each CPU keeps its own copy of a session's
 * value, written without atomics; user space merges the copies (sums the
 * counters, takes the earliest start, the latest last, the best server
 * decision). "in" and "out" are the interface's directions: packets seen by
 * crypto_ingress count as in, by crypto_egress as out. Packets are counted
 * as the skb's GSO segments (one for an ordinary packet), bytes as the IP
 * length (IPv4 total length, IPv6 40 + payload length).
 *
 * Server. Each packet proposes which side is the server and how it knows:
 *   1  TCP SYN without ACK: the destination; SYN+ACK: the source.
 *   2  exactly one of the two ports is below 1024: that port's side.
 *   3  otherwise the side of the lower port (equal ports: the destination).
 * A session keeps its first decision unless a packet brings a better one
 * (a lower method number).
 *
 * Timeout. A CPU's copy of a session whose last packet is older than
 * session_timeout_ns (60 s by default; 0: never) is restarted by its next
 * packet: counters cleared, start = now, a new server decision
 * (CS_RESTARTED). The kernel never deletes sessions: when the table is full
 * (CRYPTO_MAX_SESSIONS, 10000) new sessions are not tracked
 * (CS_TABLE_FULL) until user space deletes some (TOSHI read and cleared the
 * table every window).
 *
 * Times are bpf_ktime_get_coarse_ns(): CLOCK_MONOTONIC at the resolution of
 * one scheduler tick (1-10 ms), at half the cost of bpf_ktime_get_ns().
 *
 * Parsing is the same as ddosfeat's (one Ethernet header, up to two VLAN
 * tags, IPv4 with options, IPv6 with up to four extension headers; direct
 * packet access with a bpf_skb_pull_data retry for non-linear skbs).
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

#define TCP_SYN 0x02
#define TCP_ACK 0x10

/* Map sizes cannot be load-time constants; a loader may change
 * MaxEntries in the collection spec before loading. */
#define CRYPTO_MAX_SESSIONS 10000

/* A session idle for longer restarts on its next packet; 0: never. */
RP_PARAM(__u64, session_timeout_ns, 60000000000ULL);

/* How the server side was decided (1 is best). One byte: packed. */
enum crypto_method {
	METHOD_NONE = 0,
	METHOD_TCP_HANDSHAKE = 1,
	METHOD_WELL_KNOWN_PORT = 2,
	METHOD_LOWER_PORT = 3,
} __attribute__((packed));

/* Indexes of crypto_stats. */
enum crypto_stat {
	CS_PACKETS = 0,     /* every packet the programs ran on */
	CS_COUNTED = 1,     /* counted in a session */
	CS_NON_IP = 2,      /* not IPv4/IPv6 */
	CS_OTHER_PROTO = 3, /* IP but not TCP/UDP, or a non-first fragment */
	CS_MALFORMED = 4,   /* truncated or inconsistent headers */
	CS_TABLE_FULL = 5,  /* a new session found no room */
	CS_RESTARTED = 6,   /* a session copy restarted after the timeout (also counted) */
};
#define CS_COUNT 7

/* Bidirectional session key: 40 bytes, no holes, fully written. */
struct session_key {
	rp_ipaddr_t lo_addr;
	rp_ipaddr_t hi_addr;
	rp_be16_t lo_port; /* the port of lo_addr's side */
	rp_be16_t hi_port;
	__u8 proto;
	__u8 pad[3];
};

/* One CPU's copy of a session (72 bytes). */
struct crypto_session {
	__u64 start_ns; /* first packet on this CPU since the (re)start */
	__u64 last_ns;  /* last packet on this CPU */
	__u64 pkts_in;
	__u64 bytes_in;
	__u64 pkts_out;
	__u64 bytes_out;
	rp_ipaddr_t server;        /* the server's address, IPv4-mapped for IPv4 */
	enum crypto_method method; /* how server was decided; 0: not yet */
	__u8 pad[7];
};

/* Keep the enums in BTF for bpf2go. */
enum crypto_stat *unused_crypto_stat __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, CRYPTO_MAX_SESSIONS);
	__type(key, struct session_key);
	__type(value, struct crypto_session);
} sessions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CS_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} crypto_stats SEC(".maps");

enum crypto_dir {
	CRYPTO_IN = 0,
	CRYPTO_OUT = 1,
};

/*
 * Parsing and the session key: the same code as bpf/ddosfeat.bpf.c (keep
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
	__u64 *c = bpf_map_lookup_elem(&crypto_stats, &idx);

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

/* server_guess returns the method by which this packet names a server and
 * sets *src_is_server accordingly. */
static __always_inline enum crypto_method server_guess(const struct pkt_info *p, __u8 *src_is_server)
{
	__u16 sp = bpf_ntohs(p->sport), dp = bpf_ntohs(p->dport);

	if (p->proto == P_TCP && (p->tcp_flags & TCP_SYN)) {
		*src_is_server = (p->tcp_flags & TCP_ACK) != 0;
		return METHOD_TCP_HANDSHAKE;
	}
	if ((sp < 1024) != (dp < 1024)) {
		*src_is_server = sp < 1024;
		return METHOD_WELL_KNOWN_PORT;
	}
	*src_is_server = sp < dp;
	return METHOD_LOWER_PORT;
}

static __always_inline void handle(struct __sk_buff *skb, enum crypto_dir dir)
{
	struct pkt_info p;
	struct session_key key;
	struct crypto_session *s;
	enum crypto_method m;
	__u8 src_is_server;
	__u64 now, segs;
	int r;

	stat_inc(CS_PACKETS);
	__builtin_memset(&p, 0, sizeof(p));
	r = parse(skb, &p);
	if (r == PARSE_NON_IP) {
		stat_inc(CS_NON_IP);
		return;
	}
	if (r != PARSE_OK) {
		stat_inc(CS_MALFORMED);
		return;
	}
	if ((p.proto != P_TCP && p.proto != P_UDP) || (p.frag & IP_OFFSET)) {
		stat_inc(CS_OTHER_PROTO);
		return;
	}

	__builtin_memset(&key, 0, sizeof(key));
	make_key(&key, &p);
	now = rp_now_coarse();

	s = bpf_map_lookup_elem(&sessions, &key);
	if (!s) {
		struct crypto_session zero = {};

		/* BPF_NOEXIST: another CPU may have created it meanwhile;
		 * then this CPU's copy is zero and starts below. */
		bpf_map_update_elem(&sessions, &key, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&sessions, &key);
		if (!s) {
			stat_inc(CS_TABLE_FULL);
			return;
		}
	}
	if (s->last_ns == 0) {
		s->start_ns = now; /* a new session, or new on this CPU */
	} else if (session_timeout_ns && now - s->last_ns > session_timeout_ns) {
		__builtin_memset(s, 0, sizeof(*s));
		s->start_ns = now;
		stat_inc(CS_RESTARTED);
	}
	/* A GSO/GRO skb stands for several packets on the wire. */
	segs = skb->gso_segs ? skb->gso_segs : 1;
	if (dir == CRYPTO_IN) {
		s->pkts_in += segs;
		s->bytes_in += p.l3_len;
	} else {
		s->pkts_out += segs;
		s->bytes_out += p.l3_len;
	}
	s->last_ns = now;
	/* last_ns 0 marks an unused copy: the coarse clock is far past 0. */

	if (s->method != METHOD_TCP_HANDSHAKE) {
		m = server_guess(&p, &src_is_server);
		if (s->method == METHOD_NONE || m < s->method) {
			if (src_is_server)
				__builtin_memcpy(s->server, p.saddr, sizeof(s->server));
			else
				__builtin_memcpy(s->server, p.daddr, sizeof(s->server));
			s->method = m;
		}
	}
	stat_inc(CS_COUNTED);
}

SEC("tc")
int crypto_ingress(struct __sk_buff *skb)
{
	handle(skb, CRYPTO_IN);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int crypto_egress(struct __sk_buff *skb)
{
	handle(skb, CRYPTO_OUT);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
