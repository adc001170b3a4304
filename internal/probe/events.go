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

// stream reads one ring buffer, decodes each record and fans it out to
// subscribers. A slow subscriber loses events (counted), never the agent.
type stream struct {
	probe    string
	cfg      EventStream
	dec      *btfjson.Decoder
	rd       *ringbuf.Reader
	received atomic.Uint64
	lost     atomic.Uint64
	seq      atomic.Uint64

	mu     sync.Mutex
	subs   map[int]chan Event
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
	s := &stream{probe: probe, cfg: cfg, dec: dec, rd: rd, subs: map[int]chan Event{}, done: make(chan struct{})}
	go s.run()
	return s, nil
}

func (s *stream) run() {
	defer close(s.done)
	var rec ringbuf.Record
	var buf []byte
	for {
		if err := s.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			s.lost.Add(1)
			continue
		}
		s.received.Add(1)
		var err error
		buf, err = s.dec.AppendJSON(buf[:0], rec.RawSample)
		if err != nil {
			s.lost.Add(1)
			continue
		}
		ev := Event{Probe: s.probe, Stream: s.cfg.Name, Seq: s.seq.Add(1), Time: time.Now().UnixNano(), Data: json.RawMessage(append([]byte(nil), buf...)),
			Raw: append([]byte(nil), rec.RawSample...)}
		s.publish(ev)
	}
}

func (s *stream) publish(ev Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recent) < s.cfg.Keep {
		s.recent = append(s.recent, ev)
	} else {
		s.recent[s.head] = ev
		s.head = (s.head + 1) % s.cfg.Keep
	}
	for _, ch := range s.subs {
		select {
		case ch <- ev:
		default:
			s.lost.Add(1)
		}
	}
}

// subscribe returns a channel that first replays the recent events.
func (s *stream) subscribe(ch chan Event) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.recent)
	for i := 0; i < n; i++ {
		ev := s.recent[(s.head+i)%n]
		select {
		case ch <- ev:
		default:
		}
	}
	id := s.nextID
	s.nextID++
	s.subs[id] = ch
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
