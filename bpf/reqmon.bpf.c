//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * reqmon: per-request resource accounting for any TCP server, without
 * symbols (FineLame's idea on tracepoints only: this kernel has no kprobes).
 *
 * A request is the work a watched process does for one server-side TCP
 * connection between reading a request and finishing its response. It is
 * keyed by (tgid, sk) in `reqs` (LRU):
 *   - a read on a server-side socket (local port in `listen_ports`) starts a
 *     request, or continues the one in progress; a read after the response
 *     began (phase RESPONDING) completes it and starts the next one
 *     (keep-alive);
 *   - every read or write on a server-side socket makes that socket's
 *     request the thread's current request (`threads`), so an event loop
 *     that serves many connections on one thread (Node.js, nginx) charges
 *     each stretch of work to the connection it last did I/O for, and a
 *     pool thread that picks a connection up charges it from then on;
 *   - a forked child process (a CGI script) inherits its parent thread's
 *     current request;
 *   - a close (FIN_WAIT1, LAST_ACK, CLOSE) completes it.
 * Completed requests go to the `done` ring buffer; the agent sweeps `reqs`
 * and `threads` to score requests while they run (on-CPU time of a thread
 * still running is now - since), and completes requests whose response
 * went quiet.
 *
 * Resources charged to the thread's current request: on-CPU time
 * (tp_btf/sched_switch), user page faults (exceptions:page_fault_user),
 * anonymous memory mapped (mmap with MAP_ANONYMOUS) and heap growth (brk),
 * bytes and calls received (sock:sock_recv_length; reads on other sockets,
 * e.g. from a database, count as backend bytes), bytes sent (the socket's
 * write sequence, read at the request's next read or close: see
 * seq_sync). The agent attaches sock:sock_send_length (reqmon_send) only
 * when asked or with request mappers: it then also counts send calls and
 * backend bytes sent, and marks a response as started at its first write.
 * Which tasks are watched: rp_target.h.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include "rampart.h"
#include "rp_target.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define MSG_PEEK 2

#include "rp_sock.h"

#define RQ_TCP_FIN_WAIT1 4
#define RQ_TCP_CLOSE 7
#define RQ_TCP_LAST_ACK 9
#define RQ_TCP_LISTEN 10

RP_PARAM(__u32, track_memory, 1);
RP_PARAM(__u32, track_faults, 1);

enum rq_phase {
	RQ_READING = 0,
	RQ_RESPONDING = 1,
};

/* Why a request record was emitted. */
enum rq_reason {
	RQ_NEXT_REQUEST = 1, /* a read after the response: keep-alive */
	RQ_CLOSED = 2,       /* the server or the client closed */
	RQ_EXITED = 3,       /* the process exited */
	RQ_MAPPED = 4,       /* a request mapper's end function ran */
};

/* Request mappers (uprobes the agent attaches from a watch's config, for
 * runtimes where the socket mapping is too coarse): program reqmon_mapN
 * reads its action from rq_mappers[N]. A begin makes the thread work for
 * request (id, tgid), taking over what the thread counted so far for the
 * socket request it was reading (the request's headers are read before
 * the server's request function runs); socket I/O then goes to it without
 * switching requests, and an end completes it. */
enum rq_map_action {
	RQ_MAP_NONE = 0,
	RQ_MAP_BEGIN = 1,
	RQ_MAP_END = 2,
};

/* Where a mapper's request id comes from. */
enum rq_map_id {
	RQ_ID_ARG0 = 0, /* .. RQ_ID_ARG0 + 5: the function's arguments */
	RQ_ID_RET = 6,	/* the return value (uretprobe) */
	RQ_ID_TID = 7,	/* the thread: one request per thread at a time */
};

#define RQ_MAX_MAPPERS 8

struct rq_mapper {
	__u32 action; /* enum rq_map_action */
	__u32 id;     /* enum rq_map_id */
};

enum rq_stat {
	RQ_ST_CREATED = 0,
	RQ_ST_COMPLETED = 1,
	RQ_ST_RINGBUF_FULL = 2,
	RQ_ST_UNATTRIBUTED_CPU_NS = 3,
	RQ_ST_UNATTRIBUTED_EVENTS = 4,
	RQ_ST_THREADS_FULL = 5,
	RQ_ST_PASSED = 6, /* completed inside a benign box: not emitted */
	RQ_ST_MAX = 7,
};

/* The agent's benign boxes (see rq_benign): a completed request whose
 * every resource is at most a box's bound cannot score as an anomaly (the
 * model's score only grows with each resource), so it is counted, not
 * streamed. Resources in the order of enum rq_feature. */
enum rq_feature {
	RQ_F_CPU_NS = 0,
	RQ_F_FAULTS = 1,
	RQ_F_MEM = 2,
	RQ_F_RX = 3,
	RQ_F_TX = 4,
	RQ_F_BACKEND = 5,
	RQ_F_IDLE_NS = 6,
	RQ_F_IO_CALLS = 7,
	RQ_NFEATURES = 8,
};

#define RQ_MAX_BOXES 16

struct rq_box {
	__u64 max[RQ_NFEATURES];
};

/* rq_filter[0]: how many boxes of rq_boxes are in use (0: stream every
 * completed request, as when training); of the requests inside a box, those
 * whose id has no bit of sample_mask set are streamed anyway (a sample of
 * the benign ones for the agent's views). */
struct rq_filter_val {
	__u32 nboxes;
	__u32 sample_mask;
};

struct rq_stat_val {
	__u64 n;
};

struct rq_key {
	__u64 sk;
	__u32 tgid;
	__u32 pad;
};

struct rq_req {
	__u64 id;
	__u64 start_ns;
	__u64 last_io_ns;
	__u64 first_tx_ns;
	__u64 cpu_ns;
	__u64 faults;
	__u64 mem_bytes;
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u64 backend_bytes;
	__u32 rx_calls;
	__u32 tx_calls;
	__u32 last_tid;
	__u8 phase;
	__u8 has_seq; /* wseq0 is set */
	__u16 family;
	__u16 lport;
	__u16 rport;
	__u32 wseq0;  /* the socket's write_seq when the request began */
	rp_ipaddr_t laddr;
	rp_ipaddr_t raddr;
};

struct rq_thread {
	struct rq_key req; /* the thread's current request; sk 0: none */
	__u64 since;       /* on CPU since (ns); 0: off CPU */
	__u32 tgid;
	__u32 mapped;      /* req is a mapper's request (its sk is the id) */
};

/* A completed request, in the `done` ring buffer. */
struct rq_record {
	struct rq_key key;
	struct rq_req req;
	__u64 end_ns;
	__u32 reason; /* enum rq_reason */
	__u32 pad;
};

/* Local port -> 1 if some socket listens on it (any namespace): an array,
 * whose lookup the verifier inlines (one per socket event). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} listen_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct rq_thread);
} threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct rq_key);
	__type(value, struct rq_req);
} reqs SEC(".maps");

/* sk -> tgid of the process whose request it carries, for closes seen in
 * softirq context. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} sk_owner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u64);
} rss_last SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21);
} done SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RQ_MAX_MAPPERS);
	__type(key, __u32);
	__type(value, struct rq_mapper);
} rq_mappers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RQ_MAX_BOXES);
	__type(key, __u32);
	__type(value, struct rq_box);
} rq_boxes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rq_filter_val);
} rq_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RQ_ST_MAX);
	__type(key, __u32);
	__type(value, struct rq_stat_val);
} rq_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} rq_seq SEC(".maps");

/* Keep the record types in BTF for the manifest and bpf2go. */
const struct rq_record *unused_rq_record __attribute__((unused));
const enum rq_reason *unused_rq_reason __attribute__((unused));
const enum rq_stat *unused_rq_stat __attribute__((unused));
const enum rq_feature *unused_rq_feature __attribute__((unused));
const enum rq_map_action *unused_rq_map_action __attribute__((unused));
const enum rq_map_id *unused_rq_map_id __attribute__((unused));

static __always_inline void stat_add(__u32 i, __u64 n)
{
	struct rq_stat_val *v = bpf_map_lookup_elem(&rq_stats, &i);

	if (v)
		v->n += n;
}

static __always_inline __u64 next_id(void)
{
	__u32 z = 0;
	__u64 *s = bpf_map_lookup_elem(&rq_seq, &z);
	__u64 n = 0;

	if (s)
		n = ++*s;
	return ((__u64)bpf_get_smp_processor_id() << 48) | (n & 0xffffffffffffULL);
}

/* rq_benign: the completed request fits one of the agent's benign boxes.
 * Its resources as the agent's vector has them (internal/reqmon sampleOf):
 * a completed request ends at its last I/O. */
static __always_inline bool rq_benign(const struct rq_req *r)
{
	__u32 zero = 0;
	struct rq_filter_val *f = bpf_map_lookup_elem(&rq_filter, &zero);
	__u64 v[RQ_NFEATURES], end, dur;
	__u32 n;

	if (!f || !f->nboxes || (f->sample_mask && !(r->id & f->sample_mask)))
		return false;
	n = f->nboxes;
	end = r->last_io_ns > r->start_ns ? r->last_io_ns : r->start_ns;
	dur = end - r->start_ns;
	v[RQ_F_CPU_NS] = r->cpu_ns;
	v[RQ_F_FAULTS] = r->faults;
	v[RQ_F_MEM] = r->mem_bytes;
	v[RQ_F_RX] = r->rx_bytes;
	v[RQ_F_TX] = r->tx_bytes;
	v[RQ_F_BACKEND] = r->backend_bytes;
	v[RQ_F_IDLE_NS] = dur > r->cpu_ns ? dur - r->cpu_ns : 0;
	v[RQ_F_IO_CALLS] = (__u64)r->rx_calls + r->tx_calls;
	for (__u32 i = 0; i < RQ_MAX_BOXES && i < n; i++) {
		__u32 key = i;
		struct rq_box *b = bpf_map_lookup_elem(&rq_boxes, &key);
		bool in = true;

		if (!b)
			break;
		for (int j = 0; j < RQ_NFEATURES; j++) {
			if (v[j] > b->max[j]) {
				in = false;
				break;
			}
		}
		if (in)
			return true;
	}
	return false;
}

static __always_inline void emit(struct rq_key *k, struct rq_req *r, __u64 now, __u32 reason)
{
	struct rq_record *rec;

	stat_add(RQ_ST_COMPLETED, 1);
	if (rq_benign(r)) {
		stat_add(RQ_ST_PASSED, 1);
		return;
	}
	rec = bpf_ringbuf_reserve(&done, sizeof(*rec), 0);
	if (!rec) {
		stat_add(RQ_ST_RINGBUF_FULL, 1);
		return;
	}
	rec->key = *k;
	rec->req = *r;
	rec->end_ns = now;
	rec->reason = reason;
	rec->pad = 0;
	/* The agent polls the ring (the manifest's poll): a wake-up per
	 * request would cost microseconds. Wake it only when a quarter of the
	 * ring is pending. */
	bpf_ringbuf_submit(rec, bpf_ringbuf_query(&done, BPF_RB_AVAIL_DATA) > (1 << 19) ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

/* fill_tuple and server_side read a BTF pointer (tp_btf arguments):
 * direct loads, no probe-read helper calls. */
static __always_inline void fill_tuple(struct rq_req *r, const struct sock *sk)
{
	r->family = sk->__sk_common.skc_family;
	r->lport = sk->__sk_common.skc_num;
	r->rport = bpf_ntohs(sk->__sk_common.skc_dport);
	rp_sk_addrs_btf(sk, r->laddr, r->raddr);
}

/* server_side: a TCP socket whose local port is a listening port. */
static __always_inline bool server_side(struct sock *sk, __u16 family, __u16 protocol)
{
	__u32 lport;
	__u8 *on;

	if (protocol != IPPROTO_TCP || (family != AF_INET && family != AF_INET6))
		return false;
	lport = sk->__sk_common.skc_num;
	on = bpf_map_lookup_elem(&listen_ports, &lport);
	return on && *on;
}

static __always_inline struct rq_thread *thread_of(__u32 tid, __u32 tgid, bool create)
{
	struct rq_thread *th = bpf_map_lookup_elem(&threads, &tid);
	struct rq_thread z = {};

	if (th || !create)
		return th;
	z.tgid = tgid;
	if (bpf_map_update_elem(&threads, &tid, &z, BPF_NOEXIST) && !bpf_map_lookup_elem(&threads, &tid))
		stat_add(RQ_ST_THREADS_FULL, 1);
	return bpf_map_lookup_elem(&threads, &tid);
}

/* charge_cpu: the thread's time on CPU since `since` goes to its current
 * request (or to the unattributed counter). */
static __always_inline void charge_cpu(struct rq_thread *th, __u64 now)
{
	struct rq_req *r;
	__u64 d;

	if (!th->since || now <= th->since)
		return;
	d = now - th->since;
	th->since = now;
	r = th->req.sk ? bpf_map_lookup_elem(&reqs, &th->req) : NULL;
	if (r)
		__sync_fetch_and_add(&r->cpu_ns, d);
	else
		stat_add(RQ_ST_UNATTRIBUTED_CPU_NS, d);
}

static __always_inline struct rq_req *current_req(struct rq_thread **thp)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct rq_thread *th = bpf_map_lookup_elem(&threads, &tid);

	if (thp)
		*thp = th;
	if (!th || !th->req.sk)
		return NULL;
	return bpf_map_lookup_elem(&reqs, &th->req);
}

/* Bytes sent without the send hook: the application's bytes queued on the
 * socket since the request began (tcp_sock.write_seq; sendfile and splice
 * included), read when the request is next touched with its socket at
 * hand (its next read, its close). A write since the request began means
 * its response has started. With reqmon_send attached, sent bytes are
 * also counted per call; the larger count stands. */
static __always_inline bool write_seq(const struct sock *sk, __u32 *seq)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);

	if (!tp)
		return false;
	*seq = tp->write_seq;
	return true;
}

static __always_inline void seq_start(struct rq_req *r, const struct sock *sk)
{
	r->has_seq = write_seq(sk, &r->wseq0);
}

static __always_inline void seq_sync(struct rq_req *r, const struct sock *sk)
{
	__u32 seq, d;

	if (!r->has_seq || !write_seq(sk, &seq))
		return;
	d = seq - r->wseq0;
	if (d > r->tx_bytes)
		r->tx_bytes = d;
	if (d && r->phase != RQ_RESPONDING)
		r->phase = RQ_RESPONDING;
}

static __always_inline void account_io(struct rq_req *r, int ret, bool rx, __u64 now, __u32 tid)
{
	r->last_io_ns = now;
	r->last_tid = tid;
	if (rx) {
		__sync_fetch_and_add(&r->rx_bytes, ret);
		r->rx_calls++;
	} else {
		__sync_fetch_and_add(&r->tx_bytes, ret);
		r->tx_calls++;
		if (r->phase != RQ_RESPONDING) {
			r->phase = RQ_RESPONDING;
			r->first_tx_ns = now;
		}
	}
}

/* on_io: a read (rx) or write on sk by the current, watched task. */
static __always_inline void on_io(struct sock *sk, __u16 family, __u16 protocol, int ret, bool rx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid, tgid = pid_tgid >> 32;
	struct rq_key k = {.sk = (__u64)sk, .tgid = tgid};
	struct rq_thread *th;
	struct rq_req *r;
	__u64 now;

	if (ret <= 0)
		return;
	/* Only watched tasks have a thread entry: a thread the probe knows
	 * needs no second lookup to be found watched. */
	th = bpf_map_lookup_elem(&threads, &tid);
	if (!th && !rp_watched_current())
		return;
	now = bpf_ktime_get_ns();
	if (!server_side(sk, family, protocol)) {
		r = th && th->req.sk ? bpf_map_lookup_elem(&reqs, &th->req) : NULL;
		if (r)
			__sync_fetch_and_add(&r->backend_bytes, ret);
		else
			stat_add(RQ_ST_UNATTRIBUTED_EVENTS, 1);
		return;
	}
	if (th && th->mapped && th->req.sk) {
		/* A mapper's request: its I/O, whatever the socket. */
		r = bpf_map_lookup_elem(&reqs, &th->req);
		if (r) {
			if (!r->family)
				fill_tuple(r, sk);
			account_io(r, ret, rx, now, tid);
			return;
		}
	}
	r = bpf_map_lookup_elem(&reqs, &k);
	if (r && rx)
		seq_sync(r, sk);
	if (r && rx && r->phase == RQ_RESPONDING) {
		/* Keep-alive: the next request on the connection. Reset the
		 * entry in place (its tuple stays), cheaper than a new one. */
		emit(&k, r, r->last_io_ns, RQ_NEXT_REQUEST);
		r->id = next_id();
		r->start_ns = now;
		r->first_tx_ns = 0;
		r->cpu_ns = 0;
		r->faults = 0;
		r->mem_bytes = 0;
		r->rx_bytes = 0;
		r->tx_bytes = 0;
		r->backend_bytes = 0;
		r->rx_calls = 0;
		r->tx_calls = 0;
		r->phase = RQ_READING;
		seq_start(r, sk);
		stat_add(RQ_ST_CREATED, 1);
	}
	if (!r) {
		struct rq_req n = {};

		n.id = next_id();
		n.start_ns = now;
		n.last_tid = tid;
		fill_tuple(&n, sk);
		seq_start(&n, sk);
		bpf_map_update_elem(&reqs, &k, &n, BPF_ANY);
		bpf_map_update_elem(&sk_owner, &k.sk, &tgid, BPF_ANY);
		stat_add(RQ_ST_CREATED, 1);
		r = bpf_map_lookup_elem(&reqs, &k);
		if (!r)
			return;
	}
	account_io(r, ret, rx, now, tid);
	/* This thread now works for this request. */
	if (!th)
		th = thread_of(tid, tgid, true);
	if (!th)
		return;
	/* Charge the time on CPU so far to the request the thread worked for
	 * until now (every I/O is a checkpoint, so a request's time is exact up
	 * to its last I/O even if another thread completes it before this one
	 * leaves the CPU). */
	if (!th->since) {
		th->since = now; /* on CPU now, but its switch-in predates us */
	} else if (th->req.sk == k.sk && th->req.tgid == k.tgid) {
		if (now > th->since)
			__sync_fetch_and_add(&r->cpu_ns, now - th->since);
		th->since = now;
	} else {
		charge_cpu(th, now);
	}
	th->req = k;
}

/* tp_btf rather than classic tracepoints: the kernel passes the
 * arguments directly, without filling a trace record first. */
SEC("tp_btf/sock_recv_length")
int BPF_PROG(reqmon_recv, struct sock *sk, int ret, int flags)
{
	if (ret <= 0 || (flags & MSG_PEEK))
		return 0;
	on_io(sk, sk->__sk_common.skc_family, sk->sk_protocol, ret, true);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(reqmon_send, struct sock *sk, int ret, int flags)
{
	if (ret <= 0)
		return 0;
	on_io(sk, sk->__sk_common.skc_family, sk->sk_protocol, ret, false);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(reqmon_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 ptgid = prev->tgid, ntgid = next->tgid;
	__u32 ppid = prev->pid, npid = next->pid;
	struct rq_thread *th;

	if (rp_watched_tgid(ptgid)) {
		th = bpf_map_lookup_elem(&threads, &ppid);
		if (th && th->since) {
			charge_cpu(th, now);
			th->since = 0;
		}
	}
	if (rp_watched_tgid(ntgid)) {
		th = thread_of(npid, ntgid, true);
		if (th)
			th->since = now;
	}
	return 0;
}

SEC("tracepoint/exceptions/page_fault_user")
int reqmon_fault(void *ctx)
{
	struct rq_req *r;

	if (!track_faults || !rp_watched_current())
		return 0;
	r = current_req(NULL);
	if (r)
		__sync_fetch_and_add(&r->faults, 1);
	return 0;
}

/* Resident anonymous memory growth of the process, charged to the current
 * request: kmem:rss_stat fires when an mm's RSS counter changes (curr: it
 * is the current task's mm), with the counter's new size in bytes. Unlike
 * syscall tracepoints, it costs nothing to tasks that do not fault memory
 * in. */
#define RQ_MM_ANONPAGES 1

SEC("tracepoint/kmem/rss_stat")
int reqmon_rss(struct trace_event_raw_rss_stat *ctx)
{
	__u32 tgid;
	__u64 cur, *last;
	struct rq_req *r;

	if (!track_memory || !ctx->curr || ctx->member != RQ_MM_ANONPAGES || !rp_watched_current())
		return 0;
	tgid = bpf_get_current_pid_tgid() >> 32;
	cur = ctx->size;
	last = bpf_map_lookup_elem(&rss_last, &tgid);
	if (!last) {
		bpf_map_update_elem(&rss_last, &tgid, &cur, BPF_ANY);
		return 0;
	}
	if (cur > *last) {
		r = current_req(NULL);
		if (r)
			__sync_fetch_and_add(&r->mem_bytes, cur - *last);
	}
	*last = cur;
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(reqmon_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct rq_key k = {};
	struct rq_req *r;
	__u32 *owner;
	__u32 port;
	__u8 one = 1;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (newstate == RQ_TCP_LISTEN) {
		port = sk->__sk_common.skc_num;
		bpf_map_update_elem(&listen_ports, &port, &one, BPF_ANY);
		return 0;
	}
	if (newstate != RQ_TCP_FIN_WAIT1 && newstate != RQ_TCP_LAST_ACK && newstate != RQ_TCP_CLOSE)
		return 0;
	k.sk = (__u64)sk;
	owner = bpf_map_lookup_elem(&sk_owner, &k.sk);
	if (!owner)
		return 0;
	k.tgid = *owner;
	r = bpf_map_lookup_elem(&reqs, &k);
	if (r) {
		seq_sync(r, sk);
		emit(&k, r, bpf_ktime_get_ns(), RQ_CLOSED);
		bpf_map_delete_elem(&reqs, &k);
	}
	bpf_map_delete_elem(&sk_owner, &k.sk);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(reqmon_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ppid = parent->pid, cpid = child->pid, ctgid = child->tgid;
	struct rq_thread *pt, c = {};

	rp_target_on_fork(parent, child);
	if (cpid != ctgid || !rp_watched_tgid(ctgid))
		return 0;
	pt = bpf_map_lookup_elem(&threads, &ppid);
	if (!pt || !pt->req.sk)
		return 0;
	/* A child process (a CGI script) works for its parent's request. */
	c.req = pt->req;
	c.mapped = pt->mapped;
	c.tgid = ctgid;
	bpf_map_update_elem(&threads, &cpid, &c, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(reqmon_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	rp_target_on_exec(p, bprm);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(reqmon_exit, struct task_struct *p)
{
	__u32 pid = p->pid, tgid = p->tgid;
	struct rq_thread *th = bpf_map_lookup_elem(&threads, &pid);

	if (th) {
		if (th->since)
			charge_cpu(th, bpf_ktime_get_ns());
		bpf_map_delete_elem(&threads, &pid);
	}
	if (rp_target_on_exit(p))
		bpf_map_delete_elem(&rss_last, &tgid);
	return 0;
}

static __always_inline __u64 map_id(struct pt_regs *ctx, __u32 src, __u32 tid)
{
	switch (src) {
	case RQ_ID_ARG0:
		return ctx->di;
	case RQ_ID_ARG0 + 1:
		return ctx->si;
	case RQ_ID_ARG0 + 2:
		return ctx->dx;
	case RQ_ID_ARG0 + 3:
		return ctx->cx;
	case RQ_ID_ARG0 + 4:
		return ctx->r8;
	case RQ_ID_ARG0 + 5:
		return ctx->r9;
	case RQ_ID_RET:
		return ctx->ax;
	}
	return tid;
}

static __always_inline void map_begin(struct rq_key *k, __u32 tid, __u64 now)
{
	struct rq_thread *th = thread_of(tid, k->tgid, true);
	struct rq_req n = {}, *prev;

	if (!th)
		return;
	if (!th->since)
		th->since = now;
	else
		charge_cpu(th, now); /* up to now: the request it worked for */
	prev = th->req.sk ? bpf_map_lookup_elem(&reqs, &th->req) : NULL;
	if (prev && !th->mapped && prev->phase == RQ_READING) {
		/* Take over the socket request being read: its start, tuple
		 * and counts are this request's. */
		n = *prev;
		bpf_map_delete_elem(&reqs, &th->req);
	} else {
		n.start_ns = now;
		n.last_io_ns = now;
		n.last_tid = tid;
	}
	n.id = next_id();
	if (bpf_map_update_elem(&reqs, k, &n, BPF_ANY))
		return;
	stat_add(RQ_ST_CREATED, 1);
	th->req = *k;
	th->mapped = 1;
}

static __always_inline void map_end(struct rq_key *k, __u32 tid, __u64 now)
{
	struct rq_thread *th = bpf_map_lookup_elem(&threads, &tid);
	struct rq_req *r;

	if (th && th->since)
		charge_cpu(th, now);
	r = bpf_map_lookup_elem(&reqs, k);
	if (r) {
		emit(k, r, now, RQ_MAPPED);
		bpf_map_delete_elem(&reqs, k);
	}
	if (th && th->req.sk == k->sk && th->req.tgid == k->tgid) {
		th->req.sk = 0;
		th->mapped = 0;
	}
}

static __always_inline int on_mapper(struct pt_regs *ctx, __u32 slot)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct rq_key k = {.tgid = pid_tgid >> 32};
	struct rq_mapper *mp = bpf_map_lookup_elem(&rq_mappers, &slot);
	__u64 now;

	if (!mp || mp->action == RQ_MAP_NONE || !rp_watched_current())
		return 0;
	k.sk = map_id(ctx, mp->id, tid);
	if (!k.sk)
		return 0;
	now = bpf_ktime_get_ns();
	if (mp->action == RQ_MAP_BEGIN)
		map_begin(&k, tid, now);
	else
		map_end(&k, tid, now);
	return 0;
}

#define RQ_MAPPER(n)                                      \
	SEC("uprobe")                                     \
	int reqmon_map##n(struct pt_regs *ctx)            \
	{                                                 \
		return on_mapper(ctx, n);                 \
	}

RQ_MAPPER(0)
RQ_MAPPER(1)
RQ_MAPPER(2)
RQ_MAPPER(3)
RQ_MAPPER(4)
RQ_MAPPER(5)
RQ_MAPPER(6)
RQ_MAPPER(7)

char LICENSE[] SEC("license") = "Dual BSD/GPL";
