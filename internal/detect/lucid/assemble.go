package lucid

import (
	"github.com/rampart-shield/rampart/probes/ddosfeat"
)

// Session is the packets ddosfeat reported for one bidirectional session
// in one window, in arrival order.
type Session struct {
	Key     ddosfeat.SessionKey
	Packets []ddosfeat.PacketFeatures
	// FirstNs and LastNs are the first and latest packet times
	// (CLOCK_MONOTONIC, or capture time in a replay).
	FirstNs, LastNs uint64
}

// Assembler groups ddosfeat records into sessions, the unit the model
// classifies: a session is complete when it has N packets (ddosfeat sends
// at most n_packets per window) or when no record came for it for IdleNs.
// Live and replayed traffic go through the same assembler, so training and
// detection see the same samples.
type Assembler struct {
	N      int
	IdleNs uint64
	// Max bounds the open sessions; beyond it the oldest are completed
	// early (a flood of one-packet sessions from random sources).
	Max  int
	open map[ddosfeat.SessionKey]*Session
	fifo []ddosfeat.SessionKey
}

// NewAssembler returns an assembler for sessions of up to n packets.
func NewAssembler(n int, idleNs uint64, max int) *Assembler {
	if max <= 0 {
		max = 65536
	}
	return &Assembler{N: n, IdleNs: idleNs, Max: max, open: map[ddosfeat.SessionKey]*Session{}}
}

// Open is how many sessions are waiting for packets.
func (a *Assembler) Open() int { return len(a.open) }

// Add files one record. It returns the sessions completed by it: its own
// when it reached N packets, and the oldest open ones when there were more
// than Max.
func (a *Assembler) Add(p ddosfeat.PacketFeatures) []*Session {
	s := a.open[p.Session]
	if s == nil {
		s = &Session{Key: p.Session, FirstNs: p.TimestampNs}
		a.open[p.Session] = s
		a.fifo = append(a.fifo, p.Session)
	}
	s.Packets = append(s.Packets, p)
	if p.TimestampNs > s.LastNs {
		s.LastNs = p.TimestampNs
	}
	var done []*Session
	if len(s.Packets) >= a.N {
		delete(a.open, p.Session)
		done = append(done, s)
	}
	for len(a.open) > a.Max && len(a.fifo) > 0 {
		k := a.fifo[0]
		a.fifo = a.fifo[1:]
		if o := a.open[k]; o != nil {
			delete(a.open, k)
			done = append(done, o)
		}
	}
	a.compact()
	return done
}

// Flush completes the sessions idle since before nowNs-IdleNs (all of them
// when nowNs is 0), oldest first.
func (a *Assembler) Flush(nowNs uint64) []*Session {
	var done []*Session
	keep := a.fifo[:0]
	for _, k := range a.fifo {
		s := a.open[k]
		if s == nil {
			continue
		}
		if nowNs == 0 || s.LastNs+a.IdleNs <= nowNs {
			delete(a.open, k)
			done = append(done, s)
			continue
		}
		keep = append(keep, k)
	}
	a.fifo = keep
	return done
}

// compact drops keys of completed sessions from the front of the queue.
func (a *Assembler) compact() {
	i := 0
	for i < len(a.fifo) && a.open[a.fifo[i]] == nil {
		i++
	}
	if i > 0 {
		a.fifo = a.fifo[i:]
	}
	if cap(a.fifo) > 4*len(a.fifo)+1024 {
		a.fifo = append([]ddosfeat.SessionKey(nil), a.fifo...)
	}
}
