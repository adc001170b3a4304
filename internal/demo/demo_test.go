package demo

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the demo as a newcomer would (UDP flood, short) and checks
// that the screen shows the whole story and the lab is gone afterwards.
func TestDemo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and loads eBPF programs")
	}
	if testing.Short() {
		t.Skip("builds the binary and floods; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "rampart")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "../../cmd/rampart").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var out bytes.Buffer
	if err := Run(ctx, Options{Attack: "udp", Flood: 5 * time.Second, Agent: bin, Out: &out}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	s := out.String()
	t.Logf("demo output:\n%s", s)
	for _, want := range []string{"ATTACK: UDP flood", "ALERT udp-flood by the threshold detector", "why: udp packets/s", "DROP block", "RELEASE unblock", "summary:", "mitigation released", "cleaning up"} {
		if !strings.Contains(s, want) {
			t.Errorf("the demo never showed %q", want)
		}
	}
	m := regexp.MustCompile(`while it was being dropped \((\d+)%\)`).FindStringSubmatch(s)
	if m == nil {
		t.Fatal("no benign rate in the summary")
	}
	if p, _ := strconv.Atoi(m[1]); p < 90 {
		t.Errorf("benign rate kept %d%% during the attack, want >= 90%%", p)
	}
	lab := regexp.MustCompile(`lab (rp[0-9a-f]{6})`).FindStringSubmatch(s)
	if lab == nil {
		t.Fatal("no lab id in the output")
	}
	if ns, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(ns), lab[1]) {
		t.Errorf("namespaces of %s left behind:\n%s", lab[1], ns)
	}
	if _, err := os.Stat("/sys/fs/bpf/rampart-demo-" + lab[1]); err == nil {
		t.Errorf("pins of the demo left behind")
	}
}
