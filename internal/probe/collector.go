package probe

import (
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// managerStats are the agent's own metrics about its probes.
type managerStats struct {
	loads *prometheus.CounterVec
}

func newManagerStats() managerStats {
	return managerStats{
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_probe_loads_total", Help: "Probe load requests by result.",
		}, []string{"result"}),
	}
}

var (
	descLoaded   = prometheus.NewDesc("rampart_probes_loaded", "Probes currently loaded.", nil, nil)
	descSwaps    = prometheus.NewDesc("rampart_probe_swaps_total", "Completed swap-on-read cycles.", []string{"probe"}, nil)
	descReads    = prometheus.NewDesc("rampart_probe_reads_total", "Metric reads served through the API.", []string{"probe"}, nil)
	descReadErr  = prometheus.NewDesc("rampart_probe_read_errors_total", "Metric reads that failed while collecting.", []string{"probe"}, nil)
	descReadTime = prometheus.NewDesc("rampart_probe_collect_seconds", "Time spent reading a probe's maps for this scrape.", []string{"probe"}, nil)
	descEvents   = prometheus.NewDesc("rampart_probe_events_total", "Ring-buffer records received.", []string{"probe", "stream"}, nil)
	descLost     = prometheus.NewDesc("rampart_probe_events_lost_total", "Ring-buffer records lost: undecodable, or dropped for a slow subscriber.", []string{"probe", "stream"}, nil)
	descDropped  = prometheus.NewDesc("rampart_probe_pending_dropped_total", "Drained entries dropped because a metric's pending buffer was full.", []string{"probe", "metric"}, nil)
)

// probeCollector exports probes' maps as OpenMetrics. It is unchecked (it
// describes nothing up front) because what it exports changes with the
// probes loaded.
type probeCollector struct {
	m    *Manager
	only string // one probe, or all when empty
	self bool   // include the manager's own metrics
}

func (c *probeCollector) Describe(chan<- *prometheus.Desc) {}

func (c *probeCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.RLock()
	var ps []*loaded
	for name, p := range c.m.probes {
		if c.only == "" || name == c.only {
			ps = append(ps, p)
		}
	}
	c.m.mu.RUnlock()
	sort.Slice(ps, func(i, j int) bool { return ps[i].name < ps[j].name })
	if c.self {
		ch <- prometheus.MustNewConstMetric(descLoaded, prometheus.GaugeValue, float64(len(ps)))
		c.m.stats.loads.Collect(ch)
	}
	families := map[string]string{}
	for _, p := range ps {
		start := time.Now()
		errs := p.collect(ch, families)
		if c.self {
			ch <- prometheus.MustNewConstMetric(descReadTime, prometheus.GaugeValue, time.Since(start).Seconds(), p.name)
			p.mu.Lock()
			ch <- prometheus.MustNewConstMetric(descSwaps, prometheus.CounterValue, float64(p.swaps), p.name)
			ch <- prometheus.MustNewConstMetric(descReads, prometheus.CounterValue, float64(p.reads), p.name)
			ch <- prometheus.MustNewConstMetric(descReadErr, prometheus.CounterValue, float64(errs), p.name)
			for _, name := range p.order {
				ms := p.metrics[name]
				ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(ms.pending.dropped), p.name, name)
			}
			p.mu.Unlock()
			for _, s := range p.streams {
				ch <- prometheus.MustNewConstMetric(descEvents, prometheus.CounterValue, float64(s.received.Load()), p.name, s.cfg.Name)
				ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(s.lost.Load()), p.name, s.cfg.Name)
			}
		}
	}
}

func valueType(t string) prometheus.ValueType {
	switch t {
	case "counter":
		return prometheus.CounterValue
	case "gauge":
		return prometheus.GaugeValue
	}
	return prometheus.UntypedValue
}

// collect exports every metric of the probe. Drained counters export their
// running totals, so Prometheus sees monotonic counters even though the map
// is emptied on each read; the drained entries also stay pending for REST.
//
// families maps each family name already exported (by any probe) to its
// type and label names: a probe whose metric would clash with another
// probe's family of the same name is skipped (and counted as an error)
// rather than breaking the whole scrape.
func (p *loaded) collect(ch chan<- prometheus.Metric, families map[string]string) (errs int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	drained := map[*exportedMap]bool{}
	for _, name := range p.order {
		ms := p.metrics[name]
		em := ms.em
		labelNames := []string{"probe"}
		for _, l := range ms.labels {
			labelNames = append(labelNames, l.name)
		}
		descs := make([]*prometheus.Desc, len(ms.series))
		clash := false
		for i, s := range ms.series {
			fam := familyName(ms.cfg, s.suffix)
			sig := ms.cfg.Type + "|" + strings.Join(labelNames, ",")
			if prev, ok := families[fam]; ok && prev != sig {
				clash = true
			}
			families[fam] = sig
			descs[i] = prometheus.NewDesc(fam, helpOf(ms.cfg), labelNames, nil)
		}
		if clash {
			errs++
			continue
		}
		vt := valueType(ms.cfg.Type)
		emit := func(lv []string, vals []float64) {
			for i, d := range descs {
				m, err := prometheus.NewConstMetric(d, vt, vals[i], append([]string{p.name}, lv...)...)
				if err != nil {
					errs++
					continue
				}
				ch <- m
			}
		}
		var entries []rawEntry
		if em.drain {
			if !drained[em] && !(em.swapped && drained[nil]) {
				if _, err := p.drain(em, nil); err != nil {
					errs++
					continue
				}
				drained[em] = true
				if em.swapped {
					drained[nil] = true // one swap drains every swapped map
				}
			}
			if ms.cfg.Type == "counter" {
				ids := make([]string, 0, len(ms.cum))
				for id := range ms.cum {
					ids = append(ids, id)
				}
				sort.Strings(ids)
				for _, id := range ids {
					c := ms.cum[id]
					emit(c.labels, c.vals)
				}
				continue
			}
			entries = ms.last
		} else {
			var err error
			if entries, err = em.reader.read(em.maps[0], false); err != nil {
				errs++
				continue
			}
		}
		// Keys that render to the same labels (labels naming only some key
		// fields) are added together, as a Prometheus sum() would.
		agg := map[string]*cumSeries{}
		var ids []string
		for _, e := range entries {
			lv := ms.labelValues(e.key)
			id := strings.Join(lv, "\xff")
			c := agg[id]
			if c == nil {
				c = &cumSeries{labels: lv, vals: make([]float64, len(ms.series))}
				agg[id] = c
				ids = append(ids, id)
			}
			v := em.merged(e)
			for i, s := range ms.series {
				c.vals[i] += s.num(v)
			}
		}
		for _, id := range ids {
			emit(agg[id].labels, agg[id].vals)
		}
	}
	return errs
}

// familyName is the exported name: counters end in _total, as OpenMetrics
// requires of their samples.
func familyName(m Metric, suffix string) string {
	name := strings.TrimSuffix(m.Name, "_total") + suffix
	if m.Type == "counter" {
		name += "_total"
	}
	return name
}

func helpOf(m Metric) string {
	if m.Help != "" {
		return m.Help
	}
	return "Map " + m.Map + " exported by a rampart probe."
}

// Collector exports every probe's metrics plus the manager's own.
func (m *Manager) Collector() prometheus.Collector { return &probeCollector{m: m, self: true} }

// ProbeCollector exports one probe's metrics.
func (m *Manager) ProbeCollector(name string) (prometheus.Collector, error) {
	if _, err := m.get(name); err != nil {
		return nil, err
	}
	return &probeCollector{m: m, only: name}, nil
}
