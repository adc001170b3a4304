package probe

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// LoadRequest asks the manager to load (or replace) a probe.
type LoadRequest struct {
	// Name of the probe; defaults to the manifest's name.
	Name     string    `json:"name"`
	Manifest *Manifest `json:"manifest"`
	// Object is a compiled eBPF ELF object with BTF; Source is C source the
	// agent compiles with clang. Exactly one is set.
	Object []byte `json:"object,omitempty"`
	Source []byte `json:"source,omitempty"`
	// Attach overrides hooks: "PROGRAM=HOOK", or "HOOK" when the probe has a
	// single program.
	Attach []string `json:"attach,omitempty"`
	// Iface fills network hooks that name no interface.
	Iface string `json:"iface,omitempty"`
	// Params override the manifest's parameters (constant name -> value).
	Params map[string]string `json:"params,omitempty"`
	// MapSizes override maps' max_entries (map name -> entries; bytes for
	// ring buffers), e.g. to size a probe's LRU tables for a host.
	MapSizes map[string]uint32 `json:"map_sizes,omitempty"`
	// Detached loads and verifies the probe but attaches nothing: its
	// programs run only through TestRun (replays of captures).
	Detached bool `json:"detached,omitempty"`
	// Origin is "builtin" or "user" (set by the agent, not the client).
	Origin string `json:"-"`
}

// ProbeInfo describes a loaded probe.
type ProbeInfo struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Origin      string            `json:"origin"`
	LoadedAt    time.Time         `json:"loaded_at"`
	Programs    []ProgramInfo     `json:"programs"`
	Metrics     []MetricInfo      `json:"metrics"`
	Events      []EventInfo       `json:"events,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
	// Detached is true for a probe loaded without attaching (replay).
	Detached bool `json:"detached,omitempty"`
	// Swapping is true when the probe runs two instances for swap-on-read.
	Swapping bool `json:"swapping"`
	// Pinned is the bpffs folder of the probe's pins, when it pins state.
	Pinned string `json:"pinned,omitempty"`
	// Swaps counts completed swap-on-read cycles.
	Swaps uint64 `json:"swaps"`
	// LoadDuration is how long verification and attachment took.
	LoadDuration time.Duration `json:"load_duration_ns"`
	// LastSwap is how long the last swap-on-read cycle took: switching
	// instances, waiting for in-flight runs, reading and clearing the idle
	// maps (decoding to JSON not included).
	LastSwap time.Duration `json:"last_swap_ns,omitempty"`
}

// ProgramInfo describes one attached program.
type ProgramInfo struct {
	Name string `json:"name"`
	Hook string `json:"hook"`
	Type string `json:"type"`
	// ID is the kernel's program id (of the first instance).
	ID uint32 `json:"id"`
	// Mode is how it attached: "xdp-driver", "xdp-generic", "tcx",
	// "tc-netlink", "perf-event", "raw-tracepoint", "uprobe".
	Mode string `json:"mode"`
	// Pivot is true when a dispatcher program switches between instances.
	Pivot bool `json:"pivot,omitempty"`
}

// MetricInfo describes one exported metric.
type MetricInfo struct {
	Name        string `json:"name"`
	Map         string `json:"map"`
	MapType     string `json:"map_type"`
	Type        string `json:"type"`
	Help        string `json:"help,omitempty"`
	KeyType     string `json:"key_type,omitempty"`
	ValueType   string `json:"value_type,omitempty"`
	EmptyOnRead bool   `json:"empty_on_read"`
	SwapOnRead  bool   `json:"swap_on_read"`
}

// EventInfo describes one event stream.
type EventInfo struct {
	Name     string `json:"name"`
	Map      string `json:"map"`
	Type     string `json:"type"`
	Received uint64 `json:"received"`
	// Lost counts events that could not be decoded or were dropped because
	// a subscriber was too slow.
	Lost uint64 `json:"lost"`
}

// ReadOptions tunes a metric read.
type ReadOptions struct {
	// PerCPU returns per-CPU values as arrays instead of their per-field sum.
	PerCPU bool
}

// MetricValue is one read of a metric (Dynmon's metric JSON, extended).
type MetricValue struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Help string `json:"help,omitempty"`
	// Timestamp is the read time in Unix nanoseconds.
	Timestamp int64   `json:"timestamp"`
	Value     []Entry `json:"value"`
}

// Entry is one decoded map entry. Key is absent for queues and stacks.
type Entry struct {
	Key   json.RawMessage `json:"key,omitempty"`
	Value json.RawMessage `json:"value"`
}

// Event is one decoded ring-buffer record.
type Event struct {
	Probe  string          `json:"probe"`
	Stream string          `json:"stream"`
	Seq    uint64          `json:"seq"`
	Time   int64           `json:"time"`
	Data   json.RawMessage `json:"data"`
	// Raw is the record as the kernel wrote it, for typed consumers
	// (ddosfeat.DecodePacketFeatures) that need no JSON.
	Raw []byte `json:"-"`
}

// ErrorKind classifies errors for the API (HTTP status) and the CLI.
type ErrorKind int

const (
	KindInvalid     ErrorKind = iota + 1 // bad request: manifest, hook, name, params (400)
	KindNotFound                         // no such probe, metric, stream (404)
	KindRejected                         // the kernel refused: verifier, attach (422)
	KindInternal                         // anything else (500)
	KindUnavailable                      // a tool or kernel feature is missing (501)
)

// Error is what the manager returns; the API renders it as
// {"error": Msg, "detail": Detail}.
type Error struct {
	Kind   ErrorKind
	Msg    string
	Detail string
	Err    error
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return e.Msg + ": " + e.Detail
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(kind ErrorKind, format string, args ...interface{}) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: kind, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// KindOf returns the kind of err, KindInternal when it carries none.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// AppendJSON appends the metric as JSON. The entries' key and value are
// already JSON made by the decoder, so they are copied as they are: going
// through encoding/json would validate and re-compact every one of them,
// which costs more than decoding them did.
func (v MetricValue) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"name":`...)
	dst = appendString(dst, v.Name)
	dst = append(dst, `,"type":`...)
	dst = appendString(dst, v.Type)
	if v.Help != "" {
		dst = append(dst, `,"help":`...)
		dst = appendString(dst, v.Help)
	}
	dst = append(dst, `,"timestamp":`...)
	dst = strconv.AppendInt(dst, v.Timestamp, 10)
	dst = append(dst, `,"value":`...)
	dst = AppendEntriesJSON(dst, v.Value)
	return append(dst, '}')
}

// AppendEntriesJSON appends entries as a JSON array (see AppendJSON).
func AppendEntriesJSON(dst []byte, es []Entry) []byte {
	need := 2
	for _, e := range es {
		need += len(e.Key) + len(e.Value) + 20
	}
	dst = slices.Grow(dst, need)
	dst = append(dst, '[')
	for i, e := range es {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		if len(e.Key) > 0 {
			dst = append(dst, `"key":`...)
			dst = append(dst, e.Key...)
			dst = append(dst, ',')
		}
		dst = append(dst, `"value":`...)
		dst = append(dst, e.Value...)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

func appendString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(dst, b...)
}
