package pfa

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/rampart-shield/rampart/internal/modelfile"
)

// File format identifiers written by Save and required by Load.
const (
	FormatName    = "rampart-pfa"
	FormatVersion = 1
)

// alphabet records the symbol encoding a model was learned with.
type alphabet struct {
	Version   string  `json:"version"`
	Space     int     `json:"space"`
	SizeEdges []int64 `json:"size_edges"`
	GapEdges  []int64 `json:"gap_edges_ns"`
	AgeEdges  []int64 `json:"age_edges_ns"`
	RxEdges   []int64 `json:"rx_edges"`
}

func thisAlphabet() alphabet {
	ns := func(ds []time.Duration) []int64 {
		out := make([]int64, len(ds))
		for i, d := range ds {
			out[i] = int64(d)
		}
		return out
	}
	return alphabet{
		Version: AlphabetVersion, Space: SymbolSpace,
		SizeEdges: SizeEdges[:], GapEdges: ns(GapEdges[:]), AgeEdges: ns(AgeEdges[:]), RxEdges: RxEdges[:],
	}
}

func (a alphabet) equal(b alphabet) bool {
	return a.Version == b.Version && a.Space == b.Space && slices.Equal(a.SizeEdges, b.SizeEdges) &&
		slices.Equal(a.GapEdges, b.GapEdges) && slices.Equal(a.AgeEdges, b.AgeEdges) && slices.Equal(a.RxEdges, b.RxEdges)
}

// fileContext is one state: its context (oldest symbol first) and the
// counts of the symbols that followed it, as [symbol, count] pairs
// sorted by symbol.
type fileContext struct {
	Context []uint16    `json:"ctx"`
	Next    [][2]uint32 `json:"next"`
}

// file is the JSON model file.
type file struct {
	Format        string        `json:"format"`
	FormatVersion int           `json:"format_version"`
	Name          string        `json:"name"`
	Version       string        `json:"version"`
	Alphabet      alphabet      `json:"alphabet"`
	Config        ModelConfig   `json:"config"`
	Training      TrainInfo     `json:"training"`
	Calibration   Calibration   `json:"calibration"`
	Contexts      []fileContext `json:"contexts"`
}

// Save writes the model as JSON: format name and version, model name and
// version, the alphabet (version and bucket edges), the learning
// parameters, training and calibration metadata, and every state with its
// counts. A loaded model gives exactly the same probabilities.
func (m *Model) Save(w io.Writer) error {
	out := file{
		Format: FormatName, FormatVersion: FormatVersion,
		Name: m.Name, Version: m.Version,
		Alphabet: thisAlphabet(), Config: m.cfg, Training: m.Info, Calibration: m.Calibration,
		Contexts: make([]fileContext, len(m.ctxs)),
	}
	for i, c := range m.ctxs {
		fc := fileContext{Next: make([][2]uint32, c.t)}
		for _, s := range decodeContext(c.key) {
			fc.Context = append(fc.Context, uint16(s))
		}
		for j := range c.t {
			fc.Next[j] = [2]uint32{uint32(m.syms[c.off+j]), m.counts[c.off+j]}
		}
		out.Contexts[i] = fc
	}
	if err := json.NewEncoder(w).Encode(&out); err != nil {
		return fmt.Errorf("pfa: saving model %q: %w", m.Name, err)
	}
	return nil
}

// Load reads a model written by Save. It refuses a file that is not a pfa
// model, has another format version, was learned with another alphabet,
// or is malformed (a context longer than the depth or with an invalid
// symbol, Start anywhere but at a context's beginning or as a next
// symbol, unsorted or zero counts, a context twice, no empty context, a
// calibration that is not finite).
func Load(r io.Reader) (*Model, error) {
	data, err := modelfile.Read(r, "pfa", FormatName, FormatVersion)
	if err != nil {
		return nil, err
	}
	var in file
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, fmt.Errorf("pfa: decoding model: %w", err)
	}
	if !in.Alphabet.equal(thisAlphabet()) {
		return nil, fmt.Errorf("pfa: model %q was learned with alphabet %q and other bucket edges; this build uses %q", in.Name, in.Alphabet.Version, AlphabetVersion)
	}
	cfg, err := in.Config.withDefaults()
	if err != nil || cfg != in.Config {
		return nil, fmt.Errorf("pfa: model %q has an invalid config %+v", in.Name, in.Config)
	}
	if err := in.Calibration.check(); err != nil {
		return nil, fmt.Errorf("pfa: model %q: %w", in.Name, err)
	}
	m := &Model{
		Name: in.Name, Version: in.Version, Info: in.Training, Calibration: in.Calibration, cfg: cfg,
		index: make(map[uint64]int32, len(in.Contexts)),
	}
	total := 0
	for _, fc := range in.Contexts {
		total += len(fc.Next)
	}
	m.syms, m.counts = make([]Symbol, 0, total), make([]uint32, 0, total)
	for i, fc := range in.Contexts {
		c, err := m.addContext(fc)
		if err != nil {
			return nil, fmt.Errorf("pfa: model %q context %d: %w", in.Name, i, err)
		}
		if _, dup := m.index[c.key]; dup {
			return nil, fmt.Errorf("pfa: model %q context %d %v appears twice", in.Name, i, fc.Context)
		}
		m.index[c.key] = int32(len(m.ctxs))
		m.ctxs = append(m.ctxs, c)
	}
	if _, ok := m.index[0]; !ok {
		return nil, fmt.Errorf("pfa: model %q has no empty context", in.Name)
	}
	slices.SortFunc(m.ctxs, func(a, b ctxStat) int { return cmp.Compare(a.key, b.key) })
	for i, c := range m.ctxs {
		m.index[c.key] = int32(i)
	}
	return m, nil
}

// addContext checks one state of a file and appends its counts.
func (m *Model) addContext(fc fileContext) (ctxStat, error) {
	if len(fc.Context) > m.cfg.Depth {
		return ctxStat{}, fmt.Errorf("context of %d symbols, depth is %d", len(fc.Context), m.cfg.Depth)
	}
	ss := make([]Symbol, len(fc.Context))
	for i, s := range fc.Context {
		ss[i] = Symbol(s)
		if ss[i] == Start && i > 0 {
			return ctxStat{}, fmt.Errorf("start symbol at position %d of the context", i)
		}
	}
	key, ok := encodeContext(ss)
	if !ok {
		return ctxStat{}, fmt.Errorf("invalid symbol in context %v", fc.Context)
	}
	if len(fc.Next) == 0 {
		return ctxStat{}, fmt.Errorf("no next symbols")
	}
	c := ctxStat{key: key, off: uint32(len(m.syms)), t: uint32(len(fc.Next))}
	var n uint64
	for j, p := range fc.Next {
		s := Symbol(p[0])
		switch {
		case p[0] >= SymbolSpace || !s.Valid() || s == Start:
			return ctxStat{}, fmt.Errorf("next symbol %d is invalid", p[0])
		case j > 0 && s <= m.syms[len(m.syms)-1]:
			return ctxStat{}, fmt.Errorf("next symbols are not sorted and unique at %d", j)
		case p[1] == 0:
			return ctxStat{}, fmt.Errorf("next symbol %v has count 0", s)
		}
		n += uint64(p[1])
		m.syms, m.counts = append(m.syms, s), append(m.counts, p[1])
	}
	if n > math.MaxUint32 {
		return ctxStat{}, fmt.Errorf("counts sum to %d", n)
	}
	c.n = uint32(n)
	return c, nil
}

// check validates a loaded calibration.
func (c Calibration) check() error {
	for _, x := range []float64{c.TargetFPR, c.Margin, c.Median, c.Quantile, c.Max, c.Threshold} {
		if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
			return fmt.Errorf("calibration %+v is not finite and non-negative", c)
		}
	}
	if c.Threshold > 0 && (c.Window < 1 || c.Window > 1024) {
		return fmt.Errorf("calibration window %d is not in 1..1024", c.Window)
	}
	return nil
}
