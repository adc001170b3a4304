package flow

import (
	"context"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-shield/rampart/internal/probe"
)

// Service runs a Collector on a timer, keeps recent records and per-source
// totals, and hands every batch of records to its sinks (IPFIX exporters).
type Service struct {
	col      *Collector
	interval time.Duration
	log      *slog.Logger
	sinks    []func([]Flow) error

	mu      sync.Mutex
	recent  []Flow // ring
	head    int
	keep    int
	totals  map[netip.Addr]*Talker
	live    []Flow // unreported counts of running flows, as of the last poll
	records uint64
	evicted uint64
	errors  uint64
}

// Talker is one source address and what it sent.
type Talker struct {
	Addr    netip.Addr `json:"addr"`
	Packets uint64     `json:"packets"`
	Bytes   uint64     `json:"bytes"`
	Flows   uint64     `json:"flows"`
}

// ServiceOptions configures a Service.
type ServiceOptions struct {
	Interval time.Duration // poll period (default 1 s)
	Keep     int           // recent records kept (default 4096)
	Logger   *slog.Logger
	Sinks    []func([]Flow) error
}

// NewService wraps a collector.
func NewService(col *Collector, opts ServiceOptions) *Service {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Keep <= 0 {
		opts.Keep = 4096
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Service{col: col, interval: opts.Interval, log: opts.Logger, sinks: opts.Sinks, keep: opts.Keep, totals: map[netip.Addr]*Talker{}}
}

// Run polls until ctx ends, then flushes every flow's unreported counts.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.step(true)
			return
		case <-t.C:
			s.step(false)
		}
	}
}

// Step polls once (tests drive the service with it).
func (s *Service) Step() { s.step(false) }

func (s *Service) step(flush bool) {
	var out []Flow
	var err error
	if flush {
		out, err = s.col.Flush()
	} else {
		out, err = s.col.Poll()
	}
	s.mu.Lock()
	if err != nil && probe.KindOf(err) != probe.KindNotFound {
		// (No flowmon loaded is not an error: there is nothing to poll.)
		s.errors++
		s.log.Warn("flow poll failed", "error", err)
	}
	for _, f := range out {
		s.add(f)
	}
	s.live = append(s.live[:0], s.col.Unreported()...)
	s.evicted = s.col.Evicted
	s.mu.Unlock()
	if len(out) == 0 {
		return
	}
	for _, sink := range s.sinks {
		if err := sink(out); err != nil {
			s.mu.Lock()
			s.errors++
			s.mu.Unlock()
			s.log.Warn("flow export failed", "error", err)
		}
	}
}

func (s *Service) add(f Flow) {
	s.records++
	if len(s.recent) < s.keep {
		s.recent = append(s.recent, f)
	} else {
		s.recent[s.head] = f
		s.head = (s.head + 1) % s.keep
	}
	t := s.totals[f.Src]
	if t == nil {
		if len(s.totals) >= 1<<16 {
			return // bounded: a random-source flood cannot grow it without limit
		}
		t = &Talker{Addr: f.Src}
		s.totals[f.Src] = t
	}
	t.Packets += f.Packets
	t.Bytes += f.Bytes
	t.Flows++
}

// Recent returns up to n of the latest records, newest last.
func (s *Service) Recent(n int) []Flow {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := append(append([]Flow(nil), s.recent[s.head:]...), s.recent[:s.head]...)
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// Top returns the n sources that sent the most bytes (or packets) since the
// agent started, counting flows still running.
func (s *Service) Top(n int, byPackets bool) []Talker {
	s.mu.Lock()
	sum := make(map[netip.Addr]Talker, len(s.totals))
	for a, t := range s.totals {
		sum[a] = *t
	}
	live := append([]Flow(nil), s.live...)
	s.mu.Unlock()
	for _, f := range live {
		t := sum[f.Src]
		t.Addr = f.Src
		t.Packets += f.Packets
		t.Bytes += f.Bytes
		sum[f.Src] = t
	}
	out := make([]Talker, 0, len(sum))
	for _, t := range sum {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Bytes, out[j].Bytes
		if byPackets {
			a, b = out[i].Packets, out[j].Packets
		}
		if a != b {
			return a > b
		}
		return out[i].Addr.Less(out[j].Addr)
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

var (
	descRecords = prometheus.NewDesc("rampart_flow_records_total", "Flow records exported.", nil, nil)
	descEvicted = prometheus.NewDesc("rampart_flow_evicted_total", "Flows evicted from the kernel map before their last counts were reported.", nil, nil)
	descErrors  = prometheus.NewDesc("rampart_flow_errors_total", "Failed flow polls and exports.", nil, nil)
	descTopB    = prometheus.NewDesc("rampart_flow_top_talker_bytes", "Bytes sent by the top 10 source addresses since the agent started.", []string{"src"}, nil)
)

// Describe implements prometheus.Collector.
func (s *Service) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRecords
	ch <- descEvicted
	ch <- descErrors
	ch <- descTopB
}

// Collect implements prometheus.Collector.
func (s *Service) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	ch <- prometheus.MustNewConstMetric(descRecords, prometheus.CounterValue, float64(s.records))
	ch <- prometheus.MustNewConstMetric(descEvicted, prometheus.CounterValue, float64(s.evicted))
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(s.errors))
	s.mu.Unlock()
	for _, t := range s.Top(10, false) {
		ch <- prometheus.MustNewConstMetric(descTopB, prometheus.GaugeValue, float64(t.Bytes), t.Addr.String())
	}
}
