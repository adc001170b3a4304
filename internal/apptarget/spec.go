// Package apptarget says which processes an application probe (reqmon,
// netio) watches, and fills the probe's target maps (bpf/include/rp_target.h):
//
//   - PIDs: processes by host PID, or by PID inside another process's PID
//     namespace (a container's view); with Tree, their descendants too.
//   - Execs: every process running one of these executables, now and later
//     (matched by device and inode, so symlinks and bind mounts agree), with
//     the processes they fork.
//   - Cgroups: every task in one of these cgroup v2 directories or below
//     (containers, systemd services).
//   - All: every task on the host.
//
// Resolve turns a Spec into map entries from /proc and the cgroup tree;
// Install writes them. The probe's fork, exec and exit handlers keep the maps
// current after that.
package apptarget

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Spec is what to watch. At least one field must be set.
type Spec struct {
	PIDs []int `json:"pids,omitempty"`
	// PIDNamespaceOf, when set, means PIDs are as seen inside the PID
	// namespace of this (host) PID, e.g. a container's init.
	PIDNamespaceOf int `json:"pid_namespace_of,omitempty"`
	// Tree includes the descendants of PIDs, present and future.
	Tree    bool     `json:"tree,omitempty"`
	Execs   []string `json:"execs,omitempty"`
	Cgroups []string `json:"cgroups,omitempty"`
	All     bool     `json:"all,omitempty"`
}

// Empty reports whether the spec names nothing.
func (s Spec) Empty() bool {
	return len(s.PIDs) == 0 && len(s.Execs) == 0 && len(s.Cgroups) == 0 && !s.All
}

// Validate checks the spec's shape (not whether its processes exist).
func (s Spec) Validate() error {
	if s.Empty() {
		return errors.New("nothing to watch: give --pid, --exec, --cgroup or --all")
	}
	for _, p := range s.PIDs {
		if p <= 0 {
			return fmt.Errorf("pid %d: want a positive process id", p)
		}
	}
	if s.PIDNamespaceOf < 0 {
		return fmt.Errorf("pid namespace of %d: want a positive process id", s.PIDNamespaceOf)
	}
	if s.PIDNamespaceOf > 0 && len(s.PIDs) == 0 {
		return errors.New("a PID namespace was given without any --pid in it")
	}
	for _, e := range s.Execs {
		if !strings.HasPrefix(e, "/") {
			return fmt.Errorf("exec %q: want an absolute path (e.g. /usr/sbin/apache2)", e)
		}
	}
	for _, c := range s.Cgroups {
		if c == "" {
			return errors.New("empty cgroup path")
		}
	}
	return nil
}

// String is the spec in the CLI's words: "pid 12 (tree), exec /usr/sbin/nginx".
func (s Spec) String() string {
	var parts []string
	if s.All {
		parts = append(parts, "all tasks")
	}
	for _, p := range s.PIDs {
		t := "pid " + strconv.Itoa(p)
		if s.PIDNamespaceOf > 0 {
			t += fmt.Sprintf(" (in the PID namespace of %d)", s.PIDNamespaceOf)
		}
		if s.Tree {
			t += " and descendants"
		}
		parts = append(parts, t)
	}
	for _, e := range s.Execs {
		parts = append(parts, "exec "+e)
	}
	for _, c := range s.Cgroups {
		parts = append(parts, "cgroup "+c)
	}
	return strings.Join(parts, ", ")
}
