package slowrate

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/internal/detect/pfa"
	"github.com/rampart-shield/rampart/internal/netio"
	"github.com/rampart-shield/rampart/internal/respond/sockets"
	rec "github.com/rampart-shield/rampart/probes/netio"
)

// fakeSource stands for a collector; the tests drive the service by hand.
type fakeSource struct{ ch chan []rec.Event }

func (f fakeSource) Batches() <-chan []rec.Event              { return f.ch }
func (f fakeSource) Process(uint32) (netio.Process, bool)     { return netio.Process{Comm: "httpd"}, true }
func (f fakeSource) Stats() netio.Stats                       { return netio.Stats{} }
func ms(d float64) int64                                      { return int64(d * 1e6) }
func addr(s string) netip.AddrPort                            { return netip.MustParseAddrPort(s) }
func (h *harness) ev(t int64, k rec.Kind, size int) rec.Event { return h.evOn(h.cookie, t, k, size) }

var server = addr("10.0.0.1:80")

// harness feeds synthetic socket traffic of a prefork server (workers
// 100-115) to a service on a simulated clock.
type harness struct {
	t      *testing.T
	s      *Service
	now    int64
	cookie uint64
	rnd    *rand.Rand
	evs    []rec.Event // pending, sorted before delivery
	alerts []alert.Alert
	stall  map[uint64]bool // cookies whose send queue is full
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, now: int64(time.Hour), rnd: rand.New(rand.NewPCG(1, 2)), stall: map[uint64]bool{}}
	h.s = &Service{Name: "web", Collector: fakeSource{ch: make(chan []rec.Event)}, Config: cfg,
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnAlert: func(a alert.Alert) { h.alerts = append(h.alerts, a) },
		Queues: func(int) (map[uint64]sockets.Queue, error) {
			q := map[uint64]sockets.Queue{}
			for c := range h.stall {
				q[c] = sockets.Queue{Send: 30000, State: sockets.StateEstablished}
			}
			return q, nil
		}}
	h.s.clock = func() int64 { return h.now }
	if err := h.s.init(); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) evOn(cookie uint64, t int64, k rec.Kind, size int) rec.Event {
	remote := addr("192.0.2.10:40000")
	if cookie >= 1<<20 {
		remote = addr("203.0.113.66:50000")
	}
	remote = netip.AddrPortFrom(remote.Addr(), remote.Port()+uint16(cookie%10000))
	return rec.Event{Time: uint64(t), TGID: 100 + uint32(cookie%16), TID: 100 + uint32(cookie%16), Cookie: cookie,
		Kind: k, Size: uint32(size), Family: rec.AFInet, Proto: rec.ProtoTCP, Local: server, Remote: remote}
}

// benign adds one benign connection starting at t: 1-6 requests of
// 150-600 B, responses of 100 B-200 kB in 1-4 sends, keep-alive think
// times of 5-800 ms, then a close by either side.
func (h *harness) benign(t int64) {
	h.cookie++
	c := h.cookie
	add := func(k rec.Kind, size int) { h.evs = append(h.evs, h.evOn(c, t, k, size)) }
	add(rec.Accept, 0)
	n := 1 + h.rnd.IntN(6)
	for i := range n {
		if i > 0 {
			t += ms(5 + 795*h.rnd.Float64())
		} else {
			t += ms(0.05)
		}
		add(rec.Recv, 150+h.rnd.IntN(450))
		t += ms(0.1 + 5*h.rnd.Float64())
		sends := 1 + h.rnd.IntN(4)
		for range sends {
			add(rec.Send, 100+h.rnd.IntN(50000))
			t += ms(0.2 * h.rnd.Float64())
		}
	}
	t += ms(0.2)
	add(rec.Close, 0)
	if h.rnd.IntN(2) == 0 {
		t += ms(0.1)
		add(rec.Recv, 0) // straggling after the close, as with a TIME-WAIT
	}
}

// run delivers the pending events up to until, advancing every 250 ms.
func (h *harness) run(until int64) {
	slices.SortStableFunc(h.evs, func(a, b rec.Event) int { return int(int64(a.Time) - int64(b.Time)) })
	for h.now < until {
		next := h.now + ms(250)
		i := 0
		for i < len(h.evs) && int64(h.evs[i].Time) < next-int64(h.s.Config.Lag) {
			h.s.event(h.evs[i])
			i++
		}
		h.evs = h.evs[i:]
		h.now = next
		h.s.advance()
	}
}

// load adds benign connections at rate per second over [from, to).
func (h *harness) load(from, to int64, rate float64) {
	for t := from; t < to; t += int64(h.rnd.ExpFloat64() / rate * 1e9) {
		h.benign(t)
	}
}

func (h *harness) pfaAlerts(kind string) []alert.Alert {
	var out []alert.Alert
	for _, a := range h.alerts {
		if a.Detector == pfa.Name && (kind == "" || a.Kind == kind) {
			out = append(out, a)
		}
	}
	return out
}

func trained(t *testing.T, cfg Config) *harness {
	cfg.Train = 60 * time.Second
	if cfg.Limit == 0 {
		cfg.Limit = 16
	}
	h := newHarness(t, cfg)
	start := h.now
	h.load(start, start+int64(70*time.Second), 40)
	h.run(start + int64(65*time.Second))
	st := h.s.Status()
	if st.Phase != PhaseDetecting || st.Model == nil {
		t.Fatalf("still %s after 65 s: %+v", st.Phase, st)
	}
	// Reads straggling after a close neither count as connections begun
	// before the watch nor stay open.
	if st.Ignored != 0 || len(h.s.conns) > 150 {
		t.Errorf("after training: %d ignored, %d followed", st.Ignored, len(h.s.conns))
	}
	return h
}

func TestTrainDetectSlowloris(t *testing.T) {
	h := trained(t, Config{})
	st := h.s.Status()
	t.Logf("model %+v threshold %.2f", st.Model.Stats, st.Model.Threshold)
	if st.Model.Threshold < DefaultMinThreshold {
		t.Errorf("threshold %.2f below the floor %v", st.Model.Threshold, DefaultMinThreshold)
	}
	// Benign traffic goes on: no alert.
	t0 := h.now
	h.load(t0, t0+int64(60*time.Second), 40)
	h.run(t0 + int64(30*time.Second))
	if n := len(h.alerts); n != 0 {
		t.Fatalf("%d alerts on benign traffic: %s", n, h.alerts[0].Summary)
	}
	// Slowloris: 12 connections from one address, a header line every 10 s.
	atk := h.now
	for i := range 12 {
		c := uint64(1<<20 + i)
		at := atk + ms(float64(20*i))
		h.evs = append(h.evs, h.evOn(c, at, rec.Accept, 0), h.evOn(c, at+ms(0.1), rec.Recv, 240))
		for k := 1; k < 4; k++ {
			h.evs = append(h.evs, h.evOn(c, at+int64(k)*int64(10*time.Second), rec.Recv, 20))
		}
	}
	h.run(atk + int64(5*time.Second))
	al := h.pfaAlerts("slowloris")
	if len(al) == 0 {
		t.Fatalf("slowloris not detected: %+v", h.s.Status())
	}
	first := al[0]
	if first.Suggested != "close-sockets" || first.Subject.PID < 100 || !strings.HasPrefix(first.Subject.Conn, "203.0.113.66:") || !strings.HasSuffix(first.Subject.Conn, "->10.0.0.1:80") {
		t.Errorf("alert subject %+v, suggested %q", first.Subject, first.Suggested)
	}
	var blocks int
	for _, a := range h.alerts {
		if a.Suggested == "block" {
			blocks++
			if len(a.Subject.Sources) != 1 || a.Subject.Sources[0] != "203.0.113.66" {
				t.Errorf("block of %v", a.Subject.Sources)
			}
		}
	}
	if blocks != 1 {
		t.Errorf("%d block alerts, want 1", blocks)
	}
	// Every attack connection is named once (anomalous, or cut off with
	// its source), no benign one.
	conns := map[string]bool{}
	for _, a := range h.pfaAlerts("") {
		if a.Suggested != "close-sockets" {
			continue
		}
		if !strings.HasPrefix(a.Subject.Conn, "203.0.113.66:") {
			t.Errorf("benign connection alerted: %s", a.Summary)
		}
		conns[a.Subject.Conn] = true
	}
	if len(conns) != 12 {
		t.Errorf("%d attack connections alerted, want 12", len(conns))
	}
	// A new connection from the condemned source is cut off at accept.
	n := len(h.alerts)
	c := uint64(1<<20 + 99)
	h.evs = append(h.evs, h.evOn(c, h.now+ms(10), rec.Accept, 0))
	h.run(h.now + ms(500))
	if len(h.alerts) != n+1 || !strings.Contains(h.alerts[n].Summary, "cut off") {
		t.Errorf("new connection from the blocked source: %d alerts after %d", len(h.alerts), n)
	}
}

// TestDetectionLatency measures, on the simulated clock, the time from
// the first Slowloris and slow-read connection to the verdict.
func TestDetectionLatency(t *testing.T) {
	for _, kind := range []string{"slowloris", "slow-read"} {
		t.Run(kind, func(t *testing.T) {
			h := trained(t, Config{})
			var at int64
			h.s.OnVerdict = func(v pfa.Verdict) {
				if at == 0 {
					at = v.Time
				}
			}
			atk := h.now + ms(100)
			for i := range 12 {
				c := uint64(1<<20 + i)
				s := atk + ms(float64(20*i))
				h.evs = append(h.evs, h.evOn(c, s, rec.Accept, 0))
				if kind == "slowloris" {
					h.evs = append(h.evs, h.evOn(c, s+ms(0.1), rec.Recv, 240))
				} else {
					h.evs = append(h.evs, h.evOn(c, s+ms(0.1), rec.Recv, 834), h.evOn(c, s+ms(0.3), rec.Send, 30528))
					h.stall[c] = true
				}
			}
			h.run(atk + int64(4*time.Second))
			if at == 0 {
				t.Fatalf("%s not detected: %+v", kind, h.s.Status())
			}
			lat := time.Duration(at - atk)
			t.Logf("%s: verdict %v after the first connection", kind, lat)
			if lat > 2*time.Second {
				t.Errorf("%s detected after %v, want <= 2 s", kind, lat)
			}
			if kind == "slow-read" && h.s.Status().Stalls == 0 {
				t.Error("no stalled send seen")
			}
		})
	}
}

func TestModelFilesAndReload(t *testing.T) {
	dir := t.TempDir()
	h := trained(t, Config{OutDir: dir})
	for _, f := range []string{"conn-model.json", "conn-stats.json", "conn-verdicts.jsonl"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("out dir: %v", err)
		}
	}
	f, err := os.Open(filepath.Join(dir, "conn-model.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := pfa.Load(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if m.Stats().States != h.s.Model().Stats().States || m.Stats().Transitions != h.s.Model().Stats().Transitions {
		t.Errorf("reloaded model %+v, trained %+v", m.Stats(), h.s.Model().Stats())
	}
	// Detecting at once with the loaded model.
	h2 := newHarness(t, Config{Model: m, Limit: 16})
	if st := h2.s.Status(); st.Phase != PhaseDetecting {
		t.Fatalf("with a model: phase %s", st.Phase)
	}
	// A connection open before the watch is not followed.
	h2.evs = append(h2.evs, h2.evOn(7, h2.now+ms(1), rec.Recv, 300))
	h2.run(h2.now + ms(500))
	if st := h2.s.Status(); st.Ignored != 1 || st.Detector.Events != 0 {
		t.Errorf("mid-stream connection: ignored %d, detector events %d", st.Ignored, st.Detector.Events)
	}
}

func TestConvert(t *testing.T) {
	e := rec.Event{Time: 5, TGID: 1, TID: 2, Cookie: 3, Kind: rec.Send, Size: 10, Proto: rec.ProtoTCP}
	if ev, ok := Convert(e); !ok || ev.Kind != pfa.Send || ev.Size != 10 || ev.PID != 2 || ev.Conn != (pfa.ConnID{TGID: 1, Cookie: 3}) {
		t.Errorf("convert %+v -> %+v %v", e, ev, ok)
	}
	for _, e := range []rec.Event{{Kind: rec.Listen, Proto: rec.ProtoTCP}, {Kind: rec.Exit}, {Kind: rec.Recv, Proto: rec.ProtoUDP}} {
		if _, ok := Convert(e); ok {
			t.Errorf("%v converted", e)
		}
	}
	n := 0
	for c := range uint64(10000) {
		if heldOutConn(pfa.ConnID{TGID: 9, Cookie: c}, 0.2) {
			n++
		}
	}
	if n < 1800 || n > 2200 {
		t.Errorf("held out %d of 10000, want about 2000", n)
	}
	if err := (&Config{Action: "nuke"}).defaults(); err == nil {
		t.Error("bad action accepted")
	}
}

// BenchmarkService is the detector's cost per socket event in user space
// (the collector's not included): benign keep-alive and short
// connections, Advance every 250 ms of simulated time.
func BenchmarkService(b *testing.B) {
	t := &testing.T{}
	h := trained(t, Config{Stall: -1})
	start := h.now
	h.load(start, start+int64(200*time.Second), 200)
	slices.SortStableFunc(h.evs, func(a, b rec.Event) int { return int(int64(a.Time) - int64(b.Time)) })
	evs := h.evs
	b.ResetTimer()
	n := 0
	for b.Loop() {
		e := evs[n%len(evs)]
		n++
		e.Time += uint64(n/len(evs)) * uint64(200*time.Second)
		e.Cookie += uint64(n/len(evs)) << 32
		h.s.event(e)
		if n%256 == 0 {
			h.now = int64(e.Time)
			h.s.advance()
		}
	}
}

// TestRun runs the service on its own goroutine, on the kernel's clock,
// with a model given, while the status is read: a Slowloris burst is
// alerted within a couple of seconds.
func TestRun(t *testing.T) {
	m := trained(t, Config{}).s.Model()
	src := fakeSource{ch: make(chan []rec.Event, 64)}
	var mu sync.Mutex
	var alerts []alert.Alert
	s := &Service{Name: "web", Collector: src, Config: Config{Model: m, Limit: 16, Stall: -1},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnAlert: func(a alert.Alert) {
			mu.Lock()
			alerts = append(alerts, a)
			mu.Unlock()
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	h := &harness{}
	now := int64(netio.Now())
	for i := range 8 {
		c := uint64(1<<20 + i)
		src.ch <- []rec.Event{h.evOn(c, now+ms(float64(i)), rec.Accept, 0), h.evOn(c, now+ms(float64(i)+0.1), rec.Recv, 240)}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := s.Status()
		mu.Lock()
		n := len(alerts)
		mu.Unlock()
		if n > 0 && st.Verdicts > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alert after 5 s: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); st.Phase != PhaseStopped {
		t.Errorf("phase %s after the end", st.Phase)
	}
}

// A block takes BlockAfter distinct offending connections from a source:
// one connection re-alerted while it stays open (every realert) counts
// once, so a benign client with a connection stuck behind an exhausted
// server is not blocked.
func TestBlockCountsDistinctConnections(t *testing.T) {
	var blocks []alert.Alert
	s := &Service{Name: "web", Config: Config{BlockAfter: 3, BlockWindow: time.Minute, CondemnFor: time.Minute},
		offences: map[netip.Addr][]offenceAt{}, condemned: map[netip.Addr]condemned{},
		conns: map[pfa.ConnID]*track{}, alerted: map[pfa.ConnID]time.Time{},
		OnAlert: func(a alert.Alert) {
			if a.Suggested == "block" {
				blocks = append(blocks, a)
			}
		}}
	tr := &track{local: server, remote: addr("10.0.0.9:5000")}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < 10; i++ {
		s.offence(pfa.ConnID{TGID: 100, Cookie: 1}, tr, alert.Alert{Kind: "slowloris"})
	}
	s.offence(pfa.ConnID{TGID: 101, Cookie: 2}, tr, alert.Alert{Kind: "slowloris"})
	if len(blocks) != 0 {
		t.Fatalf("blocked after 2 distinct connections (one re-alerted 10 times): %+v", blocks[0].Summary)
	}
	s.offence(pfa.ConnID{TGID: 102, Cookie: 3}, tr, alert.Alert{Kind: "slowloris"})
	if len(blocks) != 1 || blocks[0].Subject.Sources[0] != "10.0.0.9" {
		t.Fatalf("after 3 distinct connections: %d block alerts %+v", len(blocks), blocks)
	}
}
