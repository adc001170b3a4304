package threshold

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/probes/hoststat"
)

// Reader is what the service needs of the probe manager.
type Reader interface {
	ReadRaw(name, mapName string) ([]probe.RawEntry, error)
}

// Service feeds a Detector with the hoststat probe's maps every interval.
type Service struct {
	Manager  Reader
	Probe    string // the hoststat probe's name
	Detector *Detector
	Interval time.Duration
	OnAlert  func(alert.Alert)
	Log      *slog.Logger
}

// Snapshot reads and decodes the probe's hosts and sources maps.
func Snapshot(m Reader, name string) (map[netip.Addr]hoststat.Host, map[hoststat.SourceKey]hoststat.Source, error) {
	raw, err := m.ReadRaw(name, "hosts")
	if err != nil {
		return nil, nil, err
	}
	hosts := make(map[netip.Addr]hoststat.Host, len(raw))
	for _, e := range raw {
		k, h, err := hoststat.DecodeHost(e.Key, e.Values)
		if err != nil {
			return nil, nil, err
		}
		hosts[k] = h
	}
	raw, err = m.ReadRaw(name, "sources")
	if err != nil {
		return nil, nil, err
	}
	sources := make(map[hoststat.SourceKey]hoststat.Source, len(raw))
	for _, e := range raw {
		k, s, err := hoststat.DecodeSource(e.Key, e.Values)
		if err != nil {
			return nil, nil, err
		}
		sources[k] = s
	}
	return hosts, sources, nil
}

// Run observes every interval until ctx ends.
func (s *Service) Run(ctx context.Context) {
	if s.Interval <= 0 {
		s.Interval = time.Second
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	failing := false
	for {
		hosts, sources, err := Snapshot(s.Manager, s.Probe)
		now := time.Now()
		switch {
		case err != nil && !failing:
			s.Log.Warn("threshold detector: reading hoststat", "err", err)
			failing = true
		case err == nil:
			failing = false
			for _, a := range s.Detector.Observe(now, hosts, sources) {
				s.OnAlert(a)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
