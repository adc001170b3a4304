package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ListenUnix prepares and listens on the unix socket path: it creates the
// parent directory (0755) when missing, removes a stale socket (one nobody
// answers on), refuses to touch anything that is not a socket, and sets the
// socket's mode to 0600 before anything is accepted.
func ListenUnix(path string) (*net.UnixListener, error) {
	if path == "" {
		return nil, errors.New("no socket path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket: refusing to remove it; choose another path with --socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use: another agent is listening there", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// Connections may queue between bind and chmod, but none is accepted
	// before the mode is set, and every request is checked by peer uid.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket mode: %w", err)
	}
	return ln, nil
}

// ServeUnix serves the API on the unix socket path until ctx ends. Only
// root and the agent's own user may talk to it (file mode 0600 and the
// peer's credentials); others get 403.
func (s *Server) ServeUnix(ctx context.Context, path string) error {
	ln, err := ListenUnix(path)
	if err != nil {
		return err
	}
	return s.ServeUnixListener(ctx, ln)
}

// ServeUnixListener is ServeUnix on a listener from ListenUnix. The socket
// file is removed when it returns.
func (s *Server) ServeUnixListener(ctx context.Context, ln *net.UnixListener) error {
	path := ln.Addr().String()
	ln.SetUnlinkOnClose(true)
	err := s.serve(ctx, ln, s.peerGate, peerConnContext)
	if rmErr := os.Remove(path); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
		err = rmErr
	}
	return err
}

// ServeTCP serves the API on addr until ctx ends. Every request must carry
// "Authorization: Bearer TOKEN"; an empty token is refused.
func (s *Server) ServeTCP(ctx context.Context, addr, token string) error {
	if token == "" {
		return errors.New("refusing to serve TCP without a token")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.ServeTCPListener(ctx, ln, token)
}

// ServeTCPListener is ServeTCP on a listener the caller opened.
func (s *Server) ServeTCPListener(ctx context.Context, ln net.Listener, token string) error {
	if token == "" {
		ln.Close()
		return errors.New("refusing to serve TCP without a token")
	}
	gate := bearerGate(token)
	return s.serve(ctx, ln, func(next http.Handler) http.Handler {
		return gate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Whoever manages the agent over TCP is never blocked by it.
			if s.resp != nil {
				if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
					s.resp.AllowPeer(ap.Addr())
				}
			}
			next.ServeHTTP(w, r)
		}))
	}, nil)
}

// serve runs an http.Server on ln until ctx ends, then shuts it down
// gracefully: new connections stop, requests in flight get shutdownGrace to
// finish, event streams end at once.
func (s *Server) serve(ctx context.Context, ln net.Listener, gate func(http.Handler) http.Handler, connCtx func(context.Context, net.Conn) context.Context) error {
	closing := make(chan struct{})
	srv := &http.Server{
		Handler:           s.chain(gate),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slogStdLogger(s.log),
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.Background(), shutdownKey{}, closing)
		},
		ConnContext: connCtx,
	}
	srv.RegisterOnShutdown(func() { close(closing) })

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("API listening", "addr", ln.Addr().String(), "network", ln.Addr().Network())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return nil // requests were cut short; not the caller's problem
	}
	return err
}

// bearerGate admits requests that carry the token.
func bearerGate(token string) func(http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			auth := r.Header.Get("Authorization")
			given, ok := strings.CutPrefix(auth, "Bearer ")
			got := sha256.Sum256([]byte(strings.TrimSpace(given)))
			// Hashing first makes the comparison constant-time in the
			// token's length too.
			if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="rampart"`)
				msg := "missing bearer token"
				if auth != "" {
					msg = "wrong bearer token"
				}
				writeError(w, http.StatusUnauthorized, msg,
					"send Authorization: Bearer TOKEN with the token the agent was given (--token-file); the CLI takes --token-file or RAMPART_TOKEN")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
