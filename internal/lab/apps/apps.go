// Package apps runs real servers with real weaknesses for application-layer
// DoS tests: a Node.js app whose npm dependencies are pinned to versions
// with published ReDoS CVEs, and Apache httpd (mod_lua) and nginx
// (ngx_http_lua) instances with a CPU-heavy Lua route whose cost depends on
// the request. Each server has benign routes of mixed work and sizes, a
// realistic benign mix for the load generator (StartLoad) and a list of
// attacks (crafted requests, RunAttack).
//
// A server lives in its own temporary directory (config, documents, logs),
// listens on its own address (127.0.0.1 with a free port by default, or an
// address inside a lab host's network namespace) and is never the system
// service. Close kills every process of the server and removes the
// directory.
//
// Start* return an error wrapping ErrUnavailable when a binary, module or
// the npm registry is missing; ForTest turns that into a skip.
package apps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/rampart-shield/rampart/internal/lab"
)

// Server names, as in Server.Name and ForTest.
const (
	Node   = "node"
	Apache = "apache"
	Nginx  = "nginx"
)

const defaultStartTimeout = 20 * time.Second

// ErrUnavailable is wrapped by start errors caused by the environment (a
// missing binary or module, an unreachable npm registry), not by a bug.
var ErrUnavailable = errors.New("unavailable")

type unavailableError struct{ reason string }

func (e *unavailableError) Error() string        { return "apps: unavailable: " + e.reason }
func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }

func unavailable(format string, args ...any) error {
	return &unavailableError{reason: fmt.Sprintf(format, args...)}
}

// Options configure a server. The zero value is a server on 127.0.0.1 with
// a free port.
type Options struct {
	// Addr is the listen address, "IP:port". Port 0 or an empty Addr picks
	// a free port; an empty IP means 127.0.0.1.
	Addr string
	// Host runs the server in this lab host's network namespace. Addr's IP
	// must then be one of the host's addresses (127.0.0.1 is the host's own
	// loopback, reachable only from inside it). Clients in other hosts
	// reach it with Dialer(thatHost).
	Host *lab.Host
	// Workers is the number of nginx worker processes (default 2) or
	// Apache's MaxRequestWorkers (default 8). The Node app has one.
	Workers int
	// MPM is Apache's multi-processing module: "prefork" (default),
	// "event" or "worker".
	MPM string
	// CacheDir holds the Node app's node_modules, installed once by
	// `npm ci` (default $RAMPART_LAB_CACHE, else <user cache dir>/rampart-lab).
	CacheDir string
	// StartTimeout bounds the start, until the server answers (default
	// 20 s; a first `npm ci` has its own bound of npmTimeout).
	StartTimeout time.Duration
}

// DialFunc dials like net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Dialer returns a DialFunc whose sockets are opened in host's network
// namespace, for clients of servers in a lab.
func Dialer(host *lab.Host) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := host.Do(func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// Server is a running lab server.
type Server struct {
	Name    string // Node, Apache or Nginx
	Addr    string // listen address, "IP:port"
	URL     string // "http://" + Addr, no trailing slash
	MainPID int    // node; the Apache parent; the nginx master. Also the process group id.
	Dir     string // temporary directory: config, documents, logs

	host    *lab.Host
	proc    *proc
	attacks []Attack
	routes  []Route
	logs    []string // log files under Dir, for Output

	closeOnce sync.Once
	closeErr  error
}

// PIDs lists the server's live processes: the main process and its workers
// or children (everything in its process group). Empty once closed.
func (s *Server) PIDs() []int { return groupPIDs(s.MainPID) }

// Running reports whether the main process is still alive.
func (s *Server) Running() bool { return s.proc.running() }

// Output returns the tail of the server's stdout/stderr and error log.
func (s *Server) Output() string {
	out := s.proc.output()
	for _, l := range s.logs {
		if t := tailFile(filepath.Join(s.Dir, l), 8<<10); t != "" {
			out += "\n--- " + l + " ---\n" + t
		}
	}
	return out
}

// Attacks lists the crafted requests this server is vulnerable to.
func (s *Server) Attacks() []Attack { return append([]Attack(nil), s.attacks...) }

// Attack returns the attack of the given kind.
func (s *Server) Attack(kind string) (Attack, error) {
	for _, a := range s.attacks {
		if a.Kind == kind {
			return a, nil
		}
	}
	return Attack{}, fmt.Errorf("apps: %s has no attack %q", s.Name, kind)
}

// Routes is the server's default benign mix, the one StartLoad uses.
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

// Dial is a DialFunc that reaches the server from its own namespace (the
// lab host's if it runs in one).
func (s *Server) Dial() DialFunc {
	if s.host != nil {
		return Dialer(s.host)
	}
	return (&net.Dialer{}).DialContext
}

// Client returns an HTTP client of the server's own namespace, without
// keep-alive, with the given timeout.
func (s *Server) Client(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: s.Dial(), DisableKeepAlives: true,
	}}
}

// WaitReady waits until the server answers its health route within 1 s,
// for instance after a crafted request kept it busy.
func (s *Server) WaitReady(ctx context.Context, timeout time.Duration) error {
	return waitHTTP(ctx, s, timeout)
}

// Close kills every process of the server, bounded in time, and removes its
// directory. Calling it again returns the first result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		err := s.proc.stop()
		s.closeErr = errors.Join(err, os.RemoveAll(s.Dir))
	})
	return s.closeErr
}

// TB is the part of testing.TB that ForTest uses.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Cleanup(func())
}

// ForTest starts the server called name (Node, Apache or Nginx), closed by
// t.Cleanup. It skips the test when not root (the lab runs as root in CI,
// where the servers drop privileges to nobody) or when the server is
// unavailable here.
func ForTest(t TB, name string, opts Options) *Server {
	t.Helper()
	return startForTest(t, npmTimeout+time.Minute, func(ctx context.Context) (*Server, error) {
		switch name {
		case Node:
			return StartNode(ctx, opts)
		case Apache:
			return StartApache(ctx, opts)
		case Nginx:
			return StartNginx(ctx, opts)
		}
		return nil, fmt.Errorf("apps: no server %q", name)
	})
}

// startForTest starts a lab server for a test, within timeout, and closes
// it at the test's cleanup; it skips the test when not root or when the
// server is unavailable here.
func startForTest[S interface{ Close() error }](t TB, timeout time.Duration, start func(context.Context) (S, error)) S {
	t.Helper()
	if euid := os.Geteuid(); euid != 0 {
		t.Skipf("apps: lab servers are tested as root (euid %d)", euid)
	}
	_ = Sweep(10 * time.Minute) // best effort: leftovers of crashed runs
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := start(ctx)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("%v", err)
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return s
}

// listenAddr resolves opts.Addr to "IP:port", picking a free port for
// port 0 (by binding it in the right namespace, then releasing it).
func listenAddr(opts Options) (string, error) {
	a := opts.Addr
	if a == "" {
		a = "127.0.0.1:0"
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", fmt.Errorf("apps: listen address %q: %w", opts.Addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("apps: listen address %q: %w", opts.Addr, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("apps: listen address %q: bad port", opts.Addr)
	} else if p > 0 {
		return net.JoinHostPort(ip.String(), port), nil
	}
	var got string
	pick := func() error {
		l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		if err != nil {
			return err
		}
		got = l.Addr().String()
		return l.Close()
	}
	if opts.Host != nil {
		err = opts.Host.Do(pick)
	} else {
		err = pick()
	}
	if err != nil {
		return "", fmt.Errorf("apps: pick a port on %s: %w", ip, err)
	}
	return got, nil
}

// newDir makes the server's temporary directory, traversable by others
// (Apache children and nginx workers run as nobody when started by root).
func newDir(name string) (string, error) {
	base := os.TempDir()
	if fi, err := os.Stat(base); err != nil || fi.Mode().Perm()&0o001 == 0 {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "rampart-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("apps: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("apps: %w", err)
	}
	if err := writeOwner(dir); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("apps: %w", err)
	}
	return dir, nil
}

// launch starts the server's main process and waits until it answers.
// On failure everything is cleaned up and the error carries the output.
func launch(ctx context.Context, s *Server, opts Options, env []string, name string, args ...string) error {
	p, err := startProc(opts.Host, s.Dir, env, name, args...)
	if err != nil {
		return err
	}
	s.proc, s.MainPID, s.host = p, p.pid(), opts.Host
	if err := writeServer(s.Dir, s.MainPID, name); err != nil {
		s.Close()
		return fmt.Errorf("apps: %w", err)
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = defaultStartTimeout
	}
	if err := waitHTTP(ctx, s, timeout); err != nil {
		out := s.Output()
		s.Close()
		return fmt.Errorf("apps: %s on %s: %w\n%s", s.Name, s.Addr, err, out)
	}
	return nil
}

// waitHTTP polls the server's first route until it answers 200.
func waitHTTP(ctx context.Context, s *Server, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := s.Client(time.Second)
	var last error
	for {
		if !s.proc.running() {
			return errNotRunning
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/", nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not answering after %v: %v", timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
