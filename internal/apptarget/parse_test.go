package apptarget

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		spec Spec
		err  string
	}{
		{Spec{}, "nothing to watch"},
		{Spec{PIDs: []int{0}}, "positive"},
		{Spec{PIDs: []int{-3}}, "positive"},
		{Spec{PIDs: []int{1}, PIDNamespaceOf: -1}, "positive"},
		{Spec{Execs: []string{"/bin/sh"}, PIDNamespaceOf: 5}, "without any --pid"},
		{Spec{Execs: []string{"nginx"}}, "absolute path"},
		{Spec{Cgroups: []string{""}}, "empty cgroup"},
		{Spec{PIDs: []int{1}}, ""},
		{Spec{All: true}, ""},
		{Spec{Cgroups: []string{"system.slice/nginx.service"}}, ""},
	} {
		err := tc.spec.Validate()
		if tc.err == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.spec, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%+v: error %v, want %q", tc.spec, err, tc.err)
		}
	}
}

func TestString(t *testing.T) {
	s := Spec{PIDs: []int{12}, PIDNamespaceOf: 7, Tree: true, Execs: []string{"/usr/sbin/nginx"}, Cgroups: []string{"web"}, All: true}
	want := "all tasks, pid 12 (in the PID namespace of 7) and descendants, exec /usr/sbin/nginx, cgroup web"
	if got := s.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if !(Spec{}).Empty() || (Spec{All: true}).Empty() {
		t.Error("Empty")
	}
}

func TestProcFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		stat string
		ppid uint32
		ok   bool
	}{
		{"42 (nginx) S 17 42 42 0 -1", 17, true},
		{"42 (a (b) c) R 9 42 42 0", 9, true}, // comm with spaces and parentheses
		{"42 (x)) S 3 1", 3, true},
		{"42 nginx S 17", 0, false},
		{"42 (x)", 0, false},
	} {
		pp, ok := readPPID(write("stat", tc.stat))
		if pp != tc.ppid || ok != tc.ok {
			t.Errorf("readPPID(%q) = %d, %v; want %d, %v", tc.stat, pp, ok, tc.ppid, tc.ok)
		}
	}
	if _, ok := readPPID(filepath.Join(dir, "missing")); ok {
		t.Error("readPPID of a missing file")
	}
	status := write("status", "Name:\tsleep\nTgid:\t900\nNSpid:\t900\t2\nPPid:\t899\n")
	if got := nsPIDs(status); len(got) != 2 || got[0] != 900 || got[1] != 2 {
		t.Errorf("nsPIDs = %v, want [900 2]", got)
	}
	if got := nsPIDs(write("status2", "Name:\tx\n")); got != nil {
		t.Errorf("nsPIDs without NSpid = %v", got)
	}
	mi := write("mountinfo", "24 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n"+
		"31 24 0:27 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n"+
		"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw\n")
	if got := cgroup2Mount(mi); got != "/sys/fs/cgroup/unified" {
		t.Errorf("cgroup2Mount = %q", got)
	}
	if got := cgroup2Mount(write("mi2", "24 30 0:22 / /sys rw - sysfs sysfs rw\n")); got != "" {
		t.Errorf("cgroup2Mount without cgroup2 = %q", got)
	}
}
