package flow_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rampart-shield/rampart/internal/flow"
	"github.com/rampart-shield/rampart/internal/lab"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/probes/flowmon"
)

func counterValue(t *testing.T, c prometheus.Collector, name string) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	v := -1.0
	for m := range ch {
		if !strings.Contains(m.Desc().String(), `"`+name+`"`) {
			continue
		}
		var pb dto.Metric
		m.Write(&pb)
		v = pb.GetCounter().GetValue()
	}
	return v
}

// TestSYNFloodBounded: a SYN flood from random sources (hping3) creates far
// more flows than flowmon's map holds. The map stays at its size, the
// agent's flow state and memory stay bounded, and the flows lost to LRU
// eviction are exported as a metric.
func TestSYNFloodBounded(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads eBPF programs and creates network namespaces")
	}
	if _, err := exec.LookPath("hping3"); err != nil {
		t.Skip("hping3 not installed (Debian: apt-get install hping3)")
	}
	l := lab.ForTest(t)
	h, err := l.AddHost("flooder")
	if err != nil {
		t.Fatal(err)
	}
	lk, err := l.ConnectRoot(h, lab.LinkOptions{Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	// Random sources would make the root namespace answer to addresses
	// anywhere. Strict reverse-path filtering on the root end drops the
	// SYNs after TC ingress (where flowmon counts them) and before the
	// kernel could answer: nothing leaves the lab. The check is made first.
	if out, err := exec.Command("sysctl", "-w", "net.ipv4.conf."+lk.BIface+".rp_filter=1").CombinedOutput(); err != nil {
		t.Fatalf("rp_filter: %v %s", err, out)
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/conf/" + lk.BIface + "/rp_filter"); strings.TrimSpace(string(b)) != "1" {
		t.Fatal("strict rp_filter is not in force: refusing to flood")
	}

	m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	man, err := probe.ParseManifest(flowmon.Manifest())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Load(context.Background(), probe.LoadRequest{Manifest: man, Object: flowmon.Object(), Iface: lk.BIface}); err != nil {
		t.Fatal(err)
	}
	col := flow.NewCollector(m, flow.Config{Probe: "flowmon", Map: "flows", Decode: flowmon.Sample, Idle: 2 * time.Second})
	svc := flow.NewService(col, flow.ServiceOptions{Interval: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(ctx) }()
	defer func() { cancel(); <-done }()

	rx0 := ifaceCounter(t, lk.BIface, "rx_packets")
	// hping3 floods until the lab's time limit kills its process group.
	h.Run(context.Background(), 4*time.Second, "hping3", "-S", "--flood", "--rand-source", "-p", "80", "-q", lk.BAddr.String())
	sent := ifaceCounter(t, lk.BIface, "rx_packets") - rx0
	time.Sleep(600 * time.Millisecond) // a few polls after the flood

	entries, err := m.ReadRaw("flowmon", "flows")
	if err != nil {
		t.Fatal(err)
	}
	evicted := counterValue(t, svc, "rampart_flow_evicted_total")
	records := counterValue(t, svc, "rampart_flow_records_total")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("flood: %d SYNs received; map holds %d flows (max %d); %v records, %v flows evicted before being reported; heap %d MiB",
		sent, len(entries), flowmon.MaxFlows, records, evicted, ms.HeapAlloc>>20)
	if sent < 2*flowmon.MaxFlows {
		t.Skipf("the flood reached only %d packets, too few to overflow the map here", sent)
	}
	if len(entries) > flowmon.MaxFlows {
		t.Errorf("map holds %d flows, more than its %d", len(entries), flowmon.MaxFlows)
	}
	if evicted <= 0 {
		t.Errorf("no evictions exported although %d flows could not all fit", sent)
	}
	if top := svc.Top(0, false); len(top) > 1<<16+len(entries) {
		t.Errorf("the agent tracks %d sources: its state is not bounded", len(top))
	}
	if len(svc.Recent(0)) > 4096 {
		t.Errorf("recent records not bounded: %d", len(svc.Recent(0)))
	}
	if ms.HeapAlloc > 512<<20 {
		t.Errorf("heap %d MiB after the flood", ms.HeapAlloc>>20)
	}
}
