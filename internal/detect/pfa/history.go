package pfa

import "math/bits"

// MaxDepth is the longest context a model may use: a context is packed
// in a uint64, 16 bits per symbol.
const MaxDepth = 4

// history is the last n symbols of a stream (n at most the model's
// depth), packed most recent first: symbol s is stored as s+1 in the low
// 16 bits, the one before it in the next 16, so a context of length k is
// the low 16k bits and contexts of different lengths never collide.
type history struct {
	key uint64
	n   uint8
}

// startHistory is the history before a stream's first symbol: Start.
func startHistory() history { return history{key: uint64(Start) + 1, n: 1} }

// mask returns the bits of a context of length k.
func mask(k int) uint64 {
	if k >= MaxDepth {
		return ^uint64(0)
	}
	return 1<<(16*uint(k)) - 1
}

// push appends s, keeping the last depth symbols.
func (h history) push(s Symbol, depth int) history {
	return history{key: (h.key<<16 | (uint64(s) + 1)) & mask(depth), n: uint8(min(int(h.n)+1, depth))}
}

// context returns the key of the context of length k (k <= h.n).
func (h history) context(k int) uint64 { return h.key & mask(k) }

// contextLen returns the length of a context key.
func contextLen(key uint64) int { return (bits.Len64(key) + 15) / 16 }

// decodeContext returns the symbols of a context key, oldest first.
func decodeContext(key uint64) []Symbol {
	n := contextLen(key)
	out := make([]Symbol, n)
	for i := range n {
		out[n-1-i] = Symbol(key>>(16*uint(i))&0xffff) - 1
	}
	return out
}

// encodeContext packs symbols (oldest first) as a context key; ok is
// false if one is not a valid symbol or there are more than MaxDepth.
func encodeContext(ss []Symbol) (key uint64, ok bool) {
	if len(ss) > MaxDepth {
		return 0, false
	}
	for _, s := range ss {
		if !s.Valid() {
			return 0, false
		}
		key = key<<16 | (uint64(s) + 1)
	}
	return key, true
}
