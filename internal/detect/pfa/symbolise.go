package pfa

import (
	"fmt"
	"time"
)

// Defaults of the symboliser.
const (
	// DefaultTick is the tick interval: an idle connection emits a tick
	// symbol every second, so a connection that stalls keeps producing
	// evidence between its (rare) events.
	DefaultTick = time.Second
	// DefaultMaxIdle is how long a connection may stay silent before it
	// is forgotten (its close was lost); it also bounds its ticks.
	DefaultMaxIdle = 10 * time.Minute
)

// Emitted is one symbol of a connection's stream.
type Emitted struct {
	Conn ConnID
	// Time is the event's time or, for a tick, its nominal time: the
	// connection's last event plus a whole number of tick intervals.
	Time int64
	Sym  Symbol
	// PID is the thread of the event (0 for a tick).
	PID uint32
	// First marks the first symbol of a stream: the connection's accept
	// or connect, or the first event seen of a connection whose
	// beginning was missed (or that was forgotten and came back).
	First bool
}

// clock is the symboliser's state of one connection.
type clock struct {
	start    int64 // first event (accept, connect or the first seen)
	last     int64 // last event
	nextTick int64 // nominal time of the next tick
	rx       int64 // bytes received so far
	lastKind Kind
	state    Symbol // the last State emitted (initially age<1s, rx 0)
}

// begin starts a connection's clock at its first event.
func (c *clock) begin(ev Event, tick int64) {
	*c = clock{start: ev.Time, last: ev.Time, nextTick: ev.Time + tick, state: StateSymbol(0, 0)}
}

// changed returns the connection's State at t and whether it differs
// from the last one emitted (which it then becomes).
func (c *clock) changed(t int64) (Symbol, bool) {
	st := StateSymbol(ageBucket(time.Duration(max(0, t-c.start))), rxBucket(c.rx))
	if st == c.state {
		return st, false
	}
	c.state = st
	return st, true
}

// event returns the symbol of ev, and the connection's new State if it
// changed, and advances the clock. The connection's first event (first)
// must have gone through begin: its gap is unknown (Accept and Connect
// have none anyway). A Close has no State after it.
func (c *clock) event(ev Event, tick int64, first bool) (s, st Symbol, changed bool) {
	gap := GapUnknown
	if !first {
		gap = gapBucket(time.Duration(max(0, ev.Time-c.last)))
	}
	if ev.Kind == Recv {
		c.rx += int64(ev.Size)
	}
	s = EventSymbol(ev.Kind, sizeBucket(int64(ev.Size)), gap)
	c.last = max(c.last, ev.Time)
	c.nextTick = c.last + tick
	c.lastKind = ev.Kind
	if ev.Kind == Close {
		return s, 0, false
	}
	st, changed = c.changed(ev.Time)
	return s, st, changed
}

// tick returns the next tick due strictly before until (and before the
// connection expires), and the connection's new State if it changed, and
// schedules the next tick; ok is false when none is due.
func (c *clock) tick(until, tick, maxIdle int64) (t int64, s, st Symbol, changed, ok bool) {
	if c.nextTick >= until || c.nextTick > c.last+maxIdle {
		return 0, 0, 0, false, false
	}
	t = c.nextTick
	c.nextTick += tick
	s = EventSymbol(Tick, int(c.lastKind), gapBucket(time.Duration(t-c.last)))
	st, changed = c.changed(t)
	return t, s, st, changed, true
}

// expired reports whether the connection has been silent past maxIdle at
// now.
func (c *clock) expired(now, maxIdle int64) bool { return now-c.last > maxIdle }

// Symboliser turns events into per-connection symbol streams. Time only
// comes from its inputs: Observe takes the event's time, Advance the
// caller's clock; a connection's stream is the same whatever the cadence
// of Advance (ticks have nominal times; the ticks due before an event are
// emitted before it).
//
// The zero value is not usable; use NewSymboliser. It is not safe for
// concurrent use.
type Symboliser struct {
	tick, maxIdle int64
	conns         map[ConnID]*clock
}

// NewSymboliser returns a symboliser with the given tick interval and
// idle expiry (0: DefaultTick, DefaultMaxIdle).
func NewSymboliser(tick, maxIdle time.Duration) (*Symboliser, error) {
	if tick == 0 {
		tick = DefaultTick
	}
	if maxIdle == 0 {
		maxIdle = DefaultMaxIdle
	}
	if tick < time.Millisecond || maxIdle < tick {
		return nil, fmt.Errorf("pfa: tick %v must be at least 1ms and max idle %v at least the tick", tick, maxIdle)
	}
	return &Symboliser{tick: int64(tick), maxIdle: int64(maxIdle), conns: make(map[ConnID]*clock)}, nil
}

// Open returns the number of connections being followed.
func (z *Symboliser) Open() int { return len(z.conns) }

// Observe appends to out the symbols of ev: the ticks of its connection
// due before it (each followed by a State symbol when the connection's
// state changed), then its own (and its State). A Close ends the connection's stream; an
// Accept or Connect on a known connection starts a new one; a connection
// first seen on another kind starts mid-stream (its first gap is
// unknown). An invalid event is an error and changes nothing.
func (z *Symboliser) Observe(ev Event, out []Emitted) ([]Emitted, error) {
	if err := ev.check(); err != nil {
		return out, err
	}
	c, ok := z.conns[ev.Conn]
	if ok && c.expired(ev.Time, z.maxIdle) {
		out = z.tickConn(ev.Conn, c, ev.Time, out)
		ok = false
	}
	first := !ok || ev.Kind == Accept || ev.Kind == Connect
	if ok && !first {
		out = z.tickConn(ev.Conn, c, ev.Time, out)
	}
	if first {
		if c == nil {
			c = new(clock)
			z.conns[ev.Conn] = c
		}
		c.begin(ev, z.tick)
	}
	s, st, changed := c.event(ev, z.tick, first)
	out = append(out, Emitted{Conn: ev.Conn, Time: ev.Time, Sym: s, PID: ev.PID, First: first})
	if changed {
		out = append(out, Emitted{Conn: ev.Conn, Time: ev.Time, Sym: st, PID: ev.PID})
	}
	if ev.Kind == Close {
		delete(z.conns, ev.Conn)
	}
	return out, nil
}

// Advance appends the ticks due before now of every connection, and
// forgets the connections silent for longer than the idle expiry.
// Connections come in no particular order; each one's ticks in time
// order.
func (z *Symboliser) Advance(now int64, out []Emitted) []Emitted {
	for id, c := range z.conns {
		out = z.tickConn(id, c, now, out)
		if c.expired(now, z.maxIdle) {
			delete(z.conns, id)
		}
	}
	return out
}

func (z *Symboliser) tickConn(id ConnID, c *clock, until int64, out []Emitted) []Emitted {
	for {
		t, s, st, changed, ok := c.tick(until, z.tick, z.maxIdle)
		if !ok {
			return out
		}
		out = append(out, Emitted{Conn: id, Time: t, Sym: s})
		if changed {
			out = append(out, Emitted{Conn: id, Time: t, Sym: st})
		}
	}
}
