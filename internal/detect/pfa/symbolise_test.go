package pfa

import (
	"slices"
	"testing"
	"time"
)

func names(es []Emitted) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Sym.String()
	}
	return out
}

func times(es []Emitted) []time.Duration {
	out := make([]time.Duration, len(es))
	for i, e := range es {
		out[i] = time.Duration(e.Time)
	}
	return out
}

// An idle open connection emits a tick every second, at nominal times
// after its last event, with its idle time, and a State symbol when its
// age changes bucket; an event resets the ticks.
func TestTicksForIdleConnections(t *testing.T) {
	z, err := NewSymboliser(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	id := ConnID{TGID: 7, Cookie: 1}
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	var out []Emitted
	for _, ev := range []Event{
		{Time: 0, Conn: id, Kind: Accept},
		{Time: ms(1), Conn: id, Kind: Recv, Size: 10},
	} {
		if out, err = z.Observe(ev, out); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		now   int64
		event *Event
		want  []string
		at    []time.Duration
	}{
		{now: 0, want: []string{"accept", "recv:1-15B:gap<10ms", "state:age<1s:rx<128B"}}, // 1ms is an edge
		{now: ms(1001), want: nil}, // a tick is due at 1001ms: strictly before now only
		{now: ms(3500), want: []string{"tick:after-recv:idle<5s", "state:age<5s:rx<128B", "tick:after-recv:idle<5s", "tick:after-recv:idle<5s"},
			at: []time.Duration{1001 * time.Millisecond, 1001 * time.Millisecond, 2001 * time.Millisecond, 3001 * time.Millisecond}},
		{now: ms(6500), want: []string{"tick:after-recv:idle<5s", "tick:after-recv:idle<15s", "state:age<15s:rx<128B", "tick:after-recv:idle<15s"}},
		{now: ms(7200), event: &Event{Time: ms(7200), Conn: id, Kind: Send, Size: 100},
			want: []string{"tick:after-recv:idle<15s", "send:64-511B:gap<15s"}},
		{now: ms(8500), want: []string{"tick:after-send:idle<5s"}, at: []time.Duration{8200 * time.Millisecond}},
		{now: ms(8600), event: &Event{Time: ms(8600), Conn: id, Kind: Close}, want: []string{"close:gap<5s"}},
		{now: ms(20000), want: nil}, // closed: no more ticks
	}
	for i, st := range steps {
		if st.event != nil {
			out, err = z.Observe(*st.event, out[:0])
			if err != nil {
				t.Fatal(err)
			}
		} else if i > 0 {
			out = z.Advance(st.now, out[:0])
		}
		if got := names(out); !slices.Equal(got, st.want) {
			t.Errorf("step %d (now %v): symbols %q, want %q", i, time.Duration(st.now), got, st.want)
		}
		if st.at != nil && !slices.Equal(times(out), st.at) {
			t.Errorf("step %d: times %v, want %v", i, times(out), st.at)
		}
	}
	if z.Open() != 0 {
		t.Errorf("%d connections open after close", z.Open())
	}
}

// A connection's stream does not depend on how often Advance runs.
func TestStreamsIndependentOfAdvanceCadence(t *testing.T) {
	g := newGen(3)
	t0 := dur(time.Hour)
	evs := g.benignLoad(1, 300, t0, 60*time.Second)
	evs = append(evs, g.slowloris(1, t0+dur(10*time.Second), t0+dur(50*time.Second), 0)...)
	evs = append(evs, g.slowRead(1, t0+dur(20*time.Second), t0+dur(40*time.Second))...)
	sortEvents(evs)
	end := t0 + dur(90*time.Second)
	run := func(step time.Duration) map[ConnID][]Emitted {
		z, _ := NewSymboliser(0, 0)
		streams := make(map[ConnID][]Emitted)
		var buf []Emitted
		next := t0
		for _, ev := range evs {
			for step > 0 && next <= ev.Time {
				buf = z.Advance(next, buf)
				next += int64(step)
			}
			var err error
			if buf, err = z.Observe(ev, buf); err != nil {
				t.Fatal(err)
			}
		}
		buf = z.Advance(end, buf)
		for _, e := range buf {
			streams[e.Conn] = append(streams[e.Conn], e)
		}
		return streams
	}
	a, b := run(0), run(137*time.Millisecond)
	if len(a) != 302 || len(b) != len(a) {
		t.Fatalf("%d and %d streams, want 302", len(a), len(b))
	}
	ticks := 0
	for id, sa := range a {
		if !slices.Equal(sa, b[id]) {
			t.Fatalf("stream of %v differs:\n%q\n%q", id, names(sa), names(b[id]))
		}
		for _, e := range sa {
			if e.Sym.Kind() == Tick {
				ticks++
			}
		}
	}
	if ticks == 0 {
		t.Error("no ticks")
	}
}

func TestSymboliserEdges(t *testing.T) {
	id := ConnID{TGID: 1, Cookie: 9}
	s := int64(time.Second)
	z, err := NewSymboliser(time.Second, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var out []Emitted
	// A connection first seen mid-stream: unknown gap, marked first.
	out, _ = z.Observe(Event{Time: 10 * s, Conn: id, Kind: Send, Size: 1}, out)
	if len(out) != 1 || out[0].Sym.String() != "send:1-15B:gap?" || !out[0].First {
		t.Errorf("mid-stream start: %q first %v", names(out), len(out) > 0 && out[0].First)
	}
	// Silent past the idle expiry: the ticks up to it, then a new stream.
	out, _ = z.Observe(Event{Time: 20 * s, Conn: id, Kind: Recv, Size: 300}, out[:0])
	want := []string{"tick:after-send:idle<5s", "state:age<5s:rx0", "tick:after-send:idle<5s", "tick:after-send:idle<5s", "recv:64-511B:gap?", "state:age<1s:rx<1KB"}
	if got := names(out); !slices.Equal(got, want) || !out[4].First {
		t.Errorf("after expiry: %q, want %q (first %v)", got, want, out[4].First)
	}
	// An accept on a known socket starts a new stream.
	out, _ = z.Observe(Event{Time: 20*s + 1, Conn: id, Kind: Accept}, out[:0])
	if len(out) != 1 || out[0].Sym != EventSymbol(Accept, 0, 0) || !out[0].First {
		t.Errorf("accept on a known socket: %q", names(out))
	}
	// Advance forgets expired connections.
	if out = z.Advance(30*s, out[:0]); z.Open() != 0 {
		t.Errorf("%d open after expiry", z.Open())
	}
	for _, ev := range []Event{{Kind: Tick}, {Kind: 0}, {Kind: Recv, Size: -1}} {
		if _, err := z.Observe(ev, nil); err == nil {
			t.Errorf("event %+v accepted", ev)
		}
	}
	if _, err := NewSymboliser(time.Second, time.Millisecond); err == nil {
		t.Error("max idle below the tick accepted")
	}
}
