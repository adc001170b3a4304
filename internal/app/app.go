// Package app runs application watches: each watch is a set of processes
// (internal/apptarget) with up to two detectors, each on a probe instance
// of its own: the request monitor and request anomaly detector
// (internal/reqmon, probe "reqmon-NAME"), and the connection detector for
// slow-rate attacks (internal/slowrate on internal/netio, probe
// "netio-NAME"). The agent's /v1/apps API and `rampart app` drive it; its
// alerts go to the responder.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/internal/apptarget"
	"github.com/rampart-shield/rampart/internal/detect/kmeans"
	"github.com/rampart-shield/rampart/internal/detect/pfa"
	"github.com/rampart-shield/rampart/internal/netio"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/internal/reqmon"
	"github.com/rampart-shield/rampart/internal/slowrate"
)

// WatchRequest starts a watch.
type WatchRequest struct {
	// Name of the watch (default: derived from the target).
	Name   string         `json:"name"`
	Target apptarget.Spec `json:"target"`
	// NoDetect only monitors (no model, no alerts).
	NoDetect bool `json:"no_detect,omitempty"`
	// Train is the benign training window ("200s"); MinTrain the fewest
	// requests to train on.
	Train    string `json:"train,omitempty"`
	MinTrain int    `json:"min_train,omitempty"`
	// Model is a model file (on the agent's host) to detect with at once.
	Model string `json:"model,omitempty"`
	// OutDir receives the training/test/score CSV files and the model.
	OutDir string `json:"out_dir,omitempty"`
	// Action suggested for offending requests: kill, close-sockets, log.
	Action string `json:"action,omitempty"`
	// K fixes the number of clusters (0: chosen automatically).
	K int `json:"k,omitempty"`
	// BlockAfter offences from one address add a block alert (-1: never;
	// default 3 requests, 5 connections).
	BlockAfter int `json:"block_after,omitempty"`
	// Detectors chooses the watch's detectors: "requests" (per-request
	// resources, K-means) and "connections" (per-connection network I/O,
	// PFA: slow-rate attacks). Default both.
	Detectors []string `json:"detectors,omitempty"`
	// MaxConns is how many connections the server can hold at once (for
	// Apache prefork its MaxRequestWorkers; for nginx worker_processes
	// times worker_connections): the connections detector's limit, shared
	// by all processes of the watch (default 1024).
	MaxConns int `json:"max_conns,omitempty"`
	// ConnModel is a connection model file (conn-model.json from an
	// earlier out_dir) to detect with at once.
	ConnModel string `json:"conn_model,omitempty"`
	// Mappers are uprobe request mappers for the requests detector
	// (reqmon.Mapper; `rampart app watch --mappers FILE`).
	Mappers []reqmon.Mapper `json:"mappers,omitempty"`
	// ScoreAll scores every completed request in the agent (no kernel
	// filter of the ones the model is sure to accept).
	ScoreAll bool `json:"score_all,omitempty"`
}

// Detector names in WatchRequest.Detectors.
const (
	DetectRequests    = "requests"
	DetectConnections = "connections"
)

// Info describes a watch.
type Info struct {
	Name      string         `json:"name"`
	Target    string         `json:"target"`
	Spec      apptarget.Spec `json:"spec"`
	Probe     string         `json:"probe"`
	Started   time.Time      `json:"started"`
	Processes []int          `json:"processes"`
	Detectors []string       `json:"detectors"`
	Detect    *reqmon.Status `json:"detect,omitempty"`
	Monitor   reqmon.Stats   `json:"monitor"`
	// ConnProbe is the netio probe instance of the connections detector,
	// Connections its status.
	ConnProbe   string           `json:"conn_probe,omitempty"`
	Connections *slowrate.Status `json:"connections,omitempty"`
}

// Request is a request as the API shows it.
type Request struct {
	ID       uint64             `json:"id"`
	PID      uint32             `json:"pid"`
	Thread   uint32             `json:"thread"`
	Conn     string             `json:"conn"`
	InFlight bool               `json:"in_flight"`
	Running  bool               `json:"running,omitempty"`
	Reason   string             `json:"reason,omitempty"`
	Duration float64            `json:"duration_ms"`
	Vector   map[string]float64 `json:"resources"`
}

// Manager holds the watches.
type Manager struct {
	Probes  *probe.Manager
	OnAlert func(alert.Alert)
	Log     *slog.Logger

	mu      sync.Mutex
	watches map[string]*watch
}

type watch struct {
	info    Info
	ready   bool // started: listed and found
	mon     *reqmon.Monitor
	svc     *reqmon.Service
	coll    *netio.Collector
	csvc    *slowrate.Service
	cancel  context.CancelFunc
	done    chan struct{}
	cdone   chan struct{}
	mu      sync.Mutex
	recent  []reqmon.Sample // ring of completed requests, for the API
	head    int
	nrecent int
}

const keepRecent = 256

// NameRE is what a watch name may look like (it becomes part of a probe
// name).
var NameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,47}$`)

// ErrNotFound: no such watch.
var ErrNotFound = errors.New("no such watch")

// Watch starts a watch. A watch that fails to start leaves nothing behind.
func (m *Manager) Watch(ctx context.Context, req WatchRequest) (Info, error) {
	if m.Log == nil {
		m.Log = slog.Default()
	}
	if err := req.Target.Validate(); err != nil {
		return Info{}, err
	}
	if req.Name == "" {
		req.Name = defaultName(req.Target)
	}
	if !NameRE.MatchString(req.Name) {
		return Info{}, fmt.Errorf("watch name %q: use lower-case letters, digits, '_', '.', '-' (at most 48), starting with a letter or digit", req.Name)
	}
	dets, err := detectors(req)
	if err != nil {
		return Info{}, err
	}
	cfg := reqmon.DetectorConfig{MinTrain: req.MinTrain, OutDir: req.OutDir, Action: req.Action, BlockAfter: req.BlockAfter, ScoreAll: req.ScoreAll}
	cfg.KMeans.K = req.K
	switch req.Action {
	case "", "kill", "close-sockets", "log":
	default:
		return Info{}, fmt.Errorf("action %q: want kill, close-sockets or log", req.Action)
	}
	if req.MaxConns < 0 || req.MaxConns > 1<<24 {
		return Info{}, fmt.Errorf("max_conns %d: want the number of connections the server holds at once (Apache's MaxRequestWorkers), 1 to %d", req.MaxConns, 1<<24)
	}
	if req.Train != "" {
		d, err := time.ParseDuration(req.Train)
		if err != nil || d <= 0 {
			return Info{}, fmt.Errorf("train %q: want a duration such as 200s or 5m", req.Train)
		}
		cfg.Train = d
	}
	if req.Model != "" {
		mod, err := loadModel(req.Model)
		if err != nil {
			return Info{}, fmt.Errorf("model %s: %w", req.Model, err)
		}
		cfg.Model = mod
		cfg.Features = mod.Features()
	}
	ccfg := slowrate.Config{Train: cfg.Train, Limit: req.MaxConns, OutDir: req.OutDir, BlockAfter: req.BlockAfter}
	if req.ConnModel != "" {
		if !slices.Contains(dets, DetectConnections) {
			return Info{}, fmt.Errorf("conn_model is for the connections detector, which this watch does not run")
		}
		mod, err := loadConnModel(req.ConnModel)
		if err != nil {
			return Info{}, fmt.Errorf("connection model %s: %w", req.ConnModel, err)
		}
		ccfg.Model = mod
	}

	m.mu.Lock()
	if m.watches == nil {
		m.watches = map[string]*watch{}
	}
	if _, dup := m.watches[req.Name]; dup {
		m.mu.Unlock()
		return Info{}, fmt.Errorf("a watch named %q exists: stop it first or choose another --name", req.Name)
	}
	w := &watch{done: make(chan struct{}), cdone: make(chan struct{})}
	m.watches[req.Name] = w // reserve the name
	m.mu.Unlock()

	probeName, connProbe := "reqmon-"+req.Name, "netio-"+req.Name
	wantReq := slices.Contains(dets, DetectRequests)
	wantConn := slices.Contains(dets, DetectConnections) && !req.NoDetect
	fail := func(err error) (Info, error) {
		if w.mon != nil {
			w.mon.Close()
		}
		if wantReq {
			_ = m.Probes.Unload(probeName)
		}
		if w.coll != nil {
			w.coll.Close()
		}
		if wantConn {
			_ = m.Probes.Unload(connProbe)
		}
		m.mu.Lock()
		delete(m.watches, req.Name)
		m.mu.Unlock()
		return Info{}, err
	}
	if wantReq {
		mon, err := reqmon.Start(ctx, reqmon.Options{Manager: m.Probes, Probe: probeName, Spec: req.Target, Log: m.Log, Mappers: req.Mappers})
		if err != nil {
			return fail(err)
		}
		w.mon = mon
	}
	if wantConn {
		coll, err := netio.WatchWith(ctx, m.Probes, req.Target, netio.WatchOptions{Probe: connProbe})
		if err != nil {
			return fail(fmt.Errorf("connections detector: %w", err))
		}
		w.coll = coll
	}
	res, _ := apptarget.Resolve(req.Target)
	w.info = Info{Name: req.Name, Target: req.Target.String(), Spec: req.Target, Started: time.Now(), Processes: res.PIDs(), Detectors: dets}
	if wantReq {
		w.info.Probe = probeName
	}
	rctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	if wantReq && !req.NoDetect {
		w.svc = &reqmon.Service{Name: req.Name, Monitor: w.mon, Config: cfg, OnAlert: m.OnAlert, Log: m.Log}
	}
	if wantReq {
		go w.run(rctx, m.Log)
	} else {
		close(w.done)
	}
	if wantConn {
		w.info.ConnProbe = connProbe
		w.csvc = &slowrate.Service{Name: req.Name, Collector: w.coll, Config: ccfg, OnAlert: m.OnAlert, Log: m.Log}
		go func() {
			defer close(w.cdone)
			if err := w.csvc.Run(rctx); err != nil {
				m.Log.Error("connection detector stopped", "watch", req.Name, "err", err)
				for range w.coll.Batches() { // keep the collector drained
				}
			}
		}()
	} else {
		close(w.cdone)
	}
	m.mu.Lock()
	w.ready = true
	m.mu.Unlock()
	return w.snapshot(m.Probes), nil
}

// detectors checks and completes a request's detector list.
func detectors(req WatchRequest) ([]string, error) {
	if len(req.Detectors) == 0 {
		return []string{DetectRequests, DetectConnections}, nil
	}
	var out []string
	for _, d := range req.Detectors {
		switch d {
		case DetectRequests, DetectConnections:
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
		default:
			return nil, fmt.Errorf("detector %q: want %s or %s", d, DetectRequests, DetectConnections)
		}
	}
	if req.NoDetect && !slices.Contains(out, DetectRequests) {
		return nil, fmt.Errorf("no_detect monitors requests only: with the connections detector alone there is nothing to watch")
	}
	return out, nil
}

func defaultName(s apptarget.Spec) string {
	switch {
	case len(s.Execs) > 0:
		return sanitize(baseName(s.Execs[0]))
	case len(s.PIDs) > 0:
		return fmt.Sprintf("pid-%d", s.PIDs[0])
	case len(s.Cgroups) > 0:
		return sanitize(baseName(s.Cgroups[0]))
	}
	return "all"
}

func baseName(p string) string {
	for len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

func sanitize(s string) string {
	b := []byte{}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
			b = append(b, c)
		case c >= 'A' && c <= 'Z':
			b = append(b, c+'a'-'A')
		default:
			b = append(b, '-')
		}
	}
	for len(b) > 0 && (b[0] == '-' || b[0] == '_' || b[0] == '.') {
		b = b[1:]
	}
	if len(b) > 48 {
		b = b[:48]
	}
	if len(b) == 0 {
		return "app"
	}
	return string(b)
}

// run feeds the detector (or just drains the monitor) and keeps the
// recent requests for the API.
func (w *watch) run(ctx context.Context, log *slog.Logger) {
	defer close(w.done)
	if w.svc == nil {
		for {
			select {
			case <-ctx.Done():
				return
			case s, ok := <-w.mon.Completed():
				if !ok {
					return
				}
				w.keep(s)
			}
		}
	}
	// The service reads Completed itself and hands each sample on.
	w.svc.Tap = w.keep
	if err := w.svc.Run(ctx); err != nil {
		log.Error("request detector stopped", "watch", w.info.Name, "err", err)
		for {
			select {
			case <-ctx.Done():
				return
			case s, ok := <-w.mon.Completed():
				if !ok {
					return
				}
				w.keep(s)
			}
		}
	}
}

func (w *watch) keep(s reqmon.Sample) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.recent) < keepRecent {
		w.recent = append(w.recent, s)
	} else {
		w.recent[w.head] = s
		w.head = (w.head + 1) % keepRecent
	}
	w.nrecent++
}

func (w *watch) snapshot(pm *probe.Manager) Info {
	info := w.info
	if w.mon != nil {
		info.Monitor = w.mon.Stats()
	}
	if w.svc != nil {
		st := w.svc.Status()
		info.Detect = &st
	}
	if w.csvc != nil {
		st := w.csvc.Status()
		info.Connections = &st
	}
	p := info.Probe
	if p == "" {
		p = info.ConnProbe
	}
	if pm != nil && p != "" {
		_ = pm.WithMaps(p, func(maps map[string]*ebpf.Map) error {
			ws, err := apptarget.Watched(maps)
			if err != nil {
				return err
			}
			info.Processes = info.Processes[:0:0]
			for p := range ws {
				info.Processes = append(info.Processes, int(p))
			}
			sort.Ints(info.Processes)
			return nil
		})
	}
	return info
}

// List returns every watch, by name.
func (m *Manager) List() []Info {
	m.mu.Lock()
	ws := make([]*watch, 0, len(m.watches))
	for _, w := range m.watches {
		if w.ready {
			ws = append(ws, w)
		}
	}
	m.mu.Unlock()
	out := make([]Info, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.snapshot(m.Probes))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (m *Manager) get(name string) (*watch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.watches[name]
	if !ok || !w.ready {
		return nil, fmt.Errorf("%w %q", ErrNotFound, name)
	}
	return w, nil
}

// Get describes one watch.
func (m *Manager) Get(name string) (Info, error) {
	w, err := m.get(name)
	if err != nil {
		return Info{}, err
	}
	return w.snapshot(m.Probes), nil
}

// Requests returns the requests in flight (inflight) or the latest
// completed ones, at most n.
func (m *Manager) Requests(name string, inflight bool, n int) ([]Request, error) {
	w, err := m.get(name)
	if err != nil {
		return nil, err
	}
	if w.mon == nil {
		return nil, fmt.Errorf("watch %q runs no request monitor (its detectors: %s)", name, strings.Join(w.info.Detectors, ", "))
	}
	var ss []reqmon.Sample
	if inflight {
		ss = w.mon.InFlight()
		sort.Slice(ss, func(i, j int) bool { return ss[i].Vector[reqmon.FCPU] > ss[j].Vector[reqmon.FCPU] })
	} else {
		w.mu.Lock()
		k := len(w.recent)
		for i := 0; i < k; i++ { // newest first
			ss = append(ss, w.recent[(w.head+k-1-i)%k])
		}
		w.mu.Unlock()
	}
	if n > 0 && len(ss) > n {
		ss = ss[:n]
	}
	out := make([]Request, 0, len(ss))
	for _, s := range ss {
		r := Request{ID: s.ID, PID: s.TGID, Thread: s.LastTID, Conn: s.Conn(), InFlight: s.InFlight, Running: s.Running,
			Duration: float64(s.Duration) / 1e6, Vector: map[string]float64{}}
		if !s.InFlight {
			r.Reason = s.Reason.String()
		}
		for i, f := range reqmon.Features {
			r.Vector[f] = s.Vector[i]
		}
		out = append(out, r)
	}
	return out, nil
}

// Stop ends a watch and unloads its probes.
func (m *Manager) Stop(name string) error {
	w, err := m.get(name)
	if err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.watches, name)
	m.mu.Unlock()
	w.cancel()
	if w.mon != nil {
		w.mon.Close()
	}
	if w.coll != nil {
		w.coll.Close()
	}
	<-w.done
	<-w.cdone
	var errs []error
	if w.info.Probe != "" {
		errs = append(errs, m.Probes.Unload(w.info.Probe))
	}
	if w.info.ConnProbe != "" {
		errs = append(errs, m.Probes.Unload(w.info.ConnProbe))
	}
	return errors.Join(errs...)
}

// Close stops every watch.
func (m *Manager) Close() {
	for _, i := range m.List() {
		_ = m.Stop(i.Name)
	}
}

func loadModel(path string) (*kmeans.Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return kmeans.Load(f, nil)
}

func loadConnModel(path string) (*pfa.Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return pfa.Load(f)
}
