package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-shield/rampart/internal/api"
	"github.com/rampart-shield/rampart/internal/api/apitest"
	"github.com/rampart-shield/rampart/internal/probe"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const testToken = "t0ken"

// startAgent serves a fake manager over TCP with testToken.
func startAgent(t *testing.T, f *apitest.Fake) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		api.NewServer(f, api.Options{Version: "9.9.9"}).ServeTCPListener(ctx, ln, testToken)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return "http://" + ln.Addr().String()
}

type result struct {
	stdout, stderr string
	code           int
}

// rampart runs the CLI with env as its environment, bounded to 10 s.
func rampart(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errb syncBuffer
	code := run(ctx, args, &out, &errb, func(k string) string { return env[k] })
	return result{out.String(), errb.String(), code}
}

func seeded() *apitest.Fake {
	f := apitest.New()
	f.Add(probe.ProbeInfo{
		Name: "pc", Origin: "builtin", LoadedAt: time.Now().Add(-3 * time.Minute),
		Programs: []probe.ProgramInfo{{Name: "count", Hook: "xdp:eth0", Type: "XDP", Mode: "xdp-driver", ID: 7}},
		Metrics:  []probe.MetricInfo{{Name: "packets", Map: "counts", MapType: "PerCPUHash", Type: "counter", SwapOnRead: true}},
		Events:   []probe.EventInfo{{Name: "drops", Map: "rb", Type: "struct drop", Received: 5}},
		Swapping: true, Swaps: 12,
	}, probe.MetricValue{Name: "packets", Type: "counter", Value: []probe.Entry{
		{Key: json.RawMessage(`{"proto": 6}`), Value: json.RawMessage(`{"packets": 42, "bytes": 4200}`)},
	}})
	return f
}

func TestProbeLoadManifest(t *testing.T) {
	f := seeded()
	srv := startAgent(t, f)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "manifest.yaml"), []byte(`
name: counter
object: build/counter.o
programs:
  - name: count
    hook: xdp
metrics:
  - name: packets
    map: counts
    type: counter
    swap-on-read: true
parameters:
  N: 16
`), 0o644)
	os.MkdirAll(filepath.Join(dir, "build"), 0o755)
	os.WriteFile(filepath.Join(dir, "build", "counter.o"), []byte("\x7fELF..."), 0o644)

	r := rampart(t, nil, "--server", srv, "--token", testToken, "probe", "load", "mine",
		"--manifest", filepath.Join(dir, "manifest.yaml"), "--attach", "xdp:eth1", "--param", "N=32", "--iface", "eth9")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"loaded mine (user)", "count → xdp:eth1", "packets", "counter, swap-on-read", "read it with: rampart probe metrics mine"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	loads := f.Loads()
	if len(loads) != 1 {
		t.Fatalf("%d loads", len(loads))
	}
	req := loads[0]
	if req.Name != "mine" || string(req.Object) != "\x7fELF..." || req.Iface != "eth9" ||
		req.Params["N"] != "32" || len(req.Attach) != 1 || req.Manifest == nil || req.Manifest.Object != "" {
		t.Errorf("load request %+v", req)
	}
}

func TestProbeLoadBuiltin(t *testing.T) {
	f := seeded()
	srv := startAgent(t, f)
	r := rampart(t, nil, "--server", srv, "--token", testToken, "probe", "load", "packet-counter", "--iface", "eth0")
	if r.code != 0 || !strings.Contains(r.stdout, "loaded packet-counter (builtin)") || !strings.Contains(r.stdout, "xdp:eth0") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	req := f.Loads()[0]
	if req.Manifest != nil || req.Object != nil || req.Name != "packet-counter" || req.Iface != "eth0" {
		t.Errorf("built-in request %+v", req)
	}
}

func TestProbeLoadErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("name: x\nprograms: []\n"), 0o644)
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("name: x\nprogramz: []\n"), 0o644)

	tests := []struct {
		name    string
		loadErr error
		args    []string
		code    int
		stderr  []string
	}{
		{name: "invalid manifest", args: []string{"probe", "load", "x", "--manifest", bad}, code: 1,
			stderr: []string{"rampart: " + bad + ": manifest: no programs"}},
		{name: "manifest typo", args: []string{"probe", "load", "x", "--manifest", typo}, code: 1,
			stderr: []string{`unknown field "programz"`}},
		{name: "missing manifest", args: []string{"probe", "load", "x", "--manifest", filepath.Join(dir, "nope.yaml")}, code: 1,
			stderr: []string{"no such file"}},
		{name: "rejected", loadErr: &probe.Error{Kind: probe.KindRejected, Msg: "the verifier rejected program count", Detail: "0: (b7) r0 = 0\nR1 invalid mem access 'scalar'"},
			args: []string{"probe", "load", "packet-counter"}, code: 1,
			stderr: []string{"rampart: the verifier rejected program count\n    0: (b7) r0 = 0\n    R1 invalid mem access 'scalar'\n"}},
		{name: "unknown builtin", args: []string{"probe", "load", "zzz"}, code: 1, stderr: []string{`rampart: no built-in probe "zzz"`}},
		{name: "object without manifest", args: []string{"probe", "load", "x", "--object", "x.o"}, code: 2,
			stderr: []string{"need --manifest", "Run 'rampart probe load --help' for usage."}},
		{name: "object and source", args: []string{"probe", "load", "x", "--object", "x.o", "--source", "x.c"}, code: 2},
		{name: "bad param", args: []string{"probe", "load", "x", "--param", "N"}, code: 2, stderr: []string{"want NAME=VALUE"}},
		{name: "bad name", args: []string{"probe", "load", "Bad!"}, code: 2},
		{name: "no name", args: []string{"probe", "load"}, code: 2, stderr: []string{"takes one argument"}},
		{name: "unknown flag", args: []string{"probe", "load", "x", "--objekt", "x.o"}, code: 2, stderr: []string{"unknown flag: --objekt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := seeded()
			f.LoadErr = tt.loadErr
			srv := startAgent(t, f)
			r := rampart(t, nil, append([]string{"--server", srv, "--token", testToken}, tt.args...)...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", r.code, tt.code, r.stdout, r.stderr)
			}
			for _, want := range tt.stderr {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
			if !strings.HasPrefix(r.stderr, "rampart: ") {
				t.Errorf("stderr %q does not start with rampart:", r.stderr)
			}
			if tt.code == 2 || strings.Contains(tt.name, "manifest") {
				if n := len(f.Loads()); n != 0 {
					t.Errorf("%d requests sent despite the error", n)
				}
			}
		})
	}
}

func TestProbeList(t *testing.T) {
	srv := startAgent(t, seeded())
	r := rampart(t, nil, "--server", srv, "--token", testToken, "probe", "list")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NAME ORIGIN PROGRAMS METRICS SWAPS LOADED" {
		t.Fatalf("table:\n%s", r.stdout)
	}
	if got := strings.Join(strings.Fields(lines[1]), " "); got != "pc builtin 1 1 12 3m ago" {
		t.Errorf("row %q", got)
	}

	empty := startAgent(t, apitest.New())
	r = rampart(t, nil, "--server", empty, "--token", testToken, "probe", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "no probes loaded") {
		t.Errorf("empty list: %d %q", r.code, r.stdout)
	}
}

func TestProbeMetrics(t *testing.T) {
	f := seeded()
	srv := startAgent(t, f)
	base := []string{"--server", srv, "--token", testToken, "probe", "metrics"}

	r := rampart(t, nil, append(base, "pc", "--json")...)
	var vals []probe.MetricValue
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &vals) != nil || len(vals) != 1 || vals[0].Name != "packets" || len(vals[0].Value) != 1 {
		t.Fatalf("--json: %d %q %s", r.code, r.stdout, r.stderr)
	}

	r = rampart(t, nil, append(base, "pc", "packets", "--json", "--percpu")...)
	var one probe.MetricValue
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &one) != nil || one.Name != "packets" {
		t.Fatalf("METRIC --json: %d %q %s", r.code, r.stdout, r.stderr)
	}
	if !f.LastRead().PerCPU {
		t.Error("--percpu not sent")
	}

	r = rampart(t, nil, append(base, "pc")...)
	want := "METRIC   KEY          VALUE\npackets  {\"proto\":6}  {\"packets\":42,\"bytes\":4200}\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("table:\n%s\nwant:\n%s", r.stdout, want)
	}

	r = rampart(t, nil, append(base, "pc", "--openmetrics")...)
	if r.code != 0 || !strings.Contains(r.stdout, `rampart_fake_metric_entries{metric="packets",probe="pc"} 1`) || !strings.HasSuffix(r.stdout, "# EOF\n") {
		t.Errorf("--openmetrics: %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	for _, args := range [][]string{{"pc", "--json", "--openmetrics"}, {"pc", "packets", "--openmetrics"}, {}, {"a", "b", "c"}} {
		if r := rampart(t, nil, append(base, args...)...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2", args, r.code)
		}
	}
	r = rampart(t, nil, append(base, "pc", "bytes")...)
	if r.code != 1 || r.stderr != "rampart: probe \"pc\" has no metric \"bytes\"\n" {
		t.Errorf("missing metric: %d %q", r.code, r.stderr)
	}
}

func TestProbeShowUnload(t *testing.T) {
	f := seeded()
	srv := startAgent(t, f)
	base := []string{"--server", srv, "--token", testToken, "probe"}
	r := rampart(t, nil, append(base, "show", "pc")...)
	for _, want := range []string{"name:", "pc", "swap-on-read:  yes, 12 swaps", "count  xdp:eth0  XDP  xdp-driver  id 7", "packets  counter, swap-on-read  map counts (PerCPUHash", "drops  map rb  struct drop  received 5, lost 0"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, r.stdout)
		}
	}
	r = rampart(t, nil, append(base, "show", "pc", "--json")...)
	var info probe.ProbeInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &info) != nil || info.Swaps != 12 {
		t.Errorf("show --json: %d %s", r.code, r.stdout)
	}
	r = rampart(t, nil, append(base, "unload", "pc")...)
	if r.code != 0 || r.stdout != "unloaded pc\n" {
		t.Errorf("unload: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = rampart(t, nil, append(base, "unload", "pc")...)
	if r.code != 1 || r.stderr != "rampart: probe \"pc\" is not loaded\n" {
		t.Errorf("unload again: %d %q", r.code, r.stderr)
	}
}

func TestProbeEvents(t *testing.T) {
	f := seeded()
	srv := startAgent(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--server", srv, "--token", testToken, "probe", "events", "pc", "drops"}, &out, &errb, func(string) string { return "" })
	}()
	deadline := time.Now().Add(5 * time.Second)
	for f.Subscribers() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no subscription; stderr %s", errb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.Publish(probe.Event{Probe: "pc", Stream: "drops", Seq: 1, Data: json.RawMessage(`{"a":1}`)})
	f.Publish(probe.Event{Probe: "pc", Stream: "drops", Seq: 2, Data: json.RawMessage(`{"a":2}`)})
	want := `{"probe":"pc","stream":"drops","seq":1,"time":0,"data":{"a":1}}` + "\n" + `{"probe":"pc","stream":"drops","seq":2,"time":0,"data":{"a":2}}` + "\n"
	for out.String() != want {
		if time.Now().After(deadline) {
			t.Fatalf("output %q, want %q", out.String(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel() // as Ctrl-C would
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, errb.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("events did not stop")
	}
}

func TestConnectionAndAuth(t *testing.T) {
	srv := startAgent(t, seeded())
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	os.WriteFile(tokFile, []byte(testToken+"\n"), 0o600)

	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{name: "no agent", args: []string{"--socket", filepath.Join(dir, "api.sock"), "probe", "list"}, code: 1,
			stderr: "rampart: cannot reach the agent at " + filepath.Join(dir, "api.sock") + ": is `rampart agent` running? (start it with: sudo rampart agent)\n"},
		{name: "socket from env", env: map[string]string{"RAMPART_SOCKET": filepath.Join(dir, "env.sock")}, args: []string{"probe", "list"}, code: 1,
			stderr: "cannot reach the agent at " + filepath.Join(dir, "env.sock")},
		{name: "no token", args: []string{"--server", srv, "probe", "list"}, code: 1, stderr: "rampart: missing bearer token\n    send Authorization"},
		{name: "wrong token", args: []string{"--server", srv, "--token", "nope", "probe", "list"}, code: 1, stderr: "rampart: wrong bearer token"},
		{name: "token file", args: []string{"--server", srv, "--token-file", tokFile, "probe", "list"}, code: 0},
		{name: "env", env: map[string]string{"RAMPART_SERVER": srv, "RAMPART_TOKEN": testToken}, args: []string{"probe", "list"}, code: 0},
		{name: "flag beats env", env: map[string]string{"RAMPART_SERVER": "http://127.0.0.1:1", "RAMPART_TOKEN": testToken}, args: []string{"--server", srv, "probe", "list"}, code: 0},
		{name: "missing token file", args: []string{"--server", srv, "--token-file", filepath.Join(dir, "nope"), "probe", "list"}, code: 1, stderr: "token file"},
		{name: "bad server URL", args: []string{"--server", "10.0.0.1:9443", "probe", "list"}, code: 1, stderr: "want a URL"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{name: "unknown probe command", args: []string{"probe", "frobnicate"}, code: 2, stderr: `unknown command "frobnicate" for "rampart probe"`},
		{name: "bad log level", args: []string{"--log-level", "loud", "probe", "list"}, code: 2, stderr: "--log-level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rampart(t, tt.env, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) {
				t.Fatalf("exit %d (want %d), stderr %q, want it to contain %q", r.code, tt.code, r.stderr, tt.stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	srv := startAgent(t, seeded())
	r := rampart(t, nil, "--server", srv, "--token", testToken, "version")
	if r.code != 0 || r.stdout != "rampart "+version+"\nagent 9.9.9 at "+srv+"\n" {
		t.Errorf("%d %q", r.code, r.stdout)
	}
	r = rampart(t, nil, "--socket", filepath.Join(t.TempDir(), "none.sock"), "version")
	if r.code != 0 || !strings.Contains(r.stdout, "agent: not reachable") {
		t.Errorf("%d %q", r.code, r.stdout)
	}
}

func TestHelpTeaches(t *testing.T) {
	root := newApp(&bytes.Buffer{}, &bytes.Buffer{}, nil).rootCommand()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() != "help" {
			if strings.TrimSpace(c.Long) == "" {
				t.Errorf("%s has no Long help", c.CommandPath())
			}
			if strings.TrimSpace(c.Example) == "" {
				t.Errorf("%s has no Example", c.CommandPath())
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	r := rampart(t, nil, "probe", "load", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "--manifest") {
		t.Errorf("probe load --help: %d\n%s", r.code, r.stdout)
	}
}
