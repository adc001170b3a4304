package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-shield/rampart/internal/api/apitest"
	"github.com/rampart-shield/rampart/internal/probe"
)

var _ Manager = (*apitest.Fake)(nil)

// syncBuffer is a log sink tests can read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newServer(t *testing.T, f *apitest.Fake, opts Options) (*Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Version == "" {
		opts.Version = "1.2.3-test"
	}
	return NewServer(f, opts), logs
}

// seeded returns a fake with probe "pc" loaded: one metric, one stream.
func seeded() *apitest.Fake {
	f := apitest.New()
	f.Add(probe.ProbeInfo{
		Name: "pc", Origin: "builtin",
		Programs: []probe.ProgramInfo{{Name: "count", Hook: "xdp:lo"}},
		Metrics:  []probe.MetricInfo{{Name: "packets", Map: "counts", Type: "counter"}},
		Events:   []probe.EventInfo{{Name: "drops", Map: "rb", Type: "struct event"}},
	}, probe.MetricValue{Name: "packets", Type: "counter", Value: []probe.Entry{
		{Key: json.RawMessage(`6`), Value: json.RawMessage(`42`)},
		{Key: json.RawMessage(`17`), Value: json.RawMessage(`7`)},
	}})
	return f
}

const manifestJSON = `{"name":"mine","programs":[{"name":"count","hook":"xdp"}],"metrics":[{"name":"packets","map":"counts","type":"Counter"}],"parameters":{"N":1024}}`

func serve(h http.Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestRoutes(t *testing.T) {
	rejected := &probe.Error{Kind: probe.KindRejected, Msg: "the verifier rejected program count", Detail: "R1 invalid mem access 'scalar'"}
	tests := []struct {
		name    string
		loadErr error
		method  string
		path    string
		body    string
		code    int
		want    string // substring of the body
		check   func(t *testing.T, f *apitest.Fake, rec *httptest.ResponseRecorder)
	}{
		{name: "health", method: "GET", path: "/v1/health", code: 200, want: `{"status":"ok","version":"1.2.3-test"}`},
		{name: "list", method: "GET", path: "/v1/probes", code: 200, want: `"name":"pc"`},
		{name: "get", method: "GET", path: "/v1/probes/pc", code: 200, want: `"hook":"xdp:lo"`},
		{name: "get missing", method: "GET", path: "/v1/probes/nope", code: 404, want: `{"error":"probe \"nope\" is not loaded","detail":""}`},
		{name: "delete", method: "DELETE", path: "/v1/probes/pc", code: 204, check: func(t *testing.T, f *apitest.Fake, rec *httptest.ResponseRecorder) {
			if _, err := f.Get("pc"); err == nil {
				t.Error("pc still loaded")
			}
		}},
		{name: "delete missing", method: "DELETE", path: "/v1/probes/nope", code: 404, want: `"error"`},
		{name: "metrics", method: "GET", path: "/v1/probes/pc/metrics", code: 200, want: `[{"name":"packets","type":"counter","timestamp":0,"value":[{"key":6,"value":42},{"key":17,"value":7}]}]`},
		{name: "metrics percpu", method: "GET", path: "/v1/probes/pc/metrics?percpu=true", code: 200, check: func(t *testing.T, f *apitest.Fake, _ *httptest.ResponseRecorder) {
			if !f.LastRead().PerCPU {
				t.Error("percpu=true did not reach the manager")
			}
		}},
		{name: "metrics bad percpu", method: "GET", path: "/v1/probes/pc/metrics?percpu=maybe", code: 400, want: `percpu`},
		{name: "metrics missing probe", method: "GET", path: "/v1/probes/nope/metrics", code: 404},
		{name: "metric", method: "GET", path: "/v1/probes/pc/metrics/packets", code: 200, want: `{"name":"packets","type":"counter","timestamp":0,"value":[`},
		{name: "metric missing", method: "GET", path: "/v1/probes/pc/metrics/bytes", code: 404, want: `no metric \"bytes\"`},
		{name: "metric value", method: "GET", path: "/v1/probes/pc/metrics/packets/value", code: 200, want: `[{"key":6,"value":42},{"key":17,"value":7}]`},
		{name: "open-metrics text", method: "GET", path: "/v1/probes/pc/open-metrics", code: 200, want: `rampart_fake_metric_entries{metric="packets",probe="pc"} 2`, check: func(t *testing.T, _ *apitest.Fake, rec *httptest.ResponseRecorder) {
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q", ct)
			}
			if strings.Contains(rec.Body.String(), "rampart_fake_probes_loaded") {
				t.Error("per-probe view has the manager's own metrics")
			}
		}},
		{name: "open-metrics missing", method: "GET", path: "/v1/probes/nope/open-metrics", code: 404},
		{name: "unknown path", method: "GET", path: "/v2/nothing", code: 404, want: `"error":"no such endpoint: /v2/nothing"`},
		{name: "trailing slash", method: "GET", path: "/v1/probes/", code: 404, want: `"error"`},
		{name: "wrong method", method: "PATCH", path: "/v1/probes/pc", code: 405, want: `"error":"method PATCH is not allowed`, check: func(t *testing.T, _ *apitest.Fake, rec *httptest.ResponseRecorder) {
			if a := rec.Header().Get("Allow"); !strings.Contains(a, "DELETE") || !strings.Contains(a, "PUT") {
				t.Errorf("Allow %q", a)
			}
		}},
		{name: "wrong method health", method: "POST", path: "/v1/health", code: 405},
		{name: "post load", method: "POST", path: "/v1/probes", body: `{"manifest":` + manifestJSON + `,"object":"AQID","iface":"eth0"}`, code: 201, want: `"hook":"xdp:eth0"`,
			check: func(t *testing.T, f *apitest.Fake, rec *httptest.ResponseRecorder) {
				if loc := rec.Header().Get("Location"); loc != "/v1/probes/mine" {
					t.Errorf("Location %q", loc)
				}
				req := f.Loads()[0]
				if req.Name != "mine" || req.Origin != "user" || !bytes.Equal(req.Object, []byte{1, 2, 3}) {
					t.Errorf("request %+v", req)
				}
				if v, ok := req.Manifest.Parameters["N"].(json.Number); !ok || v != "1024" {
					t.Errorf("parameter N = %#v, want json.Number", req.Manifest.Parameters["N"])
				}
				if req.Manifest.Metrics[0].Type != "counter" {
					t.Errorf("manifest not validated/normalized: %q", req.Manifest.Metrics[0].Type)
				}
			}},
		{name: "put load", method: "PUT", path: "/v1/probes/other", body: `{"manifest":` + manifestJSON + `,"source":"aW50IHg7"}`, code: 200, want: `"name":"other"`},
		{name: "put builtin no body", method: "PUT", path: "/v1/probes/packet-counter", code: 200, want: `"origin":"builtin"`},
		{name: "put builtin with options", method: "PUT", path: "/v1/probes/packet-counter", body: `{"iface":"eth1","params":{"N":"3"}}`, code: 200, want: `"hook":"xdp:eth1"`},
		{name: "put unknown builtin", method: "PUT", path: "/v1/probes/zzz", code: 404, want: `no built-in probe`},
		{name: "post empty", method: "POST", path: "/v1/probes", code: 400, want: `empty`},
		{name: "post no name", method: "POST", path: "/v1/probes", body: `{"iface":"eth0"}`, code: 400, want: `no probe name`},
		{name: "put name mismatch", method: "PUT", path: "/v1/probes/a", body: `{"name":"b"}`, code: 400, want: `path names`},
		{name: "bad name", method: "PUT", path: "/v1/probes/Bad!", code: 400, want: `not valid`},
		{name: "unknown field", method: "POST", path: "/v1/probes", body: `{"name":"x","objekt":"AQID"}`, code: 400, want: `unknown field \"objekt\"`},
		{name: "unknown manifest field", method: "POST", path: "/v1/probes", body: `{"manifest":{"name":"x","programz":[]}}`, code: 400, want: `unknown field \"programz\"`},
		{name: "origin is not settable", method: "POST", path: "/v1/probes", body: `{"name":"packet-counter","Origin":"builtin"}`, code: 400, want: `unknown field`},
		{name: "bad json", method: "POST", path: "/v1/probes", body: `{"name":`, code: 400, want: `invalid load request`},
		{name: "two objects", method: "POST", path: "/v1/probes", body: `{"name":"x"} {"name":"y"}`, code: 400, want: `data after`},
		{name: "invalid manifest", method: "POST", path: "/v1/probes", body: `{"manifest":{"name":"x","programs":[]},"object":"AQID"}`, code: 400, want: `no programs`},
		{name: "object without manifest", method: "PUT", path: "/v1/probes/x", body: `{"object":"AQID"}`, code: 400, want: `needs its manifest`},
		{name: "object and source", method: "PUT", path: "/v1/probes/x", body: `{"manifest":` + manifestJSON + `,"object":"AQID","source":"AQID"}`, code: 400, want: `not both`},
		{name: "rejected", loadErr: rejected, method: "PUT", path: "/v1/probes/packet-counter", code: 422, want: `{"error":"the verifier rejected program count","detail":"R1 invalid mem access 'scalar'"}`},
		{name: "invalid from manager", loadErr: &probe.Error{Kind: probe.KindInvalid, Msg: "bad hook"}, method: "PUT", path: "/v1/probes/packet-counter", code: 400},
		{name: "unavailable", loadErr: &probe.Error{Kind: probe.KindUnavailable, Msg: "clang is not installed"}, method: "PUT", path: "/v1/probes/packet-counter", code: 501, want: `clang`},
		{name: "internal", loadErr: errors.New("disk on fire"), method: "PUT", path: "/v1/probes/packet-counter", code: 500, want: `{"error":"disk on fire","detail":""}`},
		{name: "events missing probe", method: "GET", path: "/v1/events?probe=nope", code: 404},
		{name: "events missing stream", method: "GET", path: "/v1/probes/pc/events/nope", code: 404, want: `no event stream`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := seeded()
			f.LoadErr = tt.loadErr
			s, _ := newServer(t, f, Options{})
			rec := serve(s.Handler(), tt.method, tt.path, tt.body)
			if rec.Code != tt.code {
				t.Fatalf("%s %s: status %d, want %d; body %s", tt.method, tt.path, rec.Code, tt.code, rec.Body)
			}
			if tt.code != 204 {
				if ct := rec.Header().Get("Content-Type"); tt.code >= 400 && ct != "application/json" {
					t.Errorf("error Content-Type %q", ct)
				}
				if tt.code >= 400 {
					var eb map[string]string
					if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb["error"] == "" {
						t.Errorf("error body %q is not {error, detail}", rec.Body)
					} else if _, ok := eb["detail"]; !ok {
						t.Errorf("error body %q has no detail", rec.Body)
					}
				}
			} else if rec.Body.Len() != 0 {
				t.Errorf("204 with body %q", rec.Body)
			}
			if tt.want != "" && !strings.Contains(rec.Body.String(), tt.want) {
				t.Errorf("body %s\nwant it to contain %s", rec.Body, tt.want)
			}
			if tt.check != nil {
				tt.check(t, f, rec)
			}
		})
	}
}

func TestEmptyListIsArray(t *testing.T) {
	s, _ := newServer(t, apitest.New(), Options{})
	if rec := serve(s.Handler(), "GET", "/v1/probes", ""); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Fatalf("%d %q", rec.Code, rec.Body)
	}
}

func TestOpenMetricsNegotiation(t *testing.T) {
	s, _ := newServer(t, seeded(), Options{})
	for _, path := range []string{"/v1/probes/pc/open-metrics", "/metrics"} {
		rec := serve(s.Handler(), "GET", path, "", "Accept", OpenMetricsAccept)
		if ct := rec.Header().Get("Content-Type"); rec.Code != 200 || !strings.HasPrefix(ct, "application/openmetrics-text") {
			t.Errorf("%s: %d %q", path, rec.Code, ct)
		}
		if !strings.HasSuffix(rec.Body.String(), "# EOF\n") {
			t.Errorf("%s: OpenMetrics body does not end in # EOF", path)
		}
	}
}

func TestBodyLimits(t *testing.T) {
	s, _ := newServer(t, seeded(), Options{MaxLoadBytes: 4 << 10})
	h := s.Handler()
	big := `{"name":"x","iface":"` + strings.Repeat("a", 8<<10) + `"}`

	// Declared length over the limit: refused before reading.
	rec := serve(h, "PUT", "/v1/probes/x", big)
	if rec.Code != 413 || !strings.Contains(rec.Body.String(), "larger than 4 KiB") {
		t.Errorf("declared: %d %s", rec.Code, rec.Body)
	}
	// Unknown length (chunked): cut off while reading.
	req := httptest.NewRequest("POST", "/v1/probes", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 413 || !strings.Contains(rec.Body.String(), `"error":"request body is larger than 4 KiB"`) {
		t.Errorf("streamed: %d %s", rec.Code, rec.Body)
	}
	// Other requests: 1 MiB.
	rec = serve(h, "DELETE", "/v1/probes/pc", strings.Repeat("x", MaxBodyBytes+1))
	if rec.Code != 413 || !strings.Contains(rec.Body.String(), "larger than 1 MiB") {
		t.Errorf("delete: %d %s", rec.Code, rec.Body)
	}
	// Under the limit is fine.
	if rec := serve(h, "PUT", "/v1/probes/packet-counter", `{"iface":"eth0"}`); rec.Code != 200 {
		t.Errorf("small load: %d %s", rec.Code, rec.Body)
	}
}

func TestPanicRecovery(t *testing.T) {
	f := seeded()
	f.PanicOn = "boom"
	s, logs := newServer(t, f, Options{})
	h := s.Handler()
	for _, r := range []struct{ method, path string }{{"GET", "/v1/probes/boom"}, {"PUT", "/v1/probes/boom"}} {
		rec := serve(h, r.method, r.path, "")
		if rec.Code != 500 || !strings.Contains(rec.Body.String(), `"error":"internal error"`) {
			t.Errorf("%s %s: %d %s", r.method, r.path, rec.Code, rec.Body)
		}
	}
	if rec := serve(h, "GET", "/v1/health", ""); rec.Code != 200 {
		t.Errorf("after panic: %d", rec.Code)
	}
	l := logs.String()
	if !strings.Contains(l, "request handler panicked") || !strings.Contains(l, "goroutine") {
		t.Errorf("panic not logged with its stack:\n%s", l)
	}
	if !strings.Contains(l, "status=500") {
		t.Errorf("request log lacks the 500:\n%s", l)
	}
}

func TestRequestLog(t *testing.T) {
	s, logs := newServer(t, seeded(), Options{})
	serve(s.Handler(), "GET", "/v1/probes/pc", "")
	l := logs.String()
	for _, want := range []string{"method=GET", "path=/v1/probes/pc", "status=200", "duration="} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q:\n%s", want, l)
		}
	}
}

func TestMetricsPromtool(t *testing.T) {
	s, _ := newServer(t, seeded(), Options{})
	h := s.Handler()
	serve(h, "GET", "/v1/probes/pc", "")
	serve(h, "GET", "/nothing", "")
	rec := serve(h, "GET", "/metrics", "")
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`rampart_api_requests_total{code="200",route="GET /v1/probes/{name}"} 1`,
		`rampart_api_requests_total{code="404",route="unmatched"} 1`,
		`rampart_api_request_duration_seconds_bucket{route="GET /v1/probes/{name}",le="+Inf"} 1`,
		`rampart_fake_probes_loaded 1`,
		`rampart_fake_metric_entries{metric="packets",probe="pc"} 2`,
		`go_goroutines `,
		`process_start_time_seconds `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// A manager without a collector yet (the stub) still gets a /metrics.
type noCollector struct{ *apitest.Fake }

func (noCollector) Collector() prometheus.Collector { return nil }

func TestMetricsWithoutManagerCollector(t *testing.T) {
	s := NewServer(noCollector{apitest.New()}, Options{})
	if rec := serve(s.Handler(), "GET", "/metrics", ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), "go_goroutines") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}
