// Package api serves the agent's REST API, its OpenMetrics endpoint and its
// server-sent event streams, and holds the HTTP client the CLI uses.
//
// Every response is JSON except /metrics, /v1/probes/{name}/open-metrics
// (OpenMetrics or Prometheus text, negotiated) and the event streams
// (text/event-stream). Errors are {"error": "...", "detail": "..."} with the
// status taken from the error's probe.ErrorKind.
package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/rampart-shield/rampart/internal/flow"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/rampart-shield/rampart/internal/probe"
)

// Manager is what the API needs of the probe manager.
type Manager interface {
	Load(ctx context.Context, req probe.LoadRequest) (probe.ProbeInfo, error)
	Unload(name string) error
	List() []probe.ProbeInfo
	Get(name string) (probe.ProbeInfo, error)
	ReadMetrics(name string, opts probe.ReadOptions) ([]probe.MetricValue, error)
	ReadMetric(name, metric string, opts probe.ReadOptions) (probe.MetricValue, error)
	Collector() prometheus.Collector
	ProbeCollector(name string) (prometheus.Collector, error)
	Subscribe(probe, stream string) (<-chan probe.Event, func(), error)
}

var _ Manager = (*probe.Manager)(nil)

// Default limits.
const (
	DefaultMaxLoadBytes = 64 << 20
	// MaxBodyBytes bounds every request body except probe loads.
	MaxBodyBytes      = 1 << 20
	DefaultKeepAlive  = 15 * time.Second
	shutdownGrace     = 5 * time.Second
	readHeaderTimeout = 10 * time.Second
)

// Options configures a Server.
type Options struct {
	Logger  *slog.Logger
	Version string
	// MaxLoadBytes bounds a probe load request body (default 64 MiB).
	MaxLoadBytes int64
	// KeepAlive is the interval of comment lines on idle event streams
	// (default 15 s).
	KeepAlive time.Duration
	// Flows serves /v1/flows when flow monitoring runs (nil: it does not).
	Flows Flows
	// Firewall serves /v1/firewall when the firewall runs on FirewallIface.
	Firewall      Firewall
	FirewallIface string
	// Responder handles /v1/alerts and serves /v1/audit and /v1/respond.
	Responder Responder
	// Apps serves /v1/apps (application watches).
	Apps Apps
}

// Flows is the flow service (internal/flow.Service).
type Flows interface {
	Recent(n int) []flow.Flow
	Top(n int, byPackets bool) []flow.Talker
	prometheus.Collector
}

// Server is the agent's HTTP API. One Server may serve a unix socket and a
// TCP address at the same time.
type Server struct {
	m         Manager
	log       *slog.Logger
	version   string
	maxLoad   int64
	keepAlive time.Duration

	mux      *http.ServeMux
	gatherer prometheus.Gatherer
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	flows Flows

	fw       Firewall
	fwIface  string
	resp     Responder
	apps     Apps
	alertsMu sync.Mutex
	alerts   []AlertResult

	// peerAllowed decides which uids may use the unix socket.
	peerAllowed func(uid uint32) bool
}

// NewServer returns a Server for m.
func NewServer(m Manager, opts Options) *Server {
	s := &Server{
		m:           m,
		log:         opts.Logger,
		version:     opts.Version,
		maxLoad:     opts.MaxLoadBytes,
		keepAlive:   opts.KeepAlive,
		peerAllowed: defaultPeerAllowed,
		flows:       opts.Flows,
		fw:          opts.Firewall,
		fwIface:     opts.FirewallIface,
		resp:        opts.Responder,
		apps:        opts.Apps,
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.maxLoad <= 0 {
		s.maxLoad = DefaultMaxLoadBytes
	}
	if s.keepAlive <= 0 {
		s.keepAlive = DefaultKeepAlive
	}
	if s.version == "" {
		s.version = "dev"
	}

	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rampart_api_requests_total",
		Help: "API requests served, by status code and route.",
	}, []string{"code", "route"})
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rampart_api_request_duration_seconds",
		Help:    "Time to serve an API request, by route (event streams count until they end).",
		Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30},
	}, []string{"route"})
	own := prometheus.NewRegistry()
	own.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		s.requests, s.duration,
	)
	if s.flows != nil {
		own.MustRegister(s.flows)
	}
	gatherers := prometheus.Gatherers{own}
	if c := m.Collector(); c != nil {
		probes := prometheus.NewRegistry()
		if err := probes.Register(c); err != nil {
			s.log.Error("probe metrics are not exported on /metrics", "err", err)
		} else {
			gatherers = append(gatherers, probes)
		}
	}
	s.gatherer = gatherers
	s.routes()
	return s
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	h := func(pattern string, f http.HandlerFunc) { s.mux.Handle(pattern, f) }
	h("GET /v1/health", s.health)
	h("GET /v1/probes", s.listProbes)
	h(routeLoadPost, s.loadProbe)
	h(routeLoadPut, s.loadProbe)
	h("GET /v1/probes/{name}", s.getProbe)
	h("DELETE /v1/probes/{name}", s.unloadProbe)
	h("GET /v1/probes/{name}/metrics", s.readMetrics)
	h("GET /v1/probes/{name}/metrics/{metric}", s.readMetric)
	h("GET /v1/probes/{name}/metrics/{metric}/value", s.readMetricValue)
	h("GET /v1/probes/{name}/open-metrics", s.probeOpenMetrics)
	h("GET /v1/probes/{name}/events", s.events)
	h("GET /v1/probes/{name}/events/{stream}", s.events)
	h("GET /v1/events", s.events)
	h("GET /metrics", s.metrics)
	h("GET /v1/flows", s.recentFlows)
	h("GET /v1/flows/top", s.topFlows)
	h("GET /v1/firewall", s.firewallStatus)
	h("GET /v1/firewall/rules", s.listRules)
	h("POST /v1/firewall/rules", s.addRule)
	h("DELETE /v1/firewall/rules", s.flushRules)
	h("PUT /v1/firewall/rules/{id}", s.updateRule)
	h("DELETE /v1/firewall/rules/{id}", s.deleteRule)
	h(routeBatch, s.batchRules)
	h("GET /v1/firewall/allowlist", s.getAllowlist)
	h("POST /v1/firewall/allowlist", s.changeAllowlist)
	h("DELETE /v1/firewall/allowlist", s.changeAllowlist)
	h("GET /v1/alerts", s.listAlerts)
	h("POST /v1/alerts", s.postAlert)
	h("GET /v1/audit", s.getAudit)
	h("GET /v1/respond", s.getMode)
	h("PUT /v1/respond", s.setMode)
	h("POST /v1/apps", s.watchApp)
	h("GET /v1/apps", s.listApps)
	h("GET /v1/apps/{name}", s.getApp)
	h("GET /v1/apps/{name}/requests", s.appRequests)
	h("DELETE /v1/apps/{name}", s.stopApp)
}

// routeBatch takes up to MaxBatchBytes: 10,000 rules are about 1 MB.
const routeBatch = "POST /v1/firewall/rules/batch"

// MaxBatchBytes bounds a firewall batch body.
const MaxBatchBytes = 32 << 20

const (
	routeLoadPost = "POST /v1/probes"
	routeLoadPut  = "PUT /v1/probes/{name}"
)

// Handler returns the API with logging, metrics and panic recovery but no
// access control: ServeUnix and ServeTCP add theirs.
func (s *Server) Handler() http.Handler { return s.chain(nil) }

// chain wraps the router: instrument (log + metrics) → recover → gate → route.
func (s *Server) chain(gate func(http.Handler) http.Handler) http.Handler {
	var h http.Handler = http.HandlerFunc(s.dispatch)
	if gate != nil {
		h = gate(h)
	}
	return s.instrument(s.recoverPanics(h))
}

// dispatch routes a request, answering unknown paths and wrong methods in
// JSON and bounding the request body.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		// The mux's own 404 or 405 (or a redirect): keep its status and
		// Allow header, answer in JSON.
		rec := &headerRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.code {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", rec.header.Get("Allow"))
			writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed on "+r.URL.Path, "allowed: "+rec.header.Get("Allow"))
		case http.StatusNotFound:
			writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path, "the API lives under /v1 (e.g. GET /v1/probes) and /metrics")
		default:
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.code)
		}
		return
	}
	limit := int64(MaxBodyBytes)
	if pattern == routeLoadPost || pattern == routeLoadPut {
		limit = s.maxLoad
	}
	if pattern == routeBatch {
		limit = MaxBatchBytes
	}
	if r.ContentLength > limit {
		writeTooLarge(w, limit)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	s.mux.ServeHTTP(w, r)
}

// routeOf names the route a request matches, for metrics and logs.
func (s *Server) routeOf(r *http.Request) string {
	if _, pattern := s.mux.Handler(r); pattern != "" {
		return pattern
	}
	return "unmatched"
}

// headerRecorder captures what the mux's fallback handlers write.
type headerRecorder struct {
	header http.Header
	code   int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) {
	if h.code == 0 {
		h.code = http.StatusOK
	}
	return len(b), nil
}
func (h *headerRecorder) WriteHeader(code int) {
	if h.code == 0 {
		h.code = code
	}
}
