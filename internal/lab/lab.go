// Package lab builds network-namespace labs for tests, demos and benchmarks:
// hosts (network namespaces) joined by veth pairs, commands run inside a host
// with a time bound, and background processes that are killed on Close.
//
// Labs only use addresses from 198.18.0.0/15 (RFC 2544) and fd00:72:70::/48,
// only on lab links, and never install a default route.
//
// Everything needs root and iproute2 (`ip`); ForTest skips a test otherwise.
package lab

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	netnsDir = "/run/netns"
	// lockDir holds one flock'ed file per live lab so Sweep never touches
	// a lab whose process is still running.
	lockDir = "/run/rampart-lab"
)

var (
	nsRe   = regexp.MustCompile(`^(rp[0-9a-f]{6})-`)
	linkRe = regexp.MustCompile(`^(rp[0-9a-f]{6})l[0-9]+[ab]$`)
	lockRe = regexp.MustCompile(`^(rp[0-9a-f]{6})\.lock$`)
	nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`)
)

// Lab is a set of hosts and links. Its methods are safe for concurrent use.
type Lab struct {
	// ID prefixes every namespace and interface name of the lab: "rp" and 6
	// hex digits.
	ID string

	mu     sync.Mutex
	closed bool
	hosts  map[string]*Host
	links  int // links made so far; numbers interface names and subnets
	base   int // first subnet index, random so concurrent labs differ
	procs  []*Process
	undo   []func() error // resource removals, run in reverse by Close
	lock   *os.File
}

// New creates an empty lab with a fresh random ID.
func New() (*Lab, error) {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	l := &Lab{
		ID:    "rp" + hex.EncodeToString(b[:3]),
		hosts: map[string]*Host{},
		base:  int(binary.BigEndian.Uint16(b[3:])) % numSubnets,
	}
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	f, err := os.OpenFile(lockPath(l.ID), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("lab: lock %s: %w", f.Name(), err)
	}
	l.lock = f
	return l, nil
}

// AddHost creates a host: a new network namespace named ID-name with lo up.
// name is 1-32 characters of letters, digits, '-' and '_'.
func (l *Lab) AddHost(name string) (*Host, error) {
	if !nameRe.MatchString(name) {
		return nil, fmt.Errorf("lab: bad host name %q", name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errClosed
	}
	if l.hosts[name] != nil {
		return nil, fmt.Errorf("lab: host %q exists", name)
	}
	h := &Host{Name: name, NS: l.ID + "-" + name, lab: l}
	if err := ipCmd("netns", "add", h.NS); err != nil {
		return nil, err
	}
	l.undo = append(l.undo, func() error { return deleteNetns(h.NS) })
	l.hosts[name] = h
	if err := ipCmd("-n", h.NS, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return h, nil
}

// Close stops the lab's processes, then deletes its links and namespaces in
// reverse order of creation. It tries everything and returns the first error.
// Calling it again does nothing.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs, undo := l.procs, l.undo
	l.mu.Unlock()

	var first error
	keep := func(err error) {
		if first == nil && err != nil {
			first = err
		}
	}
	for i := len(procs) - 1; i >= 0; i-- {
		keep(procs[i].Stop())
	}
	for i := len(undo) - 1; i >= 0; i-- {
		keep(undo[i]())
	}
	if l.lock != nil {
		keep(os.Remove(l.lock.Name()))
		keep(l.lock.Close())
	}
	return first
}

// Sweep deletes namespaces and root-side links left by labs that crashed.
// It spares labs whose process still holds their lock and labs with any
// namespace (or lock file) younger than olderThan, so concurrent labs of
// other test binaries are never touched.
func Sweep(olderThan time.Duration) error {
	type leftovers struct {
		ns, links []string
		young     bool
	}
	ids := map[string]*leftovers{}
	get := func(id string) *leftovers {
		if ids[id] == nil {
			ids[id] = &leftovers{}
		}
		return ids[id]
	}
	young := func(path string) bool {
		fi, err := os.Stat(path)
		return err != nil || time.Since(fi.ModTime()) < olderThan
	}

	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lab: sweep: %w", err)
	}
	for _, e := range entries {
		if m := nsRe.FindStringSubmatch(e.Name()); m != nil {
			lo := get(m[1])
			lo.ns = append(lo.ns, e.Name())
			lo.young = lo.young || young(filepath.Join(netnsDir, e.Name()))
		}
	}
	locks, _ := os.ReadDir(lockDir)
	for _, e := range locks {
		if m := lockRe.FindStringSubmatch(e.Name()); m != nil {
			lo := get(m[1])
			lo.young = lo.young || young(lockPath(m[1]))
		}
	}
	links, err := rootLinks()
	if err != nil {
		return fmt.Errorf("lab: sweep: %w", err)
	}
	for _, name := range links {
		if m := linkRe.FindStringSubmatch(name); m != nil {
			lo := get(m[1])
			lo.links = append(lo.links, name)
		}
	}

	var errs []error
	for id, lo := range ids {
		if lo.young || locked(id) {
			continue
		}
		for _, name := range lo.links {
			errs = append(errs, deleteRootLink(name))
		}
		for _, ns := range lo.ns {
			errs = append(errs, deleteNetns(ns))
		}
		if err := os.Remove(lockPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// TB is the part of testing.TB that ForTest uses.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// ForTest returns a new lab closed by t.Cleanup. It skips the test when not
// root or when `ip netns` does not work, and first sweeps leftovers of
// crashed runs older than 10 minutes.
func ForTest(t TB) *Lab {
	t.Helper()
	if euid := os.Geteuid(); euid != 0 {
		t.Skipf("lab: needs root for network namespaces (euid %d)", euid)
	}
	if err := usable(); err != nil {
		t.Skipf("lab: `ip netns` is unusable here: %v", err)
	}
	_ = Sweep(10 * time.Minute) // best effort
	l, err := New()
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			if e, ok := t.(interface{ Errorf(string, ...any) }); ok {
				e.Errorf("lab: close: %v", err)
			} else {
				t.Fatalf("lab: close: %v", err)
			}
		}
	})
	return l
}

var (
	usableOnce sync.Once
	usableErr  error
)

// usable checks once that ip exists and can add and delete a namespace.
func usable() error {
	usableOnce.Do(func() {
		if _, err := exec.LookPath("ip"); err != nil {
			usableErr = err
			return
		}
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			usableErr = err
			return
		}
		ns := "rpprobe-" + hex.EncodeToString(b[:]) // not a lab name: Sweep ignores it
		if err := ipCmd("netns", "add", ns); err != nil {
			usableErr = err
			return
		}
		usableErr = deleteNetns(ns)
	})
	return usableErr
}

var errClosed = errors.New("lab: closed")

func lockPath(id string) string { return filepath.Join(lockDir, id+".lock") }

// locked reports whether a live process holds the lock of lab id.
func locked(id string) bool {
	f, err := os.OpenFile(lockPath(id), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}
