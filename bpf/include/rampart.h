/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * rampart.h: shared definitions for rampart probes.
 *
 * The typedefs below carry meaning through BTF: the agent's decoder renders a
 * field whose type is one of them as text (an address) or as a host-order
 * number, without any hint in the manifest.
 */
#ifndef __RAMPART_H__
#define __RAMPART_H__

/* IPv4 address in network byte order, rendered as "192.0.2.1". */
typedef __u32 rp_ipv4_t;
/* IPv6 address in network byte order, rendered as "2001:db8::1". */
typedef __u8 rp_ipv6_t[16];
/* IPv4 or IPv4-mapped IPv6 address, rendered as text in its shortest form. */
typedef __u8 rp_ipaddr_t[16];
/* MAC address, rendered as "02:00:00:00:00:01". */
typedef __u8 rp_mac_t[6];
/* 16- and 32-bit numbers in network byte order (ports), rendered in host order. */
typedef __u16 rp_be16_t;
typedef __u32 rp_be32_t;

/* Load-time parameters: the agent sets these through the manifest's `parameters`. */
#define RP_PARAM(type, name, def) volatile const type name = def

#endif /* __RAMPART_H__ */
