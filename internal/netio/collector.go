// Package netio collects the netio probe's socket events (probes/netio):
// it subscribes to the probe's event stream, decodes the records, puts them
// in time order and hands them to a channel or a callback, keeps the open
// sockets of every watched process with their peers, and names processes
// (comm, executable) for reports. Watch loads the probe and installs the
// targets in one call.
package netio

import (
	"container/heap"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rampart-shield/rampart/internal/probe"
	rec "github.com/rampart-shield/rampart/probes/netio"
)

// Options configure a Collector.
type Options struct {
	// Since skips events the kernel stamped earlier (CLOCK_MONOTONIC ns):
	// a new subscription first replays the stream's recent events, which
	// may predate this collector. 0 keeps them.
	Since uint64
	// Window is how far out of time order the ring buffer may hold events
	// (CPUs stamp and reserve records independently): an event is handed
	// on once one at least Window later has arrived, or when the stream
	// has been idle for Window. Default 1 ms.
	Window time.Duration
	// Buffer is the capacity of the Events channel (default 8192). When
	// the reader does not keep up the collector waits, and the probe
	// manager drops (and counts) what its subscription cannot hold.
	Buffer int
	// OnEvent, when set, receives every event in time order (from one
	// goroutine) instead of the Events channel.
	OnEvent func(rec.Event)
	// Filter, when set, drops events for which it returns false before
	// they are ordered, counted or kept (e.g. all but one server's).
	Filter func(rec.Event) bool
}

// Process names a process for reports. It is read from /proc when the
// collector first sees the process, so it stays known after it exits.
type Process struct {
	PID    uint32 `json:"pid"`
	Comm   string `json:"comm"`
	Exe    string `json:"exe,omitempty"`
	Exited bool   `json:"exited,omitempty"`
}

// Conn is one open socket of a process: a TCP connection or listening
// socket, or a UDP socket (whose Remote is zero unless it is connected).
type Conn struct {
	Cookie uint64         `json:"cookie"`
	Sock   uint64         `json:"sock"`
	TGID   uint32         `json:"pid"`
	Family uint16         `json:"family"`
	Proto  uint16         `json:"proto"`
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
	// How the collector learnt of it: Accept, Connect, Listen, or Recv
	// and Send for a socket first seen doing I/O.
	How     rec.Kind `json:"how"`
	Opened  uint64   `json:"opened_ns"`
	LastIO  uint64   `json:"last_io_ns,omitempty"`
	RX      uint64   `json:"rx_bytes"`
	TX      uint64   `json:"tx_bytes"`
	RXCalls uint64   `json:"rx_calls"`
	TXCalls uint64   `json:"tx_calls"`
}

// Stats count what the collector saw, delivered and lost.
type Stats struct {
	Delivered    uint64 `json:"delivered"`
	Skipped      uint64 `json:"skipped"` // before Since, or filtered out
	DecodeErrors uint64 `json:"decode_errors"`
	// Late counts events that arrived after a later one had been handed
	// on (beyond the reorder window); they are delivered anyway.
	Late uint64 `json:"late"`
	// StreamReceived and StreamLost are the probe manager's counts for the
	// stream (all its subscribers): lost = undecodable, or dropped for a
	// slow subscriber.
	StreamReceived uint64 `json:"stream_received"`
	StreamLost     uint64 `json:"stream_lost"`
	// Kernel is the probe's netio_stats (ring buffer full = Kernel.RingFull).
	Kernel    rec.Stats `json:"kernel"`
	Open      int       `json:"open"` // sockets in the bookkeeping
	Processes int       `json:"processes"`
}

// Collector reads one loaded netio probe.
type Collector struct {
	m      *probe.Manager
	name   string
	opts   Options
	out    chan []rec.Event // time-ordered batches
	events chan rec.Event   // Events: out one by one, started on first use
	evOnce sync.Once
	cancel func()
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	delivered, skipped, decErr, late atomic.Uint64

	mu    sync.Mutex
	conns map[uint64]*Conn            // by cookie
	open  map[uint32]map[uint64]*Conn // by owner
	procs map[uint32]*Process
	gone  []uint32 // exited processes, oldest first (bounded)
	// Recently closed sockets: a read can return (0, the peer's end of
	// stream) after the socket reached CLOSE (tcp_time_wait closes it
	// in softirq while the owner's recvmsg is still running), and must
	// not bring it back into the bookkeeping.
	closed Recent[uint64] // by cookie
}

// maxClosed is how many closed sockets the collector remembers.
const maxClosed = 1 << 14

// maxExited is how many exited processes keep their names.
const maxExited = 4096

// New subscribes to the event stream of the loaded netio probe `name`.
func New(m *probe.Manager, name string, o Options) (*Collector, error) {
	if m == nil {
		return nil, errors.New("netio: no probe manager")
	}
	if name == "" {
		name = rec.ProbeName
	}
	if o.Window <= 0 {
		o.Window = time.Millisecond
	}
	if o.Buffer <= 0 {
		o.Buffer = 8192
	}
	ch, cancel, err := m.SubscribeBatch(name, rec.StreamSockets)
	if err != nil {
		return nil, err
	}
	c := &Collector{m: m, name: name, opts: o, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{}),
		conns: map[uint64]*Conn{}, open: map[uint32]map[uint64]*Conn{}, procs: map[uint32]*Process{},
		closed: Recent[uint64]{N: maxClosed}}
	if o.OnEvent == nil {
		c.out = make(chan []rec.Event, max(1, o.Buffer/64))
	}
	go c.run(ch)
	return c, nil
}

// Probe is the name of the probe the collector reads.
func (c *Collector) Probe() string { return c.name }

// Batches delivers the events in time order, in batches (those ready at
// once); nil when Options.OnEvent is set. It closes when the collector
// stops (Close, or the probe unloaded). Use Batches or Events, not both.
func (c *Collector) Batches() <-chan []rec.Event { return c.out }

// Events is Batches one event at a time (one goroutine more in between:
// for consumers of low rates and tests).
func (c *Collector) Events() <-chan rec.Event {
	if c.out == nil {
		return nil
	}
	c.evOnce.Do(func() {
		c.events = make(chan rec.Event, c.opts.Buffer)
		go func() {
			defer close(c.events)
			for b := range c.out {
				for _, e := range b {
					c.events <- e
				}
			}
		}()
	})
	return c.events
}

// Done is closed when the collector has stopped.
func (c *Collector) Done() <-chan struct{} { return c.done }

// Close stops the collector (the probe stays loaded) and waits for it.
func (c *Collector) Close() {
	c.once.Do(func() { close(c.stop) })
	c.cancel()
	<-c.done
}

// Now is the kernel's event clock (CLOCK_MONOTONIC), in ns.
func Now() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// evHeap orders pending events by time, then by arrival.
type pending struct {
	ev  rec.Event
	seq uint64
}
type evHeap []pending

func (h evHeap) Len() int { return len(h) }
func (h evHeap) Less(i, j int) bool {
	if h[i].ev.Time != h[j].ev.Time {
		return h[i].ev.Time < h[j].ev.Time
	}
	return h[i].seq < h[j].seq
}
func (h evHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *evHeap) Push(x any)   { *h = append(*h, x.(pending)) }
func (h *evHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// maxPending bounds the reorder buffer: past it the oldest go out at once.
const maxPending = 1 << 16

func (c *Collector) run(ch <-chan []probe.Event) {
	defer close(c.done)
	if c.out != nil {
		defer close(c.out)
	}
	win := uint64(c.opts.Window)
	// The idle flush: armed only while events wait in the reorder buffer
	// (a ticker would wake the agent every Window on an idle host).
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	defer idle.Stop()
	var (
		h       evHeap
		seq     uint64
		newest  uint64
		lastOut uint64
		batch   []rec.Event
	)
	// flush moves the ready events out of the reorder buffer into batch,
	// then hands batch on; false when the collector is stopping.
	flush := func(upTo uint64, all bool) bool {
		for len(h) > 0 && (all || h[0].ev.Time+win <= upTo || len(h) > maxPending) {
			p := heap.Pop(&h).(pending)
			if p.ev.Time < lastOut {
				c.late.Add(1)
			} else {
				lastOut = p.ev.Time
			}
			c.account(p.ev)
			c.delivered.Add(1)
			if c.opts.OnEvent != nil {
				c.opts.OnEvent(p.ev)
				continue
			}
			batch = append(batch, p.ev)
		}
		if len(batch) == 0 {
			return true
		}
		select {
		case c.out <- batch:
			batch = nil // the consumer owns it now
			return true
		case <-c.stop:
			return false
		}
	}
	for {
		select {
		case <-c.stop:
			return
		case pb, ok := <-ch:
			if !ok {
				flush(0, true)
				return
			}
			for _, pe := range pb {
				e, err := rec.DecodeEvent(pe.Raw)
				if err != nil {
					c.decErr.Add(1)
					continue
				}
				if e.Time < c.opts.Since || (c.opts.Filter != nil && !c.opts.Filter(e)) {
					c.skipped.Add(1)
					continue
				}
				seq++
				heap.Push(&h, pending{ev: e, seq: seq})
				newest = max(newest, e.Time)
			}
			if !flush(newest, false) {
				return
			}
			if len(h) > 0 {
				idle.Reset(c.opts.Window)
			}
		case <-idle.C:
			// Idle for Window with events waiting: no later event will
			// come to release them.
			if len(ch) == 0 && !flush(0, true) {
				return
			}
			if len(h) > 0 {
				idle.Reset(c.opts.Window)
			}
		}
	}
}

// account keeps the open sockets per process, following the kernel's
// ownership: the owner is the last process that accepted, connected or did
// I/O on a socket.
func (c *Collector) account(e rec.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.Kind != rec.Exit {
		c.knowLocked(e.TGID)
	}
	switch e.Kind {
	case rec.Accept, rec.Connect, rec.Listen:
		cn := c.connLocked(e)
		cn.How = e.Kind
		cn.Local, cn.Remote = e.Local, e.Remote
	case rec.Recv, rec.Send:
		if c.closed.Has(e.Cookie) && c.conns[e.Cookie] == nil {
			return // straggling after its close
		}
		cn := c.connLocked(e)
		cn.LastIO = e.Time
		switch {
		case e.Size == 0: // the peer's end of stream
		case e.Kind == rec.Recv:
			cn.RX += uint64(e.Size)
			cn.RXCalls++
		default:
			cn.TX += uint64(e.Size)
			cn.TXCalls++
		}
	case rec.Close:
		if cn := c.conns[e.Cookie]; cn != nil {
			c.dropLocked(cn)
		}
		c.closed.Add(e.Cookie)
	case rec.Exit:
		// Its UDP sockets went with it; its TCP sockets are the kernel's
		// to finish (their CLOSE may still come, and is delivered).
		for _, cn := range c.open[e.TGID] {
			c.dropLocked(cn)
		}
		if p := c.procs[e.TGID]; p != nil && !p.Exited {
			p.Exited = true
			c.gone = append(c.gone, e.TGID)
			if len(c.gone) > maxExited {
				old := c.gone[0]
				c.gone = c.gone[1:]
				if p := c.procs[old]; p != nil && p.Exited {
					delete(c.procs, old)
				}
			}
		}
	}
}

// connLocked finds or creates the socket of e and makes e's process its
// owner.
func (c *Collector) connLocked(e rec.Event) *Conn {
	cn := c.conns[e.Cookie]
	if cn == nil {
		cn = &Conn{Cookie: e.Cookie, Sock: e.Sock, TGID: e.TGID, Family: e.Family, Proto: e.Proto, Local: e.Local, Remote: e.Remote, How: e.Kind, Opened: e.Time}
		c.conns[e.Cookie] = cn
	} else if cn.TGID != e.TGID {
		if o := c.open[cn.TGID]; o != nil {
			delete(o, cn.Cookie)
			if len(o) == 0 {
				delete(c.open, cn.TGID)
			}
		}
		cn.TGID = e.TGID
	}
	o := c.open[e.TGID]
	if o == nil {
		o = map[uint64]*Conn{}
		c.open[e.TGID] = o
	}
	o[e.Cookie] = cn
	return cn
}

func (c *Collector) dropLocked(cn *Conn) {
	delete(c.conns, cn.Cookie)
	if o := c.open[cn.TGID]; o != nil {
		delete(o, cn.Cookie)
		if len(o) == 0 {
			delete(c.open, cn.TGID)
		}
	}
}

func (c *Collector) knowLocked(tgid uint32) {
	if c.procs[tgid] == nil {
		c.procs[tgid] = ResolveProcess(tgid)
	}
}

// ResolveProcess reads a process's comm and executable from /proc (empty
// when it is gone).
func ResolveProcess(pid uint32) *Process {
	dir := "/proc/" + strconv.FormatUint(uint64(pid), 10)
	p := &Process{PID: pid}
	if b, err := os.ReadFile(dir + "/comm"); err == nil {
		p.Comm = strings.TrimSpace(string(b))
	}
	if exe, err := os.Readlink(dir + "/exe"); err == nil {
		p.Exe = exe
	}
	return p
}

// Process returns what the collector knows of a process it has seen.
func (c *Collector) Process(tgid uint32) (Process, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.procs[tgid]
	if p == nil {
		return Process{}, false
	}
	return *p, true
}

// Open returns the open sockets of a process (its listening sockets
// included), oldest first.
func (c *Collector) Open(tgid uint32) []Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Conn, 0, len(c.open[tgid]))
	for _, cn := range c.open[tgid] {
		out = append(out, *cn)
	}
	slices.SortFunc(out, func(a, b Conn) int {
		if a.Opened != b.Opened {
			if a.Opened < b.Opened {
				return -1
			}
			return 1
		}
		if a.Cookie < b.Cookie {
			return -1
		}
		return 1
	})
	return out
}

// OpenCounts returns how many connections and UDP sockets each process
// has open (listening sockets left out, as in the kernel's open gauge).
func (c *Collector) OpenCounts() map[uint32]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[uint32]int, len(c.open))
	for pid, o := range c.open {
		n := 0
		for _, cn := range o {
			if cn.How != rec.Listen {
				n++
			}
		}
		if n > 0 {
			out[pid] = n
		}
	}
	return out
}

// Counters reads the kernel's per-process counters (the procs map).
func (c *Collector) Counters() (map[uint32]rec.Proc, error) {
	raw, err := c.m.ReadRaw(c.name, rec.MapProcs)
	if err != nil {
		return nil, err
	}
	out := make(map[uint32]rec.Proc, len(raw))
	for _, e := range raw {
		pid, p, err := rec.DecodeProc(e.Key, e.Values)
		if err != nil {
			return nil, err
		}
		out[pid] = p
	}
	return out, nil
}

// KernelStats reads the probe's netio_stats.
func (c *Collector) KernelStats() (rec.Stats, error) {
	raw, err := c.m.ReadRaw(c.name, rec.MapStats)
	if err != nil {
		return rec.Stats{}, err
	}
	keys := make([][]byte, len(raw))
	vals := make([][][]byte, len(raw))
	for i, e := range raw {
		keys[i], vals[i] = e.Key, e.Values
	}
	return rec.DecodeStats(keys, vals)
}

// Lost is how many events never reached the collector: lost in the kernel
// (ring buffer full) or by the probe manager (slow subscriber, decoding).
func (c *Collector) Lost() uint64 {
	s := c.Stats()
	return s.Kernel.RingFull + s.StreamLost + s.DecodeErrors
}

// Stats reads the collector's counters with the stream's and the kernel's.
func (c *Collector) Stats() Stats {
	s := Stats{Delivered: c.delivered.Load(), Skipped: c.skipped.Load(), DecodeErrors: c.decErr.Load(), Late: c.late.Load()}
	if info, err := c.m.Get(c.name); err == nil {
		for _, ev := range info.Events {
			if ev.Name == rec.StreamSockets {
				s.StreamReceived, s.StreamLost = ev.Received, ev.Lost
			}
		}
	}
	if k, err := c.KernelStats(); err == nil {
		s.Kernel = k
	}
	c.mu.Lock()
	s.Open, s.Processes = len(c.conns), len(c.procs)
	c.mu.Unlock()
	return s
}

func (c *Collector) String() string {
	return fmt.Sprintf("netio collector on probe %s", c.name)
}
