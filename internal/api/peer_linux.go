package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
)

type peerKey struct{}

// peerCred is the uid and pid of the process at the other end of a unix
// connection, or the error that kept us from knowing.
type peerCred struct {
	uid, pid int
	err      error
}

// peerConnContext records each unix connection's SO_PEERCRED.
func peerConnContext(ctx context.Context, c net.Conn) context.Context {
	pc := peerCred{uid: -1, pid: -1}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		pc.err = fmt.Errorf("not a unix connection")
		return context.WithValue(ctx, peerKey{}, pc)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		pc.err = err
		return context.WithValue(ctx, peerKey{}, pc)
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		credErr = err
	}
	if credErr != nil {
		pc.err = credErr
	} else {
		pc.uid, pc.pid = int(cred.Uid), int(cred.Pid)
	}
	return context.WithValue(ctx, peerKey{}, pc)
}

// defaultPeerAllowed admits root and the agent's own effective user.
func defaultPeerAllowed(uid uint32) bool {
	return uid == 0 || int(uid) == os.Geteuid()
}

// peerGate answers 403 to peers that are neither root nor the agent's user.
func (s *Server) peerGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pc, ok := r.Context().Value(peerKey{}).(peerCred)
		switch {
		case !ok || pc.err != nil:
			s.log.Warn("unix peer credentials unknown", "err", pc.err)
			writeError(w, http.StatusForbidden, "cannot check who is calling", "the agent could not read the caller's credentials (SO_PEERCRED)")
			return
		case !s.peerAllowed(uint32(pc.uid)):
			s.log.Warn("unix peer refused", "uid", pc.uid, "pid", pc.pid)
			writeError(w, http.StatusForbidden, fmt.Sprintf("uid %d may not use the agent's API", pc.uid),
				"only root and the agent's own user may; run the command with sudo")
			return
		}
		next.ServeHTTP(w, r)
	})
}
