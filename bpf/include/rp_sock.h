/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * rp_sock.h: a socket's addresses as rp_ipaddr_t (IPv6, or IPv4-mapped
 * IPv6), for probes that hold a struct sock. Needs vmlinux.h.
 */
#ifndef __RP_SOCK_H__
#define __RP_SOCK_H__

/* rp_v4mapped writes a as ::ffff:a into the 16 bytes at dst. */
static __always_inline void rp_v4mapped(__u8 *dst, __be32 a)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &a, 4);
}

/* rp_sk_addrs_btf writes the local and remote addresses of sk, a BTF
 * pointer (tp_btf arguments: direct loads, no probe-read helper calls),
 * into the 16 bytes at local and at remote. */
static __always_inline void rp_sk_addrs_btf(const struct sock *sk, __u8 *local, __u8 *remote)
{
	if (sk->__sk_common.skc_family == AF_INET6) {
		__u32 *l = (__u32 *)local, *r = (__u32 *)remote;

		l[0] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[0];
		l[1] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[1];
		l[2] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[2];
		l[3] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[3];
		r[0] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[0];
		r[1] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[1];
		r[2] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[2];
		r[3] = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[3];
	} else {
		rp_v4mapped(local, sk->__sk_common.skc_rcv_saddr);
		rp_v4mapped(remote, sk->__sk_common.skc_daddr);
	}
}

#endif /* __RP_SOCK_H__ */
