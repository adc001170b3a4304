package pfa

import (
	"math"
	"slices"
	"unsafe"
)

// Model is a probabilistic suffix automaton of bounded depth: for each
// kept context (the last 0 to Depth symbols of a connection's stream) the
// counts of the symbols that followed it in benign traces. Its states are
// the contexts; reading a symbol moves to the longest kept suffix of the
// context extended by it. Probabilities are Witten-Bell smoothed (see
// Prob), so every symbol after every context has a nonzero probability.
//
// A Model is read-only once built, and safe for concurrent use.
type Model struct {
	// Name and Version identify the model (free text).
	Name    string
	Version string
	// Info describes the training run.
	Info TrainInfo
	// Calibration holds the window and the threshold of the per-connection
	// score (set by Calibrate); a Detector needs a threshold.
	Calibration Calibration

	cfg    ModelConfig
	index  map[uint64]int32 // context key -> ctxs index
	ctxs   []ctxStat        // sorted by key
	syms   []Symbol         // next symbols of every context, sorted within each
	counts []uint32         // and their counts
}

// ctxStat is one kept context: n symbols followed it, t distinct ones,
// stored at syms[off:off+t].
type ctxStat struct {
	key  uint64
	n, t uint32
	off  uint32
}

// TrainInfo describes what a model was learned from.
type TrainInfo struct {
	Events  int64 `json:"events"`  // events read
	Symbols int64 `json:"symbols"` // symbols learned (ticks included)
	Ticks   int64 `json:"ticks"`   // tick symbols among them
	Conns   int64 `json:"conns"`   // streams (connections)
	// Updates is the number of count increments: (Depth+1) per symbol
	// at most, which makes learning linear.
	Updates int64 `json:"updates"`
	// Contexts and Transitions are the distinct contexts and (context,
	// symbol) pairs counted, before pruning.
	Contexts    int `json:"contexts"`
	Transitions int `json:"transitions"`
}

// Config returns the model's learning parameters (defaults applied).
func (m *Model) Config() ModelConfig { return m.cfg }

// Depth returns the longest context.
func (m *Model) Depth() int { return m.cfg.Depth }

// Stats is the size of a model.
type Stats struct {
	// States is the number of contexts kept (the automaton's states).
	States int `json:"states"`
	// Transitions is the number of (context, next symbol) counts kept.
	Transitions int `json:"transitions"`
	// PerOrder counts the states by context length (0 to Depth).
	PerOrder []int `json:"per_order"`
	// Bytes is the model's approximate size in memory.
	Bytes int `json:"bytes"`
}

// Stats returns the size of the model.
func (m *Model) Stats() Stats {
	st := Stats{States: len(m.ctxs), Transitions: len(m.syms), PerOrder: make([]int, m.cfg.Depth+1)}
	for _, c := range m.ctxs {
		st.PerOrder[contextLen(c.key)]++
	}
	// The index is a Swiss-table map: a 12-byte slot plus a control
	// byte per entry, at a 7/8 load.
	st.Bytes = len(m.ctxs)*int(unsafe.Sizeof(ctxStat{})) + len(m.index)*13*8/7 +
		len(m.syms)*int(unsafe.Sizeof(Symbol(0))) + len(m.counts)*4
	return st
}

// count returns how often s followed context c.
func (m *Model) count(c *ctxStat, s Symbol) uint32 {
	if i, ok := slices.BinarySearch(m.syms[c.off:c.off+c.t], s); ok {
		return m.counts[c.off+uint32(i)]
	}
	return 0
}

// prob is the smoothed probability of s after history h.
func (m *Model) prob(h history, s Symbol) float64 {
	p := 1.0 / SymbolSpace
	n := min(int(h.n), m.cfg.Depth)
	for k := 0; k <= n; k++ {
		i, ok := m.index[h.context(k)]
		if !ok {
			break // longer contexts were seen no more often: pruned too
		}
		c := &m.ctxs[i]
		p = (float64(m.count(c, s)) + float64(c.t)*p) / float64(c.n+c.t)
	}
	return p
}

// Prob returns the probability of s as the next symbol of a connection
// whose stream so far is stream (oldest first; empty for its first
// symbol): the Witten-Bell interpolation of the kept contexts, from the
// empty one up to the longest suffix of Start+stream of at most Depth
// symbols,
//
//	P_k(s) = (c_k(s) + T_k·P_{k-1}(s)) / (N_k + T_k)
//
// where N_k symbols (T_k distinct) followed the context of length k, s
// c_k(s) times, and P_{-1} is uniform over SymbolSpace. An unseen context
// leaves the shorter one's estimate. The result is never 0: a symbol
// never seen after a context gets the escape mass T_k/(N_k+T_k) times its
// lower-order probability.
func (m *Model) Prob(stream []Symbol, s Symbol) float64 {
	h := startHistory()
	for _, x := range stream[max(0, len(stream)-m.cfg.Depth):] {
		h = h.push(x, m.cfg.Depth)
	}
	return m.prob(h, s)
}

// Surprisal returns -log2 Prob(stream, s), in bits.
func (m *Model) Surprisal(stream []Symbol, s Symbol) float64 {
	return -math.Log2(m.Prob(stream, s))
}
