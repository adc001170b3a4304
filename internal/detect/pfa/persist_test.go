package pfa

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// A saved and loaded model has the same states, counts, probabilities,
// calibration and scores.
func TestSaveLoadRoundTrip(t *testing.T) {
	m := model(t)
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil {
		t.Fatal(err)
	}
	size := buf.Len()
	back, err := Load(&buf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("model file %d bytes; %+v", size, back.Stats())
	if back.Name != m.Name || back.Version != m.Version || back.Info != m.Info || back.Calibration != m.Calibration || back.Config() != m.Config() {
		t.Errorf("metadata differs: %+v %+v vs %+v %+v", back.Info, back.Calibration, m.Info, m.Calibration)
	}
	if back.Stats().States != m.Stats().States || back.Stats().Transitions != m.Stats().Transitions {
		t.Errorf("stats %+v, want %+v", back.Stats(), m.Stats())
	}
	g := newGen(123)
	evs := g.benignConns(1, 200)
	evs = append(evs, g.slowloris(1, evs[len(evs)-1].Time, evs[len(evs)-1].Time+60e9, 0)...)
	a, _ := m.connMaxScores(evs, 8)
	b, _ := back.connMaxScores(evs, 8)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("connection %d scores %v, loaded %v", i, a[i], b[i])
		}
	}
	for _, c := range m.ctxs {
		stream := decodeContext(c.key)
		if len(stream) > 0 && stream[0] == Start {
			stream = stream[1:]
		}
		for _, s := range []Symbol{symA, symR1, symT, StateSymbol(1, 2)} {
			if p, q := m.Prob(stream, s), back.Prob(stream, s); p != q {
				t.Fatalf("P(%v | %v) = %v, loaded %v", s, stream, p, q)
			}
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	var buf bytes.Buffer
	m := learnStreams(t, ModelConfig{Depth: 2, MinCount: 1}, []Symbol{symA, symR1, symC}, []Symbol{symA, symR2, symC})
	if err := m.Save(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.String()
	if _, err := Load(strings.NewReader(good)); err != nil {
		t.Fatalf("good model refused: %v", err)
	}
	edit := func(f func(map[string]any)) string {
		var v map[string]any
		if err := json.Unmarshal([]byte(good), &v); err != nil {
			t.Fatal(err)
		}
		f(v)
		b, _ := json.Marshal(v)
		return string(b)
	}
	ctxs := func(v map[string]any) []any { return v["contexts"].([]any) }
	ctx := func(v map[string]any, i int) map[string]any { return ctxs(v)[i].(map[string]any) }
	for _, c := range []struct {
		name, file, want string
	}{
		{"not json", "{", "not JSON"},
		{"other format", edit(func(v map[string]any) { v["format"] = "rampart-forest" }), "file format"},
		{"other version", edit(func(v map[string]any) { v["format_version"] = 2 }), "version 2"},
		{"other alphabet", edit(func(v map[string]any) { v["alphabet"].(map[string]any)["size_edges"] = []int{1, 2} }), "alphabet"},
		{"depth too large", edit(func(v map[string]any) { v["config"].(map[string]any)["depth"] = 9 }), "invalid config"},
		{"context too long", edit(func(v map[string]any) { ctx(v, 1)["ctx"] = []int{0, 4096, 4096} }), "depth is 2"},
		{"invalid symbol", edit(func(v map[string]any) { ctx(v, 1)["ctx"] = []int{0x7fff} }), "invalid symbol"},
		{"start inside", edit(func(v map[string]any) { ctx(v, 1)["ctx"] = []int{4096, 0} }), "start symbol at position 1"},
		{"start predicted", edit(func(v map[string]any) { ctx(v, 0)["next"] = [][]int{{0, 1}} }), "next symbol 0 is invalid"},
		{"unsorted", edit(func(v map[string]any) { ctx(v, 0)["next"] = [][]int{{12288, 1}, {4096, 1}} }), "not sorted"},
		{"zero count", edit(func(v map[string]any) { ctx(v, 0)["next"] = [][]int{{4096, 0}} }), "count 0"},
		{"duplicate", edit(func(v map[string]any) { v["contexts"] = append(ctxs(v), ctx(v, 1)) }), "twice"},
		{"no empty context", edit(func(v map[string]any) { v["contexts"] = ctxs(v)[1:] }), "no empty context"},
		{"bad calibration", edit(func(v map[string]any) {
			v["calibration"].(map[string]any)["threshold"] = 3
			v["calibration"].(map[string]any)["window"] = 0
		}), "window 0"},
	} {
		_, err := Load(strings.NewReader(c.file))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}
