package apps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rampart-shield/rampart/internal/lab"
)

// npmTimeout bounds a first `npm ci` (7 small packages).
const npmTimeout = 3 * time.Minute

// StartNode starts the Node.js app (assets/node/server.js): one process,
// one event loop, listening on opts.Addr. Its node_modules is installed
// into opts.CacheDir by `npm ci` from the committed package-lock.json the
// first time (and again whenever the lock file changes).
func StartNode(ctx context.Context, opts Options) (*Server, error) {
	node, err := lookPath("node", "nodejs")
	if err != nil {
		return nil, unavailable("node: %v", err)
	}
	modules, err := NodeModules(ctx, opts.CacheDir)
	if err != nil {
		return nil, err
	}
	addr, err := listenAddr(opts)
	if err != nil {
		return nil, err
	}
	dir, err := newDir(Node)
	if err != nil {
		return nil, err
	}
	if err := writeFile(dir, "server.js", asset("node/server.js")); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("apps: %w", err)
	}
	host, port, _ := net.SplitHostPort(addr)
	s := &Server{Name: Node, Addr: addr, URL: "http://" + addr, Dir: dir,
		attacks: nodeAttacks, routes: nodeRoutes}
	env := []string{"NODE_PATH=" + modules, "NODE_ENV=production"}
	// --no-regexp-tier-up: V8 otherwise interprets a regexp's first run on
	// a short subject and compiles it only from the second, so a crafted
	// request's cost would depend on the server's history. Compiled from
	// the start, it costs what it costs on a warmed-up server.
	args := []string{"--no-regexp-tier-up", filepath.Join(dir, "server.js"), host, port}
	if err := launch(ctx, s, opts, env, node, args...); err != nil {
		return nil, err
	}
	return s, nil
}

// NodeModules returns a node_modules directory installed by `npm ci
// --no-audit --no-fund --ignore-scripts` from the embedded lock file,
// under cacheDir (see Options.CacheDir), installing it if missing. The
// error wraps ErrUnavailable when npm is missing or the install fails
// (usually: no registry).
func NodeModules(ctx context.Context, cacheDir string) (string, error) {
	if cacheDir == "" {
		cacheDir = defaultCacheDir()
	}
	lock := asset("node/package-lock.json")
	sum := sha256.Sum256(lock)
	final := filepath.Join(cacheDir, "node-"+hex.EncodeToString(sum[:6]))
	modules := filepath.Join(final, "node_modules")
	if _, err := os.Stat(filepath.Join(modules, ".package-lock.json")); err == nil {
		return modules, nil
	}
	npm, err := lookPath("npm")
	if err != nil {
		return "", unavailable("npm (to install the Node app's packages): %v", err)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("apps: %w", err)
	}
	sweepInstalls(cacheDir)
	tmp, err := os.MkdirTemp(cacheDir, filepath.Base(final)+".tmp-")
	if err != nil {
		return "", fmt.Errorf("apps: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("apps: %w", err)
	}
	for _, f := range []string{"package.json", "package-lock.json"} {
		if err := writeFile(tmp, f, asset("node/"+f)); err != nil {
			return "", fmt.Errorf("apps: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, npmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(),
		"npm_config_cache="+filepath.Join(cacheDir, "npm"),
		"npm_config_update_notifier=false",
		"npm_config_loglevel=warn")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", unavailable("npm ci in %s (registry unreachable?): %v\n%s", tmp, err, lab.Tail(out, 2048))
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another process may have won the race.
		if _, serr := os.Stat(filepath.Join(modules, ".package-lock.json")); serr != nil {
			return "", fmt.Errorf("apps: install node_modules: %w", err)
		}
	}
	return modules, nil
}

// sweepInstalls removes temporary installs older than an hour, left by
// crashed runs.
func sweepInstalls(cacheDir string) {
	ents, _ := os.ReadDir(cacheDir)
	for _, e := range ents {
		if !strings.Contains(e.Name(), ".tmp-") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.RemoveAll(filepath.Join(cacheDir, e.Name()))
		}
	}
}

func defaultCacheDir() string {
	if d := os.Getenv("RAMPART_LAB_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "rampart-lab")
	}
	return filepath.Join(os.TempDir(), "rampart-lab-cache")
}

// lookPath finds the first of names in PATH or the usual system dirs.
func lookPath(names ...string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
		for _, d := range []string{"/usr/sbin", "/usr/bin", "/usr/local/bin"} {
			p := filepath.Join(d, n)
			if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", errors.New(strings.Join(names, " or ") + " not found")
}
