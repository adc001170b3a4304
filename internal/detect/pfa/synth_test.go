package pfa

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// gen writes synthetic socket traces: benign HTTP-like server and client
// connections, Slowloris and slow-read attacks. Times are in ns.
type gen struct {
	r      *rand.Rand
	cookie uint64
}

func newGen(seed uint64) *gen { return &gen{r: rand.New(rand.NewPCG(seed, seed^0x5eed))} }

func dur(d time.Duration) int64 { return int64(d) }

// uniform returns a time in [lo, hi).
func (g *gen) uniform(lo, hi time.Duration) int64 {
	return int64(lo) + int64(g.r.Float64()*float64(hi-lo))
}

// logUniform returns a time log-uniform in [lo, hi).
func (g *gen) logUniform(lo, hi time.Duration) int64 {
	a, b := math.Log(float64(lo)), math.Log(float64(hi))
	return int64(math.Exp(a + g.r.Float64()*(b-a)))
}

func (g *gen) intn(lo, hi int) int { return lo + g.r.IntN(hi-lo+1) }

// conn starts a new connection of process tgid.
func (g *gen) conn(tgid uint32) ConnID {
	g.cookie++
	return ConnID{TGID: tgid, Cookie: g.cookie}
}

// split divides n bytes into k parts of at least 1 byte.
func (g *gen) split(n, k int) []int {
	k = max(1, min(k, n))
	parts := make([]int, k)
	left := n
	for i := range k - 1 {
		parts[i] = 1 + g.r.IntN(max(1, left-(k-i)))
		left -= parts[i]
	}
	parts[k-1] = left
	return parts
}

// benign returns one benign connection of process tgid beginning at t:
// 90% server connections (accept; 1-12 keep-alive requests of 200-800 B,
// a few split in two recvs and 10% with a 1-20 kB body; responses of
// 1-50 kB in 1-3 sends; idle gaps of up to 5 s; closed by the client or by
// a 5 s keep-alive timeout), 10% client connections (connect, request,
// response in 1-4 recvs, close).
func (g *gen) benign(tgid uint32, t int64) []Event {
	id := g.conn(tgid)
	pid := tgid + uint32(g.r.IntN(4))
	var evs []Event
	ev := func(k Kind, size int) { evs = append(evs, Event{Time: t, Conn: id, PID: pid, Kind: k, Size: size}) }
	if g.r.Float64() < 0.1 {
		ev(Connect, 0)
		t += g.logUniform(50*time.Microsecond, time.Millisecond)
		ev(Send, g.intn(100, 2000))
		t += g.logUniform(500*time.Microsecond, 200*time.Millisecond)
		for i, n := range g.split(g.intn(1000, 50000), g.intn(1, 4)) {
			if i > 0 {
				t += g.logUniform(10*time.Microsecond, 5*time.Millisecond)
			}
			ev(Recv, n)
		}
		t += g.logUniform(10*time.Microsecond, time.Millisecond)
		ev(Close, 0)
		return evs
	}
	ev(Accept, 0)
	nreq := 1
	switch u := g.r.Float64(); {
	case u < 0.02:
		nreq = 0 // a health check: connect and close
	default:
		for nreq < 12 && g.r.Float64() < 0.6 {
			nreq++
		}
	}
	for i := range nreq {
		switch {
		case i == 0:
			t += g.logUniform(100*time.Microsecond, 20*time.Millisecond)
		case g.r.Float64() < 0.6:
			t += g.logUniform(500*time.Microsecond, 100*time.Millisecond)
		default:
			t += g.uniform(100*time.Millisecond, 5*time.Second)
		}
		req := g.intn(200, 800)
		if g.r.Float64() < 0.05 {
			first := g.intn(50, req-50)
			ev(Recv, first)
			t += g.logUniform(100*time.Microsecond, 5*time.Millisecond)
			ev(Recv, req-first)
		} else {
			ev(Recv, req)
		}
		if g.r.Float64() < 0.1 {
			for _, n := range g.split(g.intn(1000, 20000), g.intn(1, 3)) {
				t += g.logUniform(50*time.Microsecond, 10*time.Millisecond)
				ev(Recv, n)
			}
		}
		t += g.logUniform(50*time.Microsecond, 50*time.Millisecond)
		for j, n := range g.split(g.intn(1000, 50000), g.intn(1, 3)) {
			if j > 0 {
				t += g.logUniform(10*time.Microsecond, 5*time.Millisecond)
			}
			ev(Send, n)
		}
	}
	if nreq == 0 || g.r.Float64() < 0.7 {
		t += g.uniform(10*time.Millisecond, 5*time.Second)
		if nreq == 0 {
			t = evs[0].Time + g.logUniform(time.Millisecond, 100*time.Millisecond)
		}
		ev(Recv, 0)
		t += g.logUniform(10*time.Microsecond, 500*time.Microsecond)
	} else {
		t += dur(5*time.Second) + g.uniform(0, 10*time.Millisecond)
	}
	ev(Close, 0)
	return evs
}

// slowloris returns a Slowloris connection beginning at t and lasting
// until end: accept, then a recv of 5-20 B every 5-15 s, never a send; the
// first recv is a partial header of first bytes (0: 5-20 B like the rest).
// It is closed at end.
func (g *gen) slowloris(tgid uint32, t, end int64, first int) []Event {
	id := g.conn(tgid)
	evs := []Event{{Time: t, Conn: id, PID: tgid, Kind: Accept}}
	t += g.logUniform(time.Millisecond, 50*time.Millisecond)
	if first == 0 {
		first = g.intn(5, 20)
	}
	for size := first; t < end; t += g.uniform(5*time.Second, 15*time.Second) {
		evs = append(evs, Event{Time: t, Conn: id, PID: tgid, Kind: Recv, Size: size})
		size = g.intn(5, 20)
	}
	return append(evs, Event{Time: end, Conn: id, PID: tgid, Kind: Close})
}

// slowRead returns a slow-read connection beginning at t and lasting until
// end: accept, a normal request, a first send that fills the socket
// buffer (16-64 kB), then a send of 32-1024 B every 1-2 s as the client
// opens its tiny window.
func (g *gen) slowRead(tgid uint32, t, end int64) []Event {
	id := g.conn(tgid)
	evs := []Event{{Time: t, Conn: id, PID: tgid, Kind: Accept}}
	t += g.logUniform(100*time.Microsecond, 20*time.Millisecond)
	evs = append(evs, Event{Time: t, Conn: id, PID: tgid, Kind: Recv, Size: g.intn(200, 800)})
	t += g.logUniform(50*time.Microsecond, 50*time.Millisecond)
	for size := g.intn(16384, 65536); t < end; t += g.uniform(time.Second, 2*time.Second) {
		evs = append(evs, Event{Time: t, Conn: id, PID: tgid, Kind: Send, Size: size})
		size = g.intn(32, 1024)
	}
	return append(evs, Event{Time: end, Conn: id, PID: tgid, Kind: Close})
}

// benignLoad returns n benign connections of tgid starting at random
// times in [t0, t0+span), merged in time order.
func (g *gen) benignLoad(tgid uint32, n int, t0 int64, span time.Duration) []Event {
	var evs []Event
	for range n {
		evs = append(evs, g.benign(tgid, t0+g.uniform(0, span))...)
	}
	sortEvents(evs)
	return evs
}

// benignConns returns n benign connections one after another (each a
// contiguous run of events; the learner and Calibrate take any
// interleaving).
func (g *gen) benignConns(tgid uint32, n int) []Event {
	var evs []Event
	t := int64(time.Hour)
	for range n {
		c := g.benign(tgid, t)
		evs = append(evs, c...)
		t = c[len(c)-1].Time + dur(time.Millisecond)
	}
	return evs
}

// sortEvents sorts by time, stably (a connection's events keep their
// order).
func sortEvents(evs []Event) {
	slices.SortStableFunc(evs, func(a, b Event) int { return cmp.Compare(a.Time, b.Time) })
}
