package lucid

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// File format identity: a model file is a JSON object whose "format" is
// FormatName and "format_version" FormatVersion.
const (
	FormatName    = "rampart-lucid"
	FormatVersion = 1
)

// convLayout names the order of the Conv array in files.
const convLayout = "h,f,k"

// fileHeader is what Load reads before anything else.
type fileHeader struct {
	Format        string `json:"format"`
	FormatVersion int    `json:"format_version"`
}

// fileModel is the JSON form of a Model.
type fileModel struct {
	fileHeader
	Name       string       `json:"name"`
	Version    string       `json:"version"`
	Hyper      fileHyper    `json:"hyper"`
	Features   []string     `json:"features"`
	Normalizer *Normalizer  `json:"normalizer,omitempty"`
	Weights    fileWeights  `json:"weights"`
	Training   TrainingMeta `json:"training"`
}

type fileHyper struct {
	N int `json:"n"` // packets per sample
	F int `json:"f"` // features per packet
	K int `json:"k"` // kernels
	H int `json:"h"` // kernel height
}

type fileWeights struct {
	ConvLayout string    `json:"conv_layout"`
	Conv       []float32 `json:"conv"`
	ConvBias   []float32 `json:"conv_bias"`
	Dense      []float32 `json:"dense"`
	DenseBias  float32   `json:"dense_bias"`
}

// Save writes the model as an indented JSON model file. float32 values
// are written in their shortest exact form, so Load restores them bit
// for bit.
func (m *Model) Save(w io.Writer) error {
	if err := m.Validate(); err != nil {
		return err
	}
	fm := fileModel{
		fileHeader: fileHeader{Format: FormatName, FormatVersion: FormatVersion},
		Name:       m.Name,
		Version:    m.Version,
		Hyper:      fileHyper{N: m.N, F: m.F, K: m.K, H: m.H},
		Normalizer: m.Norm,
		Weights: fileWeights{
			ConvLayout: convLayout,
			Conv:       m.Conv, ConvBias: m.ConvBias, Dense: m.Dense, DenseBias: m.DenseBias,
		},
		Training: m.Meta,
	}
	for f := range m.F {
		fm.Features = append(fm.Features, m.FeatureName(f))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(fm)
}

// Load reads a model file written by Save. It refuses files of another
// format or format version, and files whose weights, normaliser or
// feature list do not match the shape they declare; a model of
// NumFeatures features must use this build's FeatureNames.
func Load(r io.Reader) (*Model, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("lucid: reading model: %w", err)
	}
	var h fileHeader
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("lucid: model file is not valid JSON: %w", err)
	}
	if h.Format != FormatName {
		return nil, fmt.Errorf("lucid: not a LUCID model file (format %q, want %q)", h.Format, FormatName)
	}
	if h.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("lucid: model file format version %d is not supported (this build reads version %d)", h.FormatVersion, FormatVersion)
	}
	var fm fileModel
	if err := json.Unmarshal(b, &fm); err != nil {
		return nil, fmt.Errorf("lucid: decoding model file: %w", err)
	}
	if fm.Weights.ConvLayout != convLayout {
		return nil, fmt.Errorf("lucid: model file conv_layout %q is not supported (want %q)", fm.Weights.ConvLayout, convLayout)
	}
	hp := fm.Hyper
	m := &Model{
		N: hp.N, F: hp.F, K: hp.K, H: hp.H,
		Conv: fm.Weights.Conv, ConvBias: fm.Weights.ConvBias, Dense: fm.Weights.Dense, DenseBias: fm.Weights.DenseBias,
		Norm: fm.Normalizer, Features: fm.Features,
		Name: fm.Name, Version: fm.Version, Meta: fm.Training,
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("lucid: model file %q: %s", fm.Version, strings.TrimPrefix(err.Error(), "lucid: "))
	}
	if m.F == NumFeatures && m.Features != nil && !slices.Equal(m.Features, FeatureNames) {
		return nil, fmt.Errorf("lucid: model file %q was made for features %v, this build extracts %v", fm.Version, m.Features, FeatureNames)
	}
	return m, nil
}

// SaveFile writes the model to path (created or truncated).
func (m *Model) SaveFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := m.Save(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// LoadFile reads a model file from path.
func LoadFile(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Load(f)
}
