package api

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/rampart-shield/rampart/internal/probe"
)

// ProbeFiles names a probe on disk: its manifest and, overriding the
// manifest's own object or source path, a compiled object or C source.
type ProbeFiles struct {
	Manifest string
	Object   string
	Source   string
}

// ReadLoadRequest reads a probe from disk into a load request named name
// (the manifest's name when empty). The manifest is checked first, so its
// mistakes show before anything is sent. The manifest's object and source
// paths are relative to the manifest's directory; the request carries the
// bytes, never paths.
func ReadLoadRequest(name string, f ProbeFiles) (probe.LoadRequest, error) {
	var req probe.LoadRequest
	if f.Object != "" && f.Source != "" {
		return req, fmt.Errorf("give an object or a source, not both")
	}
	if f.Manifest == "" {
		return req, fmt.Errorf("no manifest: it says which programs attach where and which maps are metrics")
	}
	data, err := os.ReadFile(f.Manifest)
	if err != nil {
		return req, err
	}
	m, err := probe.ParseManifest(data)
	if err != nil {
		return req, fmt.Errorf("%s: %w", f.Manifest, err)
	}
	dir := filepath.Dir(f.Manifest)
	rel := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	objPath, srcPath := f.Object, f.Source
	if objPath == "" && srcPath == "" {
		switch {
		case m.Object != "":
			objPath = rel(m.Object)
		case m.Source != "":
			srcPath = rel(m.Source)
		default:
			return req, fmt.Errorf("%s names no object or source: add `object: FILE.o` or `source: FILE.c`, or pass --object or --source", f.Manifest)
		}
	}
	if objPath != "" {
		if req.Object, err = os.ReadFile(objPath); err != nil {
			return req, fmt.Errorf("object: %w", err)
		}
		if len(req.Object) == 0 {
			return req, fmt.Errorf("object %s is empty", objPath)
		}
	} else {
		if req.Source, err = os.ReadFile(srcPath); err != nil {
			return req, fmt.Errorf("source: %w", err)
		}
		if len(req.Source) == 0 {
			return req, fmt.Errorf("source %s is empty", srcPath)
		}
	}
	// The agent receives bytes only.
	m.Object, m.Source = "", ""
	req.Manifest = m
	req.Name = name
	if req.Name == "" {
		req.Name = m.Name
	}
	if req.Name == "" {
		return req, fmt.Errorf("%s has no name: give the probe a name", f.Manifest)
	}
	return req, nil
}
