package netio

import (
	"context"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/rampart-shield/rampart/internal/apptarget"
	"github.com/rampart-shield/rampart/internal/probe"
	rec "github.com/rampart-shield/rampart/probes/netio"
)

// WatchOptions tune Watch.
type WatchOptions struct {
	// Probe is the probe's name (default "netio"). It is loaded from the
	// built-in bundle when absent, with rp_watch_all when the spec says All.
	Probe string
	// Params and MapSizes are passed to the load (e.g. netio_io_events=0,
	// or "owners": 262144 for a busy host).
	Params   map[string]string
	MapSizes map[string]uint32
	// Collector options; Since defaults to the time Watch starts.
	Options
}

// Watch watches spec's processes with the netio probe and returns the
// collector of their events.
func Watch(ctx context.Context, m *probe.Manager, spec apptarget.Spec) (*Collector, error) {
	return WatchWith(ctx, m, spec, WatchOptions{})
}

// WatchWith is Watch with options. Targets add up: watching again through
// the same probe adds to what it watches.
func WatchWith(ctx context.Context, m *probe.Manager, spec apptarget.Spec, o WatchOptions) (*Collector, error) {
	if m == nil {
		return nil, fmt.Errorf("netio: no probe manager")
	}
	name := o.Probe
	if name == "" {
		name = rec.ProbeName
	}
	r, err := apptarget.Resolve(spec)
	if err != nil {
		return nil, err
	}
	if o.Since == 0 {
		o.Since = Now()
	}
	info, err := m.Get(name)
	if err != nil {
		params := map[string]string{}
		for k, v := range o.Params {
			params[k] = v
		}
		if spec.All {
			params[rec.ParamAll] = "1"
		}
		man, err := probe.ParseManifest(rec.Manifest())
		if err != nil {
			return nil, err
		}
		if _, err := m.Load(ctx, probe.LoadRequest{Name: name, Manifest: man, Object: rec.Object(), Origin: "builtin", Params: params, MapSizes: o.MapSizes}); err != nil {
			return nil, fmt.Errorf("load the netio probe: %w", err)
		}
	} else if spec.All && info.Params[rec.ParamAll] != "1" && info.Params[rec.ParamAll] != "true" {
		return nil, fmt.Errorf("probe %s is loaded without %s=1: watching all tasks needs it loaded that way (unload it first)", name, rec.ParamAll)
	}
	// Subscribe before installing so the first events are not missed.
	c, err := New(m, name, o.Options)
	if err != nil {
		return nil, err
	}
	install := func(r apptarget.Resolved) error {
		return m.WithMaps(name, func(maps map[string]*ebpf.Map) error { return apptarget.Install(maps, r) })
	}
	if err := install(r); err != nil {
		c.Close()
		return nil, err
	}
	// A process a tree root forked between Resolve and Install was not
	// caught by the fork handler (its parent was not watched yet): a
	// second pass picks it up.
	if spec.Tree || len(spec.Execs) > 0 || len(spec.Cgroups) > 0 {
		if r2, err := apptarget.Resolve(spec); err == nil {
			if err := install(r2); err != nil {
				c.Close()
				return nil, err
			}
		}
	}
	return c, nil
}
