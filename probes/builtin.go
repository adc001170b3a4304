// Package probes holds the built-in probe bundles: each is a manifest plus a
// compiled object, loaded through exactly the same path as a user probe.
package probes

import "github.com/rampart-shield/rampart/internal/probe"

// Lookup returns the manifest and object of the built-in probe NAME.
func Lookup(name string) (*probe.Manifest, []byte, bool) { return nil, nil, false }

// Names lists the built-in probes.
func Names() []string { return nil }
