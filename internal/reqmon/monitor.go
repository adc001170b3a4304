// Package reqmon turns the reqmon probe's tables and stream into request
// samples: each a resource vector (features below) with the request's
// process, connection and timing, for requests that completed and, every
// sweep, for requests still running. A detector scores them
// (internal/detect/kmeans); the Service in this package does so and raises
// alerts.
package reqmon

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/rampart-shield/rampart/internal/apptarget"
	"github.com/rampart-shield/rampart/internal/probe"
	rq "github.com/rampart-shield/rampart/probes/reqmon"
)

// Features of a request vector, in order.
var Features = []string{"cpu_ns", "page_faults", "mem_bytes", "rx_bytes", "tx_bytes", "backend_bytes", "idle_ns", "io_calls"}

// Feature indexes.
const (
	FCPU = iota
	FFaults
	FMem
	FRX
	FTX
	FBackend
	FIdle
	FIO
	NFeatures
)

// Sample is one request's resources so far (InFlight) or in all.
type Sample struct {
	rq.Request
	InFlight bool
	Reason   rq.Reason // for completed requests
	Duration time.Duration
	// Running: a thread is on CPU for the request right now.
	Running bool
	Vector  [NFeatures]float64
}

// Conn renders the connection as the responder takes it: "REMOTE->LOCAL".
func (s Sample) Conn() string { return s.Remote.String() + "->" + s.Local.String() }

// Options configure a Monitor.
type Options struct {
	Manager *probe.Manager
	// Probe is the loaded probe's name (default "reqmon"). It is loaded
	// if absent, with rp_watch_all when Spec.All.
	Probe string
	Spec  apptarget.Spec
	// Sweep is how often requests in flight are read (default 50 ms).
	Sweep time.Duration
	// Quiet: a request whose response started and then saw no I/O for this
	// long is complete (default 1 s).
	Quiet time.Duration
	Log   *slog.Logger
	// MapSizes override the probe's table sizes when it is loaded here
	// (e.g. "reqs": 65536 for a busy host).
	MapSizes map[string]uint32
	// Mappers are uprobe request mappers (at most rq.MaxMappers),
	// attached with the probe: it must not be loaded yet.
	Mappers []Mapper
	// Sends attaches the socket-send hook (always with Mappers): send
	// calls are counted (the io_calls feature), bytes sent to backends
	// too, and a response that went quiet completes after Quiet.
	// Without it (the default: on a server that writes its responses in
	// several calls it was most of reqmon's cost), a request's bytes
	// sent come from its socket's write sequence when it completes, at
	// the connection's next request or its close.
	Sends bool
}

// Stats count what the monitor saw and lost.
type Stats struct {
	Completed      uint64 `json:"completed"`
	QuietCompleted uint64 `json:"quiet_completed"`
	Sweeps         uint64 `json:"sweeps"`
	InFlight       int    `json:"in_flight"`
	DecodeErrors   uint64 `json:"decode_errors"`
	// Kernel counters (rq_stats).
	Created         uint64 `json:"created"`
	KernelCompleted uint64 `json:"kernel_completed"`
	RingbufLost     uint64 `json:"ringbuf_lost"`
	Unattributed    uint64 `json:"unattributed_cpu_ns"`
	ThreadsFull     uint64 `json:"threads_full"`
	// Passed counts completed requests the kernel found inside a benign
	// box (SetBenign) and did not stream: counted in KernelCompleted, not
	// in Completed.
	Passed uint64 `json:"passed_in_kernel"`
	// Evicted estimates requests the LRU table dropped before they
	// completed: started - completed - in flight.
	Evicted int64 `json:"evicted"`
}

// Monitor reads the reqmon probe.
type Monitor struct {
	opts      Options
	done      chan Sample
	cancelSub func()
	stop      chan struct{}
	wg        sync.WaitGroup

	mu       sync.Mutex
	inflight []Sample
	stats    Stats
	quietIDs map[uint64]bool // completed by the agent; the kernel may emit them again

	// The sweeper's own: buffers kept from one sweep to the next.
	tables   rq.Tables
	running  map[rq.Key]uint64
	live     []Sample
	quietBuf []rq.Request

	completed, quiet, sweeps, decErr atomic.Uint64
}

// Start loads the probe when needed, installs the targets and starts the
// stream reader and the sweeper.
func Start(ctx context.Context, o Options) (*Monitor, error) {
	if o.Manager == nil {
		return nil, errors.New("reqmon: no probe manager")
	}
	if o.Probe == "" {
		o.Probe = rq.ProbeName
	}
	if o.Sweep <= 0 {
		o.Sweep = 50 * time.Millisecond
	}
	if o.Quiet <= 0 {
		o.Quiet = time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	r, err := apptarget.Resolve(o.Spec)
	if err != nil {
		return nil, err
	}
	if len(o.Mappers) > rq.MaxMappers {
		return nil, fmt.Errorf("reqmon: %d request mappers, at most %d", len(o.Mappers), rq.MaxMappers)
	}
	actions := make([]rq.MapperAction, len(o.Mappers))
	for i, mp := range o.Mappers {
		if actions[i], err = mp.action(); err != nil {
			return nil, fmt.Errorf("request mapper %d (%s): %w", i, mp, err)
		}
	}
	_, gerr := o.Manager.Get(o.Probe)
	if gerr == nil && len(o.Mappers) > 0 {
		return nil, fmt.Errorf("reqmon: probe %s is loaded already: request mappers attach with a new probe", o.Probe)
	}
	if gerr != nil {
		params := map[string]string{}
		if o.Spec.All {
			params[rq.ParamAll] = "1"
		}
		man, err := probe.ParseManifest(rq.Manifest())
		if err != nil {
			return nil, err
		}
		if !o.Sends && len(o.Mappers) == 0 {
			man.Programs = slices.DeleteFunc(man.Programs, func(p probe.Program) bool { return p.Name == rq.ProgSend })
		}
		for i, mp := range o.Mappers {
			man.Programs = append(man.Programs, probe.Program{Name: rq.MapperProgram(i), Hook: mp.hook()})
		}
		// The built-in bundle, under the name given (one instance per watch).
		if _, err := o.Manager.Load(ctx, probe.LoadRequest{Name: o.Probe, Manifest: man, Object: rq.Object(), Origin: "builtin", Params: params, MapSizes: o.MapSizes}); err != nil {
			return nil, fmt.Errorf("load the reqmon probe: %w", err)
		}
	}
	ports, err := ListeningPorts()
	if err != nil {
		return nil, err
	}
	err = o.Manager.WithMaps(o.Probe, func(maps map[string]*ebpf.Map) error {
		lp := maps[rq.MapListen]
		if lp == nil {
			return fmt.Errorf("probe %s has no %s map: not a reqmon probe", o.Probe, rq.MapListen)
		}
		for _, p := range ports {
			if err := lp.Update(uint32(p), uint8(1), ebpf.UpdateAny); err != nil {
				return fmt.Errorf("listening port %d: %w", p, err)
			}
		}
		for i, a := range actions {
			if err := maps[rq.MapMappers].Update(uint32(i), a, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("request mapper %d: %w", i, err)
			}
		}
		return apptarget.Install(maps, r)
	})
	if err != nil {
		return nil, err
	}
	ch, cancel, err := o.Manager.SubscribeBatch(o.Probe, rq.StreamDone)
	if err != nil {
		return nil, err
	}
	m := &Monitor{opts: o, done: make(chan Sample, 8192), cancelSub: cancel, stop: make(chan struct{}), quietIDs: map[uint64]bool{}, running: map[rq.Key]uint64{}}
	o.Log.Info("watching requests", "targets", o.Spec.String(), "processes", len(r.TGIDs), "listening_ports", len(ports))
	m.wg.Add(2)
	go m.readStream(ch)
	go m.sweepLoop()
	return m, nil
}

// Completed delivers completed requests. It closes when the monitor stops.
func (m *Monitor) Completed() <-chan Sample { return m.done }

// InFlight returns the requests in flight at the last sweep.
func (m *Monitor) InFlight() []Sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Sample(nil), m.inflight...)
}

// Probe is the name of the probe the monitor reads.
func (m *Monitor) Probe() string { return m.opts.Probe }

// Close stops the monitor (the probe stays loaded).
func (m *Monitor) Close() {
	select {
	case <-m.stop:
		return
	default:
	}
	close(m.stop)
	m.cancelSub()
	m.wg.Wait()
	close(m.done)
}

func (m *Monitor) deliver(s Sample) {
	m.completed.Add(1)
	select {
	case m.done <- s:
	case <-m.stop:
	}
}

func (m *Monitor) readStream(ch <-chan []probe.Event) {
	defer m.wg.Done()
	var out []Sample
	for evs := range ch {
		out = out[:0]
		m.mu.Lock()
		for _, ev := range evs {
			rec, err := rq.DecodeRecord(ev.Raw)
			if err != nil {
				m.decErr.Add(1)
				continue
			}
			dup := m.quietIDs[rec.ID]
			delete(m.quietIDs, rec.ID)
			if !dup {
				out = append(out, sampleOf(rec.Request, rec.End, false, 0, rec.Reason))
			}
		}
		m.mu.Unlock()
		for _, s := range out {
			m.deliver(s)
		}
	}
}

// Now is the kernel's clock (CLOCK_MONOTONIC, bpf_ktime_get_ns), in ns.
func Now() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// sampleOf builds a sample: the vector at time `at` (the end for completed
// requests, now for requests in flight, plus the running part of CPU time).
func sampleOf(r rq.Request, at uint64, inflight bool, running uint64, reason rq.Reason) Sample {
	s := Sample{Request: r, InFlight: inflight, Reason: reason, Running: running > 0}
	end := at
	if !inflight && r.LastIO > r.Start {
		// A completed request ends at its last I/O: the time after it
		// (keep-alive think time, a late close) is the client's.
		end = r.LastIO
	}
	if end < r.Start {
		end = r.Start
	}
	dur := end - r.Start
	cpu := r.CPU + running
	s.Duration = time.Duration(dur)
	s.Vector[FCPU] = float64(cpu)
	s.Vector[FFaults] = float64(r.Faults)
	s.Vector[FMem] = float64(r.Mem)
	s.Vector[FRX] = float64(r.RX)
	s.Vector[FTX] = float64(r.TX)
	s.Vector[FBackend] = float64(r.Backend)
	if dur > cpu {
		s.Vector[FIdle] = float64(dur - cpu)
	}
	s.Vector[FIO] = float64(r.RXCalls + r.TXCalls)
	return s
}

func (m *Monitor) sweepLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.opts.Sweep)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			if err := m.sweep(); err != nil {
				m.opts.Log.Warn("reqmon sweep", "err", err)
			}
		}
	}
}

// Sweep reads the tables once (the loop does it every Options.Sweep).
func (m *Monitor) sweep() error {
	now := Now()
	clear(m.running)
	live, quiet := m.live[:0], m.quietBuf[:0]
	err := m.opts.Manager.WithMaps(m.opts.Probe, func(maps map[string]*ebpf.Map) error {
		reqs, ths := maps[rq.MapReqs], maps[rq.MapThreads]
		if reqs == nil || ths == nil {
			return fmt.Errorf("probe %s has no %s/%s tables", m.opts.Probe, rq.MapReqs, rq.MapThreads)
		}
		// Threads first: a request's running part is now - since of the
		// threads on CPU for it.
		if err := m.tables.Threads(ths, func(th rq.Thread) {
			if th.Req.Sk != 0 && th.Since != 0 && th.Since <= now {
				m.running[th.Req] += now - th.Since
			}
		}); err != nil {
			return err
		}
		return m.tables.Reqs(reqs, func(r rq.Request) {
			run := m.running[r.Key]
			if r.Phase == rq.PhaseResponding && run == 0 && r.LastIO+uint64(m.opts.Quiet) < now {
				quiet = append(quiet, r)
				return
			}
			live = append(live, sampleOf(r, now, true, run, 0))
		})
	})
	if err != nil {
		return err
	}
	m.quietBuf = quiet
	if len(quiet) > 0 {
		_ = m.opts.Manager.WithMaps(m.opts.Probe, func(maps map[string]*ebpf.Map) error {
			mp := maps[rq.MapReqs]
			for _, r := range quiet {
				_ = mp.Delete(rq.ReqKeyBytes(r.Key))
			}
			return nil
		})
		m.mu.Lock()
		for _, r := range quiet {
			m.quietIDs[r.ID] = true
		}
		if len(m.quietIDs) > 100000 { // the kernel emits few of them again; bound the set
			m.quietIDs = map[uint64]bool{}
		}
		m.mu.Unlock()
		for _, r := range quiet {
			m.quiet.Add(1)
			m.deliver(sampleOf(r, r.LastIO, false, 0, rq.ReasonQuiet))
		}
	}
	m.sweeps.Add(1)
	m.mu.Lock()
	// InFlight hands out copies: the previous sweep's slice is free for
	// the next one.
	m.inflight, m.live = live, m.inflight[:0]
	m.mu.Unlock()
	return nil
}

// SetBenign installs benign boxes in the kernel: a completed request whose
// every resource (Features order) is at most a box's bound is counted
// there (Stats.Passed) instead of streamed, except one in sampleEvery
// (rounded up to a power of two; 0 or 1: none), which are streamed
// anyway. A bound of +Inf leaves its resource free; a box with a negative
// bound holds nothing and is left out. No boxes turn the filter off:
// every completed request is streamed. At most rq.MaxBoxes boxes.
func (m *Monitor) SetBenign(boxes [][NFeatures]float64, sampleEvery int) error {
	if len(boxes) > rq.MaxBoxes {
		return fmt.Errorf("reqmon: %d benign boxes, the kernel holds %d", len(boxes), rq.MaxBoxes)
	}
	var kb []rq.Box
	for _, b := range boxes {
		var k rq.Box
		ok := true
		for j, v := range b {
			switch {
			case v < 0 || math.IsNaN(v):
				ok = false
			case v >= math.MaxUint64:
				k.Max[j] = math.MaxUint64
			default:
				k.Max[j] = uint64(v)
			}
		}
		if ok {
			kb = append(kb, k)
		}
	}
	mask := uint32(0)
	if sampleEvery > 1 {
		mask = uint32(1)<<bits.Len32(uint32(sampleEvery-1)) - 1
	}
	return m.opts.Manager.WithMaps(m.opts.Probe, func(maps map[string]*ebpf.Map) error {
		bm, fm := maps[rq.MapBoxes], maps[rq.MapFilter]
		if bm == nil || fm == nil {
			return fmt.Errorf("probe %s has no %s/%s maps: an older reqmon", m.opts.Probe, rq.MapBoxes, rq.MapFilter)
		}
		// Off first, so the kernel never reads a half-written set.
		if err := fm.Update(uint32(0), rq.Filter{}, ebpf.UpdateAny); err != nil {
			return err
		}
		for i, k := range kb {
			if err := bm.Update(uint32(i), k, ebpf.UpdateAny); err != nil {
				return err
			}
		}
		if len(kb) == 0 {
			return nil
		}
		return fm.Update(uint32(0), rq.Filter{Nboxes: uint32(len(kb)), SampleMask: mask}, ebpf.UpdateAny)
	})
}

// Stats returns the monitor's and the kernel's counters.
func (m *Monitor) Stats() Stats {
	m.mu.Lock()
	s := Stats{InFlight: len(m.inflight)}
	m.mu.Unlock()
	s.Completed, s.QuietCompleted, s.Sweeps, s.DecodeErrors = m.completed.Load(), m.quiet.Load(), m.sweeps.Load(), m.decErr.Load()
	if es, err := m.opts.Manager.ReadRaw(m.opts.Probe, rq.MapStats); err == nil {
		for _, e := range es {
			if len(e.Key) < 4 {
				continue
			}
			var n uint64
			for _, v := range e.Values {
				if len(v) >= 8 {
					n += binary.LittleEndian.Uint64(v)
				}
			}
			switch binary.LittleEndian.Uint32(e.Key) {
			case 0:
				s.Created = n
			case 1:
				s.KernelCompleted = n
			case 2:
				s.RingbufLost = n
			case 3:
				s.Unattributed = n
			case 5:
				s.ThreadsFull = n
			case rq.StatPassed:
				s.Passed = n
			}
		}
	}
	s.Evicted = int64(s.Created) - int64(s.KernelCompleted) - int64(s.QuietCompleted) - int64(s.InFlight)
	if s.Evicted < 0 {
		s.Evicted = 0
	}
	return s
}

// ListeningPorts lists the local ports of TCP sockets in LISTEN state
// (/proc/net/tcp and tcp6, this network namespace).
func ListeningPorts() ([]uint16, error) {
	seen := map[uint16]bool{}
	var out []uint16
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		sc.Scan() // header
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 4 || fs[3] != "0A" { // TCP_LISTEN
				continue
			}
			i := strings.LastIndexByte(fs[1], ':')
			if i < 0 {
				continue
			}
			b, err := hex.DecodeString(fs[1][i+1:])
			if err != nil || len(b) != 2 {
				continue
			}
			p := uint16(b[0])<<8 | uint16(b[1])
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
		fh.Close()
	}
	return out, nil
}

// Comm returns a process's command name ("" if gone).
func Comm(pid uint32) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
