package kmeans

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// The CSV files follow FineLame's outputs in spirit: the training and test
// sets, the scores, the clusters and the normalisation. Numbers are
// written in shortest round-trip form.

func ftoa(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// WriteTrainingSet writes vectors as CSV with the feature names as header.
func WriteTrainingSet(w io.Writer, features []string, X [][]float64) error {
	return writeSet(w, features, nil, X)
}

// WriteTestSet writes vectors as CSV with an id column before the
// features; ids[i] names X[i].
func WriteTestSet(w io.Writer, features []string, ids []string, X [][]float64) error {
	if len(ids) != len(X) {
		return fmt.Errorf("kmeans: %d ids for %d vectors", len(ids), len(X))
	}
	return writeSet(w, features, ids, X)
}

func writeSet(w io.Writer, features []string, ids []string, X [][]float64) error {
	if err := checkFeatures(features); err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	head := features
	if ids != nil {
		head = append([]string{"id"}, features...)
	}
	cw.Write(head)
	rec := make([]string, len(head))
	for i, x := range X {
		if len(x) != len(features) {
			return fmt.Errorf("kmeans: vector %d has %d values for %d features", i, len(x), len(features))
		}
		off := 0
		if ids != nil {
			rec[0], off = ids[i], 1
		}
		for j, v := range x {
			rec[off+j] = ftoa(v)
		}
		cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

// Set is a training or test set read back from CSV.
type Set struct {
	Features []string
	IDs      []string // nil for a training set
	X        [][]float64
}

// ReadSet reads a file written by WriteTrainingSet or WriteTestSet (the
// latter when the first column is named "id").
func ReadSet(r io.Reader) (Set, error) {
	cr := csv.NewReader(r)
	head, err := cr.Read()
	if err != nil {
		return Set{}, fmt.Errorf("kmeans: reading set header: %w", err)
	}
	var s Set
	off := 0
	if len(head) > 0 && head[0] == "id" {
		off = 1
		s.IDs = []string{}
	}
	s.Features = append([]string(nil), head[off:]...)
	if err := checkFeatures(s.Features); err != nil {
		return Set{}, err
	}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return s, nil
		}
		if err != nil {
			return Set{}, fmt.Errorf("kmeans: reading set: %w", err)
		}
		x := make([]float64, len(s.Features))
		for j := range x {
			if x[j], err = strconv.ParseFloat(rec[off+j], 64); err != nil {
				return Set{}, fmt.Errorf("kmeans: set line %d, %s: %w", line, s.Features[j], err)
			}
		}
		if off == 1 {
			s.IDs = append(s.IDs, rec[0])
		}
		s.X = append(s.X, x)
	}
}

// ScoresWriter writes one CSV line per scored request: id, mode
// (completed or inflight), the distance to every cluster (d0, d1, ...:
// Mahalanobis for completed, one-sided for in-flight), the accepting
// cluster, its distance and threshold, the score, the outlier flag and,
// when known, the detection time in nanoseconds (time from the request's
// start to its flagging).
type ScoresWriter struct {
	m    *Model
	cw   *csv.Writer
	rec  []string
	dist []float64
}

// NewScoresWriter writes the scores header to w.
func (m *Model) NewScoresWriter(w io.Writer) (*ScoresWriter, error) {
	sw := &ScoresWriter{m: m, cw: csv.NewWriter(w)}
	head := []string{"id", "mode"}
	for c := range m.clusters {
		head = append(head, "d"+strconv.Itoa(c))
	}
	head = append(head, "cluster", "distance", "threshold", "score", "outlier", "detection_ns")
	sw.rec = make([]string, len(head))
	if err := sw.cw.Write(head); err != nil {
		return nil, err
	}
	return sw, nil
}

// Write scores x (in flight or completed), writes its line and returns
// the result. detected is written when positive.
func (sw *ScoresWriter) Write(id string, x []float64, inflight bool, detected time.Duration) (Result, error) {
	var res Result
	mode := "completed"
	if inflight {
		res, mode = sw.m.ScoreInFlight(x), "inflight"
		sw.dist = sw.m.InFlightDistances(x, sw.dist)
	} else {
		res = sw.m.Score(x)
		sw.dist = sw.m.Distances(x, sw.dist)
	}
	rec := sw.rec[:0]
	rec = append(rec, id, mode)
	for _, v := range sw.dist {
		rec = append(rec, ftoa(v))
	}
	rec = append(rec, strconv.Itoa(res.Cluster), ftoa(res.Distance), ftoa(res.Threshold), ftoa(res.Score), strconv.FormatBool(res.Outlier), "")
	if detected > 0 {
		rec[len(rec)-1] = strconv.FormatInt(detected.Nanoseconds(), 10)
	}
	return res, sw.cw.Write(rec)
}

// Flush writes any buffered lines and returns the first write error.
func (sw *ScoresWriter) Flush() error {
	sw.cw.Flush()
	return sw.cw.Error()
}

// WriteClusters writes one line per cluster: cluster, size, the centre in
// original units (one column per feature), threshold, inflight_threshold.
func (m *Model) WriteClusters(w io.Writer) error {
	cw := csv.NewWriter(w)
	head := append([]string{"cluster", "size"}, m.norm.Features...)
	cw.Write(append(head, "threshold", "inflight_threshold"))
	for c, cl := range m.clusters {
		rec := []string{strconv.Itoa(c), strconv.Itoa(cl.size)}
		for _, v := range cl.baseline {
			rec = append(rec, ftoa(v))
		}
		cw.Write(append(rec, ftoa(cl.thresh), ftoa(cl.inflight)))
	}
	cw.Flush()
	return cw.Error()
}

// WriteNormalisation writes one line per feature: feature, transform,
// unit, centre, scale (both in transformed units).
func (m *Model) WriteNormalisation(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"feature", "transform", "unit", "centre", "scale"})
	for j, f := range m.norm.Features {
		cw.Write([]string{f, string(m.norm.Transforms[j]), ftoa(m.norm.Units[j]), ftoa(m.norm.Centre[j]), ftoa(m.norm.Scale[j])})
	}
	cw.Flush()
	return cw.Error()
}
