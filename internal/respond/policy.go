// Package respond turns alerts into actions by a policy: block a source
// prefix for a while, rate-limit it, kill or signal a process, close its
// sockets. In observe mode it only says what it would do. It never acts on
// an allowlisted address, never exceeds its per-action rate limits, lets
// every block expire, and writes every decision to an audit trail with the
// alert that caused it. It is the only writer of firewall rules from alerts.
package respond

import (
	"fmt"
	"path"
	"strings"
	"syscall"
	"time"
)

// Modes.
const (
	Observe = "observe"
	Enforce = "enforce"
)

// Actions.
const (
	ActBlock        = "block"
	ActRateLimit    = "ratelimit"
	ActKill         = "kill"
	ActCloseSockets = "close-sockets"
	ActLog          = "log"
	// ActFilter drops the attack's signature (destination, protocol,
	// ports, TCP flags) from everyone but the verified clients and the
	// allowlist: for floods from too many (or spoofed) sources to block.
	ActFilter = "filter"
	// ActSuggested follows the alert's own suggestion.
	ActSuggested = "suggested"
)

// Policy is the responder's configuration (the agent config's respond:).
type Policy struct {
	// Mode is observe (the default: log what would be done) or enforce.
	Mode string `json:"mode,omitempty"`
	// Rules are tried in order; the first that matches an alert decides.
	// With none, every alert gets the action it suggests.
	Rules []PolicyRule `json:"rules,omitempty"`
	// MaxPerSecond caps new actions of each kind per second (a token
	// bucket with a burst of the same size). Defaults: block 10,
	// ratelimit 10, kill 1, close-sockets 5.
	MaxPerSecond map[string]float64 `json:"max-per-second,omitempty"`
	// Allowlist: addresses and prefixes never acted on, besides the
	// host's own addresses and default gateways (unless AllowOwn is false)
	// and the peers of the API.
	Allowlist []string `json:"allowlist,omitempty"`
	AllowOwn  *bool    `json:"allow-own,omitempty"`
	// KeepPPS: a block or filter that still drops at least this many
	// packets/s when it nears its expiry is extended by its duration
	// (default 100); one that drops less expires: the attack is over.
	KeepPPS float64 `json:"keep-pps,omitempty"`
	// AuditFile receives one JSON line per decision (default
	// /var/lib/rampart/audit.jsonl; "-" for none).
	AuditFile string `json:"audit-file,omitempty"`
}

// PolicyRule maps alerts to an action.
type PolicyRule struct {
	// Kind and Detector are glob patterns (path.Match) on the alert's
	// kind and detector; empty matches all.
	Kind     string `json:"kind,omitempty"`
	Detector string `json:"detector,omitempty"`
	// MinScore: the rule applies only when score >= MinScore.
	MinScore float64 `json:"min-score,omitempty"`
	// Action: block, ratelimit, filter, kill, close-sockets, log or
	// suggested.
	Action string `json:"action"`
	// Duration of a block or rate limit (default 10m): it expires then
	// unless the attack goes on and a new alert extends it.
	Duration string `json:"duration,omitempty"`
	// PrefixV4 and PrefixV6 widen blocked addresses to prefixes of this
	// length (defaults 32 and 128).
	PrefixV4 int `json:"prefix-v4,omitempty"`
	PrefixV6 int `json:"prefix-v6,omitempty"`
	// Rate and Burst of a ratelimit action (packets per second per source).
	Rate  uint32 `json:"rate,omitempty"`
	Burst uint32 `json:"burst,omitempty"`
	// Signal for kill (default KILL; TERM, INT, HUP, QUIT, USR1, USR2, STOP).
	Signal string `json:"signal,omitempty"`
}

var signals = map[string]syscall.Signal{
	"KILL": syscall.SIGKILL, "TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "HUP": syscall.SIGHUP,
	"QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "STOP": syscall.SIGSTOP,
}

var defaultMax = map[string]float64{ActBlock: 10, ActRateLimit: 10, ActFilter: 10, ActKill: 1, ActCloseSockets: 5}

// compiled is a checked policy rule.
type compiled struct {
	PolicyRule
	duration time.Duration
	signal   syscall.Signal
}

// Check validates a policy and fills its defaults.
func (p *Policy) Check() ([]compiled, error) {
	if p.KeepPPS < 0 {
		return nil, fmt.Errorf("respond: keep-pps %v: want >= 0", p.KeepPPS)
	}
	if p.KeepPPS == 0 {
		p.KeepPPS = 100
	}
	switch p.Mode {
	case "":
		p.Mode = Observe
	case Observe, Enforce:
	default:
		return nil, fmt.Errorf("respond: mode %q: want observe or enforce", p.Mode)
	}
	for k, v := range p.MaxPerSecond {
		if _, ok := defaultMax[k]; !ok {
			return nil, fmt.Errorf("respond: max-per-second: unknown action %q (block, ratelimit, filter, kill, close-sockets)", k)
		}
		if v <= 0 || v > 100000 {
			return nil, fmt.Errorf("respond: max-per-second %s: %v, want 0 < n <= 100000", k, v)
		}
	}
	rules := p.Rules
	if len(rules) == 0 {
		rules = []PolicyRule{{Action: ActSuggested}}
	}
	out := make([]compiled, 0, len(rules))
	for i, r := range rules {
		c := compiled{PolicyRule: r, duration: 10 * time.Minute, signal: syscall.SIGKILL}
		bad := func(format string, a ...any) error {
			return fmt.Errorf("respond: rules[%d]: %s", i, fmt.Sprintf(format, a...))
		}
		for _, g := range []string{r.Kind, r.Detector} {
			if _, err := path.Match(g, ""); err != nil {
				return nil, bad("pattern %q: %v", g, err)
			}
		}
		switch r.Action {
		case ActBlock, ActRateLimit, ActFilter, ActKill, ActCloseSockets, ActLog, ActSuggested:
		default:
			return nil, bad("action %q: want block, ratelimit, filter, kill, close-sockets, log or suggested", r.Action)
		}
		if r.Duration != "" {
			d, err := time.ParseDuration(r.Duration)
			if err != nil || d < time.Second || d > 30*24*time.Hour {
				return nil, bad("duration %q: want 1s to 720h", r.Duration)
			}
			c.duration = d
		}
		if c.PrefixV4 == 0 {
			c.PrefixV4 = 32
		}
		if c.PrefixV6 == 0 {
			c.PrefixV6 = 128
		}
		if c.PrefixV4 < 8 || c.PrefixV4 > 32 || c.PrefixV6 < 16 || c.PrefixV6 > 128 {
			return nil, bad("prefix lengths %d/%d: want 8-32 for IPv4 and 16-128 for IPv6", c.PrefixV4, c.PrefixV6)
		}
		if r.Action == ActRateLimit && r.Rate == 0 {
			c.Rate = 100
		}
		if r.Signal != "" {
			s, ok := signals[strings.TrimPrefix(strings.ToUpper(r.Signal), "SIG")]
			if !ok {
				return nil, bad("signal %q: want KILL, TERM, INT, HUP, QUIT, USR1, USR2 or STOP", r.Signal)
			}
			c.signal = s
		}
		out = append(out, c)
	}
	return out, nil
}

func (c compiled) matches(kind, detector string, score float64) bool {
	if c.Kind != "" {
		if ok, _ := path.Match(c.Kind, kind); !ok {
			return false
		}
	}
	if c.Detector != "" {
		if ok, _ := path.Match(c.Detector, detector); !ok {
			return false
		}
	}
	return score >= c.MinScore
}
