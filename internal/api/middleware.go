package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"
)

// statusWriter records the status and size of a response. It passes
// flushes through (event streams need them) and unwraps for
// http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	code    int
	bytes   int64
	written bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.written {
		w.code = code
		w.written = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.written {
		w.code = http.StatusOK
		w.written = true
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if !w.written {
		w.code = http.StatusOK
		w.written = true
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument logs every request and counts it in the API's own metrics.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		route := s.routeOf(r)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			code := sw.code
			if !sw.written {
				code = http.StatusOK
			}
			d := time.Since(start)
			s.requests.WithLabelValues(strconv.Itoa(code), route).Inc()
			s.duration.WithLabelValues(route).Observe(d.Seconds())
			level := slog.LevelInfo
			switch {
			case code >= 500:
				level = slog.LevelError
			case route == "GET /metrics" || route == "GET /v1/health":
				// Scrapes and health checks come every few seconds.
				level = slog.LevelDebug
			}
			s.log.Log(r.Context(), level, "request",
				"method", r.Method, "path", r.URL.Path, "status", code,
				"duration", d.Round(time.Microsecond), "bytes", sw.bytes)
		}()
		next.ServeHTTP(sw, r)
	})
}

// recoverPanics turns a panicking handler into a 500: the agent never dies
// from a request.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				// The handler chose to abort the response; net/http
				// handles it quietly.
				panic(v)
			}
			s.log.Error("request handler panicked",
				"method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if sw, ok := w.(*statusWriter); ok && sw.written {
				// Too late for an error body; cut the response short.
				panic(http.ErrAbortHandler)
			}
			writeError(w, http.StatusInternalServerError, "internal error",
				"the agent hit a bug while serving this request; its log has the stack trace")
		}()
		next.ServeHTTP(w, r)
	})
}
