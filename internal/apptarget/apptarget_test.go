package apptarget_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/rampart-shield/rampart/internal/apptarget"
	"github.com/rampart-shield/rampart/internal/bpftest"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/probes/netio"
)

// proc is a helper process the test controls through stdin and reads
// pids from on stdout.
type proc struct {
	cmd   *exec.Cmd
	pid   int
	in    io.WriteCloser
	lines chan string
}

// start runs argv; it is killed (with its process group) at the end.
func start(t *testing.T, argv ...string) *proc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, in: in, lines: make(chan string, 16)}
	t.Cleanup(func() {
		syscall.Kill(-p.pid, syscall.SIGKILL)
		in.Close()
		cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p
}

// readPID waits for the process to print a pid.
func (p *proc) readPID(t *testing.T) int {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		n, err := strconv.Atoi(strings.TrimSpace(l))
		if !ok || err != nil {
			t.Fatalf("process %d printed %q, want a pid", p.pid, l)
		}
		return n
	case <-time.After(10 * time.Second):
		t.Fatalf("process %d printed no pid", p.pid)
	}
	return 0
}

func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("skipping: %s not found", name)
	}
	return p
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (other users' /proc entries, cgroups, namespaces)")
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func resolve(t *testing.T, s apptarget.Spec) apptarget.Resolved {
	t.Helper()
	r, err := apptarget.Resolve(s)
	if err != nil {
		t.Fatalf("Resolve(%s): %v", s, err)
	}
	return r
}

func TestResolvePID(t *testing.T) {
	sleep := start(t, lookPath(t, "sleep"), "300")
	r := resolve(t, apptarget.Spec{PIDs: []int{sleep.pid}})
	if len(r.TGIDs) != 1 || r.TGIDs[uint32(sleep.pid)] != 0 {
		t.Errorf("TGIDs = %v, want {%d: 0}", r.TGIDs, sleep.pid)
	}
	if got := r.PIDs(); len(got) != 1 || got[0] != sleep.pid {
		t.Errorf("PIDs() = %v", got)
	}
	// A pid that does not exist.
	gone := 4194303
	for ; gone > 1; gone-- {
		if _, err := os.Stat("/proc/" + strconv.Itoa(gone)); err != nil {
			break
		}
	}
	if _, err := apptarget.Resolve(apptarget.Spec{PIDs: []int{gone}}); err == nil || !strings.Contains(err.Error(), "no such process") {
		t.Errorf("Resolve of missing pid %d: %v", gone, err)
	}
	if _, err := apptarget.Resolve(apptarget.Spec{}); err == nil {
		t.Error("Resolve of an empty spec succeeded")
	}
	if r := resolve(t, apptarget.Spec{All: true}); !r.All || len(r.TGIDs) != 0 {
		t.Errorf("Resolve(All) = %+v", r)
	}
}

func TestResolveTree(t *testing.T) {
	sh := start(t, lookPath(t, "sh"), "-c", "sleep 300 & echo $!; wait")
	child := sh.readPID(t)
	r := resolve(t, apptarget.Spec{PIDs: []int{sh.pid}, Tree: true})
	if r.TGIDs[uint32(sh.pid)] != apptarget.FlagTree || r.TGIDs[uint32(child)] != apptarget.FlagTree || len(r.TGIDs) != 2 {
		t.Errorf("TGIDs = %v, want %d and its child %d with FlagTree", r.TGIDs, sh.pid, child)
	}
	r = resolve(t, apptarget.Spec{PIDs: []int{sh.pid}})
	if _, ok := r.TGIDs[uint32(child)]; ok || len(r.TGIDs) != 1 {
		t.Errorf("without Tree: TGIDs = %v, want only %d", r.TGIDs, sh.pid)
	}
}

// copyExec copies an executable to a new inode in a temporary folder.
func copyExec(t *testing.T, from string) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), filepath.Base(from)+"-copy")
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return to
}

func TestResolveExec(t *testing.T) {
	bin := copyExec(t, lookPath(t, "sleep"))
	other := start(t, lookPath(t, "sleep"), "300") // the original: not watched
	p := start(t, bin, "300")
	waitFor(t, "the copy to run", func() bool {
		l, _ := os.Readlink("/proc/" + strconv.Itoa(p.pid) + "/exe")
		return l == bin
	})
	// Through a symlink: the identity is the inode.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	r := resolve(t, apptarget.Spec{Execs: []string{link}})
	if r.TGIDs[uint32(p.pid)] != apptarget.FlagTree {
		t.Errorf("TGIDs = %v, want %d with FlagTree", r.TGIDs, p.pid)
	}
	if _, ok := r.TGIDs[uint32(other.pid)]; ok {
		t.Errorf("the original executable's process %d resolved too", other.pid)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(bin, &st); err != nil {
		t.Fatal(err)
	}
	want := apptarget.ExecKey{Ino: st.Ino, Dev: unix.Major(st.Dev)<<20 | unix.Minor(st.Dev)}
	if len(r.Execs) != 1 || r.Execs[want] != link {
		t.Errorf("Execs = %v, want {%+v: %s}", r.Execs, want, link)
	}
	if _, err := apptarget.Resolve(apptarget.Spec{Execs: []string{filepath.Join(t.TempDir(), "none")}}); err == nil {
		t.Error("Resolve of a missing executable succeeded")
	}
	if _, err := apptarget.Resolve(apptarget.Spec{Execs: []string{t.TempDir()}}); err == nil || !strings.Contains(err.Error(), "regular file") {
		t.Errorf("Resolve of a directory: %v", err)
	}
	// An executable that is not running is fine: its next start is caught.
	idle := copyExec(t, lookPath(t, "sleep"))
	if r := resolve(t, apptarget.Spec{Execs: []string{idle}}); len(r.TGIDs) != 0 || len(r.Execs) != 1 {
		t.Errorf("idle executable: %+v", r)
	}
}

// makeCgroup creates a cgroup v2 directory, removed at the end.
func makeCgroup(t *testing.T) string {
	t.Helper()
	root := apptarget.CgroupV2Root()
	dir, err := os.MkdirTemp(root, "rampart-test-")
	if err != nil {
		t.Skipf("skipping: cannot create a cgroup under %s: %v", root, err)
	}
	t.Cleanup(func() {
		os.Remove(filepath.Join(dir, "sub"))
		for i := 0; i < 50; i++ {
			if os.Remove(dir) == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("cannot remove cgroup %s", dir)
	})
	return dir
}

func TestResolveCgroup(t *testing.T) {
	requireRoot(t)
	dir := makeCgroup(t)
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	outside := start(t, lookPath(t, "sleep"), "300")
	in := start(t, lookPath(t, "sleep"), "300")
	below := start(t, lookPath(t, "sleep"), "300")
	for d, p := range map[string]*proc{dir: in, sub: below} {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(p.pid)), 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{dir, filepath.Base(dir)} { // absolute, and relative to the v2 root
		r := resolve(t, apptarget.Spec{Cgroups: []string{name}})
		ids := map[string]bool{}
		for id, path := range r.Cgroups {
			var st syscall.Stat_t
			if err := syscall.Stat(path, &st); err != nil || st.Ino != id {
				t.Errorf("cgroup id %d for %s (inode %d, %v)", id, path, st.Ino, err)
			}
			ids[path] = true
		}
		if len(ids) != 2 || !ids[dir] || !ids[sub] {
			t.Errorf("%s: cgroups %v, want %s and %s", name, r.Cgroups, dir, sub)
		}
		f := uint8(apptarget.FlagTree | apptarget.FlagCgroup)
		if r.TGIDs[uint32(in.pid)] != f || r.TGIDs[uint32(below.pid)] != f || len(r.TGIDs) != 2 {
			t.Errorf("%s: TGIDs %v, want %d and %d with tree|cgroup (not %d)", name, r.TGIDs, in.pid, below.pid, outside.pid)
		}
	}
	if _, err := apptarget.Resolve(apptarget.Spec{Cgroups: []string{filepath.Join(dir, "none")}}); err == nil {
		t.Error("Resolve of a missing cgroup succeeded")
	}
	// A cgroup v1 directory (hybrid hosts) is refused: its inode is not
	// the id BPF sees.
	for _, v1 := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu"} {
		var sfs syscall.Statfs_t
		if syscall.Statfs(v1, &sfs) != nil || sfs.Type == 0x63677270 {
			continue
		}
		if _, err := apptarget.Resolve(apptarget.Spec{Cgroups: []string{v1}}); err == nil || !strings.Contains(err.Error(), "v1") {
			t.Errorf("Resolve of the v1 directory %s: %v", v1, err)
		}
		break
	}
}

// hostChild finds the host pid of a child of parent (the first found).
func hostChild(t *testing.T, parent int) int {
	t.Helper()
	var found int
	waitFor(t, "a child of "+strconv.Itoa(parent), func() bool {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue
			}
			i := bytes.LastIndexByte(b, ')')
			if f := strings.Fields(string(b[i+1:])); len(f) > 1 && f[1] == strconv.Itoa(parent) {
				found, _ = strconv.Atoi(e.Name())
				return true
			}
		}
		return false
	})
	return found
}

// TestResolvePIDNamespace: pids as a container sees them. The shell is pid
// 1 of a new PID namespace and its sleep pid 2.
func TestResolvePIDNamespace(t *testing.T) {
	requireRoot(t)
	unshare := lookPath(t, "unshare")
	u := start(t, unshare, "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", "sleep 300 & echo $!; wait")
	nsChild := u.readPID(t)
	if nsChild != 2 {
		t.Fatalf("the sleep is pid %d in its namespace, want 2", nsChild)
	}
	init := hostChild(t, u.pid)
	sleep := hostChild(t, init)
	r := resolve(t, apptarget.Spec{PIDs: []int{2}, PIDNamespaceOf: init})
	if len(r.TGIDs) != 1 || r.TGIDs[uint32(sleep)] != 0 {
		t.Errorf("pid 2 in the namespace of %d: %v, want host pid %d", init, r.TGIDs, sleep)
	}
	r = resolve(t, apptarget.Spec{PIDs: []int{1}, PIDNamespaceOf: sleep, Tree: true})
	if r.TGIDs[uint32(init)] != apptarget.FlagTree || r.TGIDs[uint32(sleep)] != apptarget.FlagTree {
		t.Errorf("pid 1 (tree) in the namespace of %d: %v, want %d and %d", sleep, r.TGIDs, init, sleep)
	}
	if _, err := apptarget.Resolve(apptarget.Spec{PIDs: []int{77}, PIDNamespaceOf: init}); err == nil || !strings.Contains(err.Error(), "PID namespace") {
		t.Errorf("a pid not in the namespace: %v", err)
	}
	// In the host's own namespace a pid is itself.
	r = resolve(t, apptarget.Spec{PIDs: []int{u.pid}, PIDNamespaceOf: os.Getpid()})
	if r.TGIDs[uint32(u.pid)] != 0 || len(r.TGIDs) != 1 {
		t.Errorf("host namespace: %v", r.TGIDs)
	}
}

// TestHandlersKeepTargetsCurrent loads the netio probe (which includes
// rp_target.h) and checks that its fork, exec and exit handlers keep
// rp_tgids current after Install.
func TestHandlersKeepTargetsCurrent(t *testing.T) {
	bpftest.Require(t)
	m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	man, err := probe.ParseManifest(netio.Manifest())
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Load(context.Background(), probe.LoadRequest{Name: "netio-target-test", Manifest: man, Object: netio.Object()})
	bpftest.CheckLoad(t, err)
	watched := func() map[uint32]uint8 {
		var w map[uint32]uint8
		err := m.WithMaps("netio-target-test", func(maps map[string]*ebpf.Map) error {
			var err error
			w, err = apptarget.Watched(maps)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	install := func(s apptarget.Spec) {
		r := resolve(t, s)
		if err := m.WithMaps("netio-target-test", func(maps map[string]*ebpf.Map) error { return apptarget.Install(maps, r) }); err != nil {
			t.Fatal(err)
		}
	}
	sh := lookPath(t, "sh")
	script := "read x; sleep 300 & echo $!; wait"

	// Tree: a child forked after Install is watched from its fork; it
	// leaves the map when it exits.
	tree := start(t, sh, "-c", script)
	flat := start(t, sh, "-c", script)
	install(apptarget.Spec{PIDs: []int{tree.pid}, Tree: true})
	install(apptarget.Spec{PIDs: []int{flat.pid}})
	if w := watched(); w[uint32(tree.pid)] != apptarget.FlagTree || w[uint32(flat.pid)] != 0 || len(w) != 2 {
		t.Fatalf("after Install: %v", w)
	}
	io.WriteString(tree.in, "go\n")
	io.WriteString(flat.in, "go\n")
	child, flatChild := tree.readPID(t), flat.readPID(t)
	if w := watched(); w[uint32(child)] != apptarget.FlagTree {
		t.Errorf("the tree's new child %d is not watched: %v", child, w)
	}
	if _, ok := watched()[uint32(flatChild)]; ok {
		t.Errorf("the child %d of a process watched without Tree is watched", flatChild)
	}
	syscall.Kill(child, syscall.SIGKILL)
	waitFor(t, "the exited child to leave rp_tgids", func() bool { _, ok := watched()[uint32(child)]; return !ok })

	// Exec: a process that execs a watched executable is watched.
	bin := copyExec(t, lookPath(t, "sleep"))
	install(apptarget.Spec{Execs: []string{bin}})
	p := start(t, bin, "300")
	waitFor(t, "the exec to be watched", func() bool { return watched()[uint32(p.pid)] == apptarget.FlagTree })
	syscall.Kill(p.pid, syscall.SIGKILL)
	waitFor(t, "the exec'd process to leave rp_tgids", func() bool { _, ok := watched()[uint32(p.pid)]; return !ok })

	// The watched process itself exiting.
	tree.in.Close()
	syscall.Kill(-tree.pid, syscall.SIGKILL)
	waitFor(t, "the tree root to leave rp_tgids", func() bool { _, ok := watched()[uint32(tree.pid)]; return !ok })

	mv, err := m.ReadMetric("netio-target-test", "netio_target_stats", probe.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rp_target_stats: %s", probe.AppendEntriesJSON(nil, mv.Value))
	raw, err := m.ReadRaw("netio-target-test", apptarget.MapStats)
	if err != nil {
		t.Fatal(err)
	}
	stats := make([]uint64, len(raw))
	for _, e := range raw {
		i := int(e.Key[0])
		for _, v := range e.Values {
			stats[i] += binary.LittleEndian.Uint64(v)
		}
	}
	// 0 fork-added, 1 exec-added, 3 exited.
	if stats[0] < 1 || stats[1] < 1 || stats[3] < 3 {
		t.Errorf("rp_target_stats %v: want at least 1 fork, 1 exec and 3 exits", stats)
	}
}
