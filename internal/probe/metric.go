package probe

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/rampart-shield/rampart/internal/btfjson"
)

// exportedMap is one map exported by one or more metrics. Every metric of a
// map shares its extraction options, so a drain serves all of them.
type exportedMap struct {
	name    string
	reader  *mapReader
	keyDec  *btfjson.Decoder // nil for queues and stacks
	valDec  *btfjson.Decoder
	maps    [2]*ebpf.Map // per instance; both the same when not swapped
	swapped bool         // drained through the instance swap
	drain   bool         // empty-on-read or swap-on-read
	metrics []*metricState
	// jsonPerEntry sizes the next render's buffers.
	jsonPerEntry atomic.Int64
}

// metricState is one exported metric and what the agent keeps for it.
type metricState struct {
	cfg    Metric
	em     *exportedMap
	labels []labelFn
	// series: one number per OpenMetrics family of this metric: a single
	// one for a scalar or value-field, one per numeric leaf otherwise.
	series []seriesFn
	// pending holds drained entries not yet returned to a REST reader
	// (drained by a scrape, or by reading a sibling metric).
	pending *entrySet
	// cum accumulates drained counters so OpenMetrics counters stay
	// monotonic although the map is emptied on every read.
	cum map[string]*cumSeries
	// last is what the latest drain returned (for drained gauges).
	last []rawEntry
}

type labelFn struct {
	name  string
	text  func(key []byte) string
	value string
}

type seriesFn struct {
	suffix string
	num    func(val []byte) float64
}

type cumSeries struct {
	labels []string
	vals   []float64
}

// splitFormats splits manifest formats ("key.x", "value.y") per side.
func splitFormats(f map[string]string) (key, val map[string]string) {
	key, val = map[string]string{}, map[string]string{}
	for p, v := range f {
		root, rest, _ := strings.Cut(p, ".")
		if root == "key" {
			key[rest] = v
		} else {
			val[rest] = v
		}
	}
	return key, val
}

func typeName(t btf.Type) string {
	if t == nil {
		return ""
	}
	switch v := t.(type) {
	case *btf.Struct:
		return "struct " + v.Name
	case *btf.Union:
		return "union " + v.Name
	case *btf.Enum:
		return "enum " + v.Name
	}
	if n := t.TypeName(); n != "" {
		return n
	}
	return fmt.Sprintf("%T", t)
}

// newExportedMap builds the decoders of one map from its BTF, once.
func newExportedMap(name string, spec *ebpf.MapSpec, m *ebpf.Map, metrics []Metric) (*exportedMap, error) {
	r, err := newMapReader(name, m)
	if err != nil {
		return nil, errorf(KindInvalid, "%v", err)
	}
	em := &exportedMap{name: name, reader: r, maps: [2]*ebpf.Map{m, m}}
	if spec.Value == nil || (spec.Key == nil && !r.keyless()) {
		return nil, errorf(KindInvalid, "map %s has no BTF for its key and value: declare it with __type(key, ...) and __type(value, ...) and compile with -g", name)
	}
	first := metrics[0]
	formats := map[string]string{}
	for _, mt := range metrics {
		if mt.EmptyOnRead != first.EmptyOnRead || mt.SwapOnRead != first.SwapOnRead {
			return nil, errorf(KindInvalid, "metrics %q and %q export map %s with different extraction options: give them the same empty-on-read and swap-on-read", first.Name, mt.Name, name)
		}
		for k, v := range mt.Formats {
			formats[k] = v
		}
	}
	kf, vf := splitFormats(formats)
	if !r.keyless() {
		if em.keyDec, err = btfjson.New(spec.Key, btfjson.Options{Formats: kf}); err != nil {
			return nil, errorf(KindInvalid, "map %s key: %v", name, err)
		}
		if em.keyDec.Size() != r.keySize {
			return nil, errorf(KindInvalid, "map %s: key type %s is %d bytes but the map's key is %d", name, em.keyDec.TypeName(), em.keyDec.Size(), r.keySize)
		}
	}
	if em.valDec, err = btfjson.New(spec.Value, btfjson.Options{Formats: vf}); err != nil {
		return nil, errorf(KindInvalid, "map %s value: %v", name, err)
	}
	if em.valDec.Size() != r.valSize {
		return nil, errorf(KindInvalid, "map %s: value type %s is %d bytes but the map's value is %d", name, em.valDec.TypeName(), em.valDec.Size(), r.valSize)
	}
	em.drain = first.EmptyOnRead || first.SwapOnRead
	// Arrays and LPM tries cannot be emptied entry by entry without losing
	// concurrent updates: they are always emptied through the swap.
	em.swapped = first.SwapOnRead || (first.EmptyOnRead && !r.drainsInPlace())
	for _, mt := range metrics {
		ms, err := newMetricState(mt, em)
		if err != nil {
			return nil, err
		}
		em.metrics = append(em.metrics, ms)
	}
	return em, nil
}

func newMetricState(mt Metric, em *exportedMap) (*metricState, error) {
	ms := &metricState{cfg: mt, em: em, pending: newEntrySet(mt.Type == "gauge", em.reader.max), cum: map[string]*cumSeries{}}
	for _, l := range mt.Labels {
		if l.Field == "" && l.Value != "" {
			ms.labels = append(ms.labels, labelFn{name: l.Name, value: l.Value})
			continue
		}
		if em.keyDec == nil {
			return nil, errorf(KindInvalid, "metric %s: map %s has no keys, so label %q cannot come from a key field", mt.Name, em.name, l.Name)
		}
		path := strings.TrimPrefix(strings.TrimPrefix(l.Field, "key"), ".")
		if l.Field == "." {
			path = ""
		}
		fn, err := em.keyDec.Text(path)
		if err != nil {
			return nil, errorf(KindInvalid, "metric %s: label %q: %v", mt.Name, l.Name, err)
		}
		ms.labels = append(ms.labels, labelFn{name: l.Name, text: fn})
	}
	if mt.ValueField != "" {
		fn, err := em.valDec.Number(strings.TrimPrefix(mt.ValueField, "value."))
		if err != nil {
			return nil, errorf(KindInvalid, "metric %s: value-field %q: %v", mt.Name, mt.ValueField, err)
		}
		ms.series = []seriesFn{{num: fn}}
	} else if fn, err := em.valDec.Number(""); err == nil {
		ms.series = []seriesFn{{num: fn}}
	} else {
		for _, leaf := range em.valDec.NumericLeaves() {
			fn, err := em.valDec.Number(leaf)
			if err != nil {
				return nil, errorf(KindInvalid, "metric %s: %v", mt.Name, err)
			}
			ms.series = append(ms.series, seriesFn{suffix: "_" + strings.NewReplacer(".", "_", "[", "_", "]", "").Replace(leaf), num: fn})
		}
		if len(ms.series) == 0 {
			return nil, errorf(KindInvalid, "metric %s: the value of map %s has no numeric field to export", mt.Name, em.name)
		}
	}
	return ms, nil
}

// merged returns the per-field sum of a per-CPU value (or the value).
func (em *exportedMap) merged(e rawEntry) []byte {
	if len(e.vals) == 1 {
		return e.vals[0]
	}
	out := make([]byte, em.reader.valSize)
	em.valDec.Sum(out, e.vals)
	return out
}

// labelValues renders the labels of one entry.
func (ms *metricState) labelValues(key []byte) []string {
	out := make([]string, len(ms.labels))
	for i, l := range ms.labels {
		if l.text != nil {
			out[i] = l.text(key)
		} else {
			out[i] = l.value
		}
	}
	return out
}

// hand gives a fresh drain to every metric of the map and returns it for
// reader, which takes it directly instead of through its pending set.
func (em *exportedMap) hand(entries []rawEntry, reader *metricState) []rawEntry {
	var mine []rawEntry
	for _, ms := range em.metrics {
		ms.account(entries)
		if ms == reader {
			mine = entries
		} else {
			ms.pending.merge(entries, em)
		}
	}
	return mine
}

// account adds a fresh drain to the counters' running totals and remembers
// it as the latest window (for drained gauges).
func (ms *metricState) account(entries []rawEntry) {
	ms.last = entries
	if ms.cfg.Type != "counter" {
		return
	}
	for _, e := range entries {
		lv := ms.labelValues(e.key)
		id := strings.Join(lv, "\xff")
		c := ms.cum[id]
		if c == nil {
			c = &cumSeries{labels: lv, vals: make([]float64, len(ms.series))}
			ms.cum[id] = c
		}
		v := ms.em.merged(e)
		for i, s := range ms.series {
			c.vals[i] += s.num(v)
		}
	}
}

// entrySet merges drained entries by key until a reader takes them.
type entrySet struct {
	replace bool // gauges: a newer value replaces an older one
	limit   int
	order   []string
	byKey   map[string]*rawEntry
	list    []rawEntry // keyless maps
	dropped uint64
}

func newEntrySet(replace bool, limit int) *entrySet {
	if limit < 1024 {
		limit = 1024
	}
	return &entrySet{replace: replace, limit: limit, byKey: map[string]*rawEntry{}}
}

func (s *entrySet) merge(entries []rawEntry, em *exportedMap) {
	for _, e := range entries {
		if e.key == nil {
			if len(s.list) >= s.limit {
				s.dropped++
				continue
			}
			s.list = append(s.list, e)
			continue
		}
		k := string(e.key)
		old := s.byKey[k]
		if old == nil {
			if len(s.order) >= s.limit {
				s.dropped++
				continue
			}
			cp := e
			s.byKey[k] = &cp
			s.order = append(s.order, k)
			continue
		}
		if s.replace || len(old.vals) != len(e.vals) {
			old.vals = e.vals
			continue
		}
		for c := range old.vals {
			sum := make([]byte, len(old.vals[c]))
			em.valDec.Sum(sum, [][]byte{old.vals[c], e.vals[c]})
			old.vals[c] = sum
		}
	}
}

// takeWith returns what is pending plus fresh, merged by key; without
// anything pending it returns fresh as it is.
func (s *entrySet) takeWith(fresh []rawEntry, em *exportedMap) []rawEntry {
	if len(s.order) == 0 && len(s.list) == 0 {
		return fresh
	}
	s.merge(fresh, em)
	return s.take()
}

func (s *entrySet) take() []rawEntry {
	out := s.list
	for _, k := range s.order {
		out = append(out, *s.byKey[k])
	}
	s.list, s.order = nil, nil
	s.byKey = map[string]*rawEntry{}
	return out
}

// render turns raw entries into the JSON the API returns. Large reads are
// rendered in parallel, one chunk per CPU, each into its own buffer.
func (em *exportedMap) render(entries []rawEntry, perCPU bool) ([]Entry, error) {
	out := make([]Entry, len(entries))
	workers := runtime.GOMAXPROCS(0)
	if len(entries) < 8192 || workers < 2 {
		return out, em.renderInto(out, entries, perCPU)
	}
	chunk := (len(entries) + workers - 1) / workers
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, len(entries))
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = em.renderInto(out[lo:hi], entries[lo:hi], perCPU)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (em *exportedMap) renderInto(out []Entry, entries []rawEntry, perCPU bool) error {
	// One buffer for the chunk's JSON, sized from the average entry of the
	// previous read of this map.
	hint := int(em.jsonPerEntry.Load())
	buf := make([]byte, 0, hint*len(entries)+1024)
	defer func() {
		if len(entries) > 0 {
			em.jsonPerEntry.Store(int64(len(buf)/len(entries) + 1))
		}
	}()
	for i, e := range entries {
		var err error
		if em.keyDec != nil {
			start := len(buf)
			if buf, err = em.keyDec.AppendJSON(buf, e.key); err != nil {
				return err
			}
			out[i].Key = json.RawMessage(buf[start:len(buf):len(buf)])
		}
		start := len(buf)
		if perCPU && em.reader.perCPU {
			buf = append(buf, '[')
			for c, v := range e.vals {
				if c > 0 {
					buf = append(buf, ',')
				}
				if buf, err = em.valDec.AppendJSON(buf, v); err != nil {
					return err
				}
			}
			buf = append(buf, ']')
		} else if buf, err = em.valDec.AppendJSON(buf, em.merged(e)); err != nil {
			return err
		}
		out[i].Value = json.RawMessage(buf[start:len(buf):len(buf)])
	}
	return nil
}
