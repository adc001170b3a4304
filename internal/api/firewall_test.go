package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rampart-shield/rampart/internal/api/apitest"
	"github.com/rampart-shield/rampart/internal/bpftest"
	"github.com/rampart-shield/rampart/internal/firewall"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/internal/respond"
	"github.com/rampart-shield/rampart/probes"
)

// firewallServer serves the API over a real firewall probe, loaded
// detached (verified, not attached, no pins), and an enforcing responder.
func firewallServer(t *testing.T) *httptest.Server {
	t.Helper()
	bpftest.Require(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := probe.NewManager(probe.ManagerOptions{Logger: quiet, Builtin: probes.Lookup, PinRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	fw, err := firewall.Start(context.Background(), firewall.Options{Manager: m, Detached: true, Logger: quiet})
	bpftest.CheckLoad(t, err)
	t.Cleanup(func() { fw.Close(false) })
	resp, err := respond.New(respond.Options{Policy: respond.Policy{Mode: respond.Enforce, AuditFile: "-"}, Firewall: fw, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(apitest.New(), Options{Logger: quiet, Firewall: fw, FirewallIface: "test0", Responder: resp})
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return hs
}

func call(t *testing.T, hs *httptest.Server, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, hs.URL+path, strings.NewReader(body))
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestFirewallAPI(t *testing.T) {
	hs := firewallServer(t)
	code, body := call(t, hs, "POST", "/v1/firewall/rules", `{"src": "198.51.100.0/24", "action": "drop", "description": "scan"}`)
	if code != 201 || !strings.Contains(body, `"src":"198.51.100.0/24"`) {
		t.Fatalf("add: %d %s", code, body)
	}
	code, body = call(t, hs, "POST", "/v1/firewall/rules/batch", `{"operations": [
		{"op": "insert", "id": 1, "rule": {"src": "198.51.100.7", "proto": "tcp", "dport": "22", "action": "pass"}},
		{"op": "append", "rule": {"src": "2001:db8::/32", "action": "ratelimit", "rate": 10, "ttl": "1h"}}]}`)
	if code != 200 {
		t.Fatalf("batch: %d %s", code, body)
	}
	var rules []firewall.Rule
	json.Unmarshal([]byte(body), &rules)
	if len(rules) != 3 || rules[0].Dport != "22" || rules[2].Rate != 10 || rules[2].Expires.IsZero() {
		t.Fatalf("rules after the batch: %s", body)
	}

	// Bad input: clear errors, nothing changes.
	for _, c := range []struct {
		method, path, body, want string
		code                     int
	}{
		{"POST", "/v1/firewall/rules/batch", `{"operations": [{"op": "delete", "id": 1}, {"op": "append", "rule": {"src": "300.1.1.1", "action": "drop"}}]}`, "operation 2 (append): invalid: src", 400},
		{"POST", "/v1/firewall/rules/batch", `{"operations": []}`, "no operations", 400},
		{"POST", "/v1/firewall/rules/batch", `{"ops": []}`, "not valid JSON", 400},
		{"POST", "/v1/firewall/rules", `{"src": "10.0.0.1", "action": "drop", "colour": "red"}`, "unknown field", 400},
		{"PUT", "/v1/firewall/rules/9", `{"action": "drop"}`, "id 9: there are 3 rules", 400},
		{"DELETE", "/v1/firewall/rules/x", ``, "rule id", 400},
		{"POST", "/v1/firewall/allowlist", `{"prefixes": ["not-an-ip"]}`, "allowlist", 400},
		{"POST", "/v1/alerts", `{"kind": "udp-flood"}`, "detector is required", 400},
		{"PUT", "/v1/respond", `{"mode": "yolo"}`, "mode", 400},
	} {
		code, body := call(t, hs, c.method, c.path, c.body)
		var eb ErrorBody
		if code != c.code || json.Unmarshal([]byte(body), &eb) != nil || !strings.Contains(eb.Error+" "+eb.Detail, c.want) {
			t.Errorf("%s %s %s: %d %s; want %d and %q", c.method, c.path, c.body, code, body, c.code, c.want)
		}
	}
	_, body = call(t, hs, "GET", "/v1/firewall/rules", "")
	var now []firewall.Rule
	json.Unmarshal([]byte(body), &now)
	if len(now) != 3 {
		t.Fatalf("bad requests changed the rules: %s", body)
	}

	// An alert blocks its source through the responder; the audit shows it.
	code, body = call(t, hs, "POST", "/v1/alerts", `{"detector": "external", "kind": "syn-flood", "suggested": "block", "subject": {"sources": ["203.0.113.9"]}}`)
	if code != 200 || !strings.Contains(body, `"outcome":"applied"`) {
		t.Fatalf("alert: %d %s", code, body)
	}
	_, body = call(t, hs, "GET", "/v1/firewall/rules", "")
	if !strings.Contains(body, `"src":"203.0.113.9"`) || !strings.Contains(body, respond.DescriptionPrefix+"syn-flood") {
		t.Fatalf("the responder's rule is missing: %s", body)
	}
	if _, body = call(t, hs, "GET", "/v1/audit?n=5", ""); !strings.Contains(body, `"target":"203.0.113.9"`) {
		t.Fatalf("audit: %s", body)
	}
	if _, body = call(t, hs, "GET", "/v1/alerts", ""); !strings.Contains(body, `"kind":"syn-flood"`) {
		t.Fatalf("alerts: %s", body)
	}
	code, body = call(t, hs, "GET", "/v1/firewall", "")
	if code != 200 || !strings.Contains(body, `"iface":"test0"`) || !strings.Contains(body, `"rules":4`) {
		t.Fatalf("status: %d %s", code, body)
	}
	code, body = call(t, hs, "DELETE", "/v1/firewall/rules", "")
	if code != 200 || !strings.Contains(body, `"deleted":4`) {
		t.Fatalf("flush: %d %s", code, body)
	}
}

// TestFirewallNotRunning: without a firewall the endpoints say how to
// start one.
func TestFirewallNotRunning(t *testing.T) {
	s := NewServer(apitest.New(), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	code, body := call(t, hs, "GET", "/v1/firewall/rules", "")
	if code != 404 || !strings.Contains(body, "--firewall IFACE") {
		t.Fatalf("%d %s", code, body)
	}
	if code, _ := call(t, hs, "POST", "/v1/alerts", `{}`); code != 404 {
		t.Fatalf("alerts without a responder: %d", code)
	}
}
