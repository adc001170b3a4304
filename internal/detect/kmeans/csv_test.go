package kmeans

import (
	"bytes"
	"encoding/csv"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func readCSV(t *testing.T, s string) [][]string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(s)).ReadAll()
	if err != nil {
		t.Fatalf("%v in\n%s", err, s)
	}
	return recs
}

func TestTrainingAndTestSetsRoundTrip(t *testing.T) {
	X, _ := gen(30, threeBlobs, 50)
	X[0][0] = 0.1 + 0.2 // not exactly representable: must survive
	var b bytes.Buffer
	if err := WriteTrainingSet(&b, testFeatures, X); err != nil {
		t.Fatal(err)
	}
	s, err := ReadSet(&b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Features, testFeatures) || s.IDs != nil || len(s.X) != len(X) {
		t.Fatalf("read back %v, %v ids, %d rows", s.Features, s.IDs, len(s.X))
	}
	for i := range X {
		if !slices.Equal(s.X[i], X[i]) {
			t.Fatalf("row %d: %v, want %v", i, s.X[i], X[i])
		}
	}

	ids := make([]string, len(X))
	for i := range ids {
		ids[i] = "req-" + strconv.Itoa(i)
	}
	b.Reset()
	if err := WriteTestSet(&b, testFeatures, ids, X); err != nil {
		t.Fatal(err)
	}
	if head := strings.SplitN(b.String(), "\n", 2)[0]; head != "id,"+strings.Join(testFeatures, ",") {
		t.Errorf("test set header %q", head)
	}
	s, err = ReadSet(&b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.IDs, ids) || !slices.Equal(s.X[3], X[3]) {
		t.Errorf("test set read back ids %v row 3 %v", s.IDs[:3], s.X[3])
	}
	if err := WriteTestSet(&b, testFeatures, ids[:2], X); err == nil {
		t.Error("WriteTestSet accepted 2 ids for 50 vectors")
	}
	if _, err := ReadSet(strings.NewReader("cpu_ns,tx_bytes\n1,x\n")); err == nil || !strings.Contains(err.Error(), "line 2, tx_bytes") {
		t.Errorf("bad number: error %v", err)
	}
}

func TestScoresCSV(t *testing.T) {
	m := threeBlobModel(t)
	var b bytes.Buffer
	sw, err := m.NewScoresWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	benign := threeBlobs[1].centre
	attack := scaled(threeBlobs[0].centre, fCPU, 1e4)
	want := []Result{}
	for _, c := range []struct {
		id       string
		x        []float64
		inflight bool
		det      time.Duration
	}{
		{"a", benign, false, 0},
		{"b", attack, false, 0},
		{"c", attack, true, 35 * time.Millisecond},
	} {
		r, err := sw.Write(c.id, c.x, c.inflight, c.det)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, r)
	}
	if err := sw.Flush(); err != nil {
		t.Fatal(err)
	}
	recs := readCSV(t, b.String())
	k := m.K()
	head := recs[0]
	if len(head) != 2+k+6 || head[2] != "d0" || head[2+k] != "cluster" || head[len(head)-1] != "detection_ns" {
		t.Fatalf("header %v", head)
	}
	if len(recs) != 4 {
		t.Fatalf("%d lines", len(recs))
	}
	for i, rec := range recs[1:] {
		r := want[i]
		cl, _ := strconv.Atoi(rec[2+k])
		score, _ := strconv.ParseFloat(rec[2+k+3], 64)
		dist, _ := strconv.ParseFloat(rec[2+cl], 64)
		if cl != r.Cluster || score != r.Score || dist != r.Distance || rec[2+k+4] != strconv.FormatBool(r.Outlier) {
			t.Errorf("line %d %v, want %+v", i+1, rec, r)
		}
	}
	if recs[1][1] != "completed" || recs[3][1] != "inflight" || recs[1][len(head)-1] != "" || recs[3][len(head)-1] != "35000000" {
		t.Errorf("modes or detection times: %v / %v", recs[1], recs[3])
	}
	if recs[1][2+k+4] != "false" || recs[2][2+k+4] != "true" {
		t.Errorf("outlier flags %v %v", recs[1], recs[2])
	}
}

func TestClustersAndNormalisationCSV(t *testing.T) {
	m := threeBlobModel(t)
	var b bytes.Buffer
	if err := m.WriteClusters(&b); err != nil {
		t.Fatal(err)
	}
	recs := readCSV(t, b.String())
	wantHead := append(append([]string{"cluster", "size"}, testFeatures...), "threshold", "inflight_threshold")
	if !slices.Equal(recs[0], wantHead) || len(recs) != 1+m.K() {
		t.Fatalf("clusters CSV header %v, %d lines", recs[0], len(recs))
	}
	total := 0
	for c, info := range m.Clusters() {
		rec := recs[1+c]
		size, _ := strconv.Atoi(rec[1])
		cpu, _ := strconv.ParseFloat(rec[2+fCPU], 64)
		th, _ := strconv.ParseFloat(rec[len(rec)-2], 64)
		in, _ := strconv.ParseFloat(rec[len(rec)-1], 64)
		if size != info.Size || cpu != info.Centre[fCPU] || th != info.Threshold || in != info.InFlightThreshold {
			t.Errorf("cluster %d: %v, want %+v", c, rec, info)
		}
		total += size
	}
	if total != m.Info.Samples {
		t.Errorf("cluster sizes add to %d, want %d", total, m.Info.Samples)
	}

	b.Reset()
	if err := m.WriteNormalisation(&b); err != nil {
		t.Fatal(err)
	}
	recs = readCSV(t, b.String())
	nm := m.Normalisation()
	if !slices.Equal(recs[0], []string{"feature", "transform", "unit", "centre", "scale"}) || len(recs) != 1+len(testFeatures) {
		t.Fatalf("normalisation CSV %v", recs)
	}
	for j, rec := range recs[1:] {
		c, _ := strconv.ParseFloat(rec[3], 64)
		s, _ := strconv.ParseFloat(rec[4], 64)
		if rec[0] != testFeatures[j] || rec[1] != "log1p" || rec[2] != "1" || c != nm.Centre[j] || s != nm.Scale[j] || math.IsNaN(s) {
			t.Errorf("feature %d: %v", j, rec)
		}
	}
}
