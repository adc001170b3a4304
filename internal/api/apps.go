package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/rampart-shield/rampart/internal/app"
)

// Apps is the application watch service (internal/app.Manager).
type Apps interface {
	Watch(ctx context.Context, req app.WatchRequest) (app.Info, error)
	List() []app.Info
	Get(name string) (app.Info, error)
	Requests(name string, inflight bool, n int) ([]app.Request, error)
	Stop(name string) error
}

const watchFields = "a watch request has the fields name, target {pids, pid_namespace_of, tree, execs, cgroups, all}, detectors [requests, connections], no_detect, train, min_train, model, out_dir, action, k, block_after, max_conns, conn_model"

func (s *Server) needApps(w http.ResponseWriter) bool {
	if s.apps == nil {
		writeError(w, http.StatusNotFound, "application watching is not available in this agent", "")
		return false
	}
	return true
}

func appErr(w http.ResponseWriter, err error) {
	if errors.Is(err, app.ErrNotFound) {
		writeError(w, http.StatusNotFound, err.Error(), "rampart app list shows the watches")
		return
	}
	writeError(w, http.StatusBadRequest, err.Error(), "")
}

// watchApp serves POST /v1/apps.
func (s *Server) watchApp(w http.ResponseWriter, r *http.Request) {
	if !s.needApps(w) {
		return
	}
	var req app.WatchRequest
	if !decodeBody(w, r, &req, watchFields) {
		return
	}
	info, err := s.apps.Watch(r.Context(), req)
	if err != nil {
		appErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, info)
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	if !s.needApps(w) {
		return
	}
	writeJSON(w, http.StatusOK, s.apps.List())
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) {
	if !s.needApps(w) {
		return
	}
	info, err := s.apps.Get(r.PathValue("name"))
	if err != nil {
		appErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// appRequests serves GET /v1/apps/{name}/requests?inflight=1&n=50.
func (s *Server) appRequests(w http.ResponseWriter, r *http.Request) {
	if !s.needApps(w) {
		return
	}
	q := r.URL.Query()
	n := 50
	if v := q.Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 100000 {
			writeError(w, http.StatusBadRequest, "n must be a number from 1 to 100000", v)
			return
		}
	}
	inflight, _ := strconv.ParseBool(q.Get("inflight"))
	rs, err := s.apps.Requests(r.PathValue("name"), inflight, n)
	if err != nil {
		appErr(w, err)
		return
	}
	if rs == nil {
		rs = []app.Request{}
	}
	writeJSON(w, http.StatusOK, rs)
}

func (s *Server) stopApp(w http.ResponseWriter, r *http.Request) {
	if !s.needApps(w) {
		return
	}
	if err := s.apps.Stop(r.PathValue("name")); err != nil {
		appErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// WatchApp starts an application watch.
func (c *Client) WatchApp(ctx context.Context, req app.WatchRequest) (app.Info, error) {
	var out app.Info
	return out, c.getJSON(ctx, http.MethodPost, "/v1/apps", req, &out)
}

// Apps lists the watches.
func (c *Client) Apps(ctx context.Context) ([]app.Info, error) {
	var out []app.Info
	return out, c.getJSON(ctx, http.MethodGet, "/v1/apps", nil, &out)
}

// App describes one watch.
func (c *Client) App(ctx context.Context, name string) (app.Info, error) {
	var out app.Info
	return out, c.getJSON(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(name), nil, &out)
}

// AppRequests lists a watch's requests in flight or recently completed.
func (c *Client) AppRequests(ctx context.Context, name string, inflight bool, n int) ([]app.Request, error) {
	var out []app.Request
	p := "/v1/apps/" + url.PathEscape(name) + "/requests?n=" + strconv.Itoa(n)
	if inflight {
		p += "&inflight=1"
	}
	return out, c.getJSON(ctx, http.MethodGet, p, nil, &out)
}

// StopApp ends a watch.
func (c *Client) StopApp(ctx context.Context, name string) error {
	return c.getJSON(ctx, http.MethodDelete, "/v1/apps/"+url.PathEscape(name), nil, nil)
}
