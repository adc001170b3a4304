// Package apitest holds a fake probe manager for tests of the API and the
// CLI: it keeps probes in memory, records load requests and lets tests
// publish events.
package apitest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-shield/rampart/internal/probe"
)

// Fake is an in-memory probe manager. Its zero value is not usable; call New.
type Fake struct {
	mu       sync.Mutex
	probes   map[string]probe.ProbeInfo
	values   map[string][]probe.MetricValue
	loads    []probe.LoadRequest
	lastRead probe.ReadOptions
	subs     map[int]*sub
	nextSub  int
	cancels  int

	// Builtins are the names a load without manifest resolves.
	Builtins map[string]bool
	// LoadErr, when set, is what Load returns.
	LoadErr error
	// PanicOn makes Load and Get panic for this probe name.
	PanicOn string
	// Now stamps loads and reads (default time.Now).
	Now func() time.Time
}

type sub struct {
	probe, stream string
	ch            chan probe.Event
}

// New returns a Fake that knows the built-in "packet-counter".
func New() *Fake {
	return &Fake{
		probes:   map[string]probe.ProbeInfo{},
		values:   map[string][]probe.MetricValue{},
		subs:     map[int]*sub{},
		Builtins: map[string]bool{"packet-counter": true},
		Now:      time.Now,
	}
}

func notFound(format string, args ...any) error {
	return &probe.Error{Kind: probe.KindNotFound, Msg: fmt.Sprintf(format, args...)}
}

// Add puts a loaded probe in place, with the values its metrics read.
func (f *Fake) Add(info probe.ProbeInfo, vals ...probe.MetricValue) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes[info.Name] = info
	f.values[info.Name] = vals
}

// Loads returns every load request received, oldest first.
func (f *Fake) Loads() []probe.LoadRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]probe.LoadRequest(nil), f.loads...)
}

// LastRead returns the options of the latest metric read.
func (f *Fake) LastRead() probe.ReadOptions {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastRead
}

// Load records req and "loads" the probe from its manifest, or from a
// made-up manifest when req names a built-in.
func (f *Fake) Load(ctx context.Context, req probe.LoadRequest) (probe.ProbeInfo, error) {
	if f.PanicOn != "" && req.Name == f.PanicOn {
		panic("fake manager: load " + req.Name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loads = append(f.loads, req)
	if f.LoadErr != nil {
		return probe.ProbeInfo{}, f.LoadErr
	}
	m := req.Manifest
	origin := req.Origin
	if m == nil {
		if !f.Builtins[req.Name] {
			return probe.ProbeInfo{}, notFound("no built-in probe %q", req.Name)
		}
		m = &probe.Manifest{
			Name:     req.Name,
			Programs: []probe.Program{{Name: "count_packets", Hook: "xdp"}},
			Metrics:  []probe.Metric{{Name: "packets", Map: "counts", Type: "counter", Help: "Packets seen.", SwapOnRead: true}},
		}
		origin = "builtin"
	}
	if origin == "" {
		origin = "user"
	}
	info := probe.ProbeInfo{
		Name: req.Name, Description: m.Description, Origin: origin,
		LoadedAt: f.Now(), Params: req.Params, LoadDuration: 12 * time.Millisecond,
	}
	for _, p := range m.Programs {
		hook := p.Hook
		for _, a := range req.Attach {
			prog, h, ok := strings.Cut(a, "=")
			if !ok && len(m.Programs) == 1 {
				hook = a
			} else if ok && prog == p.Name {
				hook = h
			}
		}
		if !strings.Contains(hook, ":") && req.Iface != "" {
			hook += ":" + req.Iface
		}
		info.Programs = append(info.Programs, probe.ProgramInfo{Name: p.Name, Hook: hook, Type: "XDP", ID: 42, Mode: "xdp-generic"})
	}
	var vals []probe.MetricValue
	for _, mt := range m.Metrics {
		info.Metrics = append(info.Metrics, probe.MetricInfo{
			Name: mt.Name, Map: mt.Map, MapType: "PerCPUHash", Type: mt.Type, Help: mt.Help,
			KeyType: "u32", ValueType: "u64", EmptyOnRead: mt.EmptyOnRead, SwapOnRead: mt.SwapOnRead,
		})
		info.Swapping = info.Swapping || mt.SwapOnRead
		vals = append(vals, probe.MetricValue{
			Name: mt.Name, Type: mt.Type, Help: mt.Help, Timestamp: f.Now().UnixNano(),
			Value: []probe.Entry{{Key: json.RawMessage(`6`), Value: json.RawMessage(`42`)}},
		})
	}
	for _, e := range m.Events {
		info.Events = append(info.Events, probe.EventInfo{Name: e.Name, Map: e.Map, Type: e.Type})
	}
	f.probes[req.Name] = info
	f.values[req.Name] = vals
	return info, nil
}

func (f *Fake) Unload(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.probes[name]; !ok {
		return notFound("probe %q is not loaded", name)
	}
	delete(f.probes, name)
	delete(f.values, name)
	return nil
}

func (f *Fake) List() []probe.ProbeInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	var list []probe.ProbeInfo
	for _, p := range f.probes {
		list = append(list, p)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	return list
}

func (f *Fake) Get(name string) (probe.ProbeInfo, error) {
	if f.PanicOn != "" && name == f.PanicOn {
		panic("fake manager: get " + name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.probes[name]
	if !ok {
		return p, notFound("probe %q is not loaded", name)
	}
	return p, nil
}

func (f *Fake) ReadMetrics(name string, opts probe.ReadOptions) ([]probe.MetricValue, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastRead = opts
	if _, ok := f.probes[name]; !ok {
		return nil, notFound("probe %q is not loaded", name)
	}
	return f.values[name], nil
}

func (f *Fake) ReadMetric(name, metric string, opts probe.ReadOptions) (probe.MetricValue, error) {
	vals, err := f.ReadMetrics(name, opts)
	if err != nil {
		return probe.MetricValue{}, err
	}
	for _, v := range vals {
		if v.Name == metric {
			return v, nil
		}
	}
	return probe.MetricValue{}, notFound("probe %q has no metric %q", name, metric)
}

var (
	entriesDesc = prometheus.NewDesc("rampart_fake_metric_entries", "Entries of each fake probe metric.", []string{"probe", "metric"}, nil)
	loadedDesc  = prometheus.NewDesc("rampart_fake_probes_loaded", "Probes loaded in the fake manager.", nil, nil)
)

type collector struct {
	f     *Fake
	probe string // "" = all, plus the manager's own metric
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- entriesDesc
	if c.probe == "" {
		ch <- loadedDesc
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	for name, vals := range c.f.values {
		if c.probe != "" && name != c.probe {
			continue
		}
		for _, v := range vals {
			ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(len(v.Value)), name, v.Name)
		}
	}
	if c.probe == "" {
		ch <- prometheus.MustNewConstMetric(loadedDesc, prometheus.GaugeValue, float64(len(c.f.probes)))
	}
}

func (f *Fake) Collector() prometheus.Collector { return collector{f: f} }

func (f *Fake) ProbeCollector(name string) (prometheus.Collector, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.probes[name]; !ok {
		return nil, notFound("probe %q is not loaded", name)
	}
	return collector{f: f, probe: name}, nil
}

// Subscribe follows events of a loaded probe ("" = all) and stream ("" = all).
func (f *Fake) Subscribe(name, stream string) (<-chan probe.Event, func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name != "" {
		p, ok := f.probes[name]
		if !ok {
			return nil, func() {}, notFound("probe %q is not loaded", name)
		}
		if stream != "" {
			found := false
			for _, e := range p.Events {
				found = found || e.Name == stream
			}
			if !found {
				return nil, func() {}, notFound("probe %q has no event stream %q", name, stream)
			}
		}
	}
	id := f.nextSub
	f.nextSub++
	s := &sub{probe: name, stream: stream, ch: make(chan probe.Event, 16)}
	f.subs[id] = s
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			delete(f.subs, id)
			close(s.ch)
			f.cancels++
		})
	}, nil
}

// Publish delivers ev to every matching subscriber (dropping it for a full
// one) and says how many got it.
func (f *Fake) Publish(ev probe.Event) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.subs {
		if (s.probe != "" && s.probe != ev.Probe) || (s.stream != "" && s.stream != ev.Stream) {
			continue
		}
		select {
		case s.ch <- ev:
			n++
		default:
		}
	}
	return n
}

// Subscribers counts open subscriptions.
func (f *Fake) Subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// Cancels counts subscriptions whose cancel func was called.
func (f *Fake) Cancels() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cancels
}
