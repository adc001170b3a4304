//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * netio: per-socket network I/O events of watched processes (Cogo's input:
 * the rate at which a server acquires and releases connections, and what it
 * reads and writes on them), from tracepoints only.
 *
 * Which tasks are watched comes from rp_target.h (rp_tgids, rp_cgroups,
 * rp_execs, rp_watch_all). For them, one struct netio_event per
 *
 *   ACCEPT   accept()/accept4() returned a TCP socket (syscalls tracepoints;
 *            the fd is resolved to its struct sock through the task's file
 *            table);
 *   CONNECT  an active TCP connection of a watched task reached ESTABLISHED
 *            (sock/inet_sock_set_state SYN_SENT -> ESTABLISHED; the task
 *            that called connect() was recorded at CLOSE -> SYN_SENT);
 *   RECV     sock/sock_recv_length with ret > 0 (MSG_PEEK reads skipped),
 *            and ret == 0 on TCP: the peer's end of stream (size 0);
 *   SEND     sock/sock_send_length with ret > 0;
 *   CLOSE    a socket that had an owner is gone: TCP reached CLOSE (any
 *            cause: the application's close, a reset, the end of FIN
 *            handling), or the last reference to a UDP socket's file was
 *            closed (sys_enter_close);
 *   LISTEN   a watched task's TCP socket started listening (CLOSE -> LISTEN);
 *            its CLOSE follows when it stops;
 *   EXIT     a watched process that did network I/O exited (its remaining
 *            UDP sockets went with it; its TCP sockets close on their own).
 *
 * The socket tracepoints are attached as tp_btf (the same tracepoints,
 * typed arguments, no trace record built): the struct sock is read with
 * direct loads and bpf_get_socket_cookie() gives each socket a 64-bit id
 * that is never reused (the sk address is, once the socket is freed) and is
 * what sock_diag uses to name a socket (`ss -K`, the responder's close).
 *
 * inet_sock_set_state runs in softirq context for transitions driven by
 * incoming segments (the current task is arbitrary), so sockets are
 * associated with a process in process context and remembered in the LRU
 * table `owners` (cookie -> owner): at accept, at connect, or when a
 * watched task first reads or writes a socket it got otherwise (a UDP
 * socket, a connection accepted before watching started). The owner is the
 * last watched process that did I/O on the socket: a forking server's child
 * takes over the connections its parent accepted. Events that run outside
 * the owner's context carry the owner's tgid/tid and NETIO_F_OWNER.
 *
 * `procs` keeps per-process counters (open sockets, accepts, connects,
 * closes, calls, bytes, errors, EAGAIN, events emitted and lost) for the
 * exhaustion predictor and for metrics; `netio_stats` counts what was
 * emitted and lost (ring buffer full, tables full).
 *
 * Every handler that runs in process context returns after one hash lookup
 * for an unwatched task (rp_watched_current); the state handler, which runs
 * for every TCP socket on the host, does at most one lookup in `owners`
 * (and makes the cookie of each passive connection as it is established,
 * one atomic increment, so that accept can read it).
 *
 * Limits: reads through splice() from a TCP socket (tcp_splice_read) do not
 * pass sock_recv_length and are not seen (sendfile/splice writes are);
 * a CLOSE event's remote port may already be cleared by the kernel (the
 * collector keeps the peer from the accept or connect); UDP sockets still
 * open when their process exits get no CLOSE, only the process's EXIT.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "rampart.h"
#include "rp_clock.h"
#include "rp_target.h"

#define AF_INET 2
#define AF_INET6 10
#define MSG_PEEK 2
#define EAGAIN 11
#define S_IFMT 00170000
#define S_IFSOCK 0140000

#include "rp_sock.h"

/* netio_io_events: 1 streams RECV/SEND events; 0 only counts them in
 * `procs` (connection events still stream). */
RP_PARAM(__u32, netio_io_events, 1);

/* netio_flush_us: RECV/SEND events do not wake the reader each; a timer
 * wakes it at most this long after the first one it has not seen (and at
 * once when a quarter of the ring is pending). Waking the reader costs a
 * few microseconds per event on virtual machines (an IPI). 0 wakes it for
 * every event. Connection events always wake it. */
RP_PARAM(__u32, netio_flush_us, 2000);

#define CLOCK_MONOTONIC 1

enum netio_kind {
	NETIO_ACCEPT = 1,
	NETIO_CONNECT = 2,
	NETIO_RECV = 3,
	NETIO_SEND = 4,
	NETIO_CLOSE = 5,
	NETIO_EXIT = 6,
	NETIO_LISTEN = 7,
};

/* netio_event.flags */
#define NETIO_F_NEW 1	/* first event of a socket the owner table did not know */
#define NETIO_F_OWNER 2 /* tgid/tid are the socket owner's, not the current task's */

/* One ring-buffer record. Addresses are rp_ipaddr_t (IPv4 as IPv4-mapped
 * IPv6, also for IPv4 peers of dual-stack IPv6 sockets); ports in host
 * order; s* = local, d* = remote (zero for an unconnected UDP socket). */
struct netio_event {
	__u64 ts_ns;	      /* rp_now(): CLOCK_MONOTONIC */
	__u64 cookie;	      /* socket cookie: unique for the host's uptime */
	__u64 sk;	      /* struct sock address (reused after the socket is freed) */
	__u32 tgid;
	__u32 tid;
	enum netio_kind kind;
	__u32 size;	      /* bytes (RECV, SEND) */
	__u16 family;	      /* AF_INET 2, AF_INET6 10 */
	__u16 proto;	      /* IPPROTO_TCP 6, IPPROTO_UDP 17 */
	__u16 sport;
	__u16 dport;
	rp_ipaddr_t saddr;
	rp_ipaddr_t daddr;
	__u32 netns;	      /* the socket's network namespace (inode number) */
	__u8 state;	      /* TCP state; for CLOSE the state it left */
	__u8 flags;	      /* NETIO_F_* */
	__u16 pad;
};

struct netio_owner {
	__u64 sk;
	__u32 tgid;
	__u32 tid;
	__u32 listener; /* a listening socket: not counted as open */
	__u32 pad;
};

/* Per-process counters. `open` is a gauge (sockets owned now). */
struct netio_proc {
	__s64 open;
	__u64 accepts;
	__u64 connects;
	__u64 closes;
	__u64 recv_calls;
	__u64 recv_bytes;
	__u64 send_calls;
	__u64 send_bytes;
	__u64 recv_eof;	   /* recv returned 0: the peer closed */
	__u64 recv_eagain;
	__u64 send_eagain;
	__u64 recv_errors; /* other negative returns */
	__u64 send_errors;
	__u64 events;	   /* emitted to the ring buffer */
	__u64 lost;	   /* not emitted: ring buffer full */
};

enum netio_stat {
	NS_EVENTS = 0,	   /* events emitted */
	NS_RB_FULL = 1,	   /* events lost: ring buffer full */
	NS_PROCS_FULL = 2, /* process table full: counters not kept */
	NS_OWNERS_FULL = 3, /* owner table insert failed */
	NS_NO_SOCK = 4,	   /* accept's fd could not be resolved to a socket */
	NS_NO_COOKIE = 5,  /* accepted socket without a cookie yet (TFO): owned at first I/O */
	NS_PEEK = 6,	   /* MSG_PEEK reads skipped */
	NS_MAX = 7,
};

struct netio_stat_val {
	__u64 n;
};

/* Ring buffers carry no value type: keep the record in the object's BTF. */
struct netio_event *unused_netio_event __attribute__((unused));
enum netio_stat *unused_netio_stat __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 2 * 1024 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* socket cookie */
	__type(value, struct netio_owner);
} owners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32); /* tgid */
	__type(value, struct netio_proc);
} procs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NS_MAX);
	__type(key, __u32);
	__type(value, struct netio_stat_val);
} netio_stats SEC(".maps");

/* The reader's wake-up timer (tp_btf programs only: classic tracepoint
 * programs may not use bpf_timer). */
struct netio_flush {
	struct bpf_timer t;
	__u64 armed; /* 64-bit: the only width of atomic exchange before -mcpu=v3 */
	__u64 init;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netio_flush);
} flusher SEC(".maps");

static __always_inline void stat_inc(__u32 i)
{
	struct netio_stat_val *v = bpf_map_lookup_elem(&netio_stats, &i);

	if (v)
		v->n++;
}

static __always_inline struct netio_proc *proc_get(__u32 tgid)
{
	struct netio_proc *pc = bpf_map_lookup_elem(&procs, &tgid);

	if (pc)
		return pc;
	struct netio_proc zero = {};

	bpf_map_update_elem(&procs, &tgid, &zero, BPF_NOEXIST);
	pc = bpf_map_lookup_elem(&procs, &tgid);
	if (!pc)
		stat_inc(NS_PROCS_FULL);
	return pc;
}

static __always_inline void proc_add(__u32 tgid, __s64 open, int field)
{
	struct netio_proc *pc = bpf_map_lookup_elem(&procs, &tgid);

	if (!pc)
		return;
	if (open)
		__sync_fetch_and_add(&pc->open, open);
	switch (field) {
	case NETIO_ACCEPT:
		__sync_fetch_and_add(&pc->accepts, 1);
		break;
	case NETIO_CONNECT:
		__sync_fetch_and_add(&pc->connects, 1);
		break;
	case NETIO_CLOSE:
		__sync_fetch_and_add(&pc->closes, 1);
		break;
	}
}

static __always_inline struct netio_event *ev_reserve(struct netio_proc *pc)
{
	struct netio_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);

	if (!ev) {
		stat_inc(NS_RB_FULL);
		if (pc)
			__sync_fetch_and_add(&pc->lost, 1);
		return NULL;
	}
	stat_inc(NS_EVENTS);
	if (pc)
		__sync_fetch_and_add(&pc->events, 1);
	ev->ts_ns = rp_now();
	ev->pad = 0;
	return ev;
}

/* tuple_btf fills the addresses, ports, family, protocol and netns from a
 * BTF pointer (tp_btf arguments): direct loads. */
static __always_inline void tuple_btf(struct netio_event *ev, const struct sock *sk)
{
	ev->family = sk->__sk_common.skc_family;
	ev->proto = sk->sk_protocol;
	ev->sport = sk->__sk_common.skc_num;
	ev->dport = bpf_ntohs(sk->__sk_common.skc_dport);
	ev->state = sk->__sk_common.skc_state;
	ev->netns = sk->__sk_common.skc_net.net->ns.inum;
	rp_sk_addrs_btf(sk, ev->saddr, ev->daddr);
}

/* tuple_core is tuple_btf for a plain kernel address (classic tracepoints). */
static __always_inline void tuple_core(struct netio_event *ev, const struct sock *sk)
{
	__u16 fam = BPF_CORE_READ(sk, __sk_common.skc_family);

	ev->family = fam;
	ev->proto = BPF_CORE_READ(sk, sk_protocol);
	ev->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	ev->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	ev->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	ev->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (fam == AF_INET6) {
		BPF_CORE_READ_INTO(&ev->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&ev->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		rp_v4mapped(ev->saddr, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
		rp_v4mapped(ev->daddr, BPF_CORE_READ(sk, __sk_common.skc_daddr));
	}
}

/* flush_cb wakes the reader: a discarded record carries the wake-up and
 * nothing else. armed is cleared first, so an event submitted after the
 * wake-up arms the timer again. */
static int flush_cb(void *map, __u32 *key, struct netio_flush *f)
{
	void *r;

	__sync_lock_test_and_set(&f->armed, 0);
	r = bpf_ringbuf_reserve(&events, 8, 0);
	if (r)
		bpf_ringbuf_discard(r, BPF_RB_FORCE_WAKEUP);
	return 0;
}

/* submit_lazy submits a RECV/SEND event, leaving the reader's wake-up to
 * the timer (see netio_flush_us). */
static __always_inline void submit_lazy(struct netio_event *ev)
{
	__u32 zero = 0;
	struct netio_flush *f;

	if (!netio_flush_us) {
		bpf_ringbuf_submit(ev, 0);
		return;
	}
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= bpf_ringbuf_query(&events, BPF_RB_RING_SIZE) / 4) {
		bpf_ringbuf_submit(ev, BPF_RB_FORCE_WAKEUP);
		return;
	}
	f = bpf_map_lookup_elem(&flusher, &zero);
	if (!f) {
		bpf_ringbuf_submit(ev, 0);
		return;
	}
	bpf_ringbuf_submit(ev, BPF_RB_NO_WAKEUP);
	if (f->armed || __sync_lock_test_and_set(&f->armed, 1))
		return;
	if (!f->init) {
		bpf_timer_init(&f->t, &flusher, CLOCK_MONOTONIC);
		bpf_timer_set_callback(&f->t, flush_cb);
		f->init = 1;
	}
	if (bpf_timer_start(&f->t, (__u64)netio_flush_us * 1000, 0)) {
		/* Could not arm: wake the reader now instead. */
		f->armed = 0;
		void *r = bpf_ringbuf_reserve(&events, 8, 0);

		if (r)
			bpf_ringbuf_discard(r, BPF_RB_FORCE_WAKEUP);
	}
}

/* submit_quiet submits from a classic tracepoint program, which may not
 * arm the timer: without a wake-up when netio_flush_us is set (the next
 * RECV/SEND/state event's timer, or the reader's poll, delivers it), so a
 * connection opened or closed costs no interrupt and no reader wake-up of
 * its own. */
static __always_inline void submit_quiet(struct netio_event *ev)
{
	bpf_ringbuf_submit(ev, netio_flush_us ? BPF_RB_NO_WAKEUP : 0);
}

static __always_inline bool inet_l4(__u16 fam, __u16 proto)
{
	return (fam == AF_INET || fam == AF_INET6) && (proto == IPPROTO_TCP || proto == IPPROTO_UDP);
}

/* own makes tgid/tid the owner of a socket. A new entry counts as an open
 * socket of tgid; a socket passing from another process moves its count.
 * Returns true when the table did not know the socket. */
static __always_inline bool own(__u64 cookie, __u64 sk, __u32 tgid, __u32 tid, bool listener)
{
	struct netio_owner *o = bpf_map_lookup_elem(&owners, &cookie);

	if (o) {
		if (o->tgid != tgid) {
			if (!o->listener) {
				proc_add(o->tgid, -1, 0);
				proc_add(tgid, 1, 0);
			}
			o->tgid = tgid;
		}
		o->tid = tid;
		return false;
	}
	struct netio_owner n = {.sk = sk, .tgid = tgid, .tid = tid, .listener = listener};

	if (bpf_map_update_elem(&owners, &cookie, &n, BPF_ANY)) {
		stat_inc(NS_OWNERS_FULL);
		return false;
	}
	if (!listener)
		proc_add(tgid, 1, 0);
	return true;
}

static __always_inline int on_io(struct sock *sk, int ret, int flags, bool recv)
{
	if (!rp_watched_current() || !sk)
		return 0;
	__u16 fam = sk->__sk_common.skc_family, proto = sk->sk_protocol;

	if (!inet_l4(fam, proto))
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct netio_proc *pc = proc_get(tgid);

	if (ret < 0) {
		if (pc)
			__sync_fetch_and_add(ret == -EAGAIN ? (recv ? &pc->recv_eagain : &pc->send_eagain)
							    : (recv ? &pc->recv_errors : &pc->send_errors), 1);
		return 0;
	}
	if (recv && (flags & MSG_PEEK)) {
		stat_inc(NS_PEEK);
		return 0;
	}
	if (ret == 0) {
		/* A TCP read of 0 bytes is the peer's end of stream: streamed as
		 * a RECV of size 0. Empty UDP datagrams and writes: nothing. */
		if (!recv || proto != IPPROTO_TCP)
			return 0;
		if (pc)
			__sync_fetch_and_add(&pc->recv_eof, 1);
	} else if (pc) {
		if (recv) {
			__sync_fetch_and_add(&pc->recv_calls, 1);
			__sync_fetch_and_add(&pc->recv_bytes, ret);
		} else {
			__sync_fetch_and_add(&pc->send_calls, 1);
			__sync_fetch_and_add(&pc->send_bytes, ret);
		}
	}
	__u64 cookie = bpf_get_socket_cookie(sk);
	bool fresh = own(cookie, (__u64)sk, tgid, tid, false);

	if (!netio_io_events && !fresh)
		return 0;
	struct netio_event *ev = ev_reserve(pc);

	if (!ev)
		return 0;
	ev->cookie = cookie;
	ev->sk = (__u64)sk;
	ev->tgid = tgid;
	ev->tid = tid;
	ev->kind = recv ? NETIO_RECV : NETIO_SEND;
	ev->size = ret;
	ev->flags = fresh ? NETIO_F_NEW : 0;
	tuple_btf(ev, sk);
	submit_lazy(ev);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(netio_recv, struct sock *sk, int ret, int flags)
{
	return on_io(sk, ret, flags, true);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(netio_send, struct sock *sk, int ret, int flags)
{
	return on_io(sk, ret, flags, false);
}

/* emit_owned emits an event for a socket on behalf of its owner. */
static __always_inline void emit_owned(const struct sock *sk, __u64 cookie, struct netio_owner *o,
				       enum netio_kind kind, __u8 state)
{
	struct netio_event *ev = ev_reserve(bpf_map_lookup_elem(&procs, &o->tgid));

	if (!ev)
		return;
	ev->cookie = cookie;
	ev->sk = (__u64)sk;
	ev->tgid = o->tgid;
	ev->tid = o->tid;
	ev->kind = kind;
	ev->size = 0;
	ev->flags = NETIO_F_OWNER;
	tuple_btf(ev, sk);
	ev->state = state;
	submit_lazy(ev);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(netio_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct netio_owner *o;
	__u64 cookie, id;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	switch (newstate) {
	case TCP_SYN_SENT:
		/* connect(): process context. */
		if (!rp_watched_current())
			return 0;
		id = bpf_get_current_pid_tgid();
		proc_get(id >> 32);
		cookie = bpf_get_socket_cookie((void *)sk);
		own(cookie, (__u64)sk, id >> 32, (__u32)id, false);
		return 0;
	case TCP_LISTEN:
		/* listen(): process context. Owned so its close is seen. */
		if (!rp_watched_current())
			return 0;
		id = bpf_get_current_pid_tgid();
		cookie = bpf_get_socket_cookie((void *)sk);
		own(cookie, (__u64)sk, id >> 32, (__u32)id, true);
		o = bpf_map_lookup_elem(&owners, &cookie);
		if (o) {
			proc_get(id >> 32);
			emit_owned(sk, cookie, o, NETIO_LISTEN, TCP_LISTEN);
		}
		return 0;
	case TCP_ESTABLISHED:
		if (oldstate == TCP_SYN_RECV) {
			/* A passive connection, in softirq: its owner is not known
			 * until accept(), which reads the cookie from the socket
			 * (a classic tracepoint cannot make one). One atomic per
			 * connection on the host. */
			bpf_get_socket_cookie((void *)sk);
			return 0;
		}
		if (oldstate != TCP_SYN_SENT)
			return 0;
		cookie = sk->__sk_common.skc_cookie.counter;
		if (!cookie)
			return 0;
		o = bpf_map_lookup_elem(&owners, &cookie);
		if (!o)
			return 0;
		proc_add(o->tgid, 0, NETIO_CONNECT);
		emit_owned(sk, cookie, o, NETIO_CONNECT, TCP_ESTABLISHED);
		return 0;
	case TCP_CLOSE:
		cookie = sk->__sk_common.skc_cookie.counter;
		if (!cookie)
			return 0;
		o = bpf_map_lookup_elem(&owners, &cookie);
		if (!o)
			return 0;
		if (!o->listener)
			proc_add(o->tgid, -1, NETIO_CLOSE);
		emit_owned(sk, cookie, o, NETIO_CLOSE, oldstate);
		bpf_map_delete_elem(&owners, &cookie);
		return 0;
	}
	return 0;
}

/* For kernels before 6.13, where struct file counted references in f_count. */
struct file___fcount {
	atomic_long_t f_count;
} __attribute__((preserve_access_index));

/* fd_sock resolves one of the current task's file descriptors to its struct
 * sock (NULL if it is not a socket). *last says whether the file has a
 * single reference (closing this descriptor releases the socket). */
static __always_inline struct sock *fd_sock(int fd, bool *last)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	struct file **arr, *f = NULL;
	struct socket *so;

	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	arr = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), arr + fd) || !f)
		return NULL;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	if (last) {
		if (bpf_core_field_exists(f->f_ref))
			/* file_ref_t counts references minus one. */
			*last = BPF_CORE_READ(f, f_ref.refcnt.counter) == 0;
		else
			*last = BPF_CORE_READ((struct file___fcount *)f, f_count.counter) == 1;
	}
	so = BPF_CORE_READ(f, private_data);
	if (!so)
		return NULL;
	return BPF_CORE_READ(so, sk);
}

static __always_inline int on_accept(long ret)
{
	if (ret < 0 || !rp_watched_current())
		return 0;
	struct sock *sk = fd_sock(ret, NULL);

	if (!sk) {
		stat_inc(NS_NO_SOCK);
		return 0;
	}
	__u16 fam = BPF_CORE_READ(sk, __sk_common.skc_family), proto = BPF_CORE_READ(sk, sk_protocol);

	if (!inet_l4(fam, proto))
		return 0;
	__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);

	if (!cookie) {
		stat_inc(NS_NO_COOKIE);
		return 0;
	}
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;
	struct netio_proc *pc = proc_get(tgid);

	own(cookie, (__u64)sk, tgid, tid, false);
	proc_add(tgid, 0, NETIO_ACCEPT);
	struct netio_event *ev = ev_reserve(pc);

	if (!ev)
		return 0;
	ev->cookie = cookie;
	ev->sk = (__u64)sk;
	ev->tgid = tgid;
	ev->tid = tid;
	ev->kind = NETIO_ACCEPT;
	ev->size = 0;
	ev->flags = 0;
	tuple_core(ev, sk);
	submit_quiet(ev);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int netio_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int netio_accept(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept(ctx->ret);
}

/* close() of the last descriptor of an owned UDP socket. TCP sockets are
 * closed by their state (the file's release starts the TCP close). */
SEC("tracepoint/syscalls/sys_enter_close")
int netio_close(struct trace_event_raw_sys_enter *ctx)
{
	if (!rp_watched_current())
		return 0;
	bool last = false;
	struct sock *sk = fd_sock(ctx->args[0], &last);

	if (!sk || !last || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_UDP)
		return 0;
	__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);

	if (!cookie)
		return 0;
	struct netio_owner *o = bpf_map_lookup_elem(&owners, &cookie);

	if (!o)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;

	proc_add(o->tgid, -1, NETIO_CLOSE);
	struct netio_event *ev = ev_reserve(bpf_map_lookup_elem(&procs, &tgid));

	if (ev) {
		ev->cookie = cookie;
		ev->sk = (__u64)sk;
		ev->tgid = tgid;
		ev->tid = (__u32)id;
		ev->kind = NETIO_CLOSE;
		ev->size = 0;
		ev->flags = 0;
		tuple_core(ev, sk);
		submit_quiet(ev);
	}
	bpf_map_delete_elem(&owners, &cookie);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(netio_fork, struct task_struct *parent, struct task_struct *child)
{
	rp_target_on_fork(parent, child);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(netio_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	rp_target_on_exec(p, bprm);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(netio_exit, struct task_struct *p)
{
	__u32 tgid = p->tgid;
	struct netio_proc *pc;
	struct netio_event *ev;

	if (!rp_target_on_exit(p))
		return 0;
	pc = bpf_map_lookup_elem(&procs, &tgid);
	if (!pc)
		return 0; /* no network I/O: nothing to say */
	ev = ev_reserve(pc);
	if (ev) {
		__builtin_memset(&ev->cookie, 0, sizeof(*ev) - sizeof(ev->ts_ns));
		ev->tgid = tgid;
		ev->tid = p->pid;
		ev->kind = NETIO_EXIT;
		bpf_ringbuf_submit(ev, 0);
	}
	bpf_map_delete_elem(&procs, &tgid);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
