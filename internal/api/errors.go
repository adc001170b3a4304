package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/rampart-shield/rampart/internal/probe"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail"`
}

// StatusOf maps an error to its HTTP status by its probe.ErrorKind.
func StatusOf(err error) int {
	switch probe.KindOf(err) {
	case probe.KindInvalid:
		return http.StatusBadRequest
	case probe.KindNotFound:
		return http.StatusNotFound
	case probe.KindRejected:
		return http.StatusUnprocessableEntity
	case probe.KindUnavailable:
		return http.StatusNotImplemented
	default:
		return http.StatusInternalServerError
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var b []byte
	var err error
	// Metric reads carry decoder-made JSON: append it as it is (see
	// probe.MetricValue.AppendJSON).
	switch v := v.(type) {
	case probe.MetricValue:
		b = v.AppendJSON(nil)
	case []probe.Entry:
		b = probe.AppendEntriesJSON(nil, v)
	case []probe.MetricValue:
		b = append(b, '[')
		for i, mv := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = mv.AppendJSON(b)
		}
		b = append(b, ']')
	default:
		b, err = json.Marshal(v)
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot encode the response", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg, detail string) {
	b, _ := json.Marshal(ErrorBody{Error: msg, Detail: detail})
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// writeErr renders an error from the manager (or anything else).
func writeErr(w http.ResponseWriter, err error) {
	var pe *probe.Error
	if errors.As(err, &pe) {
		writeError(w, StatusOf(err), pe.Msg, pe.Detail)
		return
	}
	writeError(w, StatusOf(err), err.Error(), "")
}

func writeTooLarge(w http.ResponseWriter, limit int64) {
	writeError(w, http.StatusRequestEntityTooLarge,
		fmt.Sprintf("request body is larger than %s", formatBytes(limit)),
		fmt.Sprintf("a probe load may send at most the agent's load limit (default %s, base64 adds a third to objects); other requests at most %s",
			formatBytes(DefaultMaxLoadBytes), formatBytes(MaxBodyBytes)))
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
