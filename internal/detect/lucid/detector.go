package lucid

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/probes/ddosfeat"
)

// DetectorName is the detector's name in alerts.
const DetectorName = "lucid"

// DetectorConfig tunes the live detector. Zero values take the defaults.
type DetectorConfig struct {
	// Threshold: a session scoring at least this is an attack (0.5).
	Threshold float64 `json:"threshold,omitempty"`
	// MinSessions: attack sessions per second to one destination before
	// it alerts (50): a few misclassified sessions are not an attack.
	MinSessions float64 `json:"min-sessions,omitempty"`
	// IdleNs: a session with fewer than N packets is classified after
	// this long without a record (1 s).
	IdleNs uint64 `json:"-"`
	// Every: at most one alert per destination this often (5 s).
	Every time.Duration `json:"-"`
	// TopN sources in an alert (10); Concentrated share of the attack
	// sessions from them above which they are blocked (0.8).
	TopN         int     `json:"top,omitempty"`
	Concentrated float64 `json:"concentrated,omitempty"`
}

// Detector classifies ddosfeat's sessions with the CNN and alerts on
// destinations that receive many attack sessions.
type Detector struct {
	m    *Model
	cfg  DetectorConfig
	asm  *Assembler
	done []*Session // completed, waiting for Tick
	last map[netip.Addr]time.Time
	// Classified counts sessions by verdict, for the agent's metrics.
	Classified, Attacks uint64
}

// NewDetector returns a detector using model m.
func NewDetector(m *Model, cfg DetectorConfig) *Detector {
	if cfg.Threshold == 0 {
		cfg.Threshold = 0.5
	}
	if cfg.MinSessions == 0 {
		cfg.MinSessions = 50
	}
	if cfg.IdleNs == 0 {
		cfg.IdleNs = uint64(time.Second)
	}
	if cfg.Every == 0 {
		cfg.Every = 5 * time.Second
	}
	if cfg.TopN == 0 {
		cfg.TopN = 10
	}
	if cfg.Concentrated == 0 {
		cfg.Concentrated = 0.8
	}
	return &Detector{m: m, cfg: cfg, asm: NewAssembler(m.N, cfg.IdleNs, 1<<16), last: map[netip.Addr]time.Time{}}
}

// Add files one ddosfeat record; complete sessions wait for the next Tick.
func (d *Detector) Add(p ddosfeat.PacketFeatures) {
	d.done = append(d.done, d.asm.Add(p)...)
}

// ends is who started a session (its first packet's sender) and who
// received it.
func ends(s *Session) (src, dst netip.AddrPort) {
	p := s.Packets[0]
	if p.FromHi {
		return netip.AddrPortFrom(s.Key.HiAddr, s.Key.HiPort), netip.AddrPortFrom(s.Key.LoAddr, s.Key.LoPort)
	}
	return netip.AddrPortFrom(s.Key.LoAddr, s.Key.LoPort), netip.AddrPortFrom(s.Key.HiAddr, s.Key.HiPort)
}

var protoNames = map[uint8]string{6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}

// scored is one classified session.
type scored struct {
	s        *Session
	score    float32
	src, dst netip.AddrPort
	sample   [][]float32
}

// Tick classifies the sessions completed since the last tick and those
// idle at nowNs (the records' clock), over an interval of dt, and returns
// the alerts.
func (d *Detector) Tick(nowNs uint64, wall time.Time, dt time.Duration) []alert.Alert {
	done := append(d.done, d.asm.Flush(nowNs)...)
	d.done = nil
	if len(done) == 0 {
		return nil
	}
	samples := make([][][]float32, len(done))
	for i, s := range done {
		samples[i] = FromPackets(s.Packets, d.m.N)
	}
	scores := make([]float32, len(done))
	d.m.PredictBatch(samples, scores)
	byDst := map[netip.Addr][]scored{}
	for i, s := range done {
		src, dst := ends(s)
		byDst[dst.Addr()] = append(byDst[dst.Addr()], scored{s, scores[i], src, dst, samples[i]})
	}
	secs := dt.Seconds()
	if secs <= 0 {
		secs = 1
	}
	var out []alert.Alert
	for dst, ss := range byDst {
		var attack, benign []scored
		for _, x := range ss {
			d.Classified++
			if float64(x.score) >= d.cfg.Threshold {
				attack = append(attack, x)
			} else {
				benign = append(benign, x)
			}
		}
		d.Attacks += uint64(len(attack))
		rate := float64(len(attack)) / secs
		if rate < d.cfg.MinSessions {
			continue
		}
		if t, ok := d.last[dst]; ok && wall.Sub(t) < d.cfg.Every {
			continue
		}
		d.last[dst] = wall
		out = append(out, d.explain(wall, dst, rate, attack, benign, len(ss)))
	}
	slices.SortFunc(out, func(a, b alert.Alert) int { return cmp.Compare(a.Subject.Dst, b.Subject.Dst) })
	return out
}

func (d *Detector) explain(wall time.Time, dst netip.Addr, rate float64, attack, benign []scored, total int) alert.Alert {
	slices.SortFunc(attack, func(a, b scored) int { return cmp.Compare(b.score, a.score) })
	top := attack[0]
	ex := d.m.Explain(top.sample)
	a := alert.Alert{
		Time: wall, Detector: DetectorName, Model: d.m.Name + " " + d.m.Version,
		Kind: "ddos", Score: rate, Thresh: d.cfg.MinSessions,
		Subject: alert.Subject{Dst: dst.String()},
	}
	var drivers []string
	for _, c := range ex.Top {
		a.Features = append(a.Features, alert.Feature{Name: fmt.Sprintf("packet %d %s", c.Packet+1, c.Feature), Value: float64(c.Value), Contribution: float64(c.Contribution)})
		if c.Contribution > 0 && len(drivers) < 3 {
			drivers = append(drivers, fmt.Sprintf("packet %d %s", c.Packet+1, c.Feature))
		}
	}
	if len(ex.Windows) > 0 {
		w := ex.Windows[0]
		drivers = append(drivers, fmt.Sprintf("max-pool window packets %d-%d (%d kernels)", w.Start+1, w.Start+d.m.H, w.Kernels))
	}
	// The attack's shape: protocol, port, flags, sources.
	protos := map[uint8]int{}
	ports := map[uint16]int{}
	srcs := map[netip.Addr]int{}
	synOnly := 0
	for _, x := range attack {
		protos[x.s.Key.Proto]++
		ports[x.dst.Port()]++
		srcs[x.src.Addr()]++
		if p := x.s.Packets[0]; p.Proto == 6 && p.TCPFlags&0x12 == 0x02 {
			synOnly++
		}
	}
	proto, pn := maxKey(protos)
	a.Subject.Proto = protoNames[proto]
	if port, n := maxKey(ports); (proto == 6 || proto == 17) && float64(n) >= d.cfg.Concentrated*float64(len(attack)) {
		a.Subject.Port = port
	}
	if proto == 6 && float64(synOnly) >= d.cfg.Concentrated*float64(pn) {
		a.Subject.TCPFlags = "syn,!ack"
	}
	type sc struct {
		a netip.Addr
		n int
	}
	var bySrc []sc
	for s, n := range srcs {
		bySrc = append(bySrc, sc{s, n})
	}
	slices.SortFunc(bySrc, func(x, y sc) int { return cmp.Or(cmp.Compare(y.n, x.n), x.a.Compare(y.a)) })
	topN := 0
	for i := 0; i < len(bySrc) && i < d.cfg.TopN; i++ {
		topN += bySrc[i].n
	}
	for i, x := range attack {
		if i == 3 {
			break
		}
		a.Samples = append(a.Samples, fmt.Sprintf("%s -> %s proto %d, %d packets: score %.3f", x.src, x.dst, x.s.Key.Proto, len(x.s.Packets), x.score))
	}
	what := fmt.Sprintf("%.0f attack sessions/s to %s (%d of %d sessions scored >= %.2f by the CNN; top %.3f; drivers: %s)",
		rate, dst, len(attack), total, d.cfg.Threshold, top.score, strings.Join(drivers, ", "))
	if float64(topN) >= d.cfg.Concentrated*float64(len(attack)) {
		a.Suggested = "block"
		for i := 0; i < len(bySrc) && i < d.cfg.TopN; i++ {
			a.Subject.Sources = append(a.Subject.Sources, bySrc[i].a.String())
		}
		a.Summary = what + fmt.Sprintf("; %d sources send %.0f%% of them: block them", len(a.Subject.Sources), 100*float64(topN)/float64(len(attack)))
		return a
	}
	a.Suggested = "filter"
	seen := map[netip.Addr]bool{}
	for _, x := range benign {
		// Real clients: sessions the model finds benign that had replies.
		if x.score < 0.1 && hasReply(x.s) && !seen[x.src.Addr()] && srcs[x.src.Addr()] == 0 {
			seen[x.src.Addr()] = true
			a.Subject.Verified = append(a.Subject.Verified, x.src.Addr().String())
		}
	}
	slices.Sort(a.Subject.Verified)
	a.Summary = what + fmt.Sprintf("; from %d sources: filter the signature, passing %d clients the model finds benign", len(srcs), len(a.Subject.Verified))
	return a
}

func hasReply(s *Session) bool {
	first := s.Packets[0].FromHi
	for _, p := range s.Packets[1:] {
		if p.FromHi != first {
			return true
		}
	}
	return false
}

func maxKey[K cmp.Ordered](m map[K]int) (K, int) {
	var best K
	n := -1
	for k, v := range m {
		if v > n || (v == n && k < best) {
			best, n = k, v
		}
	}
	return best, n
}
