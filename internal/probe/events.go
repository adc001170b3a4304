package probe

import (
	"encoding/json"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/rampart-shield/rampart/internal/btfjson"
)

// stream reads one ring buffer and fans each record out to subscribers. A
// record is decoded to JSON only when a subscriber wants JSON (typed
// consumers take the raw bytes), and the recent ring keeps raw records,
// decoded when replayed. A slow subscriber loses events (counted), never the
// agent.
type stream struct {
	probe    string
	cfg      EventStream
	dec      *btfjson.Decoder
	rd       *ringbuf.Reader
	received atomic.Uint64
	lost     atomic.Uint64
	seq      atomic.Uint64

	mu     sync.Mutex
	subs   map[int]subscriber
	nextID int
	recent []Event // ring of the last cfg.Keep events
	head   int
	done   chan struct{} // closed when the reader goroutine has returned
	onLost func(n uint64)
}

func newStream(probe string, cfg EventStream, dec *btfjson.Decoder, m *ebpf.Map) (*stream, error) {
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		return nil, err
	}
	if cfg.Keep == 0 {
		cfg.Keep = 1024
	}
	s := &stream{probe: probe, cfg: cfg, dec: dec, rd: rd, subs: map[int]subscriber{}, done: make(chan struct{})}
	go s.run()
	return s, nil
}

type subscriber struct {
	ch    chan Event
	batch chan []Event // batch subscribers (Raw only): one send per batch
	raw   bool         // Raw only, no JSON
}

// maxBatch bounds the records read from the ring before they are handed
// on together.
const maxBatch = 512

// past is a deadline that has passed: a read with it does not block.
var past = time.Unix(1, 0)

func (s *stream) run() {
	defer close(s.done)
	var rec ringbuf.Record
	poll := s.cfg.PollInterval()
	for {
		if poll > 0 {
			s.rd.SetDeadline(time.Now().Add(poll))
		} else {
			s.rd.SetDeadline(time.Time{}) // block (the batch loop set one)
		}
		if err := s.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue // nothing pending at this poll
			}
			s.lost.Add(1)
			continue
		}
		// Whatever else is in the ring now goes with this record: one
		// allocation for the records' bytes and one hand-over per
		// subscriber per batch instead of per record (a goroutine
		// wake-up each, which cost more than the record).
		now := time.Now().UnixNano()
		// rec.Remaining, not the reader's AvailableBytes: that one reads
		// the ring without the reader's lock and faults once Close (an
		// unload) has unmapped it.
		guess := min(maxBatch, 1+rec.Remaining/max(1, len(rec.RawSample)+8))
		batch, buf := make([]Event, 0, guess), make([]byte, 0, len(rec.RawSample)*guess)
		// Never block in the batch: what is left may be only discarded
		// records (wake-ups), and the batch must go now.
		s.rd.SetDeadline(past)
		for {
			s.received.Add(1)
			off := len(buf)
			buf = append(buf, rec.RawSample...)
			batch = append(batch, Event{Probe: s.probe, Stream: s.cfg.Name, Seq: s.seq.Add(1), Time: now, Raw: buf[off:len(buf):len(buf)]})
			if len(batch) == maxBatch || rec.Remaining == 0 {
				break
			}
			if err := s.rd.ReadInto(&rec); err != nil {
				break
			}
		}
		s.publish(batch)
	}
}

// withJSON returns ev with Data decoded from Raw (ok false if it does not
// decode).
func (s *stream) withJSON(ev Event) (Event, bool) {
	if ev.Data != nil {
		return ev, true
	}
	b, err := s.dec.AppendJSON(nil, ev.Raw)
	if err != nil {
		return ev, false
	}
	ev.Data = json.RawMessage(b)
	return ev, true
}

// publish hands a batch of events to the subscribers (batch subscribers
// share the slice: none changes it).
func (s *stream) publish(evs []Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.subs {
		if sub.batch == nil {
			continue
		}
		select {
		case sub.batch <- evs:
		default:
			s.lost.Add(uint64(len(evs)))
		}
	}
	for _, ev := range evs {
		s.publishLocked(ev)
	}
}

func (s *stream) publishLocked(ev Event) {
	if len(s.recent) < s.cfg.Keep {
		s.recent = append(s.recent, ev)
	} else {
		s.recent[s.head] = ev
		s.head = (s.head + 1) % s.cfg.Keep
	}
	var full Event
	decoded, ok := false, false
	for _, sub := range s.subs {
		if sub.batch != nil {
			continue
		}
		out := ev
		if !sub.raw {
			if !decoded {
				full, ok = s.withJSON(ev)
				decoded = true
			}
			if !ok {
				s.lost.Add(1)
				continue
			}
			out = full
		}
		select {
		case sub.ch <- out:
		default:
			s.lost.Add(1)
		}
	}
}

// subscribeBatch registers a batch subscriber; its first batch replays
// the recent events.
func (s *stream) subscribeBatch(ch chan []Event) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.recent); n > 0 {
		replay := make([]Event, 0, n)
		for i := 0; i < n; i++ {
			replay = append(replay, s.recent[(s.head+i)%n])
		}
		ch <- replay // a new channel: room for it
	}
	id := s.nextID
	s.nextID++
	s.subs[id] = subscriber{batch: ch, raw: true}
	return func() {
		s.mu.Lock()
		delete(s.subs, id)
		s.mu.Unlock()
	}
}

// subscribe returns a channel that first replays the recent events.
func (s *stream) subscribe(ch chan Event, raw bool) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.recent)
	for i := 0; i < n; i++ {
		ev := s.recent[(s.head+i)%n]
		if !raw {
			var ok bool
			if ev, ok = s.withJSON(ev); !ok {
				continue
			}
		}
		select {
		case ch <- ev:
		default:
		}
	}
	id := s.nextID
	s.nextID++
	s.subs[id] = subscriber{ch: ch, raw: raw}
	return func() {
		s.mu.Lock()
		delete(s.subs, id)
		s.mu.Unlock()
	}
}

func (s *stream) info() EventInfo {
	return EventInfo{Name: s.cfg.Name, Map: s.cfg.Map, Type: s.dec.TypeName(), Received: s.received.Load(), Lost: s.lost.Load()}
}

func (s *stream) close() {
	s.rd.Close()
	<-s.done
}
