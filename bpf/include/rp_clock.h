/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * rp_clock.h: the probe clock, replayable.
 *
 * A probe that reads time through rp_now() gets bpf_ktime_get_ns()
 * (CLOCK_MONOTONIC) on live traffic. When the agent replays a capture
 * through the probe (rampart replay, BPF_PROG_TEST_RUN), it sets
 * rampart_replay_ns to each packet's capture time before running it, so the
 * records carry the capture's times, not the replay's. Costs one load and a
 * branch per call.
 */
#ifndef __RP_CLOCK_H__
#define __RP_CLOCK_H__

__u64 rampart_replay_ns = 0;

static __always_inline __u64 rp_now(void)
{
	__u64 t = rampart_replay_ns;

	return t ? t : bpf_ktime_get_ns();
}

/* rp_now_coarse is rp_now at the resolution of one scheduler tick, for
 * about half the cost when live. */
static __always_inline __u64 rp_now_coarse(void)
{
	__u64 t = rampart_replay_ns;

	return t ? t : bpf_ktime_get_coarse_ns();
}

#endif /* __RP_CLOCK_H__ */
