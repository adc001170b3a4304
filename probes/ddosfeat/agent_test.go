package ddosfeat

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-shield/rampart/internal/probe"
)

// TestThroughAgent loads the bundle the way the agent does (detached, with
// a parameter override), drives it with TestRun and reads the event stream
// and the metric through the probe manager's generic decoders.
func TestThroughAgent(t *testing.T) {
	requireBPF(t)
	man, err := probe.ParseManifest(Manifest())
	if err != nil {
		t.Fatal(err)
	}
	m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = m.Load(context.Background(), probe.LoadRequest{Manifest: man, Object: Object(), Detached: true,
		Params: map[string]string{"n_packets": "2"}})
	checkLoad(t, err)

	events, cancel, err := m.Subscribe("ddosfeat", "packet_features")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	frame := eth(etherIPv4, ipv4(protoUDP, v4b, v4a, udp(53, 40000, 1000)))
	for range 3 {
		if ret, err := m.TestRun("ddosfeat", "ddos_ingress", frame, 1); err != nil || ret != tcActUnspec {
			t.Fatalf("test run: %d, %v", ret, err)
		}
	}
	for i := range 2 {
		select {
		case ev := <-events:
			var rec map[string]any
			if err := json.Unmarshal(ev.Data, &rec); err != nil {
				t.Fatal(err)
			}
			key, _ := rec["key"].(map[string]any)
			if key["lo_addr"] != "192.0.2.10" || key["hi_addr"] != "198.51.100.20" || key["lo_port"] != 40000.0 ||
				key["hi_port"] != 53.0 || rec["udp_len"] != 1008.0 || rec["ip_len"] != 1028.0 || rec["from_hi"] != 1.0 {
				t.Errorf("event %d: %s", i, ev.Data)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d: none within 5 s", i)
		}
	}
	select {
	case ev := <-events:
		t.Errorf("a third event (n_packets=2): %s", ev.Data)
	case <-time.After(100 * time.Millisecond):
	}

	mv, err := m.ReadMetric("ddosfeat", "ddos_stats", probe.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"3", "2", "1", "0", "0", "0", "0"}
	if len(mv.Value) != len(want) {
		t.Fatalf("ddos_stats: %d entries", len(mv.Value))
	}
	for i, e := range mv.Value {
		if string(e.Value) != want[i] {
			t.Errorf("ddos_stats[%s] = %s, want %s", e.Key, e.Value, want[i])
		}
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "ddos_stats") {
			found = true
			if len(f.GetMetric()) != 7 {
				t.Errorf("family %s: %v", f.GetName(), f.GetMetric())
			}
			for i, mt := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range mt.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["stat"] != strconv.Itoa(i) || labels["probe"] != "ddosfeat" || mt.GetCounter().GetValue() != float64(want[i][0]-'0') {
					t.Errorf("family %s, sample %d: %v", f.GetName(), i, mt)
				}
			}
		}
	}
	if !found {
		t.Error("no ddos_stats family in OpenMetrics")
	}
}
