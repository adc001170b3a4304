package slowrate

import (
	"testing"
	"time"

	rec "github.com/rampart-shield/rampart/probes/netio"
)

// TestHandoff: a server that accepts in one process and reads and writes
// in others (Kamailio's tcp_main, TCP readers and SIP workers) gives one
// stream per connection, named by the accepting process: nothing is
// ignored as begun before the watch, and every connection ends.
func TestHandoff(t *testing.T) {
	h := newHarness(t, Config{Train: time.Minute})
	const main, reader, worker = 7, 8, 9
	on := func(tgid uint32, cookie uint64, at int64, k rec.Kind, size int) rec.Event {
		e := h.evOn(cookie, at, k, size)
		e.TGID, e.TID = tgid, tgid
		return e
	}
	events := 0
	for i := range 50 {
		c := uint64(1000 + i)
		at := h.now + ms(float64(100*i))
		h.evs = append(h.evs,
			on(main, c, at, rec.Accept, 0),
			on(reader, c, at+ms(1), rec.Recv, 550),
			on(reader, c, at+ms(2), rec.Send, 340),
			on(worker, c, at+ms(3), rec.Send, 500),
			on(reader, c, at+ms(5), rec.Recv, 390),
			on(reader, c, at+ms(900), rec.Recv, 0),
			on(worker, c, at+ms(901), rec.Close, 0))
		events += 7
	}
	h.run(h.now + int64(10*time.Second))
	st := h.s.Status()
	if st.Ignored != 0 || len(h.s.conns) != 0 || len(h.s.tgidOf) != 0 {
		t.Errorf("%d connections ignored, %d still followed, %d cookies mapped; want none", st.Ignored, len(h.s.conns), len(h.s.tgidOf))
	}
	if got := st.TrainedEvents + int64(st.HeldOutEvents); got != int64(events) {
		t.Errorf("%d events learned or held out, want %d", got, events)
	}
	if got := st.TrainedConns + int64(st.HeldOutConns); got != 50 {
		t.Errorf("%d connections learned or held out, want 50", got)
	}
}
