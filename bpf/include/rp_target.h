/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * rp_target.h: which tasks an application probe watches.
 *
 * Application probes (reqmon, netio) run on tracepoints that fire for every
 * task on the host; each handler first asks rp_watched_*() whether the task
 * belongs to a watched target, in one or two hash lookups:
 *
 *   rp_tgids    tgid -> flags     processes (host PID namespace). RP_T_TREE
 *                                 makes their children watched as they fork.
 *   rp_cgroups  cgroup id -> 1    cgroup v2 directories (containers): a task
 *                                 in one of them or below is watched, and
 *                                 its tgid is cached in rp_tgids.
 *   rp_execs    (dev, ino) -> 1   executables: a process that execs one of
 *                                 them becomes watched (with RP_T_TREE).
 *   rp_watch_all (parameter)      1 watches every task (tests, whole host).
 *
 * The agent (internal/apptarget) fills the maps with what is running when it
 * starts watching; the fork, exec and exit handlers below keep them current.
 * A probe that includes this header defines its own tp_btf programs for
 * sched_process_fork/exec/exit and calls rp_target_on_fork/exec/exit from
 * them (adding its own clean-up). rp_target_stats counts what changed.
 */
#ifndef __RP_TARGET_H__
#define __RP_TARGET_H__

#include <bpf/bpf_core_read.h>
#include "rampart.h"

#define RP_T_TREE 1	/* children of this process are watched too */
#define RP_T_CGROUP 2	/* watched because of its cgroup (cached) */

#define RP_TARGET_MAX_TGIDS 65536
#define RP_CGROUP_LEVELS 8

RP_PARAM(__u32, rp_watch_all, 0);

struct rp_exec_key {
	__u64 ino;
	__u32 dev; /* kernel dev_t: major << 20 | minor */
	__u32 pad;
};

/* rp_target_stat indexes rp_target_stats. */
enum rp_target_stat {
	RP_TS_FORK_ADDED = 0,
	RP_TS_EXEC_ADDED = 1,
	RP_TS_CGROUP_ADDED = 2,
	RP_TS_EXITED = 3,
	RP_TS_FULL = 4,
	RP_TS_MAX = 5,
};

struct rp_target_stat_val {
	__u64 n;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RP_TARGET_MAX_TGIDS);
	__type(key, __u32);
	__type(value, __u8);
} rp_tgids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} rp_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct rp_exec_key);
	__type(value, __u8);
} rp_execs SEC(".maps");

/* rp_target_cfg[0]: how many cgroups rp_cgroups holds (the agent keeps it),
 * so hosts that watch no cgroup skip the ancestor walk. */
struct rp_target_cfg_val {
	__u32 ncgroups;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rp_target_cfg_val);
} rp_target_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RP_TS_MAX);
	__type(key, __u32);
	__type(value, struct rp_target_stat_val);
} rp_target_stats SEC(".maps");

static __always_inline void rp_target_count(__u32 i)
{
	struct rp_target_stat_val *v = bpf_map_lookup_elem(&rp_target_stats, &i);

	if (v)
		v->n++;
}

static __always_inline void rp_target_add(__u32 tgid, __u8 flags, __u32 stat)
{
	if (bpf_map_update_elem(&rp_tgids, &tgid, &flags, BPF_NOEXIST) == 0)
		rp_target_count(stat);
	else if (!bpf_map_lookup_elem(&rp_tgids, &tgid))
		rp_target_count(RP_TS_FULL);
}

/* rp_in_watched_cgroup: the current task's cgroup or one of its ancestors
 * (up to RP_CGROUP_LEVELS above the root) is in rp_cgroups. */
static __always_inline bool rp_in_watched_cgroup(void)
{
	__u32 zero = 0;
	struct rp_target_cfg_val *cfg = bpf_map_lookup_elem(&rp_target_cfg, &zero);
	__u64 id;

	if (!cfg || !cfg->ncgroups)
		return false;
	id = bpf_get_current_cgroup_id();
	if (bpf_map_lookup_elem(&rp_cgroups, &id))
		return true;
#pragma unroll
	for (int l = 1; l <= RP_CGROUP_LEVELS; l++) {
		id = bpf_get_current_ancestor_cgroup_id(l);
		if (!id)
			break;
		if (bpf_map_lookup_elem(&rp_cgroups, &id))
			return true;
	}
	return false;
}

/* rp_watched_tgid: is this process watched? For tasks other than the
 * current one (the next task in sched_switch): tgid lookup only. */
static __always_inline bool rp_watched_tgid(__u32 tgid)
{
	if (rp_watch_all)
		return true;
	return bpf_map_lookup_elem(&rp_tgids, &tgid) != NULL;
}

/* rp_watched_current: is the current task watched? A task found through
 * its cgroup is cached in rp_tgids, so later checks (and sched_switch's
 * check of it as the next task) take one lookup. */
static __always_inline bool rp_watched_current(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (rp_watch_all)
		return true;
	if (bpf_map_lookup_elem(&rp_tgids, &tgid))
		return true;
	if (rp_in_watched_cgroup()) {
		rp_target_add(tgid, RP_T_TREE | RP_T_CGROUP, RP_TS_CGROUP_ADDED);
		return true;
	}
	return false;
}

/* rp_target_on_fork: from tp_btf/sched_process_fork. A new process (not a
 * thread) whose parent is watched with RP_T_TREE is watched too. */
static __always_inline void rp_target_on_fork(struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 cpid = BPF_CORE_READ(child, pid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	__u8 *f;

	if (cpid != ctgid)
		return; /* a thread: its process is already decided */
	f = bpf_map_lookup_elem(&rp_tgids, &ptgid);
	if (f && (*f & RP_T_TREE))
		rp_target_add(ctgid, *f, RP_TS_FORK_ADDED);
}

/* rp_target_on_exec: from tp_btf/sched_process_exec. A process that execs a
 * watched executable is watched, with its future children. */
static __always_inline void rp_target_on_exec(struct task_struct *p, struct linux_binprm *bprm)
{
	struct rp_exec_key k = {};
	struct inode *ino = BPF_CORE_READ(bprm, file, f_inode);
	__u32 tgid = BPF_CORE_READ(p, tgid);

	k.ino = BPF_CORE_READ(ino, i_ino);
	k.dev = BPF_CORE_READ(ino, i_sb, s_dev);
	if (bpf_map_lookup_elem(&rp_execs, &k))
		rp_target_add(tgid, RP_T_TREE, RP_TS_EXEC_ADDED);
}

/* rp_target_on_exit: from tp_btf/sched_process_exit. Returns true when the
 * exiting task was a watched process's last (leader) task: the probe then
 * frees what it kept for the process. Thread exits return false. */
static __always_inline bool rp_target_on_exit(struct task_struct *p)
{
	__u32 pid = BPF_CORE_READ(p, pid);
	__u32 tgid = BPF_CORE_READ(p, tgid);

	if (pid != tgid)
		return false;
	if (bpf_map_delete_elem(&rp_tgids, &tgid) == 0) {
		rp_target_count(RP_TS_EXITED);
		return true;
	}
	return rp_watch_all;
}

#endif /* __RP_TARGET_H__ */
