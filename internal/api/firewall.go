package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/internal/firewall"
	"github.com/rampart-shield/rampart/internal/respond"
)

// Firewall is what the API needs of internal/firewall.Firewall.
type Firewall interface {
	Rules() ([]firewall.Rule, error)
	Apply(ops []firewall.Op) error
	Flush() (int, error)
	Allowlist() []netip.Prefix
	Allow(prefixes ...string) error
	Disallow(prefixes ...string) error
	Stats() (map[string]uint64, error)
}

// Responder is what the API needs of internal/respond.Responder.
type Responder interface {
	Handle(a alert.Alert) []respond.Decision
	Trail(n int) []respond.Decision
	Mode() string
	SetMode(mode string) error
	AllowPeer(a netip.Addr)
}

// FirewallStatus is the body of GET /v1/firewall.
type FirewallStatus struct {
	Iface     string            `json:"iface"`
	Rules     int               `json:"rules"`
	Allowlist []string          `json:"allowlist"`
	Stats     map[string]uint64 `json:"stats"`
}

// BatchRequest is the body of POST /v1/firewall/rules/batch.
type BatchRequest struct {
	Operations []firewall.Op `json:"operations"`
}

// PrefixList is the body of allowlist changes.
type PrefixList struct {
	Prefixes []string `json:"prefixes"`
}

// AlertResult is the answer to POST /v1/alerts: the alert as stored and
// what the responder decided.
type AlertResult struct {
	Alert     alert.Alert        `json:"alert"`
	Decisions []respond.Decision `json:"decisions"`
}

func (s *Server) needFirewall(w http.ResponseWriter) bool {
	if s.fw == nil {
		writeError(w, http.StatusNotFound, "the firewall is not running", "start the agent with --firewall IFACE (or firewall: {iface: IFACE} in its config)")
		return false
	}
	return true
}

// decodeBody reads a JSON body strictly into v.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, fields string) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeTooLarge(w, mbe.Limit)
			return false
		}
		writeError(w, http.StatusBadRequest, "the body is not valid JSON for this request", err.Error()+"; "+fields)
		return false
	}
	return true
}

func writeFirewallErr(w http.ResponseWriter, err error) {
	if errors.Is(err, firewall.ErrInvalid) {
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	writeError(w, http.StatusInternalServerError, err.Error(), "")
}

const ruleFields = "a rule has id, direction, family, src, dst, proto, sport, dport, tcpflags, action, rate, burst, ttl, expires, description"

func (s *Server) firewallStatus(w http.ResponseWriter, r *http.Request) {
	if !s.needFirewall(w) {
		return
	}
	rules, err := s.fw.Rules()
	if err != nil {
		writeFirewallErr(w, err)
		return
	}
	st, err := s.fw.Stats()
	if err != nil {
		writeFirewallErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, FirewallStatus{Iface: s.fwIface, Rules: len(rules), Allowlist: s.allowlist(), Stats: st})
}

// allowlist renders the firewall's allowlist.
func (s *Server) allowlist() []string {
	out := []string{}
	for _, p := range s.fw.Allowlist() {
		out = append(out, p.String())
	}
	return out
}

func (s *Server) listRules(w http.ResponseWriter, r *http.Request) {
	if !s.needFirewall(w) {
		return
	}
	rules, err := s.fw.Rules()
	if err != nil {
		writeFirewallErr(w, err)
		return
	}
	if rules == nil {
		rules = []firewall.Rule{}
	}
	writeJSON(w, http.StatusOK, rules)
}

// applyAndList applies ops and answers with the rule list.
func (s *Server) applyAndList(w http.ResponseWriter, ops []firewall.Op, code int) {
	if err := s.fw.Apply(ops); err != nil {
		writeFirewallErr(w, err)
		return
	}
	rules, err := s.fw.Rules()
	if err != nil {
		writeFirewallErr(w, err)
		return
	}
	if rules == nil {
		rules = []firewall.Rule{}
	}
	writeJSON(w, code, rules)
}

// addRule serves POST /v1/firewall/rules: append, or insert at the rule's
// id when it has one.
func (s *Server) addRule(w http.ResponseWriter, r *http.Request) {
	if !s.needFirewall(w) {
		return
	}
	var rule firewall.Rule
	if !decodeBody(w, r, &rule, ruleFields) {
		return
	}
	op := firewall.Op{Op: "append", Rule: rule}
	if rule.ID != 0 {
		op = firewall.Op{Op: "insert", ID: rule.ID, Rule: rule}
	}
	s.applyAndList(w, []firewall.Op{op}, http.StatusCreated)
}

func ruleID(w http.ResponseWriter, r *http.Request) (int, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id < 1 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("rule id %q: want a number from 1", r.PathValue("id")), "")
		return 0, false
	}
	return id, true
}

func (s *Server) updateRule(w http.ResponseWriter, r *http.Request) {
	if !s.needFirewall(w) {
		return
	}
	id, ok := ruleID(w, r)
	if !ok {
		return
	}
	var rule firewall.Rule
	if !decodeBody(w, r, &rule, ruleFields) {
		return
	}
	s.applyAndList(w, []firewall.Op{{Op: "update", ID: id, Rule: rule}}, http.StatusOK)
}

func (s *Server) deleteRule(w http.ResponseWriter, r *http.Request) {
	if !s.needFirewall(w) {
		return
	}
	id, ok := ruleID(w, r)
	if !ok {
		return
	}
	s.applyAndList(w, []firewall.Op{{Op: "delete", ID: id}}, http.StatusOK)
}

func (s *Server) flushRules(w http.ResponseWriter, r *http.Request) {
	if !s.needFirewall(w) {
		return
	}
	n, err := s.fw.Flush()
	if err != nil {
		writeFirewallErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"deleted": n})
}

func (s *Server) batchRules(w http.ResponseWriter, r *http.Request) {
	if !s.needFirewall(w) {
		return
	}
	var b BatchRequest
	if !decodeBody(w, r, &b, "a batch is {\"operations\": [{\"op\": \"insert|append|update|delete\", \"id\": N, \"rule\": {...}}]}") {
		return
	}
	if len(b.Operations) == 0 {
		writeError(w, http.StatusBadRequest, "the batch has no operations", "")
		return
	}
	s.applyAndList(w, b.Operations, http.StatusOK)
}

func (s *Server) getAllowlist(w http.ResponseWriter, r *http.Request) {
	if !s.needFirewall(w) {
		return
	}
	writeJSON(w, http.StatusOK, PrefixList{Prefixes: s.allowlist()})
}

func (s *Server) changeAllowlist(w http.ResponseWriter, r *http.Request) {
	if !s.needFirewall(w) {
		return
	}
	var pl PrefixList
	if !decodeBody(w, r, &pl, "the body is {\"prefixes\": [\"192.0.2.0/24\", ...]}") {
		return
	}
	var err error
	if r.Method == http.MethodDelete {
		err = s.fw.Disallow(pl.Prefixes...)
	} else {
		err = s.fw.Allow(pl.Prefixes...)
	}
	if err != nil {
		writeFirewallErr(w, err)
		return
	}
	s.getAllowlist(w, r)
}

func (s *Server) needResponder(w http.ResponseWriter) bool {
	if s.resp == nil {
		writeError(w, http.StatusNotFound, "the responder is not running", "")
		return false
	}
	return true
}

// postAlert serves POST /v1/alerts: an alert from a detector outside the
// agent, handled by the responder like its own.
func (s *Server) postAlert(w http.ResponseWriter, r *http.Request) {
	if !s.needResponder(w) {
		return
	}
	var a alert.Alert
	if !decodeBody(w, r, &a, "an alert has detector, kind, score, threshold, summary, features, subject {sources, dst, proto, port, pid, comm, conn}, suggested, samples") {
		return
	}
	if err := a.Check(time.Now()); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	ds := s.resp.Handle(a)
	s.RecordAlert(a, ds)
	writeJSON(w, http.StatusOK, AlertResult{a, ds})
}

// RecordAlert keeps an alert the agent's own detectors raised, with the
// responder's decisions, for GET /v1/alerts.
func (s *Server) RecordAlert(a alert.Alert, ds []respond.Decision) {
	s.alertsMu.Lock()
	defer s.alertsMu.Unlock()
	s.alerts = append(s.alerts, AlertResult{a, ds})
	if len(s.alerts) > 1024 {
		s.alerts = s.alerts[len(s.alerts)-1024:]
	}
}

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) {
	s.alertsMu.Lock()
	out := append([]AlertResult{}, s.alerts...)
	s.alertsMu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getAudit(w http.ResponseWriter, r *http.Request) {
	if !s.needResponder(w) {
		return
	}
	n := 100
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 4096 {
			writeError(w, http.StatusBadRequest, "n must be a number from 1 to 4096", v)
			return
		}
	}
	out := s.resp.Trail(n)
	if out == nil {
		out = []respond.Decision{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getMode(w http.ResponseWriter, r *http.Request) {
	if !s.needResponder(w) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"mode": s.resp.Mode()})
}

func (s *Server) setMode(w http.ResponseWriter, r *http.Request) {
	if !s.needResponder(w) {
		return
	}
	var body struct {
		Mode string `json:"mode"`
	}
	if !decodeBody(w, r, &body, "the body is {\"mode\": \"observe|enforce\"}") {
		return
	}
	if err := s.resp.SetMode(body.Mode); err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	s.getMode(w, r)
}
