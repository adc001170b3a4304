package reqmon

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/rampart-shield/rampart/internal/probe"
	rq "github.com/rampart-shield/rampart/probes/reqmon"
)

// Mapper is a uprobe request mapper, in the shape of FineLame's probe
// configuration: which function of which executable, at its entry or its
// return, begins or ends a request, and where the request's id comes from.
// For servers where the socket mapping is too coarse (one thread
// interleaving requests of one connection, or a request's work spread
// over calls that do no I/O). Between a begin and the end with the same
// id, the thread's work (and its I/O on any socket) is that request's; a
// begin takes over what the thread counted for the socket request it was
// reading (the request's headers usually come before the function).
//
// Apache httpd (any MPM; its request function runs a request to its end,
// final flush included, on one thread):
//
//	mappers:
//	  - executable: /usr/sbin/apache2
//	    function: ap_process_request
//	    action: begin
//	    id: tid
//	  - executable: /usr/sbin/apache2
//	    function: ap_process_request
//	    return: true
//	    action: end
//	    id: tid
//
// Where one function begins a request and another ends it, an argument
// both receive (a request object's address, arg0 ... arg5) ties them.
type Mapper struct {
	Executable string `json:"executable"`
	Function   string `json:"function"`
	// Return attaches at the function's return (a uretprobe) rather than
	// its entry. Go binaries: entry only (their stacks move).
	Return bool `json:"return,omitempty"`
	// Action is begin or end.
	Action string `json:"action"`
	// ID is where the request id comes from: arg0 .. arg5 (the
	// function's integer or pointer arguments, x86-64 calling
	// convention), ret (the return value; with return: true) or tid (the
	// thread: one request at a time per thread).
	ID string `json:"id"`
}

// MapperConfig is a file of mappers (YAML or JSON).
type MapperConfig struct {
	Mappers []Mapper `json:"mappers"`
}

// ReadMappers reads and checks a mapper file.
func ReadMappers(path string) ([]Mapper, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c MapperConfig
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(c.Mappers) == 0 {
		return nil, fmt.Errorf("%s: no mappers (a top-level \"mappers:\" list)", path)
	}
	for i, m := range c.Mappers {
		if _, err := m.action(); err != nil {
			return nil, fmt.Errorf("%s: mappers[%d]: %w", path, i, err)
		}
	}
	return c.Mappers, nil
}

// action checks the mapper and returns what the kernel keeps of it.
func (m Mapper) action() (rq.MapperAction, error) {
	var a rq.MapperAction
	if m.Executable == "" || m.Function == "" {
		return a, errors.New("a mapper names an executable and a function")
	}
	if fi, err := os.Stat(m.Executable); err != nil {
		return a, err
	} else if fi.IsDir() {
		return a, fmt.Errorf("%s is a directory", m.Executable)
	}
	switch m.Action {
	case "begin":
		a.Action = rq.MapBegin
	case "end":
		a.Action = rq.MapEnd
	default:
		return a, fmt.Errorf("action %q: want begin or end", m.Action)
	}
	switch id := m.ID; {
	case id == "tid":
		a.Id = rq.IDTID
	case id == "ret":
		if !m.Return {
			return a, errors.New("id ret needs return: true (the value exists at the function's return)")
		}
		a.Id = rq.IDRet
	case strings.HasPrefix(id, "arg"):
		n, err := strconv.Atoi(id[3:])
		if err != nil || n < 0 || n > 5 {
			return a, fmt.Errorf("id %q: arguments arg0 to arg5", id)
		}
		if m.Return {
			return a, fmt.Errorf("id %s at a return: arguments are gone by then (use ret or tid)", id)
		}
		a.Id = rq.IDArg0 + uint32(n)
	default:
		return a, fmt.Errorf("id %q: want arg0..arg5, ret or tid", id)
	}
	return a, nil
}

// hook is the manifest hook of the mapper's uprobe.
func (m Mapper) hook() string {
	kind := probe.HookUprobe
	if m.Return {
		kind = probe.HookUretprobe
	}
	return kind + ":" + m.Executable + ":" + m.Function
}

func (m Mapper) String() string {
	at := "entry"
	if m.Return {
		at = "return"
	}
	return fmt.Sprintf("%s %s:%s (%s, id %s)", m.Action, m.Executable, m.Function, at, m.ID)
}
