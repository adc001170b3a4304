package pfa

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rampart-shield/rampart/internal/alert"
)

// SuggestCloseSockets is the action a verdict suggests: close the
// offending connections (the responder may instead kill their workers).
const SuggestCloseSockets = "close-sockets"

// Offender is an open connection found anomalous.
type Offender struct {
	Conn ConnID `json:"conn"`
	// PID is the thread that last used it (the worker it holds).
	PID uint32 `json:"pid"`
	// Start is when it began, FlaggedAt when its score first exceeded
	// the threshold, after Symbols symbols; FlagScore is the score then,
	// Score the current one and MaxScore the highest.
	Start     int64   `json:"start"`
	FlaggedAt int64   `json:"flagged_at"`
	Symbols   int     `json:"symbols"`
	FlagScore float64 `json:"flag_score"`
	Score     float64 `json:"score"`
	MaxScore  float64 `json:"max_score"`
	Threshold float64 `json:"threshold"`
	// Improbable are its most surprising symbols, most surprising first.
	Improbable []Improbable `json:"improbable"`
}

// DetectedAfter is how long after its beginning it was flagged.
func (o Offender) DetectedAfter() time.Duration { return time.Duration(o.FlaggedAt - o.Start) }

// SymbolCount is an improbable symbol shared by offenders.
type SymbolCount struct {
	Symbol Symbol  `json:"symbol"`
	Name   string  `json:"name"`
	Conns  int     `json:"conns"` // offenders that have it among their improbable symbols
	Bits   float64 `json:"bits"`  // its mean surprisal there
}

// Verdict says that a process group is being exhausted by anomalous
// connections, which ones, and why.
type Verdict struct {
	Time int64 `json:"time"`
	ProcessState
	// TGIDs are the processes holding the offending connections.
	TGIDs []uint32 `json:"tgids"`
	// Kind is slowloris (the offenders stall while receiving), slow-read
	// (while sending) or slow-dos (otherwise).
	Kind string `json:"kind"`
	// Reason says which rule fired: the share of the limit held by
	// anomalous connections, or the predicted exhaustion.
	Reason string `json:"reason"`
	// Pressure is how far past its rules the group is: the larger of
	// Share/Config.Share and, when exhaustion is predicted within the
	// horizon, 2-ExhaustIn/Config.Horizon (1 at the horizon, 2 at the
	// limit). It is at least 1 in a verdict.
	Pressure  float64       `json:"pressure"`
	Offenders []Offender    `json:"offenders"`
	Top       []SymbolCount `json:"top"`
	Suggested string        `json:"suggested"`
}

// topSymbols is the number of symbols in Verdict.Top.
const topSymbols = 5

// verdict returns g's verdict at now, if its rule fires and it is due.
func (d *Detector) verdict(g *group, now int64) (Verdict, bool) {
	if g.anomalous < 1 {
		return Verdict{}, false
	}
	st := g.state()
	var pressure float64
	var reasons []string
	if p := st.Share / d.cfg.Share; p >= 1 {
		pressure = p
		reasons = append(reasons, fmt.Sprintf("%d anomalous connections hold %.0f%% of the limit of %d (rule: %.0f%%)",
			st.Anomalous, 100*st.Share, st.Limit, 100*d.cfg.Share))
	}
	if st.ExhaustIn != Never && st.ExhaustIn <= d.cfg.Horizon {
		p := 1.0
		if d.cfg.Horizon > 0 {
			p = 2 - float64(st.ExhaustIn)/float64(d.cfg.Horizon)
		}
		pressure = max(pressure, p)
		if st.ExhaustIn == 0 {
			reasons = append(reasons, fmt.Sprintf("%d open connections reached the limit of %d", st.Open, st.Limit))
		} else {
			reasons = append(reasons, fmt.Sprintf("%d open connections growing %.1f/s reach the limit of %d in %v (horizon %v)",
				st.Open, st.Slope, st.Limit, st.ExhaustIn.Round(100*time.Millisecond), d.cfg.Horizon))
		}
	}
	if len(reasons) == 0 {
		return Verdict{}, false
	}
	if g.lastAlert != 0 && now-g.lastAlert < int64(d.cfg.Every) && g.anomalous <= g.lastCount {
		return Verdict{}, false
	}
	g.lastAlert, g.lastCount = now, g.anomalous
	v := Verdict{
		Time: now, ProcessState: st, Reason: strings.Join(reasons, "; "), Pressure: pressure,
		Offenders: d.offenders(g), Suggested: SuggestCloseSockets,
	}
	for _, o := range v.Offenders {
		if !slices.Contains(v.TGIDs, o.Conn.TGID) {
			v.TGIDs = append(v.TGIDs, o.Conn.TGID)
		}
	}
	slices.Sort(v.TGIDs)
	v.Kind, v.Top = classify(v.Offenders)
	return v, true
}

// classify names the attack from the offenders' improbable symbols and
// returns the symbols most shared among them.
func classify(offs []Offender) (string, []SymbolCount) {
	type acc struct {
		n    int
		bits float64
	}
	by := make(map[Symbol]*acc)
	var recv, send int
	for _, o := range offs {
		seen := make(map[Symbol]bool)
		for _, i := range o.Improbable {
			switch k := i.Symbol.Kind(); {
			case k == Recv, k == Tick && (i.Symbol.After() == Recv || i.Symbol.After() == Accept):
				recv++
			case k == Send, k == Tick && i.Symbol.After() == Send:
				send++
			}
			if seen[i.Symbol] {
				continue
			}
			seen[i.Symbol] = true
			a := by[i.Symbol]
			if a == nil {
				a = new(acc)
				by[i.Symbol] = a
			}
			a.n++
			a.bits += i.Bits
		}
	}
	top := make([]SymbolCount, 0, len(by))
	for s, a := range by {
		top = append(top, SymbolCount{Symbol: s, Name: s.String(), Conns: a.n, Bits: a.bits / float64(a.n)})
	}
	slices.SortFunc(top, func(a, b SymbolCount) int {
		if c := cmp.Compare(b.Conns, a.Conns); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Bits, a.Bits); c != 0 {
			return c
		}
		return cmp.Compare(a.Symbol, b.Symbol)
	})
	kind := "slow-dos"
	switch {
	case recv > 2*send:
		kind = "slowloris"
	case send > 2*recv:
		kind = "slow-read"
	}
	return kind, top[:min(len(top), topSymbols)]
}

// Alert turns the verdict into an alert stamped with the wall-clock time
// now (verdict times are monotonic); model names the model and version.
func (v Verdict) Alert(now time.Time, model string) alert.Alert {
	a := alert.Alert{
		Time: now, Detector: Name, Model: model, Kind: v.Kind,
		Score: v.Pressure, Thresh: 1,
		Summary: fmt.Sprintf("%s: %d of %d open connections anomalous: %s", v.Group, v.Anomalous, v.Open, v.Reason),
		Features: []alert.Feature{
			{Name: "anomalous-share", Value: v.Share},
			{Name: "open", Value: float64(v.Open), Baseline: float64(v.Limit)},
			{Name: "busy", Value: float64(v.Busy)},
			{Name: "open-slope-per-s", Value: v.Slope},
		},
		Suggested: v.Suggested,
	}
	if v.ExhaustIn != Never {
		a.Features = append(a.Features, alert.Feature{Name: "exhaust-in-s", Value: v.ExhaustIn.Seconds()})
	}
	for _, t := range v.Top {
		a.Features = append(a.Features, alert.Feature{Name: t.Name, Value: float64(t.Conns), Contribution: t.Bits})
	}
	if len(v.TGIDs) > 0 {
		a.Subject.PID = int(v.TGIDs[0])
	}
	for _, o := range v.Offenders[:min(len(v.Offenders), 10)] {
		s := fmt.Sprintf("conn %v thread %d: score %.1f > %.1f after %v", o.Conn, o.PID, o.FlagScore, o.Threshold, o.DetectedAfter().Round(time.Millisecond))
		if len(o.Improbable) > 0 {
			s += ": " + o.Improbable[0].String()
		}
		a.Samples = append(a.Samples, s)
	}
	return a
}
