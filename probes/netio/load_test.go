package netio_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/rampart-shield/rampart/internal/bpftest"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/probes/netio"
)

func newManager(t *testing.T) *probe.Manager {
	t.Helper()
	bpftest.Require(t)
	m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func load(t *testing.T, m *probe.Manager, params map[string]string) probe.ProbeInfo {
	t.Helper()
	man, err := probe.ParseManifest(netio.Manifest())
	if err != nil {
		t.Fatal(err)
	}
	info, err := m.Load(context.Background(), probe.LoadRequest{Name: netio.ProbeName, Manifest: man, Object: netio.Object(), Origin: "builtin", Params: params})
	bpftest.CheckLoad(t, err)
	return info
}

// TestLoad verifies and attaches every program on its hook.
func TestLoad(t *testing.T) {
	m := newManager(t)
	info := load(t, m, nil)
	if len(info.Programs) != 9 {
		t.Fatalf("%d programs attached, want 9: %+v", len(info.Programs), info.Programs)
	}
	for _, p := range info.Programs {
		t.Logf("%s on %s (%s)", p.Name, p.Hook, p.Mode)
	}
}
