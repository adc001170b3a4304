package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// shutdownKey carries, in a request's context, a channel closed when the
// http.Server serving it shuts down: event streams end then instead of
// holding the shutdown up.
type shutdownKey struct{}

func shuttingDown(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(shutdownKey{}).(chan struct{})
	return ch // nil (never ready) outside ServeUnix/ServeTCP
}

// events streams probe events as server-sent events:
//
//	GET /v1/events?probe=P&stream=S     (both optional)
//	GET /v1/probes/{name}/events[/{stream}]
//
// Each event is "event: STREAM\ndata: JSON\n\n"; idle streams get a comment
// line every KeepAlive. The stream ends when the client goes away or the
// manager closes the subscription (e.g. the probe was unloaded).
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	name, stream := r.PathValue("name"), r.PathValue("stream")
	if name == "" {
		q := r.URL.Query()
		name, stream = q.Get("probe"), q.Get("stream")
	}
	rc := http.NewResponseController(w)

	ch, cancel, err := s.m.Subscribe(name, stream)
	if err != nil {
		if cancel != nil {
			cancel()
		}
		writeErr(w, err)
		return
	}
	defer cancel()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprintf(w, ": rampart events probe=%q stream=%q\n\n", name, stream); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		s.log.Warn("event stream cannot flush", "err", err)
		return
	}

	tick := time.NewTicker(s.keepAlive)
	defer tick.Stop()
	done := shuttingDown(r.Context())
	for {
		select {
		case <-r.Context().Done():
			return
		case <-done:
			return
		case <-tick.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return
			}
		case ev, ok := <-ch:
			if !ok {
				return
			}
			data, err := json.Marshal(ev)
			if err != nil {
				s.log.Warn("cannot encode event", "probe", ev.Probe, "stream", ev.Stream, "err", err)
				continue
			}
			ename := ev.Stream
			if ename == "" {
				ename = "event"
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ename, data); err != nil {
				return
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
