// Package procstat reads /proc/PID/stat, whose second field (the command,
// in parentheses) may itself hold spaces and parentheses.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// UserHZ is the unit of the times in stat (clock ticks a second).
const UserHZ = 100

// Fields splits a stat line into its fields from the third on: f[0] is
// field 3 (the state), f[n] field n+3. ok is false without the command's
// closing parenthesis.
func Fields(b []byte) (f []string, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(string(b[i+1:])), true
}

// Read reads a stat file (e.g. /proc/PID/stat) and returns its Fields.
func Read(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, ok := Fields(b)
	if !ok {
		return nil, fmt.Errorf("%s: no ')' after the command", path)
	}
	return f, nil
}

// Ticks is the user and system time of process pid, in clock ticks
// (fields 14 and 15), plus that of its reaped children (16 and 17) when
// children is set.
func Ticks(pid int, children bool) (uint64, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	f, err := Read(path)
	if err != nil {
		return 0, err
	}
	last := 15
	if children {
		last = 17
	}
	if len(f) < last-2 {
		return 0, fmt.Errorf("%s: %d fields", path, len(f)+2)
	}
	var n uint64
	for field := 14; field <= last; field++ {
		v, err := strconv.ParseUint(f[field-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: field %d: %w", path, field, err)
		}
		n += v
	}
	return n, nil
}
