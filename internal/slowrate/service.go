// Package slowrate is the connection detector of an application watch
// (issue 7, after Cogo): it reads the socket events of the watched
// processes from a netio Collector, learns a probabilistic suffix
// automaton of their connections over a benign training window (or loads
// a saved one), then runs the pfa Detector on every event and turns each
// verdict (a server's connection slots being exhausted by anomalous
// connections) into alerts the responder acts on: close each offending
// connection, and block a source that keeps offending.
//
// What it adds to the pfa package:
//
//   - One limit per watch: every process of the watch counts against
//     Config.Limit (Apache prefork workers each hold one connection;
//     MaxRequestWorkers is the limit of the whole server).
//   - A 250 ms tick (pfa's default is 1 s): a connection that stalls after
//     half a request shows it within a second, and groups are sampled as
//     often.
//   - Stalled sends: a connection idle since a send whose send queue still
//     holds unacknowledged bytes (sock_diag) gets a Send of 0 bytes every
//     250 ms, in training as in detection: a slow reader looks like an idle
//     keep-alive connection in the events alone.
//   - Only connections seen from their accept or connect are followed
//     (not those open when the watch starts, nor reads straggling after a
//     close), so streams look like those learned.
//   - The connections open when training ends are replayed into the
//     detector, so none starts mid-stream.
//   - Thresholds: calibration aims at the tail the held-out connections can
//     show (the top 10, until there are 10^5 of them), and the result is
//     kept within 8-12 bits per symbol (Config.MinThreshold, MaxThreshold).
//   - Remediation: one alert per offending connection (close-sockets,
//     Subject.Conn "REMOTE:PORT->LOCAL:PORT"), re-raised every 5 s while it
//     stays open; after 5 from one address a block alert, and that
//     address's new connections are closed as they are accepted for a
//     minute (its connections queued in the backlog would otherwise take
//     every freed worker).
package slowrate

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/internal/detect/pfa"
	"github.com/rampart-shield/rampart/internal/netio"
	"github.com/rampart-shield/rampart/internal/respond/sockets"
	rec "github.com/rampart-shield/rampart/probes/netio"
)

// Config configures the connection detector. Zero fields take their
// defaults.
type Config struct {
	// Train is the benign training window (default 200 s): training ends
	// when Train has passed since the first event and MinConns
	// connections were learned.
	Train    time.Duration `json:"train_ns"`
	MinConns int           `json:"min_conns"`
	// HoldOut is the share of training connections held out (not
	// learned) to calibrate the threshold on (default 0.2).
	HoldOut float64 `json:"hold_out"`
	// Model, when set, is used at once (no training).
	Model *pfa.Model      `json:"-"`
	Learn pfa.ModelConfig `json:"learn"`
	Calib pfa.CalibConfig `json:"calib"`
	// Limit is the number of connections the watched server can hold
	// (Apache's MaxRequestWorkers; default pfa.DefaultLimit). Every
	// process of the watch counts against it. Detect.Limit, Share,
	// Horizon... tune the exhaustion rule (Detect.GroupOf is set here).
	Limit  int        `json:"limit"`
	Detect pfa.Config `json:"detect"`
	// MinThreshold is the lowest per-connection threshold used, in bits
	// per symbol (default 8): the calibrated one comes from the highest
	// score of a few hundred held-out connections and varies from run to
	// run; with a window of 8 symbols, 8 bits takes more than one symbol
	// never seen in training (about 45 bits each), so a benign connection
	// with one rare event is not anomalous, while a stalled one (a tick
	// or a stalled send every 250 ms, each never seen) is within 0.5 s.
	MinThreshold float64 `json:"min_threshold"`
	// MaxThreshold is the highest (default 12 bits: a window whose
	// symbols are on average rarer than 1 in 4096 is anomalous whatever
	// the held-out connections said; one odd held-out connection would
	// otherwise lift the threshold out of reach of stalled connections,
	// whose repeated ticks or stalled sends cost about 12 bits each once
	// training saw a few).
	MaxThreshold float64 `json:"max_threshold"`
	// Interval is how often the detector advances its clock (ticks,
	// samples, verdicts; default 250 ms), Lag how far behind the kernel's
	// clock it stays for events still on their way (default 100 ms).
	Interval time.Duration `json:"interval_ns"`
	Lag      time.Duration `json:"lag_ns"`
	// OutDir, when set, receives conn-model.json (the model),
	// conn-stats.json (its size, training and calibration) and
	// conn-verdicts.jsonl (every verdict).
	OutDir string `json:"out_dir,omitempty"`
	// Action suggested for an offending connection (default
	// close-sockets; kill closes it with its worker, as Cogo did).
	Action string `json:"action"`
	// BlockAfter offending connections from one address within
	// BlockWindow add a block alert for it (default 5 in 10 minutes; -1
	// never): an attacker holds many connections, a benign client at
	// most a few unusual ones.
	BlockAfter  int           `json:"block_after"`
	BlockWindow time.Duration `json:"block_window_ns"`
	// MaxHeldOut bounds the held-out events kept for calibration
	// (default 4,000,000; about 40 bytes each).
	MaxHeldOut int `json:"max_held_out"`
	// Stall: a connection whose last event was a send, idle this long
	// while its send queue holds unacknowledged bytes (its peer does not
	// read), gets a stalled-send event (a Send of 0 bytes, which the probe
	// never reports) every Stall while it stays so: the evidence of a slow
	// reader, which the events alone do not show (an idle keep-alive
	// connection also ends with a send). Default 250 ms; -1 disables.
	Stall time.Duration `json:"stall_ns"`
	// CondemnFor: after a block alert, the source's new connections to
	// the watch are closed as they are accepted for this long (default
	// 60 s), so that its connections waiting in the accept queue do not
	// take the freed workers.
	CondemnFor time.Duration `json:"condemn_for_ns"`
}

// Defaults of Config.
const (
	DefaultTrain      = 200 * time.Second
	DefaultMinConns   = 200
	DefaultHoldOut    = 0.2
	DefaultInterval   = 250 * time.Millisecond
	DefaultLag        = 100 * time.Millisecond
	DefaultMaxHeldOut = 4_000_000
	// DefaultTick is the symboliser's tick: a quarter of pfa's default,
	// so that a connection stalled after reading half a request shows it
	// within a second, and the detector samples its groups as often.
	DefaultTick  = 250 * time.Millisecond
	DefaultStall = 250 * time.Millisecond
	// DefaultMinThreshold and DefaultMaxThreshold: see Config.
	DefaultMinThreshold = 8.0
	DefaultMaxThreshold = 12.0
	// replayCap bounds the events kept per open connection during
	// training, to replay into the detector when training ends.
	replayCap = 256
	// maxReplay bounds the open connections kept for replay.
	maxReplay = 1 << 16
	// realert: an offender still open this long after its alert (the
	// responder did not close it: rate-limited, observe mode) is alerted
	// again with the next verdict.
	realert = 5 * time.Second
)

func (c *Config) defaults() error {
	if c.Train <= 0 {
		c.Train = DefaultTrain
	}
	if c.MinConns <= 0 {
		c.MinConns = DefaultMinConns
	}
	if c.HoldOut == 0 {
		c.HoldOut = DefaultHoldOut
	}
	if c.Limit <= 0 {
		c.Limit = pfa.DefaultLimit
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Lag <= 0 {
		c.Lag = DefaultLag
	}
	if c.Action == "" {
		c.Action = pfa.SuggestCloseSockets
	}
	if c.BlockAfter == 0 {
		c.BlockAfter = 5
	}
	if c.BlockWindow <= 0 {
		c.BlockWindow = 10 * time.Minute
	}
	if c.MaxHeldOut <= 0 {
		c.MaxHeldOut = DefaultMaxHeldOut
	}
	if c.Learn.Tick == 0 {
		c.Learn.Tick = DefaultTick
	}
	if c.Stall == 0 {
		c.Stall = DefaultStall
	}
	if c.MinThreshold == 0 {
		c.MinThreshold = DefaultMinThreshold
	}
	if c.MaxThreshold == 0 {
		c.MaxThreshold = DefaultMaxThreshold
	}
	if c.MaxThreshold < c.MinThreshold {
		return fmt.Errorf("slowrate: threshold bounds %v..%v", c.MinThreshold, c.MaxThreshold)
	}
	if c.CondemnFor <= 0 {
		c.CondemnFor = time.Minute
	}
	if !(c.HoldOut > 0 && c.HoldOut < 1) {
		return fmt.Errorf("slowrate: hold-out share %v: want 0 < share < 1", c.HoldOut)
	}
	switch c.Action {
	case "close-sockets", "kill", "log":
	default:
		return fmt.Errorf("slowrate: action %q: want close-sockets, kill or log", c.Action)
	}
	return nil
}

// Phases of a Service.
const (
	PhaseTraining  = "training"
	PhaseDetecting = "detecting"
	PhaseStopped   = "stopped"
)

// ModelInfo describes the model in use.
type ModelInfo struct {
	Name        string          `json:"name"`
	Stats       pfa.Stats       `json:"stats"`
	Training    pfa.TrainInfo   `json:"training"`
	Calibration pfa.Calibration `json:"calibration"`
	Threshold   float64         `json:"threshold"`
	// TrainTook is how long building and calibrating took, in ms (0 for
	// a loaded model).
	TrainTookMS float64 `json:"train_took_ms"`
}

// Status is what a Service reports.
type Status struct {
	Phase      string    `json:"phase"`
	Group      string    `json:"group"`
	Limit      int       `json:"limit"`
	TrainUntil time.Time `json:"train_until,omitempty"`
	// While training: events and connections learned and held out.
	TrainedEvents int64      `json:"trained_events"`
	TrainedConns  int64      `json:"trained_conns"`
	HeldOutEvents int        `json:"held_out_events"`
	HeldOutConns  int        `json:"held_out_conns"`
	Model         *ModelInfo `json:"model,omitempty"`
	// While detecting: events observed, connections begun, verdicts and
	// the alerts they raised (one per offending connection, plus blocks).
	Events   uint64 `json:"events"`
	Conns    uint64 `json:"conns"`
	Verdicts uint64 `json:"verdicts"`
	Alerts   uint64 `json:"alerts"`
	Blocks   uint64 `json:"blocks"`
	// CutOff counts connections closed because their source was cut off
	// after a block alert; Stalls the stalled-send events added; Ignored
	// the connections not followed because they began before the watch
	// (seen in the last minute).
	CutOff    uint64             `json:"cut_off"`
	Stalls    uint64             `json:"stalls"`
	Ignored   int                `json:"ignored"`
	Detector  pfa.DetectorStats  `json:"detector"`
	Processes []pfa.ProcessState `json:"processes,omitempty"`
	// LastVerdict is the latest verdict's reason and kind.
	LastVerdict *VerdictInfo `json:"last_verdict,omitempty"`
	Collector   netio.Stats  `json:"collector"`
	Error       string       `json:"error,omitempty"`
}

// VerdictInfo summarises a verdict for the status.
type VerdictInfo struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	Reason    string    `json:"reason"`
	Offenders int       `json:"offenders"`
}

// Source is what the service reads: a *netio.Collector.
type Source interface {
	// Batches delivers the socket events in time order, in batches; it
	// closes when the source stops.
	Batches() <-chan []rec.Event
	Process(tgid uint32) (netio.Process, bool)
	Stats() netio.Stats
}

// Service runs the connection detector on a Collector until its context
// ends or the collector stops.
type Service struct {
	Name      string // the watch's name: the group and alert names
	Collector Source
	Config    Config
	OnAlert   func(alert.Alert)
	// OnVerdict, when set, sees every verdict first (tests, logs).
	OnVerdict func(pfa.Verdict)
	Log       *slog.Logger
	// Queues reads the send queues of the TCP sockets in a process's
	// network namespace, by cookie (default sockets.Queues).
	Queues func(pid int) (map[uint64]sockets.Queue, error)

	mu        sync.Mutex
	status    Status
	learner   *pfa.Learner
	heldOut   []pfa.Event
	heldSet   map[pfa.ConnID]bool
	replay    map[pfa.ConnID][]pfa.Event // events of open connections while training
	first     int64                      // time of the first training event (0: none yet)
	clock     func() int64               // the kernel's event clock (netio.Now; tests set it)
	model     *pfa.Model
	det       *pfa.Detector
	conns     map[pfa.ConnID]*track
	ignored   map[pfa.ConnID]int64     // connections begun before the watch: last event
	tgidOf    map[uint64]uint32        // followed or ignored connections by cookie: the process that began (or first used) it
	closed    netio.Recent[pfa.ConnID] // recently closed (events straggle after a close)
	lastPrune int64
	alerted   map[pfa.ConnID]time.Time // offenders alerted, when
	offences  map[netip.Addr][]offenceAt
	condemned map[netip.Addr]condemned
	verdicts  *os.File
}

// track is what the service follows of a connection besides the
// detector: its last event (for stalled sends) and its peers.
type track struct {
	last     int64
	lastKind pfa.Kind
	pid      uint32
	local    netip.AddrPort
	remote   netip.AddrPort
}

// condemned is a source cut off after a block alert.
type condemned struct {
	until, blocked time.Time
	kind, why      string
}

// reblock: a condemned source that keeps offending gets its block alert
// again this often (the first may have been observed only, or refused by
// the responder's rate limit; an applied block is extended).
const reblock = 30 * time.Second

// Status reports the phase and counters.
func (s *Service) Status() Status {
	s.mu.Lock()
	st := s.status
	if st.Phase == PhaseTraining && s.learner != nil {
		i := s.learner.Info()
		st.TrainedEvents, st.TrainedConns = i.Events, i.Conns
		st.HeldOutEvents, st.HeldOutConns = len(s.heldOut), len(s.heldSet)
	}
	if s.det != nil {
		st.Detector = s.det.Stats()
		st.Processes = s.det.Processes()
	}
	st.Ignored = len(s.ignored)
	s.mu.Unlock()
	if s.Collector != nil {
		st.Collector = s.Collector.Stats()
	}
	return st
}

// Model returns the model in use (nil while training).
func (s *Service) Model() *pfa.Model {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.model
}

func (s *Service) init() error {
	if err := s.Config.defaults(); err != nil {
		return err
	}
	if s.Collector == nil || s.Collector.Batches() == nil {
		return errors.New("slowrate: needs a collector with a Batches channel")
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	if s.Queues == nil {
		s.Queues = sockets.Queues
	}
	if s.clock == nil {
		s.clock = func() int64 { return int64(netio.Now()) }
	}
	if s.Name == "" {
		s.Name = "app"
	}
	s.conns, s.ignored, s.closed = map[pfa.ConnID]*track{}, map[pfa.ConnID]int64{}, netio.Recent[pfa.ConnID]{N: maxReplay}
	s.tgidOf = map[uint64]uint32{}
	s.alerted = map[pfa.ConnID]time.Time{}
	s.offences, s.condemned = map[netip.Addr][]offenceAt{}, map[netip.Addr]condemned{}
	s.status = Status{Phase: PhaseTraining, Group: s.Name, Limit: s.Config.Limit}
	if s.Config.OutDir != "" {
		if err := os.MkdirAll(s.Config.OutDir, 0o755); err != nil {
			return fmt.Errorf("slowrate: out dir: %w", err)
		}
	}
	if m := s.Config.Model; m != nil {
		if m.Config().Tick != s.Config.Learn.Tick && s.Config.Learn.Tick != DefaultTick {
			return fmt.Errorf("slowrate: the model ticks every %v, not %v", m.Config().Tick, s.Config.Learn.Tick)
		}
		return s.startDetector(m, 0)
	}
	l, err := pfa.NewLearner(s.Config.Learn)
	if err != nil {
		return err
	}
	s.learner, s.heldSet, s.replay = l, map[pfa.ConnID]bool{}, map[pfa.ConnID][]pfa.Event{}
	return nil
}

// Run consumes the collector's events until ctx ends or the collector
// stops.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	err := s.init()
	if err != nil {
		s.status.Error = err.Error()
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	defer func() {
		s.mu.Lock()
		s.status.Phase = PhaseStopped
		if s.verdicts != nil {
			s.verdicts.Close()
			s.verdicts = nil
		}
		s.mu.Unlock()
	}()
	tick := time.NewTicker(s.Config.Interval)
	defer tick.Stop()
	batches := s.Collector.Batches()
	for {
		select {
		case <-ctx.Done():
			return nil
		case b, ok := <-batches:
			if !ok {
				return nil
			}
			s.mu.Lock()
			for _, e := range b {
				s.eventLocked(e)
			}
			s.mu.Unlock()
		case <-tick.C:
			s.advance()
		}
	}
}

// Convert turns a netio event into a pfa event; ok is false for what the
// connection detector does not model (UDP sockets, listening sockets,
// process exits).
func Convert(e rec.Event) (pfa.Event, bool) {
	if e.Proto != rec.ProtoTCP {
		return pfa.Event{}, false
	}
	var k pfa.Kind
	switch e.Kind {
	case rec.Accept:
		k = pfa.Accept
	case rec.Connect:
		k = pfa.Connect
	case rec.Recv:
		k = pfa.Recv
	case rec.Send:
		k = pfa.Send
	case rec.Close:
		k = pfa.Close
	default:
		return pfa.Event{}, false
	}
	ev := pfa.Event{Time: int64(e.Time), Conn: pfa.ConnID{TGID: e.TGID, Cookie: e.Cookie}, PID: e.TID, Kind: k}
	if k == pfa.Recv || k == pfa.Send {
		ev.Size = int(e.Size)
	}
	return ev, true
}

// heldOutConn picks the connections held out for calibration: a fixed
// share, by a hash of the cookie.
func heldOutConn(id pfa.ConnID, share float64) bool {
	h := id.Cookie*0x9e3779b97f4a7c15 ^ uint64(id.TGID)
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return float64(h%10000) < share*10000
}

func (s *Service) event(e rec.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eventLocked(e)
}

func (s *Service) eventLocked(e rec.Event) {
	ev, ok := Convert(e)
	if !ok {
		return
	}
	s.sameConn(&ev)
	// Only connections seen from their beginning are modelled: one begun
	// before the watch (or an event straggling after a close, which
	// timestamps can put after it) starts mid-stream, unlike anything
	// learned.
	if _, ign := s.ignored[ev.Conn]; ign && ev.Kind != pfa.Accept && ev.Kind != pfa.Connect {
		s.ignored[ev.Conn] = ev.Time
		if ev.Kind == pfa.Close {
			delete(s.ignored, ev.Conn)
			delete(s.tgidOf, ev.Conn.Cookie)
		}
		return
	}
	t := s.conns[ev.Conn]
	begins := ev.Kind == pfa.Accept || ev.Kind == pfa.Connect
	if s.closed.Has(ev.Conn) && t == nil && !begins {
		return // a read of the peer's end of stream after the close
	}
	switch {
	case t == nil && !begins:
		if len(s.ignored) < maxReplay {
			s.ignored[ev.Conn] = ev.Time
			s.tgidOf[ev.Conn.Cookie] = ev.Conn.TGID
		}
		return
	case begins:
		delete(s.ignored, ev.Conn)
		t = &track{local: e.Local, remote: e.Remote}
		s.conns[ev.Conn] = t
		s.tgidOf[ev.Conn.Cookie] = ev.Conn.TGID
	}
	t.last, t.lastKind, t.pid = max(t.last, ev.Time), ev.Kind, ev.PID
	if ev.Kind == pfa.Close {
		delete(s.conns, ev.Conn)
		delete(s.tgidOf, ev.Conn.Cookie)
		s.closed.Add(ev.Conn)
	}
	s.feed(ev)
	if begins && s.det != nil {
		s.checkCondemned(ev, t)
	}
}

// sameConn names a connection by the process that began it, whichever
// process of the watch the event comes from: the socket's cookie is
// unique on the host, and a server may accept in one process and read and
// write in others (Kamailio's tcp_main accepts and hands each connection
// to a TCP reader; its SIP workers send the replies they relay), which
// are all one stream.
func (s *Service) sameConn(ev *pfa.Event) {
	if ev.Kind == pfa.Accept || ev.Kind == pfa.Connect {
		return
	}
	if tg, ok := s.tgidOf[ev.Conn.Cookie]; ok {
		ev.Conn.TGID = tg
	}
}

// feed hands one event to the learner or the detector.
func (s *Service) feed(ev pfa.Event) {
	if s.det == nil {
		s.train(ev)
		return
	}
	s.status.Events++
	if ev.Kind == pfa.Accept || ev.Kind == pfa.Connect {
		s.status.Conns++
	}
	_ = s.det.Observe(ev)
	if ev.Kind == pfa.Close {
		delete(s.alerted, ev.Conn)
	}
}

// train learns one event (or holds it out) and keeps the events of open
// connections for the detector.
func (s *Service) train(ev pfa.Event) {
	if s.first == 0 {
		s.first = ev.Time
		s.status.TrainUntil = time.Now().Add(s.Config.Train - time.Duration(s.clock()-ev.Time))
	}
	if heldOutConn(ev.Conn, s.Config.HoldOut) {
		if len(s.heldOut) < s.Config.MaxHeldOut {
			s.heldOut = append(s.heldOut, ev)
			s.heldSet[ev.Conn] = true
		}
	} else if err := s.learner.Observe(ev); err != nil {
		return
	}
	buf, known := s.replay[ev.Conn]
	switch {
	case ev.Kind == pfa.Close:
		delete(s.replay, ev.Conn)
	case ev.Kind == pfa.Accept || ev.Kind == pfa.Connect:
		if known || len(s.replay) < maxReplay {
			s.replay[ev.Conn] = append(buf[:0], ev)
		}
	case buf != nil && len(buf) < replayCap:
		s.replay[ev.Conn] = append(buf, ev)
	case known:
		// Too long to replay: the detector will not follow it.
		s.replay[ev.Conn] = nil
	}
}

func (s *Service) advance() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock() - int64(s.Config.Lag)
	s.prune(now)
	s.stalls(now)
	if s.det == nil {
		if s.learner == nil || s.first == 0 || now-s.first < int64(s.Config.Train) || s.learner.Info().Conns < int64(s.Config.MinConns) {
			return
		}
		s.fit()
		if s.det == nil {
			return
		}
	}
	for _, v := range s.det.Advance(now) {
		s.raise(v)
	}
}

// prune forgets, every 10 s, connections silent for the model's idle
// expiry (their close was lost) and ignored ones silent for a minute.
func (s *Service) prune(now int64) {
	if now-s.lastPrune < int64(10*time.Second) {
		return
	}
	s.lastPrune = now
	idle := int64(pfa.DefaultMaxIdle)
	if s.model != nil {
		idle = int64(s.model.Config().MaxIdle)
	} else if s.Config.Learn.MaxIdle > 0 {
		idle = int64(s.Config.Learn.MaxIdle)
	}
	for id, t := range s.conns {
		if now-t.last > idle {
			delete(s.conns, id)
			delete(s.replay, id)
			delete(s.tgidOf, id.Cookie)
		}
	}
	for id, t := range s.ignored {
		if now-t > int64(time.Minute) {
			delete(s.ignored, id)
			delete(s.tgidOf, id.Cookie)
		}
	}
	wall := time.Now()
	for a, c := range s.condemned {
		if wall.After(c.until) {
			delete(s.condemned, a)
		}
	}
}

// stalls adds a stalled-send event for every connection idle since a
// send whose peer is not taking the data (see Config.Stall).
func (s *Service) stalls(now int64) {
	if s.Config.Stall < 0 {
		return
	}
	stall := int64(s.Config.Stall)
	var cands []pfa.ConnID
	for id, t := range s.conns {
		if t.lastKind == pfa.Send && now-t.last >= stall {
			cands = append(cands, id)
		}
	}
	if len(cands) == 0 {
		return
	}
	slices.SortFunc(cands, func(a, b pfa.ConnID) int { return cmp.Compare(a.Cookie, b.Cookie) })
	queues := map[string]map[uint64]sockets.Queue{} // by network namespace
	nsOf := map[uint32]string{}
	for _, id := range cands {
		ns, ok := nsOf[id.TGID]
		if !ok {
			ns, _ = os.Readlink("/proc/" + strconv.FormatUint(uint64(id.TGID), 10) + "/ns/net")
			nsOf[id.TGID] = ns
		}
		q, ok := queues[ns]
		if !ok {
			var err error
			if q, err = s.Queues(int(id.TGID)); err != nil {
				q = nil
			}
			queues[ns] = q
		}
		if sq, ok := q[id.Cookie]; ok && sq.Send > 0 {
			t := s.conns[id]
			t.last = now
			s.status.Stalls++
			s.feed(pfa.Event{Time: now, Conn: id, PID: t.pid, Kind: pfa.Send, Size: 0})
		}
	}
}

// fit builds and calibrates the model and starts detecting.
func (s *Service) fit() {
	start := time.Now()
	m, err := s.learner.Model()
	if err == nil {
		m.Name = "pfa-" + s.Name
		m.Version = start.UTC().Format(time.RFC3339)
		cc := s.Config.Calib
		if cc.TargetFPR == 0 {
			// The 1e-4 tail needs 10^5 held-out connections: with fewer,
			// aim at the tail they do show (the top 10), not at their
			// single highest score.
			cc.TargetFPR = max(pfa.DefaultTargetFPR, 10/float64(max(1, len(s.heldSet))))
		}
		_, err = m.Calibrate(s.heldOut, cc)
	}
	if err != nil {
		// Not enough yet (no held-out connection, say): keep learning.
		s.status.Error = "training: " + err.Error()
		return
	}
	took := time.Since(start)
	s.status.Error = ""
	if err := s.startDetector(m, took); err != nil {
		s.status.Error = err.Error()
		return
	}
	s.Log.Info("connection model trained", "watch", s.Name, "conns", m.Info.Conns, "events", m.Info.Events,
		"states", s.status.Model.Stats.States, "transitions", s.status.Model.Stats.Transitions,
		"threshold", m.Calibration.Threshold, "took", took.Round(time.Millisecond))
}

// startDetector switches to detecting with m, replaying the connections
// open at the end of training.
func (s *Service) startDetector(m *pfa.Model, took time.Duration) error {
	cfg := s.Config.Detect
	cfg.Limit = s.Config.Limit
	if cfg.Threshold == 0 {
		cfg.Threshold = min(max(m.Calibration.Threshold, s.Config.MinThreshold), s.Config.MaxThreshold)
	}
	group := s.Name
	cfg.GroupOf = func(uint32) string { return group }
	d, err := pfa.NewDetector(m, cfg)
	if err != nil {
		return err
	}
	var evs []pfa.Event
	for id, buf := range s.replay {
		if buf == nil {
			delete(s.conns, id) // too long to replay: not followed
		}
		evs = append(evs, buf...)
	}
	slices.SortStableFunc(evs, func(a, b pfa.Event) int { return cmp.Compare(a.Time, b.Time) })
	for _, ev := range evs {
		_ = d.Observe(ev)
	}
	s.model, s.det = m, d
	s.learner, s.heldOut, s.heldSet, s.replay = nil, nil, nil, nil
	s.status.Phase = PhaseDetecting
	s.status.Model = &ModelInfo{Name: m.Name, Stats: m.Stats(), Training: m.Info, Calibration: m.Calibration,
		Threshold: d.Threshold(), TrainTookMS: float64(took) / 1e6}
	if err := s.writeModel(m); err != nil {
		s.Log.Warn("writing the connection model", "watch", s.Name, "err", err)
	}
	return nil
}

// writeModel saves the model and its stats to the out dir.
func (s *Service) writeModel(m *pfa.Model) error {
	dir := s.Config.OutDir
	if dir == "" {
		return nil
	}
	if s.Config.Model == nil {
		f, err := os.CreateTemp(dir, ".conn-model.json.*")
		if err != nil {
			return err
		}
		err = m.Save(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), filepath.Join(dir, "conn-model.json"))
		}
		if err != nil {
			os.Remove(f.Name())
			return err
		}
	}
	b, err := json.MarshalIndent(s.status.Model, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "conn-stats.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	s.verdicts, err = os.OpenFile(filepath.Join(dir, "conn-verdicts.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	return err
}

// raise turns a verdict into one alert per offending connection not
// alerted yet, and block alerts for repeat sources.
func (s *Service) raise(v pfa.Verdict) {
	s.status.Verdicts++
	now := time.Now()
	s.status.LastVerdict = &VerdictInfo{Time: now, Kind: v.Kind, Reason: v.Reason, Offenders: len(v.Offenders)}
	if s.OnVerdict != nil {
		s.OnVerdict(v)
	}
	if s.verdicts != nil {
		if b, err := json.Marshal(v); err == nil {
			s.verdicts.Write(append(b, '\n'))
		}
	}
	base := v.Alert(now, s.model.Name+"@"+s.model.Version)
	for _, o := range v.Offenders {
		if t, ok := s.alerted[o.Conn]; ok && now.Sub(t) < realert {
			continue
		}
		t := s.conns[o.Conn]
		if t == nil {
			continue // closed meanwhile: nothing to act on
		}
		s.alerted[o.Conn] = now
		s.alert(base, o, t)
	}
}

// connText is the connection as the responder names it.
func connText(t *track) string { return t.remote.String() + "->" + t.local.String() }

func (s *Service) comm(tgid uint32) string {
	if p, ok := s.Collector.Process(tgid); ok {
		return p.Comm
	}
	return ""
}

func (s *Service) subject(id pfa.ConnID, t *track) alert.Subject {
	sub := alert.Subject{PID: int(id.TGID), Comm: s.comm(id.TGID), Conn: connText(t), Proto: "tcp", Port: t.local.Port()}
	if t.local.Addr().IsValid() {
		sub.Dst = t.local.Addr().String()
	}
	return sub
}

func (s *Service) alert(base alert.Alert, o pfa.Offender, t *track) {
	a := base
	a.Score = o.FlagScore / o.Threshold
	a.Thresh = 1
	a.Subject = s.subject(o.Conn, t)
	a.Suggested = s.Config.Action
	a.Summary = fmt.Sprintf("connection %s of %s[%d] is anomalous (score %.1f > %.1f bits after %v) while %s",
		a.Subject.Conn, a.Subject.Comm, o.Conn.TGID, o.FlagScore, o.Threshold, o.DetectedAfter().Round(time.Millisecond), base.Summary)
	a.Features = append([]alert.Feature{{Name: "conn-score-bits", Value: o.FlagScore, Baseline: o.Threshold}}, base.Features...)
	a.Samples = []string{fmt.Sprintf("watch=%s conn=%v thread=%d", s.Name, o.Conn, o.PID)}
	for _, i := range o.Improbable {
		a.Samples = append(a.Samples, i.String())
	}
	s.emit(a)
	s.offence(o.Conn, t, a)
}

// offenceAt is one offending connection of a source and when it was
// (last) alerted.
type offenceAt struct {
	conn pfa.ConnID
	at   time.Time
}

// emit hands an alert on, without the lock (the responder may take a
// while, and may read the status).
func (s *Service) emit(a alert.Alert) {
	s.status.Alerts++
	if s.OnAlert != nil {
		s.mu.Unlock()
		s.OnAlert(a)
		s.mu.Lock()
	}
}

// offence counts an offending connection against its source address and,
// after BlockAfter distinct ones, asks for the address to be blocked and
// cuts off its new connections for CondemnFor. A connection re-alerted
// while it stays open counts once: a client with one or two connections
// stuck behind an exhausted server is not an attacker holding many.
func (s *Service) offence(id pfa.ConnID, t *track, a alert.Alert) {
	src := t.remote.Addr()
	if s.Config.BlockAfter < 0 || !src.IsValid() {
		return
	}
	now := time.Now()
	if c, ok := s.condemned[src]; ok {
		c.until = now.Add(s.Config.CondemnFor)
		s.condemned[src] = c
		if now.Sub(c.blocked) >= reblock {
			c.blocked = now
			s.condemned[src] = c
			s.block(src, t, a, c.why)
		}
		return
	}
	ts := s.offences[src]
	keep := ts[:0]
	for _, o := range ts {
		if now.Sub(o.at) < s.Config.BlockWindow && o.conn != id {
			keep = append(keep, o)
		}
	}
	keep = append(keep, offenceAt{conn: id, at: now})
	s.offences[src] = keep
	n := len(keep)
	if n < s.Config.BlockAfter {
		return
	}
	delete(s.offences, src)
	why := fmt.Sprintf("%s held %d anomalous connections of %s within %v (%s)", src, n, s.Name, s.Config.BlockWindow, a.Kind)
	s.condemned[src] = condemned{until: now.Add(s.Config.CondemnFor), blocked: now, kind: a.Kind, why: why}
	s.block(src, t, a, why)
	// Its connections open now go too, anomalous yet or not.
	for id, ot := range s.conns {
		if ot.remote.Addr() == src && ot.local.Port() == t.local.Port() {
			if _, done := s.alerted[id]; !done {
				s.cutOff(id, ot, s.condemned[src])
			}
		}
	}
}

// block asks for src to be blocked.
func (s *Service) block(src netip.Addr, t *track, a alert.Alert, why string) {
	b := a
	b.ID = ""
	b.Kind = "conn-repeat-offender"
	b.Summary = why
	b.Subject = alert.Subject{Sources: []string{src.String()}, Dst: a.Subject.Dst, Proto: "tcp", Port: t.local.Port()}
	b.Suggested = "block"
	s.status.Blocks++
	s.emit(b)
}

// checkCondemned closes a new connection from a condemned source.
func (s *Service) checkCondemned(ev pfa.Event, t *track) {
	c, ok := s.condemned[t.remote.Addr()]
	if !ok || time.Now().After(c.until) {
		return
	}
	s.cutOff(ev.Conn, t, c)
}

func (s *Service) cutOff(id pfa.ConnID, t *track, c condemned) {
	s.alerted[id] = time.Now()
	a := alert.Alert{
		Time: time.Now(), Detector: pfa.Name, Kind: c.kind, Score: 1, Thresh: 1,
		Summary:   fmt.Sprintf("connection %s of %s[%d] comes from a source cut off for %v: %s", connText(t), s.comm(id.TGID), id.TGID, s.Config.CondemnFor, c.why),
		Subject:   s.subject(id, t),
		Suggested: s.Config.Action,
		Samples:   []string{fmt.Sprintf("watch=%s conn=%v", s.Name, id)},
	}
	if s.model != nil {
		a.Model = s.model.Name + "@" + s.model.Version
	}
	s.status.CutOff++
	s.emit(a)
}
