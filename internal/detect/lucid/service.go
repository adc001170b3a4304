package lucid

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/probes/ddosfeat"
)

// Events is what the service needs of the probe manager.
type Events interface {
	Subscribe(probe, stream string) (<-chan probe.Event, func(), error)
}

// Service feeds a Detector with the ddosfeat probe's records and ticks it.
type Service struct {
	Manager  Events
	Probe    string // the ddosfeat probe's name
	Detector *Detector
	Every    time.Duration // default 250 ms
	OnAlert  func(alert.Alert)
	Log      *slog.Logger
}

func monoNow() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// Run consumes records until ctx ends or the probe goes away.
func (s *Service) Run(ctx context.Context) error {
	if s.Every <= 0 {
		s.Every = 250 * time.Millisecond
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	ch, cancel, err := s.Manager.Subscribe(s.Probe, "packet_features")
	if err != nil {
		return err
	}
	defer cancel()
	t := time.NewTicker(s.Every)
	defer t.Stop()
	last := time.Now()
	bad := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			p, err := ddosfeat.DecodePacketFeatures(ev.Raw)
			if err != nil {
				if bad++; bad == 1 {
					s.Log.Warn("lucid: undecodable ddosfeat record", "err", err)
				}
				continue
			}
			s.Detector.Add(p)
		case now := <-t.C:
			for _, a := range s.Detector.Tick(monoNow(), now, now.Sub(last)) {
				s.OnAlert(a)
			}
			last = now
		}
	}
}
