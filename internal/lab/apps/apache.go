package apps

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
)

// apacheModules is where Debian's apache2 keeps its modules.
const apacheModules = "/usr/lib/apache2/modules"

// StartApache starts Apache httpd 2.4 (Debian's apache2 binary, never the
// system service) with its own ServerRoot in a temporary directory: static
// files under /static/, /api/items.json, and two mod_lua routes whose cost
// depends on the request, /lua/kv and /lua/primes (assets/lua/labwork.lua).
// It runs in the foreground (-DFOREGROUND) so the parent stays the group
// leader; opts.MPM picks prefork (default), event or worker.
func StartApache(ctx context.Context, opts Options) (*Server, error) {
	bin, err := lookPath("apache2", "httpd")
	if err != nil {
		return nil, unavailable("apache2 (Debian package apache2): %v", err)
	}
	mpm := opts.MPM
	if mpm == "" {
		mpm = "prefork"
	}
	if mpm != "prefork" && mpm != "event" && mpm != "worker" {
		return nil, fmt.Errorf("apps: apache MPM %q: want prefork, event or worker", mpm)
	}
	for _, m := range []string{"mod_mpm_" + mpm + ".so", "mod_lua.so", "mod_mime.so", "mod_dir.so", "mod_authz_core.so"} {
		if _, err := os.Stat(filepath.Join(apacheModules, m)); err != nil {
			return nil, unavailable("apache module %s: %v", m, err)
		}
	}
	addr, err := listenAddr(opts)
	if err != nil {
		return nil, err
	}
	dir, err := newDir(Apache)
	if err != nil {
		return nil, err
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = 8
	}
	conf := struct {
		Dir, Addr, Modules, MPM, User, Group string
		Workers, Start, Servers, Threads     int
	}{Dir: dir, Addr: addr, Modules: apacheModules, MPM: mpm, Workers: workers,
		Start: min(2, workers), Threads: min(workers, 8)}
	conf.Servers = (workers + conf.Threads - 1) / conf.Threads
	conf.Start = min(conf.Start, conf.Servers)
	if mpm != "prefork" {
		conf.Workers = conf.Servers * conf.Threads // a multiple of ThreadsPerChild
	} else {
		conf.Start = min(4, workers)
	}
	if os.Geteuid() == 0 {
		conf.User, conf.Group = unprivileged()
	}
	err = setupDir(dir, "apache/httpd.conf.tmpl", "httpd.conf", conf, "apache")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{Name: Apache, Addr: addr, URL: "http://" + addr, Dir: dir,
		attacks: luaAttacks(Apache), routes: staticRoutes,
		logs: []string{"logs/error.log"}}
	err = launch(ctx, s, opts, nil, bin, "-d", dir, "-f", filepath.Join(dir, "httpd.conf"), "-DFOREGROUND")
	if err != nil {
		return nil, err
	}
	return s, nil
}

// setupDir lays out a Lua web server's directory: config from tmpl, the
// shared Lua module and the server's handlers in lua/, documents in htdocs/,
// and empty run/, logs/ and tmp/.
func setupDir(dir, tmpl, conf string, data any, handlers string) error {
	for _, d := range []string{"run", "logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("apps: %w", err)
		}
	}
	if err := renderTemplate(dir, tmpl, conf, data); err != nil {
		return err
	}
	if err := copyAssets(dir, "lua", "lua"); err != nil {
		return fmt.Errorf("apps: %w", err)
	}
	if err := writeFile(dir, "lua/handlers.lua", asset(handlers+"/handlers.lua")); err != nil {
		return fmt.Errorf("apps: %w", err)
	}
	if err := writeStatic(dir); err != nil {
		return fmt.Errorf("apps: %w", err)
	}
	return nil
}

// unprivileged names the user and group that Apache children and nginx
// workers switch to when started by root.
func unprivileged() (string, string) {
	group := "nogroup"
	if _, err := user.LookupGroup(group); err != nil {
		group = "nobody"
	}
	return "nobody", group
}
