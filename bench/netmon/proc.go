package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// bg is a command run in the background in the root network namespace, in
// its own process group, so stop kills it and everything it started. (Lab
// hosts run their processes through lab.Host.Start, which does the same.)
type bg struct {
	name   string
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{} // closed when the leader exited (still unreaped)
	once   sync.Once
	err    error
}

func startBG(name string, args ...string) (*bg, error) {
	p := &bg{name: name, out: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		// Wait without reaping: while the leader is a zombie its pid (the
		// group id) cannot be reused, so signalling the group stays safe.
		var info unix.Siginfo
		for unix.Waitid(unix.P_PID, p.cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
		}
		close(p.exited)
	}()
	return p, nil
}

func (p *bg) pid() int { return p.cmd.Process.Pid }

// running reports whether the leader has not exited yet.
func (p *bg) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the group, SIGKILL after grace, then kills what is
// left of the group and reaps the leader. It returns the leader's exit
// error unless a signal of ours ended it.
func (p *bg) stop(grace time.Duration) error {
	p.once.Do(func() {
		unix.Kill(-p.pid(), unix.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(grace):
			unix.Kill(-p.pid(), unix.SIGKILL)
			<-p.exited
		}
		unix.Kill(-p.pid(), unix.SIGKILL)
		err := p.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				err = nil
			}
		}
		p.err = err
	})
	return p.err
}

func (p *bg) output() string { return tailString(p.out.Bytes(), 2048) }

// lockedBuffer keeps a command's output (both pipes write to it).
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 1<<20 {
		b.b.Reset()
	}
	return b.b.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.b.Bytes()...)
}
