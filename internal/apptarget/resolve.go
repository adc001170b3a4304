package apptarget

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/rampart-shield/rampart/internal/procstat"
)

// Flags of an rp_tgids entry (rp_target.h).
const (
	FlagTree   = 1
	FlagCgroup = 2
)

// ExecKey identifies an executable as the kernel sees it: the inode number
// and the kernel's dev_t encoding of its filesystem (major<<20 | minor).
type ExecKey struct {
	Ino uint64
	Dev uint32
	Pad uint32
}

// Resolved is a Spec turned into map entries.
type Resolved struct {
	All bool
	// TGIDs maps each process to its flags (FlagTree...).
	TGIDs   map[uint32]uint8
	Cgroups map[uint64]string // cgroup id -> path
	Execs   map[ExecKey]string
}

// ProcRoot and CgroupRoot are where Resolve looks; tests may point them
// elsewhere. Relative cgroup paths are taken under CgroupRoot; when it is
// left at /sys/fs/cgroup and that is not the cgroup v2 hierarchy (a hybrid
// host, where v2 is mounted at /sys/fs/cgroup/unified), they are taken
// under the host's cgroup2 mount instead.
var (
	ProcRoot   = "/proc"
	CgroupRoot = DefaultCgroupRoot
)

// DefaultCgroupRoot is where cgroup v2 is mounted on a unified host.
const DefaultCgroupRoot = "/sys/fs/cgroup"

// CgroupV2Root returns where relative cgroup paths are resolved: CgroupRoot,
// or the cgroup2 mount point when CgroupRoot is the default and is not a
// cgroup2 filesystem.
func CgroupV2Root() string {
	root := CgroupRoot
	if root != DefaultCgroupRoot || isCgroup2(root) {
		return root
	}
	if mp := cgroup2Mount(filepath.Join(ProcRoot, "self", "mountinfo")); mp != "" {
		return mp
	}
	return root
}

func isCgroup2(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// cgroup2Mount finds the first cgroup2 mount point in a mountinfo file.
func cgroup2Mount(mountinfo string) string {
	b, err := os.ReadFile(mountinfo)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) >= 5 && len(qf) >= 1 && qf[0] == "cgroup2" {
			return pf[4]
		}
	}
	return ""
}

// Resolve finds what the spec names: the running processes, the cgroups'
// ids and the executables' identities. A PID that does not exist, an
// executable or a cgroup directory that cannot be found is an error; an
// executable with no running process is not (its next start is caught).
func Resolve(s Spec) (Resolved, error) {
	r := Resolved{All: s.All, TGIDs: map[uint32]uint8{}, Cgroups: map[uint64]string{}, Execs: map[ExecKey]string{}}
	if err := s.Validate(); err != nil {
		return r, err
	}
	procs, err := scanProcs()
	if err != nil {
		return r, err
	}
	var tree []uint32
	for _, p := range s.PIDs {
		host := p
		if s.PIDNamespaceOf > 0 {
			if host, err = hostPID(procs, s.PIDNamespaceOf, p); err != nil {
				return r, err
			}
		}
		if _, ok := procs[uint32(host)]; !ok {
			return r, fmt.Errorf("pid %d: no such process", host)
		}
		var f uint8
		if s.Tree {
			f = FlagTree
			tree = append(tree, uint32(host))
		}
		r.TGIDs[uint32(host)] |= f
	}
	for _, e := range s.Execs {
		k, err := execKey(e)
		if err != nil {
			return r, err
		}
		r.Execs[k] = e
		for pid, p := range procs {
			if p.exe == k {
				r.TGIDs[pid] |= FlagTree
				tree = append(tree, pid)
			}
		}
	}
	for _, c := range s.Cgroups {
		dir := c
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(CgroupV2Root(), c)
		}
		ids, err := cgroupTree(dir)
		if err != nil {
			return r, err
		}
		for id, path := range ids {
			r.Cgroups[id] = path
			for _, pid := range cgroupProcs(path) {
				r.TGIDs[pid] |= FlagTree | FlagCgroup
			}
		}
	}
	// Descendants of tree roots that are already running.
	children := map[uint32][]uint32{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	for len(tree) > 0 {
		pid := tree[len(tree)-1]
		tree = tree[:len(tree)-1]
		for _, c := range children[pid] {
			if r.TGIDs[c]&FlagTree == 0 {
				r.TGIDs[c] |= FlagTree
				tree = append(tree, c)
			}
		}
	}
	return r, nil
}

// PIDs returns the resolved processes, sorted.
func (r Resolved) PIDs() []int {
	out := make([]int, 0, len(r.TGIDs))
	for p := range r.TGIDs {
		out = append(out, int(p))
	}
	sort.Ints(out)
	return out
}

type procInfo struct {
	ppid uint32
	exe  ExecKey
}

// scanProcs reads every process's parent and executable identity.
// Processes that exit while being read are skipped.
func scanProcs() (map[uint32]procInfo, error) {
	ents, err := os.ReadDir(ProcRoot)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ProcRoot, err)
	}
	out := map[uint32]procInfo{}
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		ppid, ok := readPPID(filepath.Join(ProcRoot, e.Name(), "stat"))
		if !ok {
			continue
		}
		p := procInfo{ppid: ppid}
		var st unix.Stat_t
		if unix.Stat(filepath.Join(ProcRoot, e.Name(), "exe"), &st) == nil {
			p.exe = keyOf(&st)
		}
		out[uint32(pid)] = p
	}
	return out, nil
}

// readPPID parses the parent PID from /proc/PID/stat (field 4, after the
// parenthesised command, which may itself hold spaces and parentheses).
func readPPID(path string) (uint32, bool) {
	f, err := procstat.Read(path)
	if err != nil || len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.ParseUint(f[1], 10, 32)
	return uint32(pp), err == nil
}

func keyOf(st *unix.Stat_t) ExecKey {
	dev := uint64(st.Dev)
	return ExecKey{Ino: st.Ino, Dev: unix.Major(dev)<<20 | unix.Minor(dev)}
}

func execKey(path string) (ExecKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return ExecKey{}, fmt.Errorf("exec %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return ExecKey{}, fmt.Errorf("exec %s: not a regular file", path)
	}
	return keyOf(&st), nil
}

// cgroupTree returns the ids (directory inode numbers, which are what
// bpf_get_current_cgroup_id returns on cgroup v2) of dir and every cgroup
// below it.
func cgroupTree(dir string) (map[uint64]string, error) {
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		return nil, fmt.Errorf("cgroup %s: not a cgroup v2 directory (%v)", dir, err)
	}
	// cgroup v1 directories have cgroup.procs too, but their inode numbers
	// are not the ids BPF sees (bpf_get_current_cgroup_id is v2's).
	if !isCgroup2(dir) {
		return nil, fmt.Errorf("cgroup %s: a cgroup v1 directory; only cgroup v2 can be watched (mounted at %s here)", dir, CgroupV2Root())
	}
	out := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a cgroup removed while walking
		}
		if !d.IsDir() {
			return nil
		}
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil {
			out[st.Ino] = p
		}
		return nil
	})
	return out, err
}

func cgroupProcs(dir string) []uint32 {
	f, err := os.Open(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []uint32
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, err := strconv.ParseUint(strings.TrimSpace(sc.Text()), 10, 32); err == nil {
			out = append(out, uint32(p))
		}
	}
	return out
}

// hostPID translates pid, as seen in the PID namespace of process nsOf, to
// the host PID, from the NSpid lines of /proc/*/status.
func hostPID(procs map[uint32]procInfo, nsOf, pid int) (int, error) {
	ns, err := os.Readlink(filepath.Join(ProcRoot, strconv.Itoa(nsOf), "ns", "pid"))
	if err != nil {
		return 0, fmt.Errorf("pid namespace of %d: %w", nsOf, err)
	}
	for host := range procs {
		dir := filepath.Join(ProcRoot, strconv.Itoa(int(host)))
		if l, err := os.Readlink(filepath.Join(dir, "ns", "pid")); err != nil || l != ns {
			continue
		}
		ids := nsPIDs(filepath.Join(dir, "status"))
		if len(ids) > 0 && ids[len(ids)-1] == pid {
			return int(host), nil
		}
	}
	return 0, fmt.Errorf("pid %d: no such process in the PID namespace of %d (%s)", pid, nsOf, ns)
}

// nsPIDs reads "NSpid:" from a status file: the PID in each nested
// namespace, outermost first.
func nsPIDs(path string) []int {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			var out []int
			for _, f := range strings.Fields(rest) {
				if n, err := strconv.Atoi(f); err == nil {
					out = append(out, n)
				}
			}
			return out
		}
	}
	return nil
}
