package probe

import (
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// quiesceCPUs returns once every program run that started before the call
// has finished, for programs that run with preemption disabled (XDP, TC,
// tracepoints, raw and BTF tracepoints). It moves the calling thread onto
// each CPU in turn: a CPU can only switch to our thread between program runs,
// so once we have run everywhere, no run from before the call is still in
// flight. This costs tens of microseconds, against milliseconds for an RCU
// grace period.
func quiesceCPUs() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	defer unix.SchedSetaffinity(0, &orig)
	if orig.Count() < runtime.NumCPU() || orig.Count() < onlineCPUs() {
		// Restricted to a subset of CPUs (cpuset): we cannot visit them all.
		return fmt.Errorf("affinity covers %d of %d CPUs", orig.Count(), onlineCPUs())
	}
	for cpu := 0; cpu < 1024; cpu++ {
		if !orig.IsSet(cpu) {
			continue
		}
		var one unix.CPUSet
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			return fmt.Errorf("sched_setaffinity cpu %d: %w", cpu, err)
		}
	}
	return nil
}

func onlineCPUs() int {
	n, err := ebpf.PossibleCPU()
	if err != nil || n < 1 {
		return runtime.NumCPU()
	}
	// Possible may exceed online; only online CPUs can run programs, and
	// sched_setaffinity to an offline one fails, which sends us to the
	// RCU fallback: correct, only slower.
	return min(n, runtime.NumCPU())
}

// rcuBarrier waits for an RCU grace period: updating a map-in-map makes the
// kernel wait for every running non-sleepable program (it calls
// synchronize_rcu). Used for probes with preemptible programs (uprobes) or
// when quiesceCPUs cannot visit every CPU.
type rcuBarrier struct {
	outer, inner *ebpf.Map
}

func newRCUBarrier() (*rcuBarrier, error) {
	innerSpec := &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	inner, err := ebpf.NewMap(innerSpec)
	if err != nil {
		return nil, err
	}
	outer, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 1, InnerMap: innerSpec})
	if err != nil {
		inner.Close()
		return nil, err
	}
	return &rcuBarrier{outer: outer, inner: inner}, nil
}

func (b *rcuBarrier) wait() error {
	return b.outer.Put(uint32(0), b.inner)
}

func (b *rcuBarrier) Close() {
	b.outer.Close()
	b.inner.Close()
}
