// Package probes holds the built-in probe bundles: each is a manifest plus a
// compiled object, loaded through exactly the same path as a user probe.
//
// The bundles are the example probes under examples/: each example package
// embeds its manifest.yaml and exposes its bpf2go-generated object. A
// built-in manifest that does not parse is a build defect: init panics.
package probes

import (
	"bytes"
	"fmt"
	"slices"

	ntpcounter "github.com/rampart-shield/rampart/examples/ntp-counter"
	packetcounter "github.com/rampart-shield/rampart/examples/packet-counter"
	tcpstates "github.com/rampart-shield/rampart/examples/tcp-states"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/probes/cryptofeat"
	"github.com/rampart-shield/rampart/probes/ddosfeat"
	"github.com/rampart-shield/rampart/probes/firewall"
	"github.com/rampart-shield/rampart/probes/flowmon"
	"github.com/rampart-shield/rampart/probes/hoststat"
	"github.com/rampart-shield/rampart/probes/netio"
	"github.com/rampart-shield/rampart/probes/reqmon"
)

type bundle struct {
	manifest []byte
	object   []byte
}

// sources lists every built-in bundle: manifest bytes and object bytes.
var sources = []bundle{
	{packetcounter.Manifest(), packetcounter.Object()},
	{ntpcounter.Manifest(), ntpcounter.Object()},
	{tcpstates.Manifest(), tcpstates.Object()},
	{flowmon.Manifest(), flowmon.Object()},
	{ddosfeat.Manifest(), ddosfeat.Object()},
	{cryptofeat.Manifest(), cryptofeat.Object()},
	{firewall.Manifest(), firewall.Object()},
	{hoststat.Manifest(), hoststat.Object()},
	{netio.Manifest(), netio.Object()},
	{reqmon.Manifest(), reqmon.Object()},
}

var (
	bundles = map[string]bundle{}
	names   []string
)

func init() {
	for i, b := range sources {
		m, err := probe.ParseManifest(b.manifest)
		if err != nil {
			panic(fmt.Sprintf("probes: built-in bundle %d: %v", i, err))
		}
		if m.Name == "" {
			panic(fmt.Sprintf("probes: built-in bundle %d: the manifest has no name", i))
		}
		if _, dup := bundles[m.Name]; dup {
			panic(fmt.Sprintf("probes: built-in probe %q is defined twice", m.Name))
		}
		if len(b.object) == 0 {
			panic(fmt.Sprintf("probes: built-in probe %q has no object", m.Name))
		}
		bundles[m.Name] = b
		names = append(names, m.Name)
	}
	slices.Sort(names)
}

// Lookup returns the manifest and object of the built-in probe NAME. Both
// are fresh copies the caller may modify.
func Lookup(name string) (*probe.Manifest, []byte, bool) {
	b, ok := bundles[name]
	if !ok {
		return nil, nil, false
	}
	m, err := probe.ParseManifest(b.manifest)
	if err != nil { // checked in init
		panic(fmt.Sprintf("probes: built-in probe %q: %v", name, err))
	}
	return m, bytes.Clone(b.object), true
}

// Names lists the built-in probes, sorted.
func Names() []string { return slices.Clone(names) }
