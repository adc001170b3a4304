package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Host is a network namespace of a lab.
type Host struct {
	Name string // name given to AddHost
	NS   string // netns name, as in `ip netns exec NS`

	lab *Lab
}

// NSPath is the namespace's bind mount, usable with setns(2).
func (h *Host) NSPath() string { return netnsDir + "/" + h.NS }

// Run runs a command inside the host's namespace and returns its combined
// output. The command's whole process group is killed when ctx ends or, if
// timeout > 0, when timeout passes, and also when the command exits (no
// leftovers). The error includes the tail of the output.
func (h *Host) Run(ctx context.Context, timeout time.Duration, name string, args ...string) ([]byte, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	p, err := h.start(runOutputMax, name, args...)
	if err != nil {
		return nil, err
	}
	killed := false
	select {
	case <-p.exited:
	case <-ctx.Done():
		killed = true
		p.signal(unix.SIGKILL)
		<-p.exited
	}
	p.finish()
	out := p.out.Bytes()
	err = p.err
	if killed {
		err = fmt.Errorf("killed: %w", context.Cause(ctx))
	}
	if err != nil {
		return out, fmt.Errorf("lab: %s: %s %q: %w\n%s", h.NS, name, args, err, Tail(out, 2048))
	}
	return out, nil
}

// Start runs a command in the background inside the host's namespace, in its
// own process group. Lab.Close stops it.
func (h *Host) Start(name string, args ...string) (*Process, error) {
	l := h.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errClosed
	}
	p, err := h.start(outputMax, name, args...)
	if err != nil {
		return nil, err
	}
	l.procs = append(l.procs, p)
	return p, nil
}

// Do runs fn on an OS thread switched into the host's namespace, then
// switches the thread back. Only fn's own goroutine is in the namespace:
// goroutines it starts are not. Sockets opened by fn stay in the namespace.
// If switching back fails the thread stays locked, so Go discards it.
func (h *Host) Do(fn func() error) (err error) {
	target, err := unix.Open(h.NSPath(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("lab: open %s: %w", h.NSPath(), err)
	}
	defer unix.Close(target)

	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: open own netns: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: setns %s: %w", h.NS, err)
	}
	defer func() { // deferred so a panicking fn still restores
		if rerr := unix.Setns(orig, unix.CLONE_NEWNET); rerr != nil {
			err = errors.Join(err, fmt.Errorf("lab: restore netns (thread discarded): %w", rerr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

var pingRe = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (packets )?received`)

// Ping sends count ICMP echo requests to addr, one every interval (200ms if
// interval <= 0), and returns how many replies came back. Lost replies are
// not an error.
func (h *Host) Ping(ctx context.Context, addr netip.Addr, count int, interval time.Duration) (int, error) {
	if count <= 0 {
		return 0, errors.New("lab: ping count must be > 0")
	}
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	timeout := time.Duration(count)*interval + 5*time.Second
	out, err := h.Run(ctx, timeout, "ping", "-n", "-q",
		"-c", strconv.Itoa(count),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', -1, 64),
		"-W", "1", addr.String())
	m := pingRe.FindSubmatch(out)
	if m == nil {
		if err == nil {
			err = fmt.Errorf("lab: ping: no summary in output: %s", Tail(out, 512))
		}
		return 0, err
	}
	return strconv.Atoi(string(m[2]))
}
