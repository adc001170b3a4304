package flow

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rampart-shield/rampart/internal/probe"
)

// Sample is one flow entry as the kernel keeps it: cumulative counters and
// monotonic (bpf_ktime_get_ns) timestamps.
type Sample struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
	Direction        Direction
	Ifindex          uint32
	FirstNs, LastNs  uint64
	Packets, Bytes   uint64
	TCPFlags, TOS    uint8
}

// DecodeFunc turns a raw map entry (per-CPU values) into a Sample.
type DecodeFunc func(key []byte, values [][]byte) (Sample, error)

// Source is what the collector reads: the probe manager.
type Source interface {
	ReadRaw(probe, mapName string) ([]probe.RawEntry, error)
	TakeRaw(probe, mapName string, key []byte) ([][]byte, bool, error)
}

// Config configures a Collector.
type Config struct {
	Probe, Map string
	Decode     DecodeFunc
	// Active: a long-lived flow is reported at least this often (default 60 s).
	Active time.Duration
	// Idle: a flow without packets for this long ends (default 15 s).
	Idle time.Duration
	// Clock returns the monotonic clock the kernel stamps with and the wall
	// clock, read together. Default: CLOCK_MONOTONIC and time.Now.
	Clock func() (mono uint64, wall time.Time)
}

// Collector turns flowmon's cumulative per-flow counters into flow records
// with delta counts, as NetFlow/IPFIX exporters do.
type Collector struct {
	cfg   Config
	src   Source
	state map[string]*tracked
	// Evicted counts flows that vanished from the map (LRU eviction) before
	// their last packets were reported.
	Evicted uint64
	// unreported holds, after each poll, the counts of live flows not yet
	// reported (for top talkers that include flows still running).
	unreported []Flow
}

// Unreported returns what live flows counted since their last report, as of
// the last poll.
func (c *Collector) Unreported() []Flow { return c.unreported }

type tracked struct {
	packets, bytes uint64 // already reported
	lastReport     time.Time
	lastNs         uint64 // last packet time at the previous report
	reported       bool
}

// NewCollector returns a collector reading cfg.Map of cfg.Probe from src.
func NewCollector(src Source, cfg Config) *Collector {
	if cfg.Active <= 0 {
		cfg.Active = 60 * time.Second
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 15 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock
	}
	return &Collector{cfg: cfg, src: src, state: map[string]*tracked{}}
}

func systemClock() (uint64, time.Time) {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano()), time.Now()
}

const tcpFinRst = 0x01 | 0x04

// Poll reads the map once and returns the records due: flows idle for the
// idle timeout or ended by FIN/RST (taken out of the map atomically), and
// active flows not reported for the active timeout.
func (c *Collector) Poll() ([]Flow, error) {
	return c.poll(false)
}

// Flush reports every flow's unreported counts (agent shutdown).
func (c *Collector) Flush() ([]Flow, error) {
	return c.poll(true)
}

func (c *Collector) poll(flush bool) ([]Flow, error) {
	entries, err := c.src.ReadRaw(c.cfg.Probe, c.cfg.Map)
	if err != nil {
		return nil, err
	}
	mono, wall := c.cfg.Clock()
	toWall := func(ns uint64) time.Time { return wall.Add(-time.Duration(int64(mono) - int64(ns))) }
	seen := make(map[string]bool, len(entries))
	var out []Flow
	c.unreported = c.unreported[:0]
	for _, e := range entries {
		s, err := c.cfg.Decode(e.Key, e.Values)
		if err != nil {
			return out, fmt.Errorf("flow entry: %w", err)
		}
		id := string(e.Key)
		seen[id] = true
		t := c.state[id]
		if t == nil {
			t = &tracked{lastReport: wall}
			c.state[id] = t
		}
		quiet := time.Duration(mono - min(s.LastNs, mono))
		reason := EndReason(0)
		switch {
		case flush:
			reason = ForcedEnd
		case quiet >= c.cfg.Idle:
			reason = IdleTimeout
		case s.TCPFlags&tcpFinRst != 0 && quiet >= 2*time.Second:
			reason = EndOfFlow
		case wall.Sub(t.lastReport) >= c.cfg.Active:
			reason = ActiveTimeout
		}
		if reason == 0 {
			if s.Packets > t.packets && s.Bytes >= t.bytes {
				c.unreported = append(c.unreported, Flow{Src: s.Src, Dst: s.Dst, SrcPort: s.SrcPort, DstPort: s.DstPort,
					Proto: s.Proto, Direction: s.Direction, Ifindex: s.Ifindex,
					Packets: s.Packets - t.packets, Bytes: s.Bytes - t.bytes})
			}
			continue
		}
		if reason == IdleTimeout || reason == EndOfFlow {
			// Take the entry out atomically so nothing counted after the
			// read above is lost, then report its final counts.
			vals, ok, err := c.src.TakeRaw(c.cfg.Probe, c.cfg.Map, e.Key)
			if err != nil {
				return out, err
			}
			if ok {
				if s, err = c.cfg.Decode(e.Key, vals); err != nil {
					return out, err
				}
			}
			delete(c.state, id)
		}
		if s.Packets < t.packets || s.Bytes < t.bytes {
			// The entry was recreated under us (evicted and re-added):
			// report it whole.
			t.packets, t.bytes, t.reported = 0, 0, false
		}
		if s.Packets == t.packets && reason == ActiveTimeout {
			t.lastReport = wall
			continue
		}
		first := s.FirstNs
		if t.reported && t.lastNs > first {
			first = t.lastNs
		}
		f := Flow{
			Src: s.Src, Dst: s.Dst, SrcPort: s.SrcPort, DstPort: s.DstPort, Proto: s.Proto,
			TOS: s.TOS, TCPFlags: s.TCPFlags, Ifindex: s.Ifindex, Direction: s.Direction,
			First: toWall(first).Truncate(time.Millisecond), Last: toWall(s.LastNs).Truncate(time.Millisecond),
			Packets: s.Packets - t.packets, Bytes: s.Bytes - t.bytes, EndReason: reason,
		}
		if f.Packets > 0 {
			out = append(out, f)
		}
		t.packets, t.bytes, t.lastNs, t.lastReport, t.reported = s.Packets, s.Bytes, s.LastNs, wall, true
	}
	for id := range c.state {
		if !seen[id] {
			delete(c.state, id)
			c.Evicted++
		}
	}
	if flush {
		c.state = map[string]*tracked{}
	}
	return out, nil
}
