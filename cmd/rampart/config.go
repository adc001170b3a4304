package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/rampart-shield/rampart/internal/detect/lucid"
	"github.com/rampart-shield/rampart/internal/detect/threshold"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/internal/respond"
)

// agentConfig is the agent's config file; it mirrors the agent's flags.
type agentConfig struct {
	Socket    string         `json:"socket,omitempty"`
	Listen    string         `json:"listen,omitempty"`
	TokenFile string         `json:"token-file,omitempty"`
	Probes    []probeConfig  `json:"probes,omitempty"`
	Flows     flowsConfig    `json:"flows,omitempty"`
	Firewall  fwConfig       `json:"firewall,omitempty"`
	Respond   respond.Policy `json:"respond,omitempty"`
	Detect    detectConfig   `json:"detect,omitempty"`
}

// detectConfig configures the network detectors.
type detectConfig struct {
	// Off: no detection even with a firewall running.
	Off bool `json:"off,omitempty"`
	// Iface watched by hoststat (default: the firewall's).
	Iface string `json:"iface,omitempty"`
	// Interval between looks (default 500ms).
	Interval  string           `json:"interval,omitempty"`
	Threshold threshold.Config `json:"threshold,omitempty"`
	Lucid     lucidConfig      `json:"lucid,omitempty"`
}

// lucidConfig configures the CNN detector on ddosfeat's packet features.
type lucidConfig struct {
	Off bool `json:"off,omitempty"`
	// Model is a model file (rampart model train ddos); default: the
	// model built into the agent.
	Model  string               `json:"model,omitempty"`
	Config lucid.DetectorConfig `json:"config,omitempty"`
}

// fwConfig configures the firewall.
type fwConfig struct {
	// Iface runs the firewall there (XDP ingress, TC egress).
	Iface string `json:"iface,omitempty"`
	// Allowlist: prefixes always passed (added at start).
	Allowlist []string `json:"allowlist,omitempty"`
	// KeepRules leaves the rules filtering when the agent stops.
	KeepRules bool `json:"keep-rules,omitempty"`
}

// flowsConfig configures flow records from the flowmon probe.
type flowsConfig struct {
	// Probe is the name the flowmon probe runs under (default flowmon).
	Probe  string   `json:"probe,omitempty"`
	Active string   `json:"active,omitempty"` // duration, default 60s
	Idle   string   `json:"idle,omitempty"`   // duration, default 15s
	IPFIX  []string `json:"ipfix,omitempty"`  // collectors, host:port
}

// probeConfig is one probe the agent loads at startup.
type probeConfig struct {
	// Name to load under; defaults to Builtin or the manifest's name.
	Name string `json:"name,omitempty"`
	// Builtin names a built-in probe; Manifest is the path of a user
	// probe's manifest. Neither: Name is a built-in.
	Builtin  string         `json:"builtin,omitempty"`
	Manifest string         `json:"manifest,omitempty"`
	Attach   []string       `json:"attach,omitempty"`
	Iface    string         `json:"iface,omitempty"`
	Params   map[string]any `json:"params,omitempty"`
}

// readAgentConfig reads a YAML (or JSON) config strictly. Manifest paths
// are relative to the config file.
func readAgentConfig(path string) (agentConfig, error) {
	var c agentConfig
	data, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return c, nil // empty file
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	for i, p := range c.Probes {
		if err := p.check(); err != nil {
			return c, fmt.Errorf("%s: probes[%d]: %w", path, i, err)
		}
		if p.Manifest != "" && !filepath.IsAbs(p.Manifest) {
			c.Probes[i].Manifest = filepath.Join(filepath.Dir(path), p.Manifest)
		}
	}
	return c, nil
}

func (p probeConfig) check() error {
	if p.Builtin != "" && p.Manifest != "" {
		return fmt.Errorf("give builtin or manifest, not both")
	}
	if p.Name == "" && p.Builtin == "" && p.Manifest == "" {
		return fmt.Errorf("give a name (a built-in), builtin or manifest")
	}
	for _, n := range []string{p.Name, p.Builtin} {
		if n != "" && !probe.ProbeNameRE.MatchString(n) {
			return fmt.Errorf("probe name %q: use lower-case letters, digits, '_', '.', '-'", n)
		}
	}
	if _, err := p.params(); err != nil {
		return err
	}
	return nil
}

// params renders parameter values as the strings a load request carries.
func (p probeConfig) params() (map[string]string, error) {
	if len(p.Params) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(p.Params))
	for k, v := range p.Params {
		switch v := v.(type) {
		case json.Number:
			out[k] = v.String()
		case string:
			out[k] = v
		case bool:
			out[k] = strconv.FormatBool(v)
		default:
			return nil, fmt.Errorf("parameter %s: want a number, boolean or string", k)
		}
	}
	return out, nil
}

// label names a startup probe in logs.
func (p probeConfig) label() string {
	switch {
	case p.Name != "":
		return p.Name
	case p.Builtin != "":
		return p.Builtin
	default:
		return p.Manifest
	}
}

// parseProbeSpec parses --probe: NAME (a built-in) or NAME=MANIFEST,
// either optionally followed by @IFACE.
func parseProbeSpec(spec string) (probeConfig, error) {
	var p probeConfig
	rest := spec
	if i := strings.LastIndex(rest, "@"); i >= 0 && !strings.Contains(rest[i+1:], "/") {
		p.Iface = rest[i+1:]
		rest = rest[:i]
		if p.Iface == "" {
			return p, fmt.Errorf("--probe %q: no interface after @", spec)
		}
	}
	name, path, isUser := strings.Cut(rest, "=")
	if !probe.ProbeNameRE.MatchString(name) {
		return p, fmt.Errorf("--probe %q: want NAME, NAME@IFACE or NAME=MANIFEST[@IFACE], NAME in lower-case letters, digits, '_', '.', '-'", spec)
	}
	p.Name = name
	if isUser {
		if path == "" {
			return p, fmt.Errorf("--probe %q: no manifest path after =", spec)
		}
		p.Manifest = path
	}
	return p, nil
}

// defaultRouteIface returns the interface of the IPv4 default route with
// the lowest metric in a /proc/net/route table, or "".
func defaultRouteIface(r io.Reader) string {
	sc := bufio.NewScanner(r)
	best, bestMetric := "", uint64(1<<63)
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		flags, err := strconv.ParseUint(f[3], 16, 32)
		if err != nil || flags&1 == 0 { // RTF_UP
			continue
		}
		metric, err := strconv.ParseUint(f[6], 10, 64)
		if err != nil {
			continue
		}
		if metric < bestMetric {
			best, bestMetric = f[0], metric
		}
	}
	return best
}
