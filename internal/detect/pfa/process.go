package pfa

import (
	"math"
	"time"
)

// Never is the ExhaustIn of a process whose connections are not growing
// towards its limit.
const Never time.Duration = -1

// ProcessState is the connection use of a process group at a time.
type ProcessState struct {
	// Group names the processes whose connections count against one
	// limit (Config.GroupOf): one process, or every worker of a server.
	Group string `json:"group"`
	Limit int    `json:"limit"`
	// Open connections; Busy ones hold a worker without doing work
	// (anomalous, or idle for Config.BusyIdle or more); Anomalous ones
	// exceeded the model's threshold.
	Open      int `json:"open"`
	Busy      int `json:"busy"`
	Anomalous int `json:"anomalous"`
	// Share is Anomalous/Limit.
	Share float64 `json:"share"`
	// Slope is the least-squares trend of Open over the trend window, in
	// connections per second; BusySlope the same for Busy.
	Slope     float64 `json:"slope"`
	BusySlope float64 `json:"busy_slope"`
	// ExhaustIn is when Open is predicted to reach Limit at Slope: 0 if
	// it has, Never if it is not growing (or the trend is too short).
	ExhaustIn time.Duration `json:"exhaust_in_ns"`
}

// sample is a group's counts at one time.
type sample struct {
	t                     int64
	open, busy, anomalous int
}

// group is the state of one process group.
type group struct {
	name      string
	limit     int
	open      int
	anomalous int
	busy      int            // counted during Advance
	tgids     map[uint32]int // open connections per process
	samples   []sample       // within the trend window, oldest first
	lastAlert int64          // time of the last verdict (0: none)
	lastCount int            // anomalous connections in it
}

// record appends a sample at now and drops those older than window.
func (g *group) record(now, window int64) {
	g.samples = append(g.samples, sample{t: now, open: g.open, busy: g.busy, anomalous: g.anomalous})
	i := 0
	for i < len(g.samples) && g.samples[i].t < now-window {
		i++
	}
	g.samples = append(g.samples[:0], g.samples[i:]...)
}

// minTrend is the shortest span of samples a trend is drawn from, and
// minTrendSamples their fewest number.
const (
	minTrend        = 2 * time.Second
	minTrendSamples = 3
)

// state returns the group's state from its last sample.
func (g *group) state() ProcessState {
	st := ProcessState{Group: g.name, Limit: g.limit, Open: g.open, Busy: g.busy, Anomalous: g.anomalous, ExhaustIn: Never}
	st.Share = float64(g.anomalous) / float64(g.limit)
	n := len(g.samples)
	if n >= minTrendSamples && g.samples[n-1].t-g.samples[0].t >= int64(minTrend) {
		st.Slope = slope(g.samples, func(s sample) int { return s.open })
		st.BusySlope = slope(g.samples, func(s sample) int { return s.busy })
	}
	st.ExhaustIn = exhaustIn(g.open, g.limit, st.Slope)
	return st
}

// exhaustIn returns when open reaches limit growing at slope per second.
func exhaustIn(open, limit int, slope float64) time.Duration {
	switch {
	case open >= limit:
		return 0
	case slope <= 0 || math.IsNaN(slope):
		return Never
	}
	s := float64(limit-open) / slope
	if s > float64(math.MaxInt64/2)/1e9 {
		return Never
	}
	return time.Duration(s * 1e9)
}

// slope is the least-squares slope of y over the samples' times, per
// second (0 if the times are all equal).
func slope(ss []sample, y func(sample) int) float64 {
	var mt, my float64
	t0 := ss[0].t
	for _, s := range ss {
		mt += float64(s.t-t0) / 1e9
		my += float64(y(s))
	}
	n := float64(len(ss))
	mt, my = mt/n, my/n
	var sxy, sxx float64
	for _, s := range ss {
		dt := float64(s.t-t0)/1e9 - mt
		sxy += dt * (float64(y(s)) - my)
		sxx += dt * dt
	}
	if sxx == 0 {
		return 0
	}
	return sxy / sxx
}
