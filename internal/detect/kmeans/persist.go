package kmeans

import (
	"encoding/json"
	"fmt"
	"io"
	"math"

	"github.com/rampart-shield/rampart/internal/modelfile"
)

// File format identifiers written by Save and required by Load.
const (
	FormatName    = "rampart-kmeans"
	FormatVersion = 1
)

// file is the JSON model file.
type file struct {
	Format        string        `json:"format"`
	FormatVersion int           `json:"format_version"`
	Name          string        `json:"name"`
	Version       string        `json:"version"`
	Features      []string      `json:"features"`
	Normalisation fileNorm      `json:"normalisation"`
	Clusters      []fileCluster `json:"clusters"`
	Training      TrainInfo     `json:"training"`
}

// fileNorm is the normalisation, per feature in vector order.
type fileNorm struct {
	Transforms []Transform `json:"transforms"`
	Units      []float64   `json:"units,omitempty"`
	Centre     []float64   `json:"centre"`
	Scale      []float64   `json:"scale"`
	MinScale   []float64   `json:"min_scale"`
}

// fileCluster is one cluster. Mean, Covariance and Precision are in
// standardised units; Centre is the mean in original units (informative:
// Load recomputes it).
type fileCluster struct {
	Size              int         `json:"size"`
	Mean              []float64   `json:"mean"`
	Centre            []float64   `json:"centre"`
	Covariance        [][]float64 `json:"covariance"`
	Precision         [][]float64 `json:"precision"`
	LogDet            float64     `json:"log_det"`
	Shrinkage         float64     `json:"shrinkage"`
	Threshold         float64     `json:"threshold"`
	InFlightThreshold float64     `json:"inflight_threshold"`
}

// Save writes the model as JSON: format name and version, model name and
// version, features, normalisation, clusters (centres, covariances and
// their inverses, thresholds) and the training summary. Floats are written
// in shortest round-trip form, so a loaded model scores bit for bit the
// same.
func (m *Model) Save(w io.Writer) error {
	d := len(m.norm.Features)
	out := file{
		Format:        FormatName,
		FormatVersion: FormatVersion,
		Name:          m.Name,
		Version:       m.Version,
		Features:      m.norm.Features,
		Normalisation: fileNorm{
			Transforms: m.norm.Transforms,
			Units:      m.norm.Units,
			Centre:     m.norm.Centre,
			Scale:      m.norm.Scale,
			MinScale:   m.norm.MinScale,
		},
		Training: m.Info,
	}
	for _, c := range m.clusters {
		out.Clusters = append(out.Clusters, fileCluster{
			Size:              c.size,
			Mean:              c.mean,
			Centre:            c.baseline,
			Covariance:        rows(c.g.cov, d),
			Precision:         rows(c.g.prec, d),
			LogDet:            c.g.logdet,
			Shrinkage:         c.g.shrinkage,
			Threshold:         c.thresh,
			InFlightThreshold: c.inflight,
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	if err := enc.Encode(&out); err != nil {
		return fmt.Errorf("kmeans: saving model %q: %w", m.Name, err)
	}
	return nil
}

// rows splits a row-major d × d matrix into rows.
func rows(a []float64, d int) [][]float64 {
	out := make([][]float64, d)
	for i := range out {
		out[i] = a[i*d : (i+1)*d]
	}
	return out
}

// Load reads a model written by Save. It refuses a file that is not a
// k-means model, has another format version, or is malformed (lengths
// that do not match the features, non-finite numbers, a scale or
// threshold that is not positive, a precision matrix that is not the
// inverse of its covariance). When want is not nil, the model's feature
// names must equal want: a model trained on other features would misread
// the vectors.
func Load(r io.Reader, want []string) (*Model, error) {
	data, err := modelfile.Read(r, "kmeans", FormatName, FormatVersion)
	if err != nil {
		return nil, err
	}
	var in file
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, fmt.Errorf("kmeans: decoding model: %w", err)
	}
	m, err := fromFile(in, want)
	if err != nil {
		return nil, fmt.Errorf("kmeans: model %q: %w", in.Name, err)
	}
	return m, nil
}

// fromFile checks a decoded file and builds its model.
func fromFile(in file, want []string) (*Model, error) {
	if err := checkFeatures(in.Features); err != nil {
		return nil, err
	}
	if err := modelfile.CheckNames(in.Features, want); err != nil {
		return nil, err
	}
	d := len(in.Features)
	n := in.Normalisation
	if len(n.Transforms) != d || len(n.Centre) != d || len(n.Scale) != d || len(n.MinScale) != d {
		return nil, fmt.Errorf("normalisation has %d transforms, %d centres, %d scales and %d minimum scales for %d features",
			len(n.Transforms), len(n.Centre), len(n.Scale), len(n.MinScale), d)
	}
	if n.Units == nil { // files written before units existed
		n.Units = make([]float64, d)
		for j := range n.Units {
			n.Units[j] = 1
		}
	}
	if len(n.Units) != d {
		return nil, fmt.Errorf("normalisation has %d units for %d features", len(n.Units), d)
	}
	for j, f := range in.Features {
		switch {
		case !(n.Units[j] > 0) || !finite(n.Units[j]):
			return nil, fmt.Errorf("feature %q: unit %v is not positive", f, n.Units[j])
		case !n.Transforms[j].valid():
			return nil, fmt.Errorf("feature %q: unknown transform %q", f, n.Transforms[j])
		case !finite(n.Centre[j]):
			return nil, fmt.Errorf("feature %q: centre %v", f, n.Centre[j])
		case !(n.Scale[j] > 0) || !finite(n.Scale[j]):
			return nil, fmt.Errorf("feature %q: scale %v is not positive", f, n.Scale[j])
		case !(n.MinScale[j] > 0) || !finite(n.MinScale[j]):
			return nil, fmt.Errorf("feature %q: minimum scale %v is not positive", f, n.MinScale[j])
		}
	}
	if len(in.Clusters) == 0 {
		return nil, fmt.Errorf("no clusters")
	}
	m := &Model{
		Name:    in.Name,
		Version: in.Version,
		Info:    in.Training,
		norm: Norm{
			Features:   in.Features,
			Transforms: n.Transforms,
			Units:      n.Units,
			Centre:     n.Centre,
			Scale:      n.Scale,
			MinScale:   n.MinScale,
		},
	}
	for c, fc := range in.Clusters {
		cl, err := clusterFromFile(fc, d)
		if err != nil {
			return nil, fmt.Errorf("cluster %d: %w", c, err)
		}
		cl.baseline = m.baseline(cl.mean)
		m.clusters = append(m.clusters, cl)
	}
	return m, nil
}

// clusterFromFile checks one saved cluster.
func clusterFromFile(fc fileCluster, d int) (cluster, error) {
	if fc.Size < 0 {
		return cluster{}, fmt.Errorf("size %d", fc.Size)
	}
	if len(fc.Mean) != d || !allFinite(fc.Mean) {
		return cluster{}, fmt.Errorf("mean %v is not %d finite numbers", fc.Mean, d)
	}
	cov, err := square(fc.Covariance, d, "covariance")
	if err != nil {
		return cluster{}, err
	}
	prec, err := square(fc.Precision, d, "precision")
	if err != nil {
		return cluster{}, err
	}
	for i := range d {
		if !(cov[i*d+i] > 0) {
			return cluster{}, fmt.Errorf("covariance diagonal %d is %v", i, cov[i*d+i])
		}
		for j := range d {
			var s float64
			for k := range d {
				s += cov[i*d+k] * prec[k*d+j]
			}
			want := 0.0
			if i == j {
				want = 1
			}
			if math.Abs(s-want) > 1e-6 {
				return cluster{}, fmt.Errorf("precision is not the inverse of the covariance (entry %d,%d of their product is %v)", i, j, s)
			}
		}
	}
	for _, t := range []struct {
		name string
		v    float64
	}{{"threshold", fc.Threshold}, {"in-flight threshold", fc.InFlightThreshold}} {
		if !(t.v > 0) || !finite(t.v) {
			return cluster{}, fmt.Errorf("%s %v is not positive", t.name, t.v)
		}
	}
	cl := cluster{
		size:     fc.Size,
		mean:     fc.Mean,
		g:        gaussian{cov: cov, prec: prec, logdet: fc.LogDet, shrinkage: fc.Shrinkage},
		invStd:   make([]float64, d),
		thresh:   fc.Threshold,
		inflight: fc.InFlightThreshold,
	}
	for j := range d {
		cl.invStd[j] = 1 / math.Sqrt(cov[j*d+j])
	}
	return cl, nil
}

// square flattens a d × d matrix of finite numbers.
func square(a [][]float64, d int, what string) ([]float64, error) {
	if len(a) != d {
		return nil, fmt.Errorf("%s has %d rows, want %d", what, len(a), d)
	}
	out := make([]float64, 0, d*d)
	for i, row := range a {
		if len(row) != d || !allFinite(row) {
			return nil, fmt.Errorf("%s row %d is not %d finite numbers", what, i, d)
		}
		out = append(out, row...)
	}
	return out, nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func allFinite(s []float64) bool {
	for _, v := range s {
		if !finite(v) {
			return false
		}
	}
	return true
}
