// Package modelfile reads and checks the envelope the detectors' model
// files share: JSON with a "format" name and a "format_version", and the
// feature names a model was trained on.
package modelfile

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
)

// Read reads all of r and checks that it is JSON whose "format" is name
// and whose "format_version" is version; pkg prefixes the errors
// ("kmeans: ..."). The caller decodes the returned bytes into its own
// file type.
func Read(r io.Reader, pkg, name string, version int) ([]byte, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: reading model: %w", pkg, err)
	}
	var head struct {
		Format        string `json:"format"`
		FormatVersion int    `json:"format_version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("%s: model is not JSON: %w", pkg, err)
	}
	if head.Format != name {
		return nil, fmt.Errorf("%s: file format is %q, want %q", pkg, head.Format, name)
	}
	if head.FormatVersion != version {
		return nil, fmt.Errorf("%s: model format version %d is not supported (this build reads version %d)", pkg, head.FormatVersion, version)
	}
	return data, nil
}

// CheckNames compares a model's feature names with the expected ones (nil:
// anything goes) and says where they first differ.
func CheckNames(got, want []string) error {
	if want == nil || slices.Equal(got, want) {
		return nil
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Errorf("feature %d is %q, want %q (the model was trained on other features)", i, got[i], want[i])
		}
	}
	return fmt.Errorf("model has %d features, want %d (the model was trained on other features)", len(got), len(want))
}
