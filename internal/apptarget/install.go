package apptarget

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Map names in rp_target.h.
const (
	MapTGIDs   = "rp_tgids"
	MapCgroups = "rp_cgroups"
	MapExecs   = "rp_execs"
	MapStats   = "rp_target_stats"
	MapCfg     = "rp_target_cfg"
)

// Install writes r into a probe's target maps (keyed by map name, as
// probe.Manager.WithMaps hands them over). Entries already there stay: the
// probe's fork handler may have added children meanwhile.
func Install(maps map[string]*ebpf.Map, r Resolved) error {
	tg, cg, ex := maps[MapTGIDs], maps[MapCgroups], maps[MapExecs]
	if tg == nil || cg == nil || ex == nil {
		return fmt.Errorf("the probe has no target maps (%s, %s, %s): it does not include rp_target.h", MapTGIDs, MapCgroups, MapExecs)
	}
	for id := range r.Cgroups {
		if err := cg.Update(id, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("watch cgroup %s: %w", r.Cgroups[id], err)
		}
	}
	if cfg := maps[MapCfg]; cfg != nil {
		var count uint32
		var k uint64
		var v uint8
		for it := cg.Iterate(); it.Next(&k, &v); {
			count++
		}
		if err := cfg.Update(uint32(0), [2]uint32{count, 0}, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("target config: %w", err)
		}
	}
	for k, path := range r.Execs {
		if err := ex.Update(k, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("watch exec %s: %w", path, err)
		}
	}
	for pid, f := range r.TGIDs {
		var old uint8
		if tg.Lookup(pid, &old) == nil {
			f |= old
		}
		if err := tg.Update(pid, f, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("watch pid %d: %w", pid, err)
		}
	}
	return nil
}

// Watched lists the processes in a probe's rp_tgids map.
func Watched(maps map[string]*ebpf.Map) (map[uint32]uint8, error) {
	tg := maps[MapTGIDs]
	if tg == nil {
		return nil, fmt.Errorf("the probe has no %s map", MapTGIDs)
	}
	out := map[uint32]uint8{}
	var k uint32
	var v uint8
	it := tg.Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	return out, it.Err()
}
