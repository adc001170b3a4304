package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/probe"
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startTCP serves s on a loopback port with token; the returned stop ends
// the server and checks it returned cleanly and promptly.
func startTCP(t *testing.T, s *Server, token string) (url string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.ServeTCPListener(ctx, ln, token) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("ServeTCPListener: %v", err)
			}
		case <-time.After(3 * time.Second):
			t.Error("server did not shut down within 3 s")
		}
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

func TestTCPAuth(t *testing.T) {
	s, _ := newServer(t, seeded(), Options{})
	url, _ := startTCP(t, s, "s3cret")
	tests := []struct {
		name, path, auth string
		code             int
		want             string
	}{
		{"missing", "/v1/health", "", 401, "missing bearer token"},
		{"wrong", "/v1/health", "Bearer nope", 401, "wrong bearer token"},
		{"wrong scheme", "/v1/health", "Basic czNjcmV0", 401, "wrong bearer token"},
		{"prefix of token", "/v1/health", "Bearer s3cre", 401, "wrong"},
		{"right", "/v1/health", "Bearer s3cret", 200, `"status":"ok"`},
		{"metrics need it too", "/metrics", "", 401, "missing"},
		{"metrics with it", "/metrics", "Bearer s3cret", 200, "go_goroutines"},
		{"unknown path still needs it", "/x", "", 401, "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", url+tt.path, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body := readAll(t, resp)
			if resp.StatusCode != tt.code || !strings.Contains(body, tt.want) {
				t.Fatalf("%d %s; want %d with %q", resp.StatusCode, body, tt.code, tt.want)
			}
			if tt.code == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	var b strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestTCPRefusesEmptyToken(t *testing.T) {
	s, _ := newServer(t, seeded(), Options{})
	if err := s.ServeTCP(context.Background(), "127.0.0.1:0", ""); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("ServeTCP with empty token: %v", err)
	}
}

func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "api.sock")
	ln, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() || fi.Mode().Perm()&0o700 != 0o700 {
		t.Fatalf("parent dir: %v %v", fi, err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, mode %v; want a socket with mode 0600", err, fi.Mode())
	}
	s, _ := newServer(t, seeded(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.ServeUnixListener(ctx, ln) }()

	c := NewUnixClient(path)
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	if h, err := c.Health(rctx); err != nil || h.Version != "1.2.3-test" {
		t.Fatalf("health over the socket: %+v %v", h, err)
	}
	list, err := c.List(rctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}

	// A live socket is not stale.
	if _, err := ListenUnix(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second ListenUnix on a live socket: %v", err)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("ServeUnixListener: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("unix server did not stop")
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind after shutdown: %v", err)
	}
	if _, err := c.Health(rctx); err == nil || !strings.Contains(err.Error(), "is `rampart agent` running?") {
		t.Errorf("health after shutdown: %v", err)
	}
}

func TestUnixStaleAndForeignFiles(t *testing.T) {
	dir := t.TempDir()
	// A stale socket (nobody listening) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()
	ln, err := ListenUnix(stale)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()

	// Anything that is not a socket is left alone.
	file := filepath.Join(dir, "precious")
	os.WriteFile(file, []byte("keep me"), 0o644)
	if _, err := ListenUnix(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("ListenUnix over a file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Error("the file was touched")
	}
	if _, err := ListenUnix(dir); err == nil {
		t.Error("ListenUnix over a directory succeeded")
	}
}

func TestUnixPeerCheck(t *testing.T) {
	// Peer policy.
	if !defaultPeerAllowed(0) || !defaultPeerAllowed(uint32(os.Geteuid())) {
		t.Error("root or own user refused")
	}
	if os.Geteuid() != 12345 && defaultPeerAllowed(12345) {
		t.Error("a stranger admitted")
	}

	// Through SO_PEERCRED: a policy that refuses us yields 403.
	path := filepath.Join(t.TempDir(), "api.sock")
	s, logs := newServer(t, seeded(), Options{})
	s.peerAllowed = func(uid uint32) bool { return false }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeUnixListener(ctx, ln)
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	_, err = NewUnixClient(path).Health(rctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Msg, fmt.Sprintf("uid %d", os.Geteuid())) {
		t.Fatalf("refused peer: %v", err)
	}
	if !strings.Contains(logs.String(), "unix peer refused") {
		t.Error("refusal not logged")
	}
}

// TestUnixOtherUser runs a real client as uid 65534: the 0600 socket shuts
// it out, and with the mode opened up the peer check still answers 403.
func TestUnixOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	// The client runs as nobody, so it needs a python3 anyone may run.
	py := ""
	for _, p := range []string{"/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o001 != 0 {
			py = p
			break
		}
	}
	if py == "" {
		t.Skip("no world-executable python3")
	}
	dir, err := os.MkdirTemp("", "rampart-peer-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // let the other user reach the socket
	path := filepath.Join(dir, "api.sock")
	s, _ := newServer(t, seeded(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeUnixListener(ctx, ln)

	script := `
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("ERR", e.errno); sys.exit(0)
s.sendall(b"GET /v1/health HTTP/1.0\r\nHost: x\r\n\r\n")
print(s.makefile("rb").readline().decode().strip())
`
	asNobody := func() string {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		cmd := exec.CommandContext(cctx, py, "-c", script, path)
		cmd.SysProcAttr = nobodyAttr()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as nobody: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := asNobody(); got != "ERR 13" {
		t.Errorf("mode 0600: nobody got %q, want EACCES (ERR 13)", got)
	}
	os.Chmod(path, 0o666)
	if got := asNobody(); !strings.Contains(got, " 403 ") {
		t.Errorf("open mode: nobody got %q, want 403", got)
	}
}

func TestSSE(t *testing.T) {
	f := seeded()
	s, _ := newServer(t, f, Options{KeepAlive: 20 * time.Millisecond})
	url, _ := startTCP(t, s, "tok")
	c, err := NewClient(url, "tok")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan probe.Event, 4)
	done := make(chan error, 1)
	go func() {
		done <- c.Events(ctx, "pc", "drops", func(ev probe.Event) error { got <- ev; return nil })
	}()
	waitFor(t, "subscription", func() bool { return f.Subscribers() == 1 })
	time.Sleep(50 * time.Millisecond) // let a few keepalives pass; they must be skipped
	for i := uint64(1); i <= 2; i++ {
		if n := f.Publish(probe.Event{Probe: "pc", Stream: "drops", Seq: i, Data: []byte(fmt.Sprintf(`{"n":%d}`, i))}); n != 1 {
			t.Fatalf("published to %d subscribers", n)
		}
	}
	for i := uint64(1); i <= 2; i++ {
		select {
		case ev := <-got:
			if ev.Seq != i || ev.Stream != "drops" || string(ev.Data) != fmt.Sprintf(`{"n":%d}`, i) {
				t.Errorf("event %d: %+v", i, ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d not delivered", i)
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Events returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Events did not return after cancel")
	}
	waitFor(t, "the subscription to be cancelled", func() bool { return f.Subscribers() == 0 && f.Cancels() == 1 })
}

func TestSSEWireFormat(t *testing.T) {
	f := seeded()
	s, _ := newServer(t, f, Options{KeepAlive: 10 * time.Millisecond})
	url, stop := startTCP(t, s, "tok")
	req, _ := http.NewRequest("GET", url+"/v1/probes/pc/events/drops", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("%d %q", resp.StatusCode, ct)
	}
	waitFor(t, "subscription", func() bool { return f.Subscribers() == 1 })
	time.Sleep(30 * time.Millisecond)
	f.Publish(probe.Event{Probe: "pc", Stream: "drops", Seq: 7, Time: 99, Data: []byte(`{"x":1}`)})

	br := bufio.NewReader(resp.Body)
	var lines []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", lines, err)
		}
		lines = append(lines, line)
		if strings.HasPrefix(line, "data: ") {
			next, _ := br.ReadString('\n')
			lines = append(lines, next)
			break
		}
	}
	all := strings.Join(lines, "")
	if !strings.Contains(all, ": keepalive\n\n") {
		t.Errorf("no keepalive comment in %q", all)
	}
	if want := "event: drops\ndata: {\"probe\":\"pc\",\"stream\":\"drops\",\"seq\":7,\"time\":99,\"data\":{\"x\":1}}\n\n"; !strings.HasSuffix(all, want) {
		t.Errorf("stream %q\nwant it to end in %q", all, want)
	}

	// Shutting the server down ends open streams at once, not after the
	// grace period (stop checks it returns within 3 s).
	start := time.Now()
	stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown with an open stream took %v", d)
	}
	waitFor(t, "the subscription to be cancelled", func() bool { return f.Subscribers() == 0 })
}

func TestClientErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := NewUnixClient("/nonexistent/rampart/api.sock").List(ctx)
	want := "cannot reach the agent at /nonexistent/rampart/api.sock: is `rampart agent` running? (start it with: sudo rampart agent)"
	if err == nil || err.Error() != want {
		t.Errorf("missing socket: %v", err)
	}
	if _, err := NewClient("10.0.0.1:80", ""); err == nil {
		t.Error("URL without scheme accepted")
	}

	f := seeded()
	f.LoadErr = &probe.Error{Kind: probe.KindRejected, Msg: "verifier says no", Detail: "line 1\nline 2"}
	s, _ := newServer(t, f, Options{})
	url, _ := startTCP(t, s, "tok")
	c, _ := NewClient(url, "tok")
	_, err = c.Load(ctx, probe.LoadRequest{Name: "packet-counter"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 422 || ae.Msg != "verifier says no" || ae.Detail != "line 1\nline 2" {
		t.Errorf("load error: %#v", err)
	}
	bad, _ := NewClient(url, "wrong")
	if _, err := bad.List(ctx); !errors.As(err, &ae) || ae.Status != 401 {
		t.Errorf("wrong token: %v", err)
	}
}

func TestReadSSE(t *testing.T) {
	in := ": hello\n\nevent: a\ndata: 1\n\nid: 3\ndata: x\ndata: y\n\nevent: b\n\n"
	var got []string
	err := ReadSSE(strings.NewReader(in), func(ev string, data []byte) error {
		got = append(got, ev+"="+string(data))
		return nil
	})
	if err != nil || strings.Join(got, "|") != "a=1|=x\ny" {
		t.Fatalf("%q %v", got, err)
	}
}
