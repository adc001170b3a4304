// Package alert is the one type every detector emits and the responder
// consumes: what was seen, by which detector and model, how far past its
// threshold, why (the top features), about whom, and what to do.
package alert

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Alert is one detection, explained.
type Alert struct {
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	Detector string    `json:"detector"`        // e.g. threshold, lucid, kmeans, pfa, external
	Model    string    `json:"model,omitempty"` // model name and version
	// Kind names what was detected: syn-flood, udp-flood, redos, slowloris...
	Kind    string  `json:"kind"`
	Score   float64 `json:"score"`
	Thresh  float64 `json:"threshold"`
	Summary string  `json:"summary"`
	// Features are the top contributors to the score, most important first.
	Features []Feature `json:"features,omitempty"`
	Subject  Subject   `json:"subject"`
	// Suggested is the action the detector proposes (block, ratelimit,
	// kill, close-sockets); the responder's policy decides.
	Suggested string `json:"suggested,omitempty"`
	// Samples are a few flows, requests or events that show it.
	Samples []string `json:"samples,omitempty"`
}

// Feature is one input of a detector and its part in the score.
type Feature struct {
	Name         string  `json:"name"`
	Value        float64 `json:"value"`
	Baseline     float64 `json:"baseline,omitempty"`
	Contribution float64 `json:"contribution,omitempty"`
}

// Subject is whom an alert is about. Network alerts name sources (an
// address or prefix each) and the attacked destination; application alerts
// name a process and, where known, the connection.
type Subject struct {
	Sources []string `json:"sources,omitempty"`
	Dst     string   `json:"dst,omitempty"`
	Proto   string   `json:"proto,omitempty"`
	Port    uint16   `json:"port,omitempty"`
	PID     int      `json:"pid,omitempty"`
	Comm    string   `json:"comm,omitempty"`
	// Conn is the offending connection as "SRC:PORT->DST:PORT".
	Conn string `json:"conn,omitempty"`
	// The attack's signature, for a filter when its sources are too many
	// (or spoofed) to block: UDP/TCP source port (amplification), TCP
	// flags ("syn,!ack"); Dst, Proto and Port above complete it.
	SrcPort  uint16 `json:"src_port,omitempty"`
	TCPFlags string `json:"tcp_flags,omitempty"`
	// Verified are clients known to be real (they completed connections):
	// a filter lets them through.
	Verified []string `json:"verified,omitempty"`
}

// Check fills the ID and time when missing and validates what a responder
// relies on, so bad input from the API is refused with a clear error.
func (a *Alert) Check(now time.Time) error {
	if a.ID == "" {
		b := make([]byte, 8)
		rand.Read(b)
		a.ID = hex.EncodeToString(b)
	}
	if a.Time.IsZero() {
		a.Time = now
	}
	if strings.TrimSpace(a.Detector) == "" {
		return fmt.Errorf("alert: detector is required")
	}
	if strings.TrimSpace(a.Kind) == "" {
		return fmt.Errorf("alert: kind is required (what was detected, e.g. syn-flood)")
	}
	if len(a.Subject.Sources) > 10000 {
		return fmt.Errorf("alert: %d sources; at most 10000", len(a.Subject.Sources))
	}
	if len(a.Subject.Verified) > 10000 {
		return fmt.Errorf("alert: %d verified clients; at most 10000", len(a.Subject.Verified))
	}
	for _, s := range a.Subject.Sources {
		if _, err := ParsePrefix(s); err != nil {
			return fmt.Errorf("alert: source %q: %v", s, err)
		}
	}
	for _, s := range a.Subject.Verified {
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("alert: verified client %q: not an address", s)
		}
	}
	if a.Subject.Dst != "" {
		if _, err := netip.ParseAddr(a.Subject.Dst); err != nil {
			return fmt.Errorf("alert: dst %q: not an address", a.Subject.Dst)
		}
	}
	if a.Subject.PID < 0 {
		return fmt.Errorf("alert: pid %d", a.Subject.PID)
	}
	return nil
}

// ParsePrefix reads an address (as a full-length prefix) or a prefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("not a prefix")
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not an address")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// String is a one-line description for logs and the audit trail.
func (a Alert) String() string {
	s := fmt.Sprintf("%s by %s", a.Kind, a.Detector)
	if a.Model != "" {
		s += " (" + a.Model + ")"
	}
	s += fmt.Sprintf(": score %.3g vs threshold %.3g", a.Score, a.Thresh)
	if a.Summary != "" {
		s += ": " + a.Summary
	}
	return s
}
