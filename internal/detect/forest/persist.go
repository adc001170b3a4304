package forest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"

	"github.com/rampart-shield/rampart/internal/modelfile"
)

// File format identifiers written by Save and required by Load.
const (
	FormatName    = "rampart-forest"
	FormatVersion = 1
)

// file is the JSON model file.
type file struct {
	Format        string    `json:"format"`
	FormatVersion int       `json:"format_version"`
	Name          string    `json:"name"`
	Version       string    `json:"version"`
	Features      []string  `json:"features"`
	Training      TrainInfo `json:"training"`
	Importance    []float64 `json:"importance"` // per feature, in vector order
	Trees         [][]Node  `json:"trees"`      // each a flat node array, root first
}

// Save writes the model as JSON: format name and version, model name and
// version, feature names, training metadata, feature importance and the
// trees as flat node arrays. Floats are written exactly (shortest
// round-trip form), so a loaded model predicts bit for bit the same.
func (f *Forest) Save(w io.Writer) error {
	out := file{
		Format:        FormatName,
		FormatVersion: FormatVersion,
		Name:          f.Name,
		Version:       f.Version,
		Features:      f.names,
		Training:      f.Info,
		Importance:    f.importance,
		Trees:         make([][]Node, len(f.trees)),
	}
	for i, t := range f.trees {
		out.Trees[i] = t.nodes
	}
	if err := json.NewEncoder(w).Encode(&out); err != nil {
		return fmt.Errorf("forest: saving model %q: %w", f.Name, err)
	}
	return nil
}

// Load reads a model written by Save. It refuses a file that is not a
// forest model, has another format version, or is malformed (a child index
// that does not point forward, a feature index out of range, ...). When
// want is not nil, the model's feature names must equal want (e.g.
// FeatureNames): a model trained on other columns would silently misread
// the vectors.
func Load(r io.Reader, want []string) (*Forest, error) {
	data, err := modelfile.Read(r, "forest", FormatName, FormatVersion)
	if err != nil {
		return nil, err
	}
	var in file
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, fmt.Errorf("forest: decoding model: %w", err)
	}
	if err := modelfile.CheckNames(in.Features, want); err != nil {
		return nil, fmt.Errorf("forest: model %q: %w", in.Name, err)
	}
	nf := len(in.Features)
	if nf == 0 {
		return nil, fmt.Errorf("forest: model %q has no features", in.Name)
	}
	if len(in.Importance) != nf {
		return nil, fmt.Errorf("forest: model %q has %d importances for %d features", in.Name, len(in.Importance), nf)
	}
	if len(in.Trees) == 0 {
		return nil, fmt.Errorf("forest: model %q has no trees", in.Name)
	}
	f := &Forest{
		Name:       in.Name,
		Version:    in.Version,
		Info:       in.Training,
		names:      in.Features,
		importance: in.Importance,
		trees:      make([]tree, len(in.Trees)),
	}
	for i, nodes := range in.Trees {
		if err := checkTree(nodes, nf); err != nil {
			return nil, fmt.Errorf("forest: model %q tree %d: %w", in.Name, i, err)
		}
		f.trees[i] = tree{nodes: nodes}
	}
	return f, nil
}

// checkTree checks a flat node array: a non-empty array whose splits have a
// valid feature, a finite threshold and two children after them, whose
// leaves have no children, and whose values are fractions. Children
// pointing forward rule out cycles, so walks terminate.
func checkTree(nodes []Node, nf int) error {
	if len(nodes) == 0 {
		return fmt.Errorf("no nodes")
	}
	for i, n := range nodes {
		if !(n.Value >= 0 && n.Value <= 1) {
			return fmt.Errorf("node %d value %v is not in [0, 1]", i, n.Value)
		}
		if n.Left < 0 && n.Right < 0 {
			continue // a leaf
		}
		switch {
		case n.Feature < 0 || int(n.Feature) >= nf:
			return fmt.Errorf("node %d splits on feature %d of %d", i, n.Feature, nf)
		case math.IsNaN(n.Threshold) || math.IsInf(n.Threshold, 0):
			return fmt.Errorf("node %d threshold is %v", i, n.Threshold)
		case int(n.Left) <= i || int(n.Left) >= len(nodes) || int(n.Right) <= i || int(n.Right) >= len(nodes):
			return fmt.Errorf("node %d has children %d and %d, want indices in (%d, %d)", i, n.Left, n.Right, i, len(nodes))
		}
	}
	return nil
}
