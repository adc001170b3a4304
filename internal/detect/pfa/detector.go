package pfa

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// Name is the detector's name in alerts.
const Name = "pfa"

// Config configures a Detector. Zero fields take their defaults.
type Config struct {
	// Threshold overrides the model's calibrated per-connection
	// threshold (window score, bits per symbol).
	Threshold float64 `json:"threshold,omitempty"`
	// Limit is the number of connections a process group can hold
	// (Apache's MaxRequestWorkers, nginx's worker_connections times
	// workers, ...), unless Limits names the group (default 1024, the
	// usual soft limit of open files).
	Limit  int            `json:"limit,omitempty"`
	Limits map[string]int `json:"limits,omitempty"`
	// GroupOf names the group of a process, so that the workers of one
	// server count against one limit (default: each process alone,
	// "tgid:N").
	GroupOf func(tgid uint32) string `json:"-"`
	// Share: a group is under attack when its anomalous connections hold
	// at least this share of its limit (default 0.25).
	Share float64 `json:"share,omitempty"`
	// Horizon: ... or when its open connections are predicted to reach
	// its limit within this time (default 5 s), while some are anomalous.
	Horizon time.Duration `json:"horizon_ns,omitempty"`
	// TrendWindow is the span of the least-squares trend (default 10 s).
	TrendWindow time.Duration `json:"trend_window_ns,omitempty"`
	// BusyIdle: an open connection idle this long is busy (holds a
	// worker for nothing; default 10 s).
	BusyIdle time.Duration `json:"busy_idle_ns,omitempty"`
	// MaxConns bounds the connections followed (default 65536); events of
	// further new connections are counted (Stats.Dropped) and ignored.
	MaxConns int `json:"max_conns,omitempty"`
	// Every: a group's verdict is repeated at most this often while it
	// holds, unless more of its connections become anomalous (default
	// 5 s).
	Every time.Duration `json:"every_ns,omitempty"`
}

// Defaults of Config.
const (
	DefaultLimit       = 1024
	DefaultShare       = 0.25
	DefaultHorizon     = 5 * time.Second
	DefaultTrendWindow = 10 * time.Second
	DefaultBusyIdle    = 10 * time.Second
	DefaultMaxConns    = 1 << 16
	DefaultEvery       = 5 * time.Second
)

func (c Config) withDefaults() (Config, error) {
	if c.Limit == 0 {
		c.Limit = DefaultLimit
	}
	if c.GroupOf == nil {
		c.GroupOf = func(tgid uint32) string { return "tgid:" + strconv.FormatUint(uint64(tgid), 10) }
	}
	if c.Share == 0 {
		c.Share = DefaultShare
	}
	if c.Horizon == 0 {
		c.Horizon = DefaultHorizon
	}
	if c.TrendWindow == 0 {
		c.TrendWindow = DefaultTrendWindow
	}
	if c.BusyIdle == 0 {
		c.BusyIdle = DefaultBusyIdle
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.Every == 0 {
		c.Every = DefaultEvery
	}
	switch {
	case c.Limit < 1 || c.MaxConns < 1:
		return c, fmt.Errorf("pfa: limit %d and max conns %d must be positive", c.Limit, c.MaxConns)
	case !(c.Share > 0) || c.Horizon < 0 || c.TrendWindow < minTrend || c.BusyIdle < 0 || c.Every < 0:
		return c, fmt.Errorf("pfa: share %v must be positive, trend window %v at least %v, horizon, busy idle and every not negative", c.Share, c.TrendWindow, minTrend)
	case c.Threshold < 0 || math.IsNaN(c.Threshold):
		return c, fmt.Errorf("pfa: threshold %v", c.Threshold)
	}
	for name, l := range c.Limits {
		if l < 1 {
			return c, fmt.Errorf("pfa: limit %d of group %q must be positive", l, name)
		}
	}
	return c, nil
}

// DetectorStats counts what a detector did.
type DetectorStats struct {
	Events  int64 `json:"events"`
	Invalid int64 `json:"invalid"` // events refused
	Symbols int64 `json:"symbols"` // scored, ticks included
	Ticks   int64 `json:"ticks"`
	Flagged int64 `json:"flagged"` // connections found anomalous
	Dropped int64 `json:"dropped"` // events of connections beyond MaxConns
	Expired int64 `json:"expired"` // connections forgotten after MaxIdle
	Open    int   `json:"open"`    // connections followed now
}

// conn is a followed connection.
type conn struct {
	id        ConnID
	clk       clock
	sc        scorer
	g         *group
	pid       uint32 // last thread
	flagged   bool
	flaggedAt int64
	flagSyms  int     // symbols scored when flagged
	flagScore float64 // window score that flagged it
}

// Detector scores every connection's stream with a model and watches
// each process group's connections against its limit. Feed it events in
// time order (Observe) and call Advance with the time up to which events
// have been delivered, about every second; Advance returns the verdicts.
// It is not safe for concurrent use.
type Detector struct {
	m       *Model
	cfg     Config
	thr     float64
	tick    int64
	maxIdle int64
	conns   map[ConnID]*conn
	groups  map[string]*group
	last    int64 // last sample time
	sampled bool  // last is set
	stats   DetectorStats
}

// NewDetector returns a detector using model m (which needs a threshold:
// from Calibrate or cfg.Threshold).
func NewDetector(m *Model, cfg Config) (*Detector, error) {
	if m == nil {
		return nil, errors.New("pfa: no model")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	thr := cfg.Threshold
	if thr == 0 {
		thr = m.Calibration.Threshold
	}
	if !(thr > 0) || m.Calibration.Window < 1 {
		return nil, fmt.Errorf("pfa: model %q has no threshold (calibrate it or set one)", m.Name)
	}
	return &Detector{
		m: m, cfg: cfg, thr: thr,
		tick: int64(m.cfg.Tick), maxIdle: int64(m.cfg.MaxIdle),
		conns: make(map[ConnID]*conn), groups: make(map[string]*group),
	}, nil
}

// Threshold returns the per-connection threshold in use.
func (d *Detector) Threshold() float64 { return d.thr }

// Stats returns the detector's counters.
func (d *Detector) Stats() DetectorStats {
	s := d.stats
	s.Open = len(d.conns)
	return s
}

// Observe scores one event: the ticks of its connection due before it,
// then the event. An invalid event is counted, refused and changes
// nothing.
func (d *Detector) Observe(ev Event) error {
	if err := ev.check(); err != nil {
		d.stats.Invalid++
		return err
	}
	d.stats.Events++
	c := d.conns[ev.Conn]
	if c != nil && c.clk.expired(ev.Time, d.maxIdle) {
		d.tickConn(c, ev.Time)
		d.remove(c)
		d.stats.Expired++
		c = nil
	}
	first := c == nil || ev.Kind == Accept || ev.Kind == Connect
	if c != nil {
		if first {
			d.remove(c) // a new stream on a known socket: the old one ended
			c = nil
		} else {
			d.tickConn(c, ev.Time)
		}
	}
	if c == nil {
		if len(d.conns) >= d.cfg.MaxConns {
			d.stats.Dropped++
			return nil
		}
		c = d.add(ev)
	}
	c.pid = ev.PID
	s, st, changed := c.clk.event(ev, d.tick, first)
	d.score(c, ev.Time, s)
	if changed {
		d.score(c, ev.Time, st)
	}
	if ev.Kind == Close {
		d.remove(c)
	}
	return nil
}

// add starts following the connection of ev, its first event.
func (d *Detector) add(ev Event) *conn {
	name := d.cfg.GroupOf(ev.Conn.TGID)
	g := d.groups[name]
	if g == nil {
		limit, ok := d.cfg.Limits[name]
		if !ok {
			limit = d.cfg.Limit
		}
		g = &group{name: name, limit: limit, tgids: make(map[uint32]int)}
		d.groups[name] = g
	}
	g.open++
	g.tgids[ev.Conn.TGID]++
	c := &conn{id: ev.Conn, g: g, sc: newScorer(d.m.Calibration.Window)}
	c.clk.begin(ev, d.tick)
	d.conns[ev.Conn] = c
	return c
}

// remove stops following c.
func (d *Detector) remove(c *conn) {
	g := c.g
	g.open--
	if c.flagged {
		g.anomalous--
	}
	if g.tgids[c.id.TGID]--; g.tgids[c.id.TGID] <= 0 {
		delete(g.tgids, c.id.TGID)
	}
	delete(d.conns, c.id)
}

// score scores one symbol of c and flags c when its window score first
// exceeds the threshold.
func (d *Detector) score(c *conn, t int64, s Symbol) {
	d.stats.Symbols++
	if s.Kind() == Tick {
		d.stats.Ticks++
	}
	if x := c.sc.add(d.m, t, s); x > d.thr && !c.flagged {
		c.flagged, c.flaggedAt, c.flagSyms, c.flagScore = true, t, c.sc.n, x
		c.g.anomalous++
		d.stats.Flagged++
	}
}

// tickConn scores c's ticks due before until.
func (d *Detector) tickConn(c *conn, until int64) {
	for {
		t, s, st, changed, ok := c.clk.tick(until, d.tick, d.maxIdle)
		if !ok {
			return
		}
		d.score(c, t, s)
		if changed {
			d.score(c, t, st)
		}
	}
}

// Advance scores the ticks due before now of every connection, forgets
// those silent past the model's idle expiry and, at most once per tick
// interval, samples every group's connections and returns the verdicts:
// a group is under attack when it has anomalous connections and either
// they hold at least Config.Share of its limit, or its open connections
// are predicted to reach the limit within Config.Horizon (or have).
func (d *Detector) Advance(now int64) []Verdict {
	for _, c := range d.conns {
		d.tickConn(c, now)
		if c.clk.expired(now, d.maxIdle) {
			d.remove(c)
			d.stats.Expired++
			continue
		}
		if c.flagged || now-c.clk.last >= int64(d.cfg.BusyIdle) {
			c.g.busy++
		}
	}
	if d.sampled && now-d.last < d.tick {
		for _, g := range d.groups {
			g.busy = 0
		}
		return nil
	}
	d.last, d.sampled = now, true
	var out []Verdict
	for name, g := range d.groups {
		g.record(now, int64(d.cfg.TrendWindow))
		if v, ok := d.verdict(g, now); ok {
			out = append(out, v)
		}
		g.busy = 0
		if !slices.ContainsFunc(g.samples, func(s sample) bool { return s.open > 0 }) {
			delete(d.groups, name) // no connection for a whole trend window
		}
	}
	slices.SortFunc(out, func(a, b Verdict) int { return cmp.Compare(a.Group, b.Group) })
	return out
}

// Processes returns the state of every group at the last sample, by
// name.
func (d *Detector) Processes() []ProcessState {
	out := make([]ProcessState, 0, len(d.groups))
	for _, g := range d.groups {
		st := g.state()
		if n := len(g.samples); n > 0 {
			st.Busy = g.samples[n-1].busy
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ProcessState) int { return cmp.Compare(a.Group, b.Group) })
	return out
}

// Anomalous returns the open anomalous connections, in the order they
// were flagged.
func (d *Detector) Anomalous() []Offender { return d.offenders(nil) }

// offenders returns the open anomalous connections of g (nil: all).
func (d *Detector) offenders(g *group) []Offender {
	var out []Offender
	for _, c := range d.conns {
		if c.flagged && (g == nil || c.g == g) {
			out = append(out, Offender{
				Conn: c.id, PID: c.pid, Start: c.clk.start, FlaggedAt: c.flaggedAt,
				Symbols: c.flagSyms, Score: c.sc.score, FlagScore: c.flagScore, MaxScore: c.sc.max,
				Threshold: d.thr, Improbable: c.sc.improbable(),
			})
		}
	}
	slices.SortFunc(out, func(a, b Offender) int {
		if c := cmp.Compare(a.FlaggedAt, b.FlaggedAt); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Conn.TGID, b.Conn.TGID); c != 0 {
			return c
		}
		return cmp.Compare(a.Conn.Cookie, b.Conn.Cookie)
	})
	return out
}
