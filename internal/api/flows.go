package api

import (
	"net/http"
	"strconv"

	"github.com/rampart-shield/rampart/internal/flow"
)

func (s *Server) flowLimit(w http.ResponseWriter, r *http.Request, def int) (int, bool) {
	if s.flows == nil {
		writeError(w, http.StatusNotFound, "flow monitoring is not running", "the agent starts it with the flowmon probe (the default; see rampart agent --help)")
		return 0, false
	}
	n := def
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 100000 {
			writeError(w, http.StatusBadRequest, "n must be a number from 1 to 100000", v)
			return 0, false
		}
	}
	return n, true
}

// recentFlows serves the latest flow records: GET /v1/flows?n=100.
func (s *Server) recentFlows(w http.ResponseWriter, r *http.Request) {
	n, ok := s.flowLimit(w, r, 100)
	if !ok {
		return
	}
	out := s.flows.Recent(n)
	if out == nil {
		out = []flow.Flow{}
	}
	writeJSON(w, http.StatusOK, out)
}

// topFlows serves the top talkers: GET /v1/flows/top?n=10&by=bytes|packets.
func (s *Server) topFlows(w http.ResponseWriter, r *http.Request) {
	n, ok := s.flowLimit(w, r, 10)
	if !ok {
		return
	}
	by := r.URL.Query().Get("by")
	if by != "" && by != "bytes" && by != "packets" {
		writeError(w, http.StatusBadRequest, "by must be bytes or packets", by)
		return
	}
	out := s.flows.Top(n, by == "packets")
	if out == nil {
		out = []flow.Talker{}
	}
	writeJSON(w, http.StatusOK, out)
}
