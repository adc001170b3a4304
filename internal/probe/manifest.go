package probe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Manifest describes a probe: which programs of an eBPF object attach where,
// which maps are exported as metrics, which ring buffers are event streams and
// which load-time constants may be set. YAML and JSON are both accepted; the
// field names are the same in both. See examples/packet-counter/manifest.yaml
// for a commented example.
type Manifest struct {
	// Name is the default probe name; `probe load NAME` overrides it.
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Object and Source are paths relative to the manifest file. The CLI
	// reads them; the agent only ever receives bytes.
	Object string `json:"object,omitempty"`
	Source string `json:"source,omitempty"`

	Programs   []Program              `json:"programs"`
	Metrics    []Metric               `json:"metrics,omitempty"`
	Events     []EventStream          `json:"events,omitempty"`
	Parameters map[string]interface{} `json:"parameters,omitempty"`
	// Pin keeps state in bpffs across agent restarts (see Pinning).
	Pin *Pinning `json:"pin,omitempty"`
}

// Pinning keeps a probe's state alive when the agent is not running: the
// named maps are pinned under the manager's pin root, in a folder named
// after the probe (/sys/fs/bpf/rampart/NAME/), and the next load of the
// same probe reuses them, so their contents and counters carry over. With
// links, the probe's network attachments are pinned too: the programs keep
// running while the agent is down, and the next load takes the pinned links
// over with an atomic program update (no gap, no second attachment).
// Unloading a probe removes its pins; the agent can also release a probe,
// closing its descriptors but leaving the pins (agent --keep-rules).
type Pinning struct {
	Maps  []string `json:"maps,omitempty"`
	Links bool     `json:"links,omitempty"`
}

// Program names one program (its C function name) of the object and its hook.
type Program struct {
	Name string `json:"name"`
	// Hook is where the program attaches, e.g. "xdp:eth0",
	// "tc-ingress:eth0", "tracepoint:sock/inet_sock_set_state",
	// "tp_btf:sched_switch", "uprobe:/usr/bin/node:uv_accept". A network
	// hook may leave out the interface ("tc-ingress"): it is then taken
	// from the load request's interface.
	Hook string `json:"hook"`
}

// Metric exports one map.
type Metric struct {
	Name string `json:"name"`
	Map  string `json:"map"`
	// Type is the OpenMetrics type: counter, gauge or untyped.
	Type string `json:"type,omitempty"`
	Help string `json:"help,omitempty"`
	// ValueField selects the number inside a struct value ("packets",
	// "stats.bytes"). Empty: the whole value must be a number, or, for a
	// struct, every numeric field becomes its own OpenMetrics family.
	ValueField string `json:"value-field,omitempty"`
	// Labels come from key fields ("field") or are constant ("value").
	Labels []Label `json:"labels,omitempty"`
	// Formats overrides how fields are rendered: path ("key.saddr",
	// "value.addr", "key" for a whole scalar key) -> ipv4, ipv6, ip, mac,
	// hex, string, number.
	Formats map[string]string `json:"formats,omitempty"`

	EmptyOnRead bool `json:"empty-on-read,omitempty"`
	SwapOnRead  bool `json:"swap-on-read,omitempty"`
}

// Label is one OpenMetrics label of a metric.
type Label struct {
	Name string `json:"name"`
	// Field is a path inside the key ("" or "." for a scalar key).
	Field string `json:"field,omitempty"`
	// Value is a constant label value; used when Field is empty.
	Value string `json:"value,omitempty"`
}

// EventStream exports a ring buffer (or perf-less queue) as a stream of
// decoded records.
type EventStream struct {
	Name string `json:"name"`
	Map  string `json:"map"`
	// Type is the BTF name of the record struct, e.g. "struct event" or
	// "event". Ring buffers carry no value type, so it is required.
	Type    string            `json:"type"`
	Formats map[string]string `json:"formats,omitempty"`
	// Keep is how many recent events the agent keeps for readers that
	// connect later (default 1024, at most 65536).
	Keep int `json:"keep,omitempty"`
	// Poll, a duration such as "50ms", makes the agent read the ring
	// buffer at least that often instead of relying on the kernel to wake
	// it for each record: for probes that submit with BPF_RB_NO_WAKEUP
	// (a wake-up per record costs microseconds) and wake the reader only
	// when the ring fills up. Empty: woken by every record.
	Poll string `json:"poll,omitempty"`
}

// PollInterval is Poll parsed (0 when empty).
func (e EventStream) PollInterval() time.Duration {
	d, _ := time.ParseDuration(e.Poll)
	return d
}

// Hook kinds.
const (
	HookXDP        = "xdp"
	HookTCIngress  = "tc-ingress"
	HookTCEgress   = "tc-egress"
	HookTracepoint = "tracepoint"
	HookRawTP      = "raw_tp"
	HookTPBTF      = "tp_btf"
	HookUprobe     = "uprobe"
	HookUretprobe  = "uretprobe"
)

var hookKinds = []string{HookXDP, HookTCIngress, HookTCEgress, HookTracepoint, HookRawTP, HookTPBTF, HookUprobe, HookUretprobe}

// Hook is a parsed hook string.
type Hook struct {
	Kind string
	// Target: interface for network hooks, "category/name" for tracepoints,
	// the tracepoint name for raw_tp and tp_btf, the binary for uprobes.
	Target string
	// Symbol is the function of a uprobe.
	Symbol string
}

func (h Hook) String() string {
	s := h.Kind
	if h.Target != "" {
		s += ":" + h.Target
	}
	if h.Symbol != "" {
		s += ":" + h.Symbol
	}
	return s
}

// Network reports whether the hook attaches to an interface.
func (h Hook) Network() bool {
	return h.Kind == HookXDP || h.Kind == HookTCIngress || h.Kind == HookTCEgress
}

var (
	nameRE   = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_.-]{0,62}$`)
	metricRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	ifaceRE  = regexp.MustCompile(`^[^\s/:]{1,15}$`)
	tpRE     = regexp.MustCompile(`^[a-zA-Z0-9_]+/[a-zA-Z0-9_.]+$`)
	symRE    = regexp.MustCompile(`^[a-zA-Z0-9_.$@]+(\+0x[0-9a-fA-F]+)?$`)
	// ProbeNameRE is what a probe name must look like.
	ProbeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
)

// ParseHook parses and checks a hook string. A network hook without an
// interface is accepted (Target empty); Resolve fills it.
func ParseHook(s string) (Hook, error) {
	kind, rest, _ := strings.Cut(strings.TrimSpace(s), ":")
	h := Hook{Kind: kind}
	switch kind {
	case HookXDP, HookTCIngress, HookTCEgress:
		if rest != "" && !ifaceRE.MatchString(rest) {
			return h, fmt.Errorf("hook %q: %q is not an interface name", s, rest)
		}
		h.Target = rest
	case HookTracepoint:
		if !tpRE.MatchString(rest) {
			return h, fmt.Errorf("hook %q: want tracepoint:CATEGORY/NAME, e.g. tracepoint:sock/inet_sock_set_state", s)
		}
		h.Target = rest
	case HookRawTP, HookTPBTF:
		if !metricRE.MatchString(rest) {
			return h, fmt.Errorf("hook %q: want %s:NAME, e.g. %s:sched_switch", s, kind, kind)
		}
		h.Target = rest
	case HookUprobe, HookUretprobe:
		i := strings.LastIndex(rest, ":")
		if i <= 0 || i == len(rest)-1 {
			return h, fmt.Errorf("hook %q: want %s:BINARY:SYMBOL, e.g. %s:/usr/bin/node:uv_accept", s, kind, kind)
		}
		h.Target, h.Symbol = rest[:i], rest[i+1:]
		if !symRE.MatchString(h.Symbol) {
			return h, fmt.Errorf("hook %q: %q is not a symbol", s, h.Symbol)
		}
	default:
		return h, fmt.Errorf("unknown hook %q: the kind must be one of %s", s, strings.Join(hookKinds, ", "))
	}
	return h, nil
}

// ParseManifest reads a YAML or JSON manifest strictly: unknown fields are
// errors, so a typo never silently changes what a probe does.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("manifest is empty")
	}
	if len(data) > 1<<20 {
		return nil, fmt.Errorf("manifest is %d bytes; at most 1 MiB", len(data))
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

var formats = map[string]bool{"ipv4": true, "ipv6": true, "ip": true, "mac": true, "hex": true, "string": true, "number": true}

var metricTypes = map[string]bool{"counter": true, "gauge": true, "untyped": true}

// Validate checks everything that can be checked without the object.
func (m *Manifest) Validate() error {
	if m.Name != "" && !ProbeNameRE.MatchString(m.Name) {
		return fmt.Errorf("manifest: name %q: use lower-case letters, digits, '_', '.', '-' (at most 63)", m.Name)
	}
	if m.Object != "" && m.Source != "" {
		return fmt.Errorf("manifest: give object or source, not both")
	}
	if len(m.Programs) == 0 {
		return fmt.Errorf("manifest: no programs: name at least one program and its hook")
	}
	seen := map[string]bool{}
	for i, p := range m.Programs {
		if !nameRE.MatchString(p.Name) {
			return fmt.Errorf("manifest: programs[%d]: name %q is not a C identifier", i, p.Name)
		}
		if seen["p:"+p.Name] {
			return fmt.Errorf("manifest: program %q is listed twice", p.Name)
		}
		seen["p:"+p.Name] = true
		if p.Hook == "" {
			return fmt.Errorf("manifest: program %q: no hook", p.Name)
		}
		if _, err := ParseHook(p.Hook); err != nil {
			return fmt.Errorf("manifest: program %q: %w", p.Name, err)
		}
	}
	for i, mt := range m.Metrics {
		if !metricRE.MatchString(mt.Name) {
			return fmt.Errorf("manifest: metrics[%d]: name %q: use letters, digits and '_'", i, mt.Name)
		}
		if seen["m:"+mt.Name] {
			return fmt.Errorf("manifest: metric %q is listed twice", mt.Name)
		}
		seen["m:"+mt.Name] = true
		if !nameRE.MatchString(mt.Map) {
			return fmt.Errorf("manifest: metric %q: map %q is not a C identifier", mt.Name, mt.Map)
		}
		if mt.Type == "" {
			m.Metrics[i].Type = "untyped"
		} else if !metricTypes[strings.ToLower(mt.Type)] {
			return fmt.Errorf("manifest: metric %q: type %q: want counter, gauge or untyped", mt.Name, mt.Type)
		}
		m.Metrics[i].Type = strings.ToLower(m.Metrics[i].Type)
		labels := map[string]bool{}
		for _, l := range mt.Labels {
			if !metricRE.MatchString(l.Name) || strings.HasPrefix(l.Name, "__") {
				return fmt.Errorf("manifest: metric %q: label name %q is not valid", mt.Name, l.Name)
			}
			if labels[l.Name] || l.Name == "field" || l.Name == "cpu" {
				return fmt.Errorf("manifest: metric %q: label %q is repeated or reserved", mt.Name, l.Name)
			}
			labels[l.Name] = true
		}
		if err := checkFormats(mt.Formats, true); err != nil {
			return fmt.Errorf("manifest: metric %q: %w", mt.Name, err)
		}
	}
	for i, e := range m.Events {
		if !metricRE.MatchString(e.Name) {
			return fmt.Errorf("manifest: events[%d]: name %q: use letters, digits and '_'", i, e.Name)
		}
		if seen["e:"+e.Name] {
			return fmt.Errorf("manifest: event stream %q is listed twice", e.Name)
		}
		seen["e:"+e.Name] = true
		if !nameRE.MatchString(e.Map) {
			return fmt.Errorf("manifest: event stream %q: map %q is not a C identifier", e.Name, e.Map)
		}
		if strings.TrimSpace(e.Type) == "" {
			return fmt.Errorf("manifest: event stream %q: type names the record struct (e.g. \"struct event\")", e.Name)
		}
		if e.Keep < 0 || e.Keep > 65536 {
			return fmt.Errorf("manifest: event stream %q: keep must be 0..65536", e.Name)
		}
		if e.Poll != "" {
			if d, err := time.ParseDuration(e.Poll); err != nil || d < time.Millisecond || d > 10*time.Second {
				return fmt.Errorf("manifest: event stream %q: poll %q: want a duration from 1ms to 10s, e.g. 50ms", e.Name, e.Poll)
			}
		}
		if err := checkFormats(e.Formats, false); err != nil {
			return fmt.Errorf("manifest: event stream %q: %w", e.Name, err)
		}
	}
	if m.Pin != nil {
		swapped := map[string]bool{}
		for _, mt := range m.Metrics {
			if mt.SwapOnRead {
				swapped[mt.Map] = true
			}
		}
		for _, mn := range m.Pin.Maps {
			if !nameRE.MatchString(mn) {
				return fmt.Errorf("manifest: pin: map %q is not a C identifier", mn)
			}
			if swapped[mn] {
				return fmt.Errorf("manifest: pin: map %q is read with swap-on-read, which needs two instances of it: a pinned map has one", mn)
			}
		}
	}
	for k, v := range m.Parameters {
		if !nameRE.MatchString(k) {
			return fmt.Errorf("manifest: parameter %q is not a C identifier", k)
		}
		switch v.(type) {
		case json.Number, bool:
		default:
			return fmt.Errorf("manifest: parameter %q: want a number or a boolean", k)
		}
	}
	return nil
}

func checkFormats(f map[string]string, keyed bool) error {
	paths := make([]string, 0, len(f))
	for p := range f {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if !formats[f[p]] {
			return fmt.Errorf("format of %q: %q is not one of ipv4, ipv6, ip, mac, hex, string, number", p, f[p])
		}
		if keyed {
			root, _, _ := strings.Cut(p, ".")
			if root != "key" && root != "value" {
				return fmt.Errorf("format path %q must start with key or value", p)
			}
		}
	}
	return nil
}

// SwapGroup reports whether the probe needs two instances: some metric is
// read with swap-on-read.
func (m *Manifest) SwapGroup() []string {
	var maps []string
	for _, mt := range m.Metrics {
		if mt.SwapOnRead {
			maps = append(maps, mt.Map)
		}
	}
	return maps
}
