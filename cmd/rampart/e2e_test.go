package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/lab"
)

// TestEndToEndPacketCounter is the foundation's acceptance test: the real
// binary runs as the agent, the real CLI loads examples/packet-counter on a
// veth whose other end is a lab namespace, the namespace sends N pings, and
// the counts read through REST and through the CLI are exactly N each way;
// /metrics passes promtool.
func TestEndToEndPacketCounter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads eBPF programs and creates network namespaces")
	}
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	l := lab.ForTest(t)
	h, err := l.AddHost("client")
	if err != nil {
		t.Fatal(err)
	}
	lk, err := l.ConnectRoot(h, lab.LinkOptions{Quiet: true})
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "rampart")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "api.sock")
	var agentLog bytes.Buffer
	agent := exec.CommandContext(ctx, bin, "agent", "--socket", sock, "--no-default")
	agent.Stdout, agent.Stderr = &agentLog, &agentLog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { agent.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			agent.Process.Kill()
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", agentLog.String())
		}
	})
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, append([]string{"--socket", sock}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("rampart %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	get := func(path string) []byte {
		t.Helper()
		resp, err := client.Get("http://rampart" + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s\n%s", path, resp.Status, b)
		}
		return b
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent socket never appeared:\n%s", agentLog.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}

	manifest := filepath.Join("..", "..", "examples", "packet-counter", "manifest.yaml")
	out := cli("probe", "load", "pc", "--manifest", manifest, "--iface", lk.BIface)
	t.Logf("load:\n%s", out)

	const n = 25
	pingOut, err := h.Run(ctx, time.Minute, "ping", "-n", "-q", "-c", fmt.Sprint(n), "-i", "0.01", "-W", "2", lk.BAddr.String())
	if err != nil || !strings.Contains(string(pingOut), fmt.Sprintf("%d packets transmitted, %d received", n, n)) {
		t.Fatalf("ping: %v\n%s", err, pingOut)
	}

	type entry struct {
		Key struct {
			Dir   string `json:"dir"`
			Proto int    `json:"proto"`
		} `json:"key"`
		Value uint64 `json:"-"`
		Raw   struct {
			Packets uint64 `json:"packets"`
		} `json:"value"`
	}
	counts := func(js []byte) map[string]uint64 {
		t.Helper()
		var mv struct {
			Name  string  `json:"name"`
			Value []entry `json:"value"`
		}
		if err := json.Unmarshal(js, &mv); err != nil {
			t.Fatalf("metric JSON: %v\n%s", err, js)
		}
		got := map[string]uint64{}
		for _, e := range mv.Value {
			got[fmt.Sprintf("%s/%d", e.Key.Dir, e.Key.Proto)] += e.Raw.Packets
		}
		return got
	}
	want := map[string]uint64{"DIR_INGRESS/1": n, "DIR_EGRESS/1": n}
	check := func(how string, got map[string]uint64) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: counts %v, want %v", how, got, want)
		}
	}
	check("REST", counts(get("/v1/probes/pc/metrics/packets")))
	check("CLI", counts([]byte(cli("probe", "metrics", "pc", "packets", "--json"))))

	// OpenMetrics: the exact samples, then promtool's verdict.
	om := get("/metrics")
	for _, s := range []string{
		fmt.Sprintf(`packets_total{direction="DIR_INGRESS",probe="pc",protocol="1"} %d`, n),
		fmt.Sprintf(`packets_total{direction="DIR_EGRESS",probe="pc",protocol="1"} %d`, n),
	} {
		if !bytes.Contains(om, []byte(s)) {
			t.Errorf("/metrics lacks %q:\n%s", s, grep(om, "packets"))
		}
	}
	if promtool, err := exec.LookPath("promtool"); err != nil {
		t.Log("promtool not installed: skipping promtool check metrics")
	} else {
		cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(om)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	}

	out = cli("probe", "list")
	if !strings.Contains(out, "pc") {
		t.Fatalf("probe list:\n%s", out)
	}
	cli("probe", "unload", "pc")
	if got := string(get("/v1/probes")); strings.TrimSpace(got) != "[]" {
		t.Fatalf("after unload: %s", got)
	}
}

func grep(b []byte, s string) string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
