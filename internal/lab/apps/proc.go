package apps

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rampart-shield/rampart/internal/lab"
	"github.com/rampart-shield/rampart/internal/procstat"
)

const (
	outputMax = 64 << 10        // output kept per server process
	stopGrace = time.Second     // SIGTERM to SIGKILL: a busy nginx worker ignores SIGTERM
	goneWait  = 2 * time.Second // after SIGKILL, for the group to disappear
)

// proc is a server's main process, started in its own process group (so
// nginx workers and Apache children, which stay in the group, die with it).
type proc struct {
	cmd    *exec.Cmd
	out    *lab.TailBuffer
	exited chan struct{} // closed when the leader has exited (still unreaped)
	copied chan struct{} // closed when output copying is done
	r      *os.File

	mu     sync.Mutex
	reaped bool
	err    error
}

// startProc runs name in dir, inside host's network namespace when host is
// not nil (through `ip netns exec`, which execs, so the pid is the server's).
func startProc(host *lab.Host, dir string, env []string, name string, args ...string) (*proc, error) {
	if host != nil {
		args = append([]string{"netns", "exec", host.NS, name}, args...)
		name = "ip"
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = w, w
	// Pdeathsig: if the test binary dies (say, a test timeout), so does
	// the server's main process; Sweep removes what it leaves behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("apps: start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, out: lab.NewTailBuffer(outputMax), r: r,
		exited: make(chan struct{}), copied: make(chan struct{})}
	go func() {
		io.Copy(p.out, r)
		close(p.copied)
	}()
	go func() {
		// Wait without reaping: while the leader is a zombie its pid, also
		// the group id, cannot be reused, so signalling the group is safe
		// until finish reaps it.
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if err != unix.EINTR {
				break
			}
		}
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) output() string { return string(p.out.Bytes()) }

// running reports whether the leader has not exited.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *proc) signal(sig unix.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reaped {
		unix.Kill(-p.pid(), sig)
	}
}

// stop sends SIGTERM to the group, SIGKILL after stopGrace (or at once if
// the leader exits first, for members it left behind), reaps the leader and
// waits for the rest of the group to disappear. It is idempotent and
// returns an error only if group members survive.
func (p *proc) stop() error {
	p.signal(unix.SIGTERM)
	deadline := time.Now().Add(stopGrace)
	for time.Now().Before(deadline) && len(groupPIDs(p.pid())) > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	p.signal(unix.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(goneWait):
		return fmt.Errorf("apps: pid %d does not exit after SIGKILL", p.pid())
	}
	p.mu.Lock()
	if !p.reaped {
		p.err = p.cmd.Wait()
		p.reaped = true
	}
	p.mu.Unlock()
	select {
	case <-p.copied:
	case <-time.After(time.Second): // a process that left the group holds the pipe
		p.r.Close()
		<-p.copied
	}
	deadline = time.Now().Add(goneWait)
	for {
		left := groupPIDs(p.pid())
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("apps: processes %v of group %d survive SIGKILL", left, p.pid())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// groupPIDs lists the live (non-zombie) processes of process group pgid.
func groupPIDs(pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...
		f, ok := procstat.Fields(b)
		if !ok || len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// tailFile returns the last n bytes of a file, or "" if it cannot be read.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(lab.Tail(b, n))
}

var errNotRunning = errors.New("exited during start")
