package kmeans

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// A saved and loaded model scores bit for bit the same and keeps its
// name, summary and clusters.
func TestSaveLoadRoundTrip(t *testing.T) {
	m := threeBlobModel(t)
	m.Name, m.Version = "requests", "test.1"
	defer func() { m.Name, m.Version = "", "" }()
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := Load(bytes.NewReader(buf.Bytes()), testFeatures)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "requests" || got.Version != "test.1" || got.K() != m.K() ||
		got.Info.Samples != m.Info.Samples || !got.Info.Time.Equal(m.Info.Time) || len(got.Info.Selection) != len(m.Info.Selection) {
		t.Errorf("loaded %q %q k=%d info %+v", got.Name, got.Version, got.K(), got.Info)
	}
	test, _ := gen(20, threeBlobs, 500)
	test = append(test, scaled(threeBlobs[0].centre, fCPU, 1e3))
	for _, x := range test {
		a, b := m.Score(x), got.Score(x)
		ai, bi := m.ScoreInFlight(x), got.ScoreInFlight(x)
		if a.Score != b.Score || a.Cluster != b.Cluster || ai.Score != bi.Score ||
			!slices.Equal(m.Explain(x, a), got.Explain(x, b)) || !slices.Equal(a.Top, b.Top) {
			t.Fatalf("%v: scores %v/%v in flight %v/%v differ after a round trip", x, a.Score, b.Score, ai.Score, bi.Score)
		}
	}
	var again bytes.Buffer
	if err := got.Save(&again); err != nil {
		t.Fatal(err)
	}
	if again.String() != buf.String() {
		t.Error("saving a loaded model gives another file")
	}
}

// Load refuses wrong formats, versions and feature lists, and malformed
// contents, each with an error that says what is wrong.
func TestLoadRejects(t *testing.T) {
	m := threeBlobModel(t)
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil {
		t.Fatal(err)
	}
	edit := func(f func(map[string]any)) string {
		var v map[string]any
		if err := json.Unmarshal(buf.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		f(v)
		b, _ := json.Marshal(v)
		return string(b)
	}
	cluster0 := func(v map[string]any) map[string]any { return v["clusters"].([]any)[0].(map[string]any) }
	other := append([]string(nil), testFeatures...)
	other[3] = "rx_packets"
	for _, c := range []struct {
		name string
		file string
		want []string
		msg  string
	}{
		{"not json", "{", nil, "not JSON"},
		{"format", edit(func(v map[string]any) { v["format"] = "rampart-forest" }), nil, `format is "rampart-forest"`},
		{"version", edit(func(v map[string]any) { v["format_version"] = 2 }), nil, "version 2 is not supported"},
		{"features", buf.String(), other, `feature 3 is "rx_bytes", want "rx_packets"`},
		{"fewer features", buf.String(), testFeatures[:6], "has 7 features, want 6"},
		{"normalisation", edit(func(v map[string]any) {
			v["normalisation"].(map[string]any)["scale"] = []any{1, 2}
		}), nil, "2 scales"},
		{"scale", edit(func(v map[string]any) {
			v["normalisation"].(map[string]any)["scale"].([]any)[1] = 0
		}), nil, "scale 0 is not positive"},
		{"transform", edit(func(v map[string]any) {
			v["normalisation"].(map[string]any)["transforms"].([]any)[0] = "log2"
		}), nil, `unknown transform "log2"`},
		{"no clusters", edit(func(v map[string]any) { v["clusters"] = []any{} }), nil, "no clusters"},
		{"mean", edit(func(v map[string]any) { cluster0(v)["mean"] = []any{1} }), nil, "cluster 0: mean"},
		{"threshold", edit(func(v map[string]any) { cluster0(v)["threshold"] = -1 }), nil, "threshold -1 is not positive"},
		{"precision", edit(func(v map[string]any) {
			row := cluster0(v)["precision"].([]any)[0].([]any)
			row[0] = row[0].(float64) * 2
		}), nil, "not the inverse"},
		{"covariance rows", edit(func(v map[string]any) { cluster0(v)["covariance"] = []any{} }), nil, "covariance has 0 rows"},
	} {
		_, err := Load(strings.NewReader(c.file), c.want)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.msg)
		}
	}
}
