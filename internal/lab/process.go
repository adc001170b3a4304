package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	outputMax    = 64 << 10 // output kept by a Process
	runOutputMax = 16 << 20 // output kept by Run
	stopGrace    = 2 * time.Second
)

// Process is a command started in the background by Host.Start.
type Process struct {
	cmd    *exec.Cmd
	out    *TailBuffer
	r      *os.File      // read end of the output pipe
	exited chan struct{} // closed when the leader has exited (still unreaped)
	copied chan struct{} // closed when output copying is done

	mu     sync.Mutex
	reaped bool
	err    error // from cmd.Wait, once reaped
}

// start runs name inside the namespace in a new process group, with stdout
// and stderr going to a buffer that keeps the last max bytes.
func (h *Host) start(max int, name string, args ...string) (*Process, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("lab: %s: start %s: %w", h.NS, name, err)
	}
	p := &Process{
		cmd: cmd, out: NewTailBuffer(max), r: r,
		exited: make(chan struct{}), copied: make(chan struct{}),
	}
	go func() {
		io.Copy(p.out, r)
		close(p.copied)
	}()
	go func() {
		// Wait without reaping: while the leader is a zombie its pid, which
		// is also the process group id, cannot be reused, so signalling the
		// group stays safe until finish reaps it.
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

// Pid is the process id of the command, which is also its process group id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output returns the last 64 KiB of the combined stdout and stderr so far.
func (p *Process) Output() string { return string(p.out.Bytes()) }

// Wait waits for the command to exit, kills whatever is left in its process
// group and returns the command's error.
func (p *Process) Wait() error {
	<-p.exited
	p.finish()
	return p.err
}

// Stop sends SIGTERM to the process group, then SIGKILL after a grace period,
// and waits for the command. An exit caused by the signal is not an error.
func (p *Process) Stop() error {
	p.signal(unix.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
		p.signal(unix.SIGKILL)
		<-p.exited
	}
	p.finish()
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return nil
	}
	return p.err
}

// signal signals the process group unless the leader was already reaped.
func (p *Process) signal(sig unix.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reaped {
		unix.Kill(-p.cmd.Process.Pid, sig)
	}
}

// finish kills what is left of the group, reaps the leader and collects the
// output. The leader must have exited.
func (p *Process) finish() {
	p.mu.Lock()
	if !p.reaped {
		unix.Kill(-p.cmd.Process.Pid, unix.SIGKILL)
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
}

// TailBuffer is an io.Writer keeping the last bytes written (a process's
// output, for error messages).
type TailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

// NewTailBuffer keeps the last max bytes.
func NewTailBuffer(max int) *TailBuffer { return &TailBuffer{max: max} }

func (b *TailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

// Bytes returns a copy of the bytes kept.
func (b *TailBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), Tail(b.buf, b.max)...)
}

// Tail returns the last n bytes of b.
func Tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
