package flowmon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-shield/rampart/internal/probe"
)

// TestThroughManager loads the bundle the way the agent does (detached:
// verified, nothing attached), replays frames with TestRun and reads the
// probe back three ways: the metric JSON, OpenMetrics samples (labels from
// the manifest) and raw entries decoded with DecodeKey/DecodeStats.
func TestThroughManager(t *testing.T) {
	requireBPF(t)
	m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	man, err := probe.ParseManifest(Manifest())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Load(context.Background(), probe.LoadRequest{Manifest: man, Object: Object(), Detached: true}); err != nil {
		var ve *ebpf.VerifierError
		if errors.Is(err, ebpf.ErrNotSupported) || (errors.Is(err, syscall.EPERM) && !errors.As(err, &ve)) {
			t.Skipf("skipping: cannot load BPF here: %v", err)
		}
		t.Fatalf("load: %+v", err)
	}
	runs := []struct {
		prog  string
		frame []byte
	}{
		{"flow_egress", eth(etherIPv4, ipv4(ip4{proto: protoTCP, src: v4a, dst: v4b}, tcp(40000, 443, TCPSyn, nil)))},
		{"flow_egress", eth(etherIPv4, ipv4(ip4{proto: protoTCP, src: v4a, dst: v4b}, tcp(40000, 443, TCPAck, nil)))},
		{"flow_ingress", eth(etherIPv6, ipv6(protoICMPv6, 0, v6a, v6b, icmp(128, 0, nil)))},
		{"flow_ingress", eth(etherARP, arp(v4a, v4b))},
	}
	for _, r := range runs {
		if ret, err := m.TestRun("flowmon", r.prog, r.frame, 1); err != nil || ret != tcActUnspec {
			t.Fatalf("%s: %d, %v", r.prog, int32(ret), err)
		}
	}

	// JSON: addresses as text, ports in host order.
	mv, err := m.ReadMetric("flowmon", "flow_packets", probe.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range mv.Value {
		var k struct {
			Saddr, Daddr string
			Sport, Dport uint16
			Proto, Dir   uint8
		}
		if err := json.Unmarshal(e.Key, &k); err != nil {
			t.Fatalf("key %s: %v", e.Key, err)
		}
		var v struct{ Packets uint64 }
		if err := json.Unmarshal(e.Value, &v); err != nil {
			t.Fatalf("value %s: %v", e.Value, err)
		}
		keys = append(keys, strings.Join([]string{k.Saddr, k.Daddr, itoa(k.Sport), itoa(k.Dport), itoa(k.Proto), itoa(k.Dir), itoa(v.Packets)}, " "))
	}
	slices.Sort(keys)
	if want := []string{"192.0.2.1 198.51.100.2 40000 443 6 1 2", "2001:db8::1 2001:db8::2 0 32768 58 0 1"}; !slices.Equal(keys, want) {
		t.Errorf("flow_packets JSON keys:\n got %q\nwant %q", keys, want)
	}

	// OpenMetrics: the manifest's labels (and the agent's probe label).
	col, err := m.ProbeCollector("flowmon")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(col); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var samples []string
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
			samples = append(samples, f.GetName()+"{"+strings.Join(labels, ",")+"} "+itoa(uint64(v)))
		}
	}
	for _, want := range []string{
		"flow_packets{daddr=198.51.100.2,dir=1,dport=443,probe=flowmon,proto=6,saddr=192.0.2.1,sport=40000} 2",
		"flow_bytes{daddr=198.51.100.2,dir=1,dport=443,probe=flowmon,proto=6,saddr=192.0.2.1,sport=40000} 108",
		"flow_packets{daddr=2001:db8::2,dir=0,dport=32768,probe=flowmon,proto=58,saddr=2001:db8::1,sport=0} 1",
		"flowmon_stats_total{probe=flowmon,stat=0} 4",
		"flowmon_stats_total{probe=flowmon,stat=1} 1",
		"flowmon_stats_total{probe=flowmon,stat=3} 2",
	} {
		if !slices.Contains(samples, want) {
			t.Errorf("no sample %s in\n%s", want, strings.Join(samples, "\n"))
		}
	}

	// Raw entries, as the flow collector reads them.
	raw, err := m.ReadRaw("flowmon", FlowsMap)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 2 {
		t.Fatalf("%d raw flows, want 2", len(raw))
	}
	for _, e := range raw {
		k, err := DecodeKey(e.Key)
		if err != nil {
			t.Fatal(err)
		}
		cpus := make([]Stats, len(e.Values))
		for i, v := range e.Values {
			if cpus[i], err = DecodeStats(v); err != nil {
				t.Fatal(err)
			}
		}
		s := SumStats(cpus)
		src, _ := k.Addrs()
		switch {
		case src == v4a && k.Dir == DirEgress && k.Sport == 40000:
			if s.Packets != 2 || s.TCPFlags != TCPSyn|TCPAck {
				t.Errorf("%v: %+v", k, s)
			}
		case src == v6a && k.Dir == DirIngress && k.Dport == 128<<8:
			if s.Packets != 1 {
				t.Errorf("%v: %+v", k, s)
			}
		default:
			t.Errorf("unexpected flow %v", k)
		}
	}
}

func itoa[T uint8 | uint16 | uint64](v T) string {
	b, _ := json.Marshal(v)
	return string(b)
}
