package netio

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/probe"
	rec "github.com/rampart-shield/rampart/probes/netio"
)

// encode lays an event out as struct netio_event.
func encode(e rec.Event) []byte {
	b := make([]byte, rec.EventSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], e.Time)
	le.PutUint64(b[8:], e.Cookie)
	le.PutUint64(b[16:], e.Sock)
	le.PutUint32(b[24:], e.TGID)
	le.PutUint32(b[28:], e.TID)
	le.PutUint32(b[32:], uint32(e.Kind))
	le.PutUint32(b[36:], e.Size)
	le.PutUint16(b[40:], e.Family)
	le.PutUint16(b[42:], e.Proto)
	le.PutUint16(b[44:], e.Local.Port())
	le.PutUint16(b[46:], e.Remote.Port())
	if e.Local.IsValid() {
		a := e.Local.Addr().As16()
		copy(b[48:], a[:])
		a = e.Remote.Addr().As16()
		copy(b[64:], a[:])
	}
	le.PutUint32(b[80:], e.NetNS)
	b[84], b[85] = e.State, e.Flags
	return b
}

// fake starts a collector on a hand-fed stream.
func fake(t testing.TB, o Options) (*Collector, chan probe.Event) {
	t.Helper()
	if o.Window == 0 {
		o.Window = time.Millisecond
	}
	ch := make(chan probe.Event, 64)
	c := &Collector{opts: o, stop: make(chan struct{}), done: make(chan struct{}), cancel: func() {},
		conns: map[uint64]*Conn{}, open: map[uint32]map[uint64]*Conn{}, procs: map[uint32]*Process{},
		closed: Recent[uint64]{N: maxClosed}}
	if o.OnEvent == nil {
		c.out = make(chan []rec.Event, 64)
	}
	// The probe manager hands batches on; here each event is one.
	bch := make(chan []probe.Event, 64)
	go func() {
		defer close(bch)
		for e := range ch {
			bch <- []probe.Event{e}
		}
	}()
	go c.run(bch)
	t.Cleanup(func() { c.once.Do(func() { close(c.stop) }); <-c.done })
	return c, ch
}

func TestReorder(t *testing.T) {
	c, ch := fake(t, Options{Since: 50, Window: 2 * time.Millisecond})
	ms := uint64(time.Millisecond)
	lp := netip.MustParseAddrPort("127.0.0.1:80")
	rp := netip.MustParseAddrPort("127.0.0.1:4000")
	in := []rec.Event{
		{Time: 10, Kind: rec.Recv, Cookie: 9, TGID: 1, Size: 1}, // before Since: skipped
		{Time: 100 + 2*ms, Kind: rec.Recv, Cookie: 1, TGID: 1, Size: 5, Local: lp, Remote: rp},
		{Time: 100, Kind: rec.Accept, Cookie: 1, TGID: 1, Local: lp, Remote: rp}, // arrives after a later one
		{Time: 100 + 1*ms, Kind: rec.Send, Cookie: 1, TGID: 1, Size: 7, Local: lp, Remote: rp},
		{Time: 100 + 10*ms, Kind: rec.Recv, Cookie: 1, TGID: 2, TID: 20, Size: 3, Local: lp, Remote: rp}, // passes to process 2
	}
	for _, e := range in {
		ch <- probe.Event{Raw: encode(e)}
	}
	ch <- probe.Event{Raw: []byte{1, 2, 3}} // undecodable
	var got []rec.Event
	for len(got) < 4 {
		select {
		case e := <-c.Events():
			got = append(got, e)
		case <-time.After(2 * time.Second):
			t.Fatalf("got %d events", len(got))
		}
	}
	want := []rec.Kind{rec.Accept, rec.Send, rec.Recv, rec.Recv}
	for i, e := range got {
		if e.Kind != want[i] || (i > 0 && e.Time < got[i-1].Time) {
			t.Fatalf("event %d: %v; want kinds %v in time order", i, e, want)
		}
	}
	if c.skipped.Load() != 1 || c.decErr.Load() != 1 || c.late.Load() != 0 {
		t.Errorf("skipped %d, decode errors %d, late %d", c.skipped.Load(), c.decErr.Load(), c.late.Load())
	}
	if n := len(c.Open(1)); n != 0 {
		t.Errorf("process 1 still has %d sockets", n)
	}
	open := c.Open(2)
	if len(open) != 1 || open[0].RX != 8 || open[0].TX != 7 || open[0].How != rec.Accept || open[0].Remote != rp {
		t.Errorf("process 2's sockets: %+v", open)
	}
	// A late event (older than one already handed on) is delivered, counted.
	ch <- probe.Event{Raw: encode(rec.Event{Time: 100 + 5*ms, Kind: rec.Send, Cookie: 1, TGID: 2, Size: 1})}
	select {
	case e := <-c.Events():
		if e.Time != 100+5*ms || c.late.Load() != 1 {
			t.Errorf("late event %v, late %d", e, c.late.Load())
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the late event was not delivered")
	}
	// Close and exit.
	ch <- probe.Event{Raw: encode(rec.Event{Time: 200 * ms, Kind: rec.Recv, Cookie: 2, TGID: 2, Proto: rec.ProtoUDP, Size: 1, Local: lp, Remote: rp})}
	ch <- probe.Event{Raw: encode(rec.Event{Time: 201 * ms, Kind: rec.Close, Cookie: 1, TGID: 2, Local: lp, Remote: rp})}
	ch <- probe.Event{Raw: encode(rec.Event{Time: 202 * ms, Kind: rec.Listen, Cookie: 3, TGID: 2, Local: lp})}
	for i := 0; i < 3; i++ {
		<-c.Events()
	}
	if n := c.OpenCounts()[2]; n != 1 || len(c.Open(2)) != 2 {
		t.Errorf("after the close: %d open (%+v), want the UDP socket and the listener", n, c.Open(2))
	}
	ch <- probe.Event{Raw: encode(rec.Event{Time: 203 * ms, Kind: rec.Exit, TGID: 2, TID: 2})}
	<-c.Events()
	if len(c.Open(2)) != 0 {
		t.Errorf("sockets after the exit: %+v", c.Open(2))
	}
	if p, ok := c.Process(2); !ok || !p.Exited {
		t.Errorf("process 2: %+v %v", p, ok)
	}
	close(ch)
	select {
	case _, ok := <-c.Events():
		if ok {
			t.Error("an event after the stream ended")
		}
	case <-time.After(2 * time.Second):
		t.Error("Events did not close with the stream")
	}
}

func TestCallbackAndFilter(t *testing.T) {
	var got []rec.Event
	done := make(chan struct{})
	c, ch := fake(t, Options{
		Filter: func(e rec.Event) bool { return e.TGID == 7 },
		OnEvent: func(e rec.Event) {
			got = append(got, e)
			if len(got) == 2 {
				close(done)
			}
		},
	})
	if c.Events() != nil {
		t.Error("Events() with a callback")
	}
	for i, pid := range []uint32{7, 8, 7} {
		ch <- probe.Event{Raw: encode(rec.Event{Time: uint64(i + 1), Kind: rec.Send, TGID: pid, Cookie: 1})}
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatalf("callback got %v", got)
	}
	if c.skipped.Load() != 1 || got[0].Time != 1 || got[1].Time != 3 {
		t.Errorf("got %v, skipped %d", got, c.skipped.Load())
	}
}

// TestReadAfterClose: a read of the peer's end of stream can come after
// the socket's CLOSE (the kernel closes a socket that enters TIME-WAIT in
// softirq, while its owner's recvmsg is returning): it is delivered, but
// does not bring the socket back into the bookkeeping.
func TestReadAfterClose(t *testing.T) {
	c, ch := fake(t, Options{})
	lp := netip.MustParseAddrPort("127.0.0.1:80")
	rp := netip.MustParseAddrPort("127.0.0.1:4000")
	for i, e := range []rec.Event{
		{Kind: rec.Accept, Cookie: 5, TGID: 3, Local: lp, Remote: rp},
		{Kind: rec.Recv, Cookie: 5, TGID: 3, Size: 100, Local: lp, Remote: rp},
		{Kind: rec.Close, Cookie: 5, TGID: 3, Local: lp, Remote: rp},
		{Kind: rec.Recv, Cookie: 5, TGID: 3, Size: 0, Local: lp, Remote: rp},
	} {
		e.Time = uint64(i+1) * 1000
		ch <- probe.Event{Raw: encode(e)}
	}
	for range 4 {
		select {
		case <-c.Events():
		case <-time.After(2 * time.Second):
			t.Fatal("events not delivered")
		}
	}
	if open := c.Open(3); len(open) != 0 {
		t.Errorf("the closed socket is back: %+v", open)
	}
}
