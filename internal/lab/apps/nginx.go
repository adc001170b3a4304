package apps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// nginxModules is where Debian's nginx keeps dynamic modules
// (libnginx-mod-http-ndk, libnginx-mod-http-lua).
const nginxModules = "/usr/lib/nginx/modules"

// StartNginx starts nginx (Debian's binary, never the system service) with
// its own prefix in a temporary directory: a master and opts.Workers
// workers (default 2), static files under /static/, /api/items.json, and
// two ngx_http_lua routes whose cost depends on the request, /lua/kv and
// /lua/primes (assets/lua/labwork.lua, the same code as Apache's).
func StartNginx(ctx context.Context, opts Options) (*Server, error) {
	bin, err := lookPath("nginx")
	if err != nil {
		return nil, unavailable("nginx (Debian package nginx): %v", err)
	}
	for _, m := range []string{"ndk_http_module.so", "ngx_http_lua_module.so"} {
		if _, err := os.Stat(filepath.Join(nginxModules, m)); err != nil {
			return nil, unavailable("nginx module %s (Debian package libnginx-mod-http-lua): %v", m, err)
		}
	}
	addr, err := listenAddr(opts)
	if err != nil {
		return nil, err
	}
	dir, err := newDir(Nginx)
	if err != nil {
		return nil, err
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = 2
	}
	conf := struct {
		Dir, Addr, Modules, User, Group string
		Workers                         int
	}{Dir: dir, Addr: addr, Modules: nginxModules, Workers: workers}
	if os.Geteuid() == 0 {
		conf.User, conf.Group = unprivileged()
	}
	if err := setupDir(dir, "nginx/nginx.conf.tmpl", "nginx.conf", conf, "nginx"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{Name: Nginx, Addr: addr, URL: "http://" + addr, Dir: dir,
		attacks: luaAttacks(Nginx), routes: staticRoutes,
		logs: []string{"logs/error.log"}}
	// -e: the startup error log, before the config's error_log applies.
	err = launch(ctx, s, opts, nil, bin, "-p", dir+"/", "-c", filepath.Join(dir, "nginx.conf"),
		"-e", filepath.Join(dir, "logs", "error.log"))
	if err != nil {
		return nil, err
	}
	// The first worker answers before the master has forked the others:
	// wait for all of them, so that callers see every process (a watch
	// or a CPU pin set now covers them all).
	for deadline := time.Now().Add(5 * time.Second); len(s.PIDs()) < 1+workers; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("apps: nginx runs %d processes 5 s after it answered, want a master and %d workers", len(s.PIDs()), workers)
		}
	}
	return s, nil
}
