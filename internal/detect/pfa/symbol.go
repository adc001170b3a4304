package pfa

import (
	"fmt"
	"strings"
	"time"
)

// Symbol is one letter of the alphabet, packed in 15 bits:
//
//	bits 12-14  kind  (Kind: accept ... state; 0 is Start)
//	bits  9-11  size  bucket of a recv or send (SizeEdges); for a tick,
//	                  the kind of the connection's last event
//	bits  6-8   gap   bucket of the time since the connection's previous
//	                  event (GapEdges; GapUnknown for the first event seen
//	                  of a connection whose beginning was missed); for a
//	                  tick, the connection's idle time
//	bits  3-5   age   (state) bucket of the time since the connection
//	                  began (AgeEdges)
//	bits  0-2   rx    (state) bucket of the bytes received so far (RxEdges)
//
// Event symbols (accept, connect, recv, send, close) and ticks describe
// what happened and when; State symbols describe where the connection
// is: the symboliser emits one whenever the connection's (age, rx) pair
// changes bucket. Keeping the state out of the event symbols keeps the
// alphabet small (a benign connection in a rare state is surprising once,
// when it enters it, not at every later event) while "still receiving a
// header byte at 30 s" remains visible. Accept and Connect carry no
// fields, Close only its gap; every symbol has one canonical code (unused
// fields are 0).
type Symbol uint16

// Start is the symbol before a connection's first one: contexts at the
// beginning of a stream begin with it. It is never predicted.
const Start Symbol = 0

// Bucket edges of the alphabet. A value v falls into bucket i when
// edge[i-1] <= v < edge[i] (with the open ends below the first and above
// the last edge). Sizes and received bytes have their own bucket for 0.
var (
	// SizeEdges bucket a recv or send size: 0, 1-15, 16-63, 64-511,
	// 512-4095, 4096-32767, >=32768 bytes (7 buckets).
	SizeEdges = [...]int64{1, 16, 64, 512, 4096, 32768}
	// GapEdges bucket the time since the previous event (or a tick's idle
	// time): <1ms, <10ms, <100ms, <1s, <5s, <15s, >=15s (7 buckets).
	GapEdges = [...]time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond, time.Second, 5 * time.Second, 15 * time.Second}
	// AgeEdges bucket the time since the connection began: <1s, <5s,
	// <15s, <60s, >=60s (5 buckets).
	AgeEdges = [...]time.Duration{time.Second, 5 * time.Second, 15 * time.Second, time.Minute}
	// RxEdges bucket the bytes received so far: 0, 1-127, 128-1023,
	// 1024-8191, 8192-65535, >=65536 (6 buckets).
	RxEdges = [...]int64{1, 128, 1024, 8192, 65536}
)

// Numbers of buckets, and the gap bucket of a connection's first event
// when its beginning was not seen (no previous event).
const (
	SizeBuckets = len(SizeEdges) + 1
	GapBuckets  = len(GapEdges) + 1
	AgeBuckets  = len(AgeEdges) + 1
	RxBuckets   = len(RxEdges) + 1
	GapUnknown  = GapBuckets // 7
)

// AlphabetVersion names the symbol encoding and bucket edges; a model
// file records it and Load refuses a model built with another alphabet.
const AlphabetVersion = "netio-1"

// SymbolSpace is the number of codes (15 bits): smoothing backs off to
// the uniform distribution over them, so no symbol has probability 0.
const SymbolSpace = 1 << 15

const (
	kindShift = 12
	sizeShift = 9
	gapShift  = 6
	ageShift  = 3
	field     = 7 // a 3-bit field's mask
)

// bucket returns the bucket of v for edges.
func bucket[T int64 | time.Duration](v T, edges []T) int {
	for i, e := range edges {
		if v < e {
			return i
		}
	}
	return len(edges)
}

func sizeBucket(n int64) int        { return bucket(n, SizeEdges[:]) }
func gapBucket(d time.Duration) int { return bucket(d, GapEdges[:]) }
func ageBucket(d time.Duration) int { return bucket(d, AgeEdges[:]) }
func rxBucket(n int64) int          { return bucket(n, RxEdges[:]) }

// EventSymbol returns the symbol of an event kind (or of a tick: size is
// then the Kind of the last event) from its bucket numbers.
func EventSymbol(k Kind, size, gap int) Symbol {
	switch k {
	case Recv, Send, Tick:
		return Symbol(k)<<kindShift | Symbol(size&field)<<sizeShift | Symbol(gap&field)<<gapShift
	case Close:
		return Symbol(k)<<kindShift | Symbol(gap&field)<<gapShift
	}
	return Symbol(k&field) << kindShift
}

// StateSymbol returns the State symbol of an age and a received-bytes
// bucket.
func StateSymbol(age, rx int) Symbol {
	return Symbol(State)<<kindShift | Symbol(age&field)<<ageShift | Symbol(rx&field)
}

// Kind returns the symbol's kind (0 for Start).
func (s Symbol) Kind() Kind { return Kind(s >> kindShift & field) }

// Size returns the size bucket of a recv or send.
func (s Symbol) Size() int { return int(s >> sizeShift & field) }

// Gap returns the gap bucket (for a tick: the idle bucket).
func (s Symbol) Gap() int { return int(s >> gapShift & field) }

// Age returns the age bucket of a State symbol.
func (s Symbol) Age() int { return int(s >> ageShift & field) }

// Rx returns the received-bytes bucket of a State symbol.
func (s Symbol) Rx() int { return int(s & field) }

// After returns, for a tick, the kind of the connection's last event.
func (s Symbol) After() Kind { return Kind(s.Size()) }

// Valid reports whether s is a canonical code of the alphabet (Start
// included).
func (s Symbol) Valid() bool {
	if s >= SymbolSpace {
		return false
	}
	switch k := s.Kind(); k {
	case 0, Accept, Connect:
		return s == Symbol(k)<<kindShift
	case Recv, Send:
		return s == EventSymbol(k, s.Size(), s.Gap()) && s.Size() < SizeBuckets
	case Close:
		return s == EventSymbol(k, 0, s.Gap())
	case Tick:
		a := s.After()
		return s == EventSymbol(k, s.Size(), s.Gap()) && a >= Accept && a <= Send && s.Gap() < GapBuckets
	case State:
		return s == StateSymbol(s.Age(), s.Rx()) && s.Age() < AgeBuckets && s.Rx() < RxBuckets
	}
	return false
}

// String explains the symbol: "recv:64-511B:gap<10ms",
// "tick:after-recv:idle<5s", "state:age<15s:rx<128B", "close:gap<1ms",
// "accept", "^" (Start).
func (s Symbol) String() string {
	if !s.Valid() {
		return fmt.Sprintf("symbol(%#x)", uint16(s))
	}
	switch k := s.Kind(); k {
	case 0:
		return "^"
	case Accept, Connect:
		return k.String()
	case Recv, Send:
		return k.String() + ":" + sizeNames[s.Size()] + ":gap" + gapNames[s.Gap()]
	case Close:
		return "close:gap" + gapNames[s.Gap()]
	case Tick:
		return "tick:after-" + s.After().String() + ":idle" + gapNames[s.Gap()]
	default:
		return "state:age" + ageNames[s.Age()] + ":rx" + rxNames[s.Rx()]
	}
}

var (
	sizeNames = [...]string{"0B", "1-15B", "16-63B", "64-511B", "512-4095B", "4-32KB", ">=32KB"}
	gapNames  = [...]string{"<1ms", "<10ms", "<100ms", "<1s", "<5s", "<15s", ">=15s", "?"}
	ageNames  = [...]string{"<1s", "<5s", "<15s", "<60s", ">=60s"}
	rxNames   = [...]string{"0", "<128B", "<1KB", "<8KB", "<64KB", ">=64KB"}
)

// symbols formats a symbol sequence for explanations.
func symbols(ss []Symbol) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = s.String()
	}
	return strings.Join(parts, " ")
}
