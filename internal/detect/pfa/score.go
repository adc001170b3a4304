package pfa

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Improbable is one symbol that its context made unlikely: evidence for
// an alert.
type Improbable struct {
	Time int64 `json:"time"`
	// Context is the symbols before it (oldest first, at most Depth;
	// Start when at the beginning of the stream).
	Context []Symbol `json:"context"`
	Symbol  Symbol   `json:"symbol"`
	Prob    float64  `json:"prob"`
	Bits    float64  `json:"bits"` // surprisal, -log2 Prob
}

// String explains it: "tick:after-recv:... after [accept recv:...] p=3e-07 (21.7 bits)".
func (i Improbable) String() string {
	return fmt.Sprintf("%v after [%s] p=%.3g (%.1f bits)", i.Symbol, symbols(i.Context), i.Prob, i.Bits)
}

// topK is how many improbable symbols a connection remembers.
const topK = 4

// improb is an Improbable before it is explained.
type improb struct {
	t    int64
	ctx  uint64
	s    Symbol
	bits float64
}

func (i improb) explain() Improbable {
	return Improbable{Time: i.t, Context: decodeContext(i.ctx), Symbol: i.s, Prob: math.Exp2(-i.bits), Bits: i.bits}
}

// scorer is the running score of one connection's stream: the mean
// surprisal of its last W symbols.
type scorer struct {
	h     history
	win   []float32 // ring of the last W surprisals (0 before the first W)
	pos   int
	n     int     // symbols scored
	score float64 // current window score
	max   float64 // highest window score so far
	top   [topK]improb
	ntop  int
}

func newScorer(window int) scorer { return scorer{h: startHistory(), win: make([]float32, window)} }

// restart begins a new stream.
func (sc *scorer) restart() {
	w := sc.win
	clear(w)
	*sc = scorer{h: startHistory(), win: w}
}

// add scores symbol s at time t and returns the window score.
func (sc *scorer) add(m *Model, t int64, s Symbol) float64 {
	bits := -math.Log2(m.prob(sc.h, s))
	sc.remember(improb{t: t, ctx: sc.h.key & mask(int(sc.h.n)), s: s, bits: bits})
	sc.h = sc.h.push(s, m.cfg.Depth)
	sc.win[sc.pos] = float32(bits)
	sc.pos = (sc.pos + 1) % len(sc.win)
	sc.n++
	sum := 0.0
	for _, b := range sc.win {
		sum += float64(b)
	}
	sc.score = sum / float64(len(sc.win))
	sc.max = max(sc.max, sc.score)
	return sc.score
}

// remember keeps the topK most surprising symbols (the earliest of
// equals).
func (sc *scorer) remember(i improb) {
	if sc.ntop == topK && i.bits <= sc.top[topK-1].bits {
		return
	}
	j := min(sc.ntop, topK-1)
	for j > 0 && sc.top[j-1].bits < i.bits {
		sc.top[j] = sc.top[j-1]
		j--
	}
	sc.top[j] = i
	sc.ntop = min(sc.ntop+1, topK)
}

// improbable returns the remembered symbols, most surprising first.
func (sc *scorer) improbable() []Improbable {
	out := make([]Improbable, sc.ntop)
	for i := range out {
		out[i] = sc.top[i].explain()
	}
	return out
}

// Scores returns the window score after each symbol of one connection's
// stream (its first symbol first): the sum of the surprisals of its last
// window symbols divided by window. The first window-1 scores count the
// missing symbols as 0, so a single surprising symbol at the beginning of
// a stream weighs as much as anywhere else.
func (m *Model) Scores(stream []Symbol, window int) []float64 {
	sc := newScorer(max(1, window))
	out := make([]float64, len(stream))
	for i, s := range stream {
		out[i] = sc.add(m, 0, s)
	}
	return out
}

// CalibConfig configures Calibrate. Zero fields take their defaults.
type CalibConfig struct {
	// Window is the number of symbols of the score (default 8).
	Window int `json:"window"`
	// TargetFPR is the share of benign connections allowed above the
	// threshold (default 1e-4).
	TargetFPR float64 `json:"target_fpr"`
	// Margin raises the threshold above the held-out quantile, as a
	// fraction of it (default 0.25; negative: none), for benign traffic a
	// little unlike the held-out set.
	Margin float64 `json:"margin"`
}

// Defaults of CalibConfig.
const (
	DefaultWindow    = 8
	DefaultTargetFPR = 1e-4
	DefaultMargin    = 0.25
)

// Calibration is how a model's per-connection threshold was set.
type Calibration struct {
	Window    int     `json:"window"`
	TargetFPR float64 `json:"target_fpr"`
	Margin    float64 `json:"margin"`
	// Conns is the number of held-out benign connections scored.
	Conns int `json:"conns"`
	// Quantile is the (1-TargetFPR) quantile of their highest window
	// scores, Max the highest, Median the median.
	Median   float64 `json:"median"`
	Quantile float64 `json:"quantile"`
	Max      float64 `json:"max"`
	// Threshold is Quantile·(1+Margin): a connection whose window score
	// exceeds it is anomalous.
	Threshold float64 `json:"threshold"`
	// Above is the number of held-out connections above Threshold.
	Above int `json:"above"`
}

// Calibrate sets the model's threshold from held-out benign events (not
// those it learned from): it scores every connection, takes the highest
// window score each reached, and sets the threshold at their
// (1-TargetFPR) quantile plus the margin. It must run before the model is
// shared.
func (m *Model) Calibrate(events []Event, cc CalibConfig) (Calibration, error) {
	if cc.Window == 0 {
		cc.Window = DefaultWindow
	}
	if cc.TargetFPR == 0 {
		cc.TargetFPR = DefaultTargetFPR
	}
	if cc.Margin == 0 {
		cc.Margin = DefaultMargin
	} else if cc.Margin < 0 {
		cc.Margin = 0
	}
	if cc.Window < 1 || cc.Window > 1024 || !(cc.TargetFPR > 0 && cc.TargetFPR < 1) || math.IsNaN(cc.Margin) || math.IsInf(cc.Margin, 0) {
		return Calibration{}, fmt.Errorf("pfa: calibration window %d, target FPR %v or margin %v out of range", cc.Window, cc.TargetFPR, cc.Margin)
	}
	maxes, err := m.connMaxScores(events, cc.Window)
	if err != nil {
		return Calibration{}, err
	}
	if len(maxes) == 0 {
		return Calibration{}, errors.New("pfa: no held-out connections to calibrate on")
	}
	slices.Sort(maxes)
	q := quantile(maxes, 1-cc.TargetFPR)
	c := Calibration{
		Window: cc.Window, TargetFPR: cc.TargetFPR, Margin: cc.Margin,
		Conns: len(maxes), Median: quantile(maxes, 0.5), Quantile: q, Max: maxes[len(maxes)-1],
		Threshold: q * (1 + cc.Margin),
	}
	for _, x := range maxes {
		if x > c.Threshold {
			c.Above++
		}
	}
	m.Calibration = c
	return c, nil
}

// connMaxScores returns the highest window score of each connection
// (stream) in events.
func (m *Model) connMaxScores(events []Event, window int) ([]float64, error) {
	z, err := NewSymboliser(m.cfg.Tick, m.cfg.MaxIdle)
	if err != nil {
		return nil, err
	}
	open := make(map[ConnID]*scorer)
	var maxes []float64
	var buf []Emitted
	for _, ev := range events {
		if buf, err = z.Observe(ev, buf[:0]); err != nil {
			return nil, err
		}
		for _, e := range buf {
			sc := open[e.Conn]
			if sc == nil || e.First {
				if sc != nil {
					maxes = append(maxes, sc.max)
				}
				s := newScorer(window)
				sc = &s
				open[e.Conn] = sc
			}
			sc.add(m, e.Time, e.Sym)
			if e.Sym.Kind() == Close {
				maxes = append(maxes, sc.max)
				delete(open, e.Conn)
			}
		}
	}
	for _, sc := range open {
		maxes = append(maxes, sc.max)
	}
	return maxes, nil
}

// quantile returns the q quantile of sorted xs (the smallest x with at
// least q·len(xs) values at or below it).
func quantile(xs []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}
