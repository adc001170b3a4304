package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rampart-shield/rampart/internal/probe"
)

// Health is the body of GET /v1/health.
type Health struct {
	Status  string `json:"status"`
	Version string `json:"version"`
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Health{Status: "ok", Version: s.version})
}

func (s *Server) listProbes(w http.ResponseWriter, r *http.Request) {
	list := s.m.List()
	if list == nil {
		list = []probe.ProbeInfo{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) getProbe(w http.ResponseWriter, r *http.Request) {
	info, err := s.m.Get(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) unloadProbe(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.m.Unload(name); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

const loadFields = "a load request has the fields name, manifest, object, source, attach, iface, params"

// loadProbe serves POST /v1/probes and PUT /v1/probes/{name}.
func (s *Server) loadProbe(w http.ResponseWriter, r *http.Request) {
	var req probe.LoadRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	dec.UseNumber() // manifest parameters must stay json.Number
	err := dec.Decode(&req)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeTooLarge(w, tooBig.Limit)
		return
	case err == io.EOF && r.Method == http.MethodPut:
		// PUT /v1/probes/NAME with no body loads the built-in NAME.
	case err == io.EOF:
		writeError(w, http.StatusBadRequest, "the request body is empty", "send a load request as JSON; "+loadFields)
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "invalid load request: "+err.Error(), loadFields)
		return
	default:
		var extra json.RawMessage
		if err := dec.Decode(&extra); errors.As(err, &tooBig) {
			writeTooLarge(w, tooBig.Limit)
			return
		} else if err != io.EOF {
			writeError(w, http.StatusBadRequest, "invalid load request: data after the JSON object", "send exactly one JSON object")
			return
		}
	}

	if name := r.PathValue("name"); name != "" {
		if req.Name != "" && req.Name != name {
			writeError(w, http.StatusBadRequest,
				fmt.Sprintf("the body names probe %q but the path names %q", req.Name, name),
				"leave out name in the body or make them equal")
			return
		}
		req.Name = name
	} else if req.Name == "" && req.Manifest != nil {
		req.Name = req.Manifest.Name
	}
	if req.Name == "" {
		writeError(w, http.StatusBadRequest, "no probe name",
			"give name in the body or in the manifest, or use PUT /v1/probes/{name}")
		return
	}
	if !probe.ProbeNameRE.MatchString(req.Name) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("probe name %q is not valid", req.Name),
			"use lower-case letters, digits, '_', '.', '-' (at most 63), starting with a letter or digit")
		return
	}
	if len(req.Object) > 0 && len(req.Source) > 0 {
		writeError(w, http.StatusBadRequest, "give object or source, not both", "")
		return
	}
	if req.Manifest != nil {
		if err := req.Manifest.Validate(); err != nil {
			writeError(w, http.StatusBadRequest, err.Error(), "")
			return
		}
		req.Origin = "user"
	} else if len(req.Object) > 0 || len(req.Source) > 0 {
		writeError(w, http.StatusBadRequest, "an object or source needs its manifest",
			"the manifest says which programs attach where and which maps are metrics; without manifest, object and source the agent loads the built-in probe of that name")
		return
	}

	info, err := s.m.Load(r.Context(), req)
	if err != nil {
		writeErr(w, err) // the manager logs loads and their failures
		return
	}
	code := http.StatusOK
	if r.Method == http.MethodPost {
		code = http.StatusCreated
		w.Header().Set("Location", "/v1/probes/"+url.PathEscape(info.Name))
	}
	writeJSON(w, code, info)
}

func readOptions(r *http.Request) (probe.ReadOptions, error) {
	var o probe.ReadOptions
	if v := r.URL.Query().Get("percpu"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, &probe.Error{Kind: probe.KindInvalid, Msg: fmt.Sprintf("percpu=%q: want true or false", v)}
		}
		o.PerCPU = b
	}
	return o, nil
}

func (s *Server) readMetrics(w http.ResponseWriter, r *http.Request) {
	opts, err := readOptions(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	vals, err := s.m.ReadMetrics(r.PathValue("name"), opts)
	if err != nil {
		writeErr(w, err)
		return
	}
	if vals == nil {
		vals = []probe.MetricValue{}
	}
	writeJSON(w, http.StatusOK, vals)
}

func (s *Server) readOneMetric(w http.ResponseWriter, r *http.Request) (probe.MetricValue, bool) {
	opts, err := readOptions(r)
	if err != nil {
		writeErr(w, err)
		return probe.MetricValue{}, false
	}
	v, err := s.m.ReadMetric(r.PathValue("name"), r.PathValue("metric"), opts)
	if err != nil {
		writeErr(w, err)
		return v, false
	}
	if v.Value == nil {
		v.Value = []probe.Entry{}
	}
	return v, true
}

func (s *Server) readMetric(w http.ResponseWriter, r *http.Request) {
	if v, ok := s.readOneMetric(w, r); ok {
		writeJSON(w, http.StatusOK, v)
	}
}

func (s *Server) readMetricValue(w http.ResponseWriter, r *http.Request) {
	if v, ok := s.readOneMetric(w, r); ok {
		writeJSON(w, http.StatusOK, v.Value)
	}
}

// probeOpenMetrics serves one probe's metrics in OpenMetrics (when the
// client asks for it) or Prometheus text.
func (s *Server) probeOpenMetrics(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	c, err := s.m.ProbeCollector(name)
	if err != nil {
		writeErr(w, err)
		return
	}
	if c == nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("probe %q has no metrics collector", name), "")
		return
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("cannot export the metrics of probe %q", name), err.Error())
		return
	}
	s.promHandler(reg).ServeHTTP(w, r)
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	s.promHandler(s.gatherer).ServeHTTP(w, r)
}

func (s *Server) promHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		// A probe whose map cannot be read must not hide the others.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      promLogger{s},
	})
}

// promLogger sends promhttp's errors to the server's log.
type promLogger struct{ s *Server }

func (l promLogger) Println(v ...any) { l.s.log.Warn("metrics gathering", "err", fmt.Sprint(v...)) }
