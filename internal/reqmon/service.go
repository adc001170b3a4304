package reqmon

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/internal/detect/kmeans"
	rq "github.com/rampart-shield/rampart/probes/reqmon"
)

// DefaultDetectFeatures are the features the detector models by default:
// what a request consumes. Idle time is recorded (and written to the CSV
// files) but not scored by default: on a loaded host a benign request's wall
// time grows with the run queue, not with anything the client did.
var DefaultDetectFeatures = []string{"cpu_ns", "page_faults", "mem_bytes", "rx_bytes", "tx_bytes", "backend_bytes", "io_calls"}

// DefaultUnits are the smallest amounts of each resource that matter
// (kmeans.Config.Units): a millisecond of CPU, 64 page faults, a MiB of
// memory, 4 KiB of I/O, 8 I/O calls, 10 ms of idle time. Below them,
// differences between benign requests are noise (a request that happened
// to take 3 µs rather than 300 µs); above them, ratios count in full.
var DefaultUnits = map[string]float64{
	"cpu_ns": 1e6, "page_faults": 64, "mem_bytes": 1 << 20, "rx_bytes": 4096, "tx_bytes": 4096,
	"backend_bytes": 4096, "io_calls": 8, "idle_ns": 1e7,
}

// DefaultMargin is the detector's threshold margin over the 99.9% quantile
// of each cluster's benign scores (kmeans.Config.Margin).
const DefaultMargin = 1.5

// DetectorConfig configures the request anomaly detector.
type DetectorConfig struct {
	// Train is the benign training window (default 200 s, FineLame's).
	// Training ends when both Train has passed since the first request
	// and MinTrain requests completed.
	Train    time.Duration `json:"train"`
	MinTrain int           `json:"min_train"`
	// Features modelled (names from Features; default DefaultDetectFeatures).
	Features []string      `json:"features,omitempty"`
	KMeans   kmeans.Config `json:"kmeans"`
	Model    *kmeans.Model `json:"-"`
	// OutDir, when set, receives FineLame-style files: train.csv,
	// test.csv, scores.csv, clusters.csv, normalisation.csv, model.json.
	OutDir string `json:"out_dir,omitempty"`
	// Action suggested for an offending request: kill (the worker
	// process; its supervisor restarts it), close-sockets (the
	// connection), or log. Default kill: closing a connection does not
	// stop a handler that is burning CPU.
	Action string `json:"action,omitempty"`
	// BlockAfter offences from one client address within BlockWindow add
	// a block alert for that address (default 3 in 10 minutes; -1 never).
	BlockAfter  int           `json:"block_after"`
	BlockWindow time.Duration `json:"block_window"`
	// ScoreAll scores every completed request in the agent. By default,
	// once a model is in use, the kernel drops the completed requests the
	// model is sure to accept (its benign boxes, kmeans.BenignBoxes) and
	// streams the rest, plus one in SampleEvery of the dropped ones (the
	// test set and the API's recent requests then hold that sample).
	ScoreAll    bool `json:"score_all,omitempty"`
	SampleEvery int  `json:"sample_every,omitempty"`
}

func (c *DetectorConfig) defaults() {
	if c.Train <= 0 {
		c.Train = 200 * time.Second
	}
	if c.MinTrain <= 0 {
		c.MinTrain = 1000
	}
	if len(c.Features) == 0 {
		c.Features = DefaultDetectFeatures
	}
	if c.KMeans.Margin == 0 {
		// Runtimes charge a request now and then with work that is not
		// its own (a garbage-collection pause right after its I/O): a
		// wider margin than kmeans' default keeps those benign tails in,
		// and costs a crafted request only a few more ms of CPU before
		// it is flagged.
		c.KMeans.Margin = DefaultMargin
	}
	if c.KMeans.Units == nil {
		c.KMeans.Units = map[string]float64{}
		for _, f := range c.Features {
			if u, ok := DefaultUnits[f]; ok {
				c.KMeans.Units[f] = u
			}
		}
	}
	if c.Action == "" {
		c.Action = "kill"
	}
	if c.BlockAfter == 0 {
		c.BlockAfter = 3
	}
	if c.BlockWindow <= 0 {
		c.BlockWindow = 10 * time.Minute
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = 64
	}
}

// Phase of a Service.
const (
	PhaseTraining  = "training"
	PhaseDetecting = "detecting"
)

// Status is what a Service reports.
type Status struct {
	Phase        string    `json:"phase"`
	Trained      int       `json:"trained"`
	TrainUntil   time.Time `json:"train_until,omitempty"`
	K            int       `json:"k,omitempty"`
	Scored       uint64    `json:"scored"`
	Outliers     uint64    `json:"outliers"`
	InFlightSeen uint64    `json:"in_flight_scored"`
	Alerts       uint64    `json:"alerts"`
	Monitor      Stats     `json:"monitor"`
	Error        string    `json:"error,omitempty"`
}

// Service scores a Monitor's requests with a K-means model (trained on the
// first window of benign requests, or given) and raises an alert for each
// request the model does not accept, while it runs.
type Service struct {
	Name    string // the watch's name, in alerts
	Monitor *Monitor
	Config  DetectorConfig
	OnAlert func(alert.Alert)
	// Tap, when set, sees every completed request first.
	Tap func(Sample)
	Log *slog.Logger

	mu       sync.Mutex
	status   Status
	model    *kmeans.Model
	cols     []int
	trainer  *kmeans.Trainer
	first    time.Time
	alerted  map[uint64]time.Time
	offences map[netip.Addr][]time.Time
	files    *outFiles
}

// Model returns the trained model (nil while training).
func (s *Service) Model() *kmeans.Model {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.model
}

// Status reports the phase and counters.
func (s *Service) Status() Status {
	s.mu.Lock()
	st := s.status
	s.mu.Unlock()
	st.Monitor = s.Monitor.Stats()
	return st
}

func (s *Service) init() error {
	s.Config.defaults()
	if s.Log == nil {
		s.Log = slog.Default()
	}
	s.cols = s.cols[:0]
	for _, f := range s.Config.Features {
		i := slices.Index(Features, f)
		if i < 0 {
			return fmt.Errorf("feature %q: reqmon measures %s", f, strings.Join(Features, ", "))
		}
		s.cols = append(s.cols, i)
	}
	s.alerted = map[uint64]time.Time{}
	s.offences = map[netip.Addr][]time.Time{}
	t, err := kmeans.NewTrainer(s.Config.Features, s.Config.KMeans)
	if err != nil {
		return err
	}
	s.trainer = t
	s.status.Phase = PhaseTraining
	if m := s.Config.Model; m != nil {
		if !slices.Equal(m.Features(), s.Config.Features) {
			return fmt.Errorf("the model has features %s, the detector %s", strings.Join(m.Features(), ","), strings.Join(s.Config.Features, ","))
		}
		s.model = m
		s.status.Phase = PhaseDetecting
		s.status.K = m.K()
		s.filter(m)
	}
	if s.Config.OutDir != "" {
		f, err := openOutFiles(s.Config.OutDir, s.Config.Features)
		if err != nil {
			return err
		}
		s.files = f
	}
	return nil
}

func (s *Service) vector(smp Sample) []float64 {
	x := make([]float64, len(s.cols))
	for i, c := range s.cols {
		x[i] = smp.Vector[c]
	}
	return x
}

// Run consumes the monitor until ctx ends or the monitor closes.
func (s *Service) Run(ctx context.Context) error {
	if err := s.init(); err != nil {
		return err
	}
	defer s.files.close()
	tick := time.NewTicker(s.Monitor.opts.Sweep)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case smp, ok := <-s.Monitor.Completed():
			if !ok {
				return nil
			}
			s.completed(smp)
		case <-tick.C:
			s.sweep()
		}
	}
}

func (s *Service) completed(smp Sample) {
	if s.Tap != nil {
		s.Tap(smp)
	}
	s.mu.Lock()
	model := s.model
	s.mu.Unlock()
	x := s.vector(smp)
	if model == nil {
		s.addTraining(x, smp)
		return
	}
	res := model.ScoreInFlight(x)
	s.mu.Lock()
	s.status.Scored++
	if res.Outlier {
		s.status.Outliers++
	}
	_, already := s.alerted[smp.ID]
	delete(s.alerted, smp.ID)
	s.mu.Unlock()
	s.files.test(smp, x, model)
	if res.Outlier && !already {
		s.raise(smp, res, model)
	}
}

func (s *Service) addTraining(x []float64, smp Sample) {
	if err := s.trainer.Add(x); err != nil {
		return
	}
	s.mu.Lock()
	now := time.Now()
	if s.first.IsZero() {
		s.first = now
		s.status.TrainUntil = now.Add(s.Config.Train)
	}
	s.status.Trained = int(s.trainer.Seen())
	ready := now.Sub(s.first) >= s.Config.Train && s.trainer.Len() >= s.Config.MinTrain
	s.mu.Unlock()
	s.files.trainRow(smp, x)
	if ready {
		s.fit()
	}
}

func (s *Service) fit() {
	start := time.Now()
	n := s.trainer.Len()
	m, err := s.trainer.Train()
	if err != nil {
		s.Log.Error("request model training failed; collecting again", "watch", s.Name, "requests", n, "err", err)
		s.trainer.Reset()
		s.mu.Lock()
		s.status.Error = err.Error()
		s.first = time.Time{}
		s.mu.Unlock()
		return
	}
	s.trainer.Reset()
	m.Name = "reqmon-" + s.Name
	s.Log.Info("request model trained", "watch", s.Name, "requests", n, "k", m.K(), "took", time.Since(start).Round(time.Millisecond))
	if err := s.files.model(m); err != nil {
		s.Log.Warn("writing the model files", "err", err)
	}
	s.mu.Lock()
	s.model = m
	s.status.Phase = PhaseDetecting
	s.status.K = m.K()
	s.status.Error = ""
	s.mu.Unlock()
	s.filter(m)
}

// filter hands the model's benign boxes to the kernel (unless ScoreAll):
// the requests inside them would score below 1 here.
func (s *Service) filter(m *kmeans.Model) {
	if s.Config.ScoreAll {
		return
	}
	var boxes [][NFeatures]float64
	for _, mb := range m.BenignBoxes() {
		var b [NFeatures]float64
		for j := range b {
			b[j] = math.Inf(1) // not modelled: free
		}
		for i, c := range s.cols {
			b[c] = mb[i]
		}
		boxes = append(boxes, b)
	}
	if len(boxes) > rq.MaxBoxes {
		boxes = boxes[:rq.MaxBoxes]
	}
	if err := s.Monitor.SetBenign(boxes, s.Config.SampleEvery); err != nil {
		s.Log.Warn("benign boxes not installed: every request is scored here", "watch", s.Name, "err", err)
		return
	}
	s.Log.Info("benign boxes installed in the kernel", "watch", s.Name, "boxes", len(boxes), "sample_every", s.Config.SampleEvery)
}

// sweep scores every request in flight.
func (s *Service) sweep() {
	s.mu.Lock()
	model := s.model
	s.mu.Unlock()
	if model == nil {
		return
	}
	now := time.Now()
	for _, smp := range s.Monitor.InFlight() {
		res := model.ScoreInFlight(s.vector(smp))
		s.mu.Lock()
		s.status.InFlightSeen++
		_, already := s.alerted[smp.ID]
		if res.Outlier && !already {
			s.alerted[smp.ID] = now
		}
		s.mu.Unlock()
		if res.Outlier && !already {
			s.raise(smp, res, model)
		}
	}
	// Forget requests alerted long ago whose completion we never saw.
	s.mu.Lock()
	for id, t := range s.alerted {
		if now.Sub(t) > 10*time.Minute {
			delete(s.alerted, id)
		}
	}
	s.mu.Unlock()
}

// kindOf names an anomaly after the resource that dominates it.
func kindOf(top []kmeans.Contribution) string {
	if len(top) == 0 {
		return "request-anomaly"
	}
	switch top[0].Name {
	case "cpu_ns":
		return "request-cpu"
	case "mem_bytes", "page_faults":
		return "request-memory"
	case "rx_bytes":
		return "request-input"
	case "tx_bytes":
		return "request-output"
	case "idle_ns":
		return "request-stall"
	}
	return "request-anomaly"
}

func (s *Service) raise(smp Sample, res kmeans.Result, model *kmeans.Model) {
	comm := Comm(smp.TGID)
	state := "completed"
	if smp.InFlight {
		state = "still running"
	}
	a := alert.Alert{
		Time:     time.Now(),
		Detector: "kmeans",
		Model:    model.Name,
		Kind:     kindOf(res.Top),
		Score:    res.Score,
		Thresh:   1,
		Summary: fmt.Sprintf("request %s of %s[%d] is outside every benign cluster (%s after %v; nearest cluster %d, distance %.1f > %.1f)",
			smp.Conn(), comm, smp.TGID, state, smp.Duration.Round(time.Millisecond), res.Cluster, res.Distance, res.Threshold),
		Features:  res.AlertFeatures(4),
		Subject:   alert.Subject{PID: int(smp.TGID), Comm: comm, Conn: smp.Conn(), Proto: "tcp", Port: smp.Local.Port(), Dst: smp.Local.Addr().String()},
		Suggested: s.Config.Action,
		Samples:   []string{fmt.Sprintf("watch=%s request=%d thread=%d duration=%v cpu=%v", s.Name, smp.ID, smp.LastTID, smp.Duration.Round(time.Millisecond), time.Duration(smp.Vector[FCPU]).Round(time.Millisecond))},
	}
	s.mu.Lock()
	s.status.Alerts++
	s.mu.Unlock()
	s.files.detection(smp, s.vector(smp))
	if s.OnAlert != nil {
		s.OnAlert(a)
	}
	s.offence(smp, a)
}

// offence counts an alert against the client's address and, after
// BlockAfter of them, asks for the address to be blocked.
func (s *Service) offence(smp Sample, a alert.Alert) {
	if s.Config.BlockAfter < 0 || !smp.Remote.Addr().IsValid() {
		return
	}
	src := smp.Remote.Addr()
	now := time.Now()
	s.mu.Lock()
	ts := s.offences[src]
	keep := ts[:0]
	for _, t := range ts {
		if now.Sub(t) < s.Config.BlockWindow {
			keep = append(keep, t)
		}
	}
	keep = append(keep, now)
	s.offences[src] = keep
	n := len(keep)
	if n >= s.Config.BlockAfter {
		delete(s.offences, src)
	}
	s.mu.Unlock()
	if n < s.Config.BlockAfter || s.OnAlert == nil {
		return
	}
	b := a
	b.ID = ""
	b.Kind = "request-repeat-offender"
	b.Summary = fmt.Sprintf("%s sent %d requests the model rejected within %v", src, n, s.Config.BlockWindow)
	b.Subject = alert.Subject{Sources: []string{src.String()}, Dst: smp.Local.Addr().String(), Proto: "tcp", Port: smp.Local.Port()}
	b.Suggested = "block"
	s.OnAlert(b)
}

// writeFileAtomic writes a file whole or not at all.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}
