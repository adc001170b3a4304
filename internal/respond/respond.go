package respond

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/internal/firewall"
)

// Firewall is what the responder needs of the firewall.
type Firewall interface {
	Apply(ops []firewall.Op) error
	Rules() ([]firewall.Rule, error)
	Extend(match func(firewall.Rule) bool, expires time.Time) ([]firewall.Rule, error)
	Allowed(addr netip.Addr) bool
}

// Options configures a Responder.
type Options struct {
	Policy Policy
	// Firewall carries out blocks and rate limits; nil when the agent runs
	// no firewall (those actions then fail, audited).
	Firewall Firewall
	Logger   *slog.Logger
	// Signal and CloseSockets act on processes (defaults: kill(2) and
	// sock_diag destroy of the process's TCP sockets).
	Signal       func(pid int, sig syscall.Signal) error
	CloseSockets func(pid int, conn string) (int, error)
	// Own lists addresses never to act on besides the policy's allowlist
	// (default: the host's addresses and default gateways).
	Own func() []netip.Prefix
	Now func() time.Time
}

// Decision is one entry of the audit trail: what the responder did (or
// would do, or refused to do) about one target of one alert.
type Decision struct {
	Time     time.Time `json:"time"`
	AlertID  string    `json:"alert_id,omitempty"`
	Alert    string    `json:"alert,omitempty"`
	Detector string    `json:"detector,omitempty"`
	Kind     string    `json:"kind,omitempty"`
	Action   string    `json:"action"`
	Target   string    `json:"target,omitempty"`
	Mode     string    `json:"mode"`
	// Outcome: applied, extended, observed (observe mode: would have been
	// applied), allowlisted, rate-limited, failed, expired, logged.
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
	Expires time.Time `json:"expires,omitempty"`
}

// Outcomes.
const (
	Applied     = "applied"
	Extended    = "extended"
	Observed    = "observed"
	Allowlisted = "allowlisted"
	RateLimited = "rate-limited"
	Failed      = "failed"
	Expired     = "expired"
	Logged      = "logged"
)

// DescriptionPrefix starts the description of every rule the responder
// adds, so it recognises (and extends) its own rules.
const DescriptionPrefix = "rampart "

const keepDecisions = 4096

// Responder applies the policy to alerts.
type Responder struct {
	opts  Options
	log   *slog.Logger
	rules []compiled

	mu      sync.Mutex
	mode    string
	buckets map[string]*bucket
	peers   map[netip.Addr]bool
	allow   []netip.Prefix
	trail   []Decision // ring
	next    int
	total   uint64
	counts  map[[2]string]uint64 // action, outcome
	audit   *os.File
	ownAt   time.Time
	own     []netip.Prefix

	durations map[string]time.Duration // rule group (description) -> block duration
	seen      map[string]uint64        // rule -> packets at the last re-check
	seenAt    time.Time
}

type bucket struct {
	tokens, max float64
	last        time.Time
}

// New checks the policy and opens the audit file.
func New(opts Options) (*Responder, error) {
	rules, err := opts.Policy.Check()
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Signal == nil {
		opts.Signal = func(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }
	}
	if opts.CloseSockets == nil {
		opts.CloseSockets = closeSockets
	}
	if opts.Own == nil && (opts.Policy.AllowOwn == nil || *opts.Policy.AllowOwn) {
		opts.Own = OwnAddresses
	}
	r := &Responder{opts: opts, log: opts.Logger, rules: rules, mode: opts.Policy.Mode,
		buckets: map[string]*bucket{}, peers: map[netip.Addr]bool{}, counts: map[[2]string]uint64{},
		durations: map[string]time.Duration{}, seen: map[string]uint64{}}
	for _, s := range opts.Policy.Allowlist {
		p, err := alert.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("respond: allowlist %q: %v", s, err)
		}
		r.allow = append(r.allow, p)
	}
	for act, def := range defaultMax {
		max := def
		if v, ok := opts.Policy.MaxPerSecond[act]; ok {
			max = v
		}
		r.buckets[act] = &bucket{tokens: max, max: max, last: opts.Now()}
	}
	if f := opts.Policy.AuditFile; f != "-" {
		if f == "" {
			f = "/var/lib/rampart/audit.jsonl"
		}
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			return nil, fmt.Errorf("respond: audit file: %w", err)
		}
		if r.audit, err = os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err != nil {
			return nil, fmt.Errorf("respond: audit file: %w", err)
		}
	}
	return r, nil
}

// Close closes the audit file.
func (r *Responder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.audit != nil {
		return r.audit.Close()
	}
	return nil
}

// Mode is observe or enforce.
func (r *Responder) Mode() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mode
}

// SetMode switches between observe and enforce.
func (r *Responder) SetMode(mode string) error {
	if mode != Observe && mode != Enforce {
		return fmt.Errorf("mode %q: want observe or enforce", mode)
	}
	r.mu.Lock()
	old := r.mode
	r.mode = mode
	r.mu.Unlock()
	if old != mode {
		r.record(Decision{Time: r.opts.Now(), Action: "mode", Target: mode, Mode: mode, Outcome: Applied, Detail: "was " + old})
	}
	return nil
}

// AllowPeer adds an API client's address to the allowlist: the responder
// never cuts off whoever is managing it.
func (r *Responder) AllowPeer(a netip.Addr) {
	if !a.IsValid() {
		return
	}
	r.mu.Lock()
	r.peers[a.Unmap()] = true
	r.mu.Unlock()
}

// take consumes one token of an action's rate limit.
func (r *Responder) take(act string, now time.Time) bool {
	b := r.buckets[act]
	if b == nil {
		return true
	}
	b.tokens += now.Sub(b.last).Seconds() * b.max
	if b.tokens > b.max {
		b.tokens = b.max
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// allowlisted reports whether acting on p could hit an address that must
// never be acted on; it returns the reason.
func (r *Responder) allowlisted(p netip.Prefix, now time.Time) (string, bool) {
	if r.opts.Own != nil && (r.own == nil || now.Sub(r.ownAt) > 10*time.Second) {
		r.own, r.ownAt = r.opts.Own(), now
	}
	for _, a := range r.own {
		if a.Overlaps(p) {
			return "the host's own address or gateway " + a.String(), true
		}
	}
	for _, a := range r.allow {
		if a.Overlaps(p) {
			return "allowlisted " + a.String(), true
		}
	}
	for a := range r.peers {
		if p.Contains(a) {
			return "API peer " + a.String(), true
		}
	}
	if r.opts.Firewall != nil && r.opts.Firewall.Allowed(p.Addr()) {
		return "in the firewall's allowlist", true
	}
	return "", false
}

// Handle decides what to do about an alert, does it (in enforce mode) and
// audits every decision. It returns the decisions.
func (r *Responder) Handle(a alert.Alert) []Decision {
	now := r.opts.Now()
	if err := a.Check(now); err != nil {
		return []Decision{r.record(Decision{Time: now, Action: "none", Mode: r.Mode(), Outcome: Failed, Detail: err.Error()})}
	}
	var rule *compiled
	for i := range r.rules {
		if r.rules[i].matches(a.Kind, a.Detector, a.Score) {
			rule = &r.rules[i]
			break
		}
	}
	base := Decision{Time: now, AlertID: a.ID, Alert: a.String(), Detector: a.Detector, Kind: a.Kind}
	if rule == nil {
		base.Action, base.Outcome, base.Detail = ActLog, Logged, "no policy rule matches"
		return []Decision{r.record(base)}
	}
	act := rule.Action
	if act == ActSuggested {
		act = a.Suggested
		if act == "" {
			act = ActLog
		}
	}
	base.Action = act
	switch act {
	case ActBlock, ActRateLimit:
		return r.block(a, *rule, base)
	case ActFilter:
		return []Decision{r.filter(a, *rule, base)}
	case ActKill, ActCloseSockets:
		return []Decision{r.process(a, *rule, base)}
	case ActLog:
		base.Outcome = Logged
		return []Decision{r.record(base)}
	default:
		base.Outcome, base.Detail = Failed, fmt.Sprintf("unknown action %q", act)
		return []Decision{r.record(base)}
	}
}

// widen turns a source into the prefix the rule blocks.
func widen(s string, rule compiled) (netip.Prefix, error) {
	p, err := alert.ParsePrefix(s)
	if err != nil {
		return p, err
	}
	bits := rule.PrefixV6
	if p.Addr().Is4() {
		bits = rule.PrefixV4
	}
	if p.Bits() > bits {
		p = netip.PrefixFrom(p.Addr(), bits).Masked()
	}
	return p, nil
}

func prefixText(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

func (r *Responder) process(a alert.Alert, rule compiled, base Decision) Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	base.Mode = r.mode
	pid := a.Subject.PID
	base.Target = fmt.Sprintf("pid %d", pid)
	if a.Subject.Comm != "" {
		base.Target += " (" + a.Subject.Comm + ")"
	}
	switch {
	case pid <= 1:
		base.Outcome, base.Detail = Failed, "the alert names no process (pid must be > 1)"
		return r.recordLocked(base)
	case pid == os.Getpid():
		base.Outcome, base.Detail = Allowlisted, "the agent itself"
		return r.recordLocked(base)
	}
	if !r.take(base.Action, base.Time) {
		base.Outcome, base.Detail = RateLimited, fmt.Sprintf("more than %g %s actions per second", r.buckets[base.Action].max, base.Action)
		return r.recordLocked(base)
	}
	if base.Action == ActCloseSockets && a.Subject.Conn != "" {
		base.Target += " " + a.Subject.Conn
	}
	if r.mode == Observe {
		base.Outcome = Observed
		return r.recordLocked(base)
	}
	base.Outcome = Applied
	switch base.Action {
	case ActKill:
		if err := r.opts.Signal(pid, rule.signal); err != nil {
			base.Outcome, base.Detail = Failed, err.Error()
		} else {
			base.Detail = "sent " + rule.signal.String()
		}
	case ActCloseSockets:
		n, err := r.opts.CloseSockets(pid, a.Subject.Conn)
		base.Detail = fmt.Sprintf("%d sockets closed", n)
		if err != nil {
			base.Outcome, base.Detail = Failed, base.Detail+": "+err.Error()
		} else if n == 0 {
			base.Outcome = Failed
			base.Detail = "no matching socket (already closed?)"
		}
	}
	return r.recordLocked(base)
}

// Expired audits a rule the firewall removed on expiry.
func (r *Responder) Expired(fr firewall.Rule) {
	// A filter's pass rules expire with it: its drop rule says it all.
	if !ours(fr) || fr.Action == firewall.ActionPass {
		return
	}
	target := fr.Src
	if target == "" {
		target = describeSig(fr)
	}
	r.record(Decision{Time: r.opts.Now(), Action: "unblock", Target: target, Mode: r.Mode(), Outcome: Expired, Detail: fr.Description + ": the attack is over (no longer dropping enough to keep it)"})
}

func (r *Responder) record(d Decision) Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recordLocked(d)
}

func (r *Responder) recordLocked(d Decision) Decision {
	if len(r.trail) < keepDecisions {
		r.trail = append(r.trail, d)
	} else {
		r.trail[r.next] = d
		r.next = (r.next + 1) % keepDecisions
	}
	r.total++
	r.counts[[2]string{d.Action, d.Outcome}]++
	if r.audit != nil {
		b, _ := json.Marshal(d)
		r.audit.Write(append(b, '\n'))
	}
	lvl := slog.LevelInfo
	if d.Outcome == Failed {
		lvl = slog.LevelWarn
	}
	r.log.Log(nil, lvl, "respond", "action", d.Action, "target", d.Target, "mode", d.Mode, "outcome", d.Outcome, "detail", d.Detail, "alert", d.Alert)
	return d
}

// Trail returns the last n decisions, oldest first.
func (r *Responder) Trail(n int) []Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := append(append([]Decision(nil), r.trail[r.next:]...), r.trail[:r.next]...)
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// Counts returns how many decisions were made, by action and outcome.
func (r *Responder) Counts() map[[2]string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[[2]string]uint64, len(r.counts))
	for k, v := range r.counts {
		out[k] = v
	}
	return out
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
