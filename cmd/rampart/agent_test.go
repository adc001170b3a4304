package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/api"
)

func TestAgentRunsAndStops(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "api.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"agent", "--socket", sock, "--no-default", "--listen", "127.0.0.1:0",
			"--probe", "nosuch-builtin", "--probe", "mine=" + filepath.Join(dir, "nope.yaml") + "@eth0"},
			&out, &errb, func(string) string { return "" })
	}()

	c := api.NewUnixClient(sock)
	deadline := time.Now().Add(10 * time.Second)
	for {
		hctx, hcancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Health(hctx)
		hcancel()
		if err == nil {
			break
		}
		select {
		case code := <-done:
			if strings.Contains(errb.String(), "probe manager:") {
				t.Skipf("the probe manager cannot start here: %s", errb.String())
			}
			t.Fatalf("agent exited %d:\n%s", code, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not answering: %v\n%s", err, errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v %v", fi.Mode(), err)
	}
	tokPath := filepath.Join(dir, "run", "token")
	fi, err := os.Stat(tokPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated token file: %v %v", fi, err)
	}
	tok, _ := readToken(tokPath)
	if len(tok) != 64 {
		t.Errorf("token %d chars, want 64 hex", len(tok))
	}

	r := rampart(t, nil, "--socket", sock, "probe", "list")
	if r.code != 0 {
		t.Errorf("probe list through the agent's socket: %d %s", r.code, r.stderr)
	}
	// Startup probes that fail are logged, and the agent stays up.
	waitLog := time.Now().Add(5 * time.Second)
	for strings.Count(errb.String(), "startup probe not loaded") < 2 && time.Now().Before(waitLog) {
		time.Sleep(10 * time.Millisecond)
	}
	logs := errb.String()
	if strings.Count(logs, "startup probe not loaded") != 2 || !strings.Contains(logs, "probe=nosuch-builtin") || !strings.Contains(logs, "nope.yaml") {
		t.Errorf("startup failures not logged:\n%s", logs)
	}
	if strings.Contains(logs, tok) {
		t.Error("the token was logged")
	}
	if !strings.Contains(logs, tokPath) {
		t.Error("the token file's path was not logged")
	}

	cancel() // as SIGTERM would
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("agent exit %d:\n%s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestAgentRefusesForeignSocketPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notasocket")
	os.WriteFile(path, []byte("x"), 0o644)
	r := rampart(t, nil, "agent", "--socket", path, "--no-default")
	if strings.Contains(r.stderr, "probe manager:") {
		t.Skip("the probe manager cannot start here")
	}
	if r.code != 1 || !strings.Contains(r.stderr, "not a socket") {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
}

func TestAgentConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("sockett: /x\n"), 0o644)
	if r := rampart(t, nil, "agent", "--config", cfg); r.code != 1 || !strings.Contains(r.stderr, `unknown field "sockett"`) {
		t.Errorf("config typo: %d %s", r.code, r.stderr)
	}
	if r := rampart(t, nil, "agent", "--socket", filepath.Join(dir, "s"), "--probe", "Bad Name"); r.code != 2 {
		t.Errorf("bad --probe: %d %s", r.code, r.stderr)
	}
	if r := rampart(t, nil, "agent", "--socket", filepath.Join(dir, "s"), "--listen", "127.0.0.1:0", "--token-file", filepath.Join(dir, "none")); r.code != 1 || !strings.Contains(r.stderr, "token file") {
		t.Errorf("missing token file: %d %s", r.code, r.stderr)
	}
}

func TestReadAgentConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	os.WriteFile(path, []byte(`
socket: /run/x.sock
listen: 0.0.0.0:9443
token-file: /etc/rampart/token
probes:
  - name: packet-counter
    iface: eth0
  - name: mine
    manifest: probes/mine.yaml
    attach: [tc-ingress:eth1]
    params: {N_SESSION: 4096, DEBUG: true, MODE: fast, BIG: 18446744073709551615}
  - name: pc2
    builtin: packet-counter
`), 0o644)
	c, err := readAgentConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Socket != "/run/x.sock" || c.Listen != "0.0.0.0:9443" || c.TokenFile != "/etc/rampart/token" || len(c.Probes) != 3 {
		t.Fatalf("%+v", c)
	}
	if c.Probes[1].Manifest != filepath.Join(dir, "probes/mine.yaml") {
		t.Errorf("manifest path not relative to the config: %q", c.Probes[1].Manifest)
	}
	params, _ := c.Probes[1].params()
	want := map[string]string{"N_SESSION": "4096", "DEBUG": "true", "MODE": "fast", "BIG": "18446744073709551615"}
	if !reflect.DeepEqual(params, want) {
		t.Errorf("params %v", params)
	}
	req, err := startupRequest(c.Probes[0])
	if err != nil || req.Name != "packet-counter" || req.Iface != "eth0" || req.Manifest != nil {
		t.Errorf("built-in request %+v %v", req, err)
	}
	// A built-in under another name carries the bundle (when it exists).
	if req, err := startupRequest(c.Probes[2]); err != nil {
		if !strings.Contains(err.Error(), `no built-in probe "packet-counter"`) {
			t.Errorf("renamed built-in: %v", err)
		}
	} else if req.Name != "pc2" || req.Manifest == nil || len(req.Object) == 0 || req.Origin != "builtin" {
		t.Errorf("renamed built-in request: name %q origin %q manifest %v", req.Name, req.Origin, req.Manifest != nil)
	}

	for _, bad := range []struct{ yaml, want string }{
		{"probes:\n  - iface: eth0\n", "give a name"},
		{"probes:\n  - name: x\n    builtin: other\n    manifest: z.yaml\n", "not both"},
		{"probes:\n  - name: x\n    params: {A: [1]}\n", "parameter A"},
		{"probes:\n  - name: X Y\n", "probe name"},
		{"listen: [\n", "agent.yaml"},
	} {
		os.WriteFile(path, []byte(bad.yaml), 0o644)
		if _, err := readAgentConfig(path); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: %v, want %q", bad.yaml, err, bad.want)
		}
	}
	os.WriteFile(path, nil, 0o644)
	if c, err := readAgentConfig(path); err != nil || len(c.Probes) != 0 {
		t.Errorf("empty config: %+v %v", c, err)
	}
}

func TestParseProbeSpec(t *testing.T) {
	tests := []struct {
		spec    string
		want    probeConfig
		wantErr bool
	}{
		{spec: "packet-counter", want: probeConfig{Name: "packet-counter"}},
		{spec: "packet-counter@eth0", want: probeConfig{Name: "packet-counter", Iface: "eth0"}},
		{spec: "mine=./p/manifest.yaml", want: probeConfig{Name: "mine", Manifest: "./p/manifest.yaml"}},
		{spec: "mine=/opt/p@2/manifest.yaml", want: probeConfig{Name: "mine", Manifest: "/opt/p@2/manifest.yaml"}},
		{spec: "mine=p/manifest.yaml@enp3s0", want: probeConfig{Name: "mine", Manifest: "p/manifest.yaml", Iface: "enp3s0"}},
		{spec: "pc@", wantErr: true},
		{spec: "mine=", wantErr: true},
		{spec: "Bad", wantErr: true},
		{spec: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseProbeSpec(tt.spec)
		if (err != nil) != tt.wantErr || (!tt.wantErr && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("%q: %+v %v", tt.spec, got, err)
		}
	}
}

func TestDefaultRouteIface(t *testing.T) {
	const header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	tests := []struct{ name, table, want string }{
		{"one", header + "eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
			"eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n", "eth0"},
		{"lowest metric", header + "wlan0\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n" +
			"eth1\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n", "eth1"},
		{"down route", header + "eth0\t00000000\t0100A8C0\t0002\t0\t0\t100\t00000000\t0\t0\t0\n", ""},
		{"none", header + "eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		if got := defaultRouteIface(strings.NewReader(tt.table)); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestHelpConfigParses: the config file shown in `agent --help` is valid,
// responder policy included.
func TestHelpConfigParses(t *testing.T) {
	long := newApp(io.Discard, io.Discard, nil).agentCommand().Long
	_, rest, ok := strings.Cut(long, "flags win:\n")
	if !ok {
		t.Fatal("no config example in agent --help")
	}
	var lines []string
	for _, l := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(l, "  ") {
			break
		}
		lines = append(lines, strings.TrimPrefix(l, "  "))
	}
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600)
	cfg, err := readAgentConfig(path)
	if err != nil {
		t.Fatalf("the help's config does not parse: %v\n%s", err, strings.Join(lines, "\n"))
	}
	if cfg.Firewall.Iface != "eth0" || len(cfg.Respond.Rules) != 3 {
		t.Fatalf("parsed %+v", cfg)
	}
	if _, err := cfg.Respond.Check(); err != nil {
		t.Fatalf("the help's respond policy: %v", err)
	}
}
