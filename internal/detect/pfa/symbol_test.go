package pfa

import (
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	for _, c := range []struct {
		name string
		got  int
		want int
	}{
		{"size 0", sizeBucket(0), 0},
		{"size 1", sizeBucket(1), 1},
		{"size 15", sizeBucket(15), 1},
		{"size 16", sizeBucket(16), 2},
		{"size 511", sizeBucket(511), 3},
		{"size 512", sizeBucket(512), 4},
		{"size 32767", sizeBucket(32767), 5},
		{"size 1M", sizeBucket(1 << 20), 6},
		{"gap 0", gapBucket(0), 0},
		{"gap 999us", gapBucket(999 * time.Microsecond), 0},
		{"gap 1ms", gapBucket(time.Millisecond), 1},
		{"gap 99ms", gapBucket(99 * time.Millisecond), 2},
		{"gap 1s", gapBucket(time.Second), 4},
		{"gap 4.9s", gapBucket(4900 * time.Millisecond), 4},
		{"gap 5s", gapBucket(5 * time.Second), 5},
		{"gap 15s", gapBucket(15 * time.Second), 6},
		{"gap 1h", gapBucket(time.Hour), 6},
		{"age 0", ageBucket(0), 0},
		{"age 1s", ageBucket(time.Second), 1},
		{"age 59s", ageBucket(59 * time.Second), 3},
		{"age 60s", ageBucket(time.Minute), 4},
		{"rx 0", rxBucket(0), 0},
		{"rx 127", rxBucket(127), 1},
		{"rx 128", rxBucket(128), 2},
		{"rx 64K", rxBucket(65536), 5},
	} {
		if c.got != c.want {
			t.Errorf("%s: bucket %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestSymbolString(t *testing.T) {
	for _, c := range []struct {
		s    Symbol
		want string
	}{
		{Start, "^"},
		{EventSymbol(Accept, 3, 2), "accept"}, // fields dropped
		{EventSymbol(Connect, 0, 0), "connect"},
		{EventSymbol(Recv, 3, 1), "recv:64-511B:gap<10ms"},
		{EventSymbol(Send, 6, 0), "send:>=32KB:gap<1ms"},
		{EventSymbol(Recv, 0, GapUnknown), "recv:0B:gap?"},
		{EventSymbol(Close, 5, 5), "close:gap<15s"},
		{EventSymbol(Tick, int(Recv), 4), "tick:after-recv:idle<5s"},
		{StateSymbol(2, 1), "state:age<15s:rx<128B"},
		{StateSymbol(4, 5), "state:age>=60s:rx>=64KB"},
		{Symbol(0x7fff), "symbol(0x7fff)"},
	} {
		if got := c.s.String(); got != c.want {
			t.Errorf("%#x: String() = %q, want %q", uint16(c.s), got, c.want)
		}
	}
}

// Every valid code is the canonical form of its fields, the alphabet is
// small, and the field accessors read back what was packed.
func TestSymbolValid(t *testing.T) {
	n := 0
	for code := range SymbolSpace {
		s := Symbol(code)
		if !s.Valid() {
			continue
		}
		n++
		var back Symbol
		switch s.Kind() {
		case State:
			back = StateSymbol(s.Age(), s.Rx())
		default:
			back = EventSymbol(s.Kind(), s.Size(), s.Gap())
		}
		if back != s {
			t.Errorf("%v (%#x) repacks as %#x", s, code, uint16(back))
		}
	}
	// Start, accept, connect; recv and send 7 sizes x 8 gaps; close 8
	// gaps; ticks after 4 kinds x 7 idle buckets; states 5 ages x 6 rx.
	if want := 3 + 2*7*8 + 8 + 4*7 + 5*6; n != want {
		t.Errorf("%d valid symbols, want %d", n, want)
	}
	for _, s := range []Symbol{Symbol(SymbolSpace), EventSymbol(Tick, int(Close), 1), EventSymbol(Tick, int(Send), GapUnknown),
		EventSymbol(Recv, 7, 0), StateSymbol(5, 0), StateSymbol(0, 6), Symbol(Accept)<<kindShift | 1} {
		if s.Valid() {
			t.Errorf("%#x is valid", uint16(s))
		}
	}
}
