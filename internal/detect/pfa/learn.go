package pfa

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// ModelConfig holds the learning parameters. Zero fields take their
// defaults.
type ModelConfig struct {
	// Depth is the longest context, in symbols, 1 to MaxDepth (default
	// 3): long enough to see "accept, small recv, tick" or "recv, send,
	// tick, tick"; every extra symbol multiplies the contexts to learn.
	Depth int `json:"depth"`
	// Tick is the symboliser's tick interval (default DefaultTick).
	Tick time.Duration `json:"tick_ns"`
	// MaxIdle is the symboliser's idle expiry (default DefaultMaxIdle).
	MaxIdle time.Duration `json:"max_idle_ns"`
	// MinCount prunes the contexts of length 1 or more seen fewer times
	// (default 2; 1 keeps every context): their predictions back off to
	// the shorter context, which has seen more.
	MinCount int `json:"min_count"`
}

// Defaults of ModelConfig.
const (
	DefaultDepth    = 3
	DefaultMinCount = 2
)

func (c ModelConfig) withDefaults() (ModelConfig, error) {
	if c.Depth == 0 {
		c.Depth = DefaultDepth
	}
	if c.Tick == 0 {
		c.Tick = DefaultTick
	}
	if c.MaxIdle == 0 {
		c.MaxIdle = DefaultMaxIdle
	}
	if c.MinCount == 0 {
		c.MinCount = DefaultMinCount
	}
	switch {
	case c.Depth < 1 || c.Depth > MaxDepth:
		return c, fmt.Errorf("pfa: depth %d is not in 1..%d", c.Depth, MaxDepth)
	case c.MinCount < 1:
		return c, fmt.Errorf("pfa: min count %d is negative", c.MinCount)
	case c.Tick < time.Millisecond || c.MaxIdle < c.Tick:
		return c, fmt.Errorf("pfa: tick %v must be at least 1ms and max idle %v at least the tick", c.Tick, c.MaxIdle)
	}
	return c, nil
}

// transKey is a context and the symbol that followed it.
type transKey struct {
	ctx uint64
	sym Symbol
}

// Learner counts, in one pass over benign traces, how often each symbol
// follows each context of length 0 to Depth: for every symbol, Depth+1
// hash-map increments, so learning is linear in the length of the traces
// and its memory grows with the number of distinct contexts, not with the
// traces. It is not safe for concurrent use.
type Learner struct {
	cfg    ModelConfig
	z      *Symboliser
	hist   map[ConnID]history
	counts map[transKey]uint32
	buf    []Emitted
	info   TrainInfo
}

// NewLearner returns an empty learner.
func NewLearner(cfg ModelConfig) (*Learner, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	z, err := NewSymboliser(cfg.Tick, cfg.MaxIdle)
	if err != nil {
		return nil, err
	}
	return &Learner{cfg: cfg, z: z, hist: make(map[ConnID]history), counts: make(map[transKey]uint32)}, nil
}

// Observe learns from one event of a benign trace (events of a connection
// in time order; connections may interleave).
func (l *Learner) Observe(ev Event) error {
	var err error
	l.buf, err = l.z.Observe(ev, l.buf[:0])
	if err != nil {
		return err
	}
	l.info.Events++
	for _, e := range l.buf {
		l.add(e.Conn, e.Sym, e.First)
	}
	return nil
}

// Stream learns one connection's whole symbol stream (its first symbol
// first), for callers that symbolise themselves.
func (l *Learner) Stream(ss []Symbol) error {
	var h history
	for i, s := range ss {
		if !s.Valid() || s == Start {
			return fmt.Errorf("pfa: symbol %d of the stream is invalid (%#x)", i, uint16(s))
		}
		if i == 0 {
			h = startHistory()
			l.info.Conns++
		}
		l.count(h, s)
		h = h.push(s, l.cfg.Depth)
	}
	return nil
}

// add learns symbol s of connection id.
func (l *Learner) add(id ConnID, s Symbol, first bool) {
	h, ok := l.hist[id]
	if !ok || first {
		h = startHistory()
		l.info.Conns++
	}
	l.count(h, s)
	if s.Kind() == Close {
		delete(l.hist, id)
		return
	}
	l.hist[id] = h.push(s, l.cfg.Depth)
}

// count counts s after every suffix of h (lengths 0 to h.n).
func (l *Learner) count(h history, s Symbol) {
	for k := 0; k <= int(h.n); k++ {
		key := transKey{h.context(k), s}
		if c := l.counts[key]; c < math.MaxUint32 {
			l.counts[key] = c + 1
		}
	}
	l.info.Updates += int64(h.n) + 1
	l.info.Symbols++
	if s.Kind() == Tick {
		l.info.Ticks++
	}
}

// Info returns what has been learned so far.
func (l *Learner) Info() TrainInfo {
	i := l.info
	i.Transitions = len(l.counts)
	return i
}

// Model builds the model from the counts so far: contexts of length 1 or
// more seen fewer than MinCount times are pruned, every kept context's
// next-symbol counts are sorted by symbol. The learner may go on learning
// and build again.
func (l *Learner) Model() (*Model, error) {
	if len(l.counts) == 0 {
		return nil, errors.New("pfa: nothing learned (no symbols)")
	}
	type stat struct{ n, t, fill uint32 }
	stats := make(map[uint64]*stat)
	for k, c := range l.counts {
		st := stats[k.ctx]
		if st == nil {
			st = new(stat)
			stats[k.ctx] = st
		}
		st.n += c
		st.t++
	}
	info := l.Info()
	info.Contexts = len(stats)
	keys := make([]uint64, 0, len(stats))
	for k, st := range stats {
		if k == 0 || int(st.n) >= l.cfg.MinCount {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	m := &Model{cfg: l.cfg, Info: info, index: make(map[uint64]int32, len(keys)), ctxs: make([]ctxStat, len(keys))}
	off := uint32(0)
	for i, k := range keys {
		st := stats[k]
		m.index[k] = int32(i)
		m.ctxs[i] = ctxStat{key: k, n: st.n, t: st.t, off: off}
		st.fill = off
		off += st.t
	}
	m.syms = make([]Symbol, off)
	m.counts = make([]uint32, off)
	for k, c := range l.counts {
		if _, ok := m.index[k.ctx]; !ok {
			continue
		}
		st := stats[k.ctx]
		m.syms[st.fill], m.counts[st.fill] = k.sym, c
		st.fill++
	}
	type pair struct {
		s Symbol
		c uint32
	}
	var tmp []pair
	for _, c := range m.ctxs {
		tmp = tmp[:0]
		for j := c.off; j < c.off+c.t; j++ {
			tmp = append(tmp, pair{m.syms[j], m.counts[j]})
		}
		slices.SortFunc(tmp, func(a, b pair) int { return cmp.Compare(a.s, b.s) })
		for j, p := range tmp {
			m.syms[c.off+uint32(j)], m.counts[c.off+uint32(j)] = p.s, p.c
		}
	}
	return m, nil
}

// Learn learns a model from benign events (see Learner).
func Learn(events []Event, cfg ModelConfig) (*Model, error) {
	l, err := NewLearner(cfg)
	if err != nil {
		return nil, err
	}
	for _, ev := range events {
		if err := l.Observe(ev); err != nil {
			return nil, err
		}
	}
	return l.Model()
}
