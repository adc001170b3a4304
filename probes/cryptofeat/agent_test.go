package cryptofeat

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-shield/rampart/internal/probe"
)

// TestThroughAgent loads the bundle the way the agent does (detached),
// drives it with TestRun and reads the sessions through the generic JSON
// and OpenMetrics paths and the raw path a typed collector uses.
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
		Params: map[string]string{"session_timeout_ns": "30000000000"}})
	checkLoad(t, err)

	run := func(prog string, frame []byte) {
		t.Helper()
		if ret, err := m.TestRun("cryptofeat", prog, frame, 1); err != nil || ret != tcActUnspec {
			t.Fatalf("test run: %d, %v", ret, err)
		}
	}
	run("crypto_egress", tcp4(v4a, v4b, 40000, 3333, syn, 0))
	run("crypto_ingress", tcp4(v4b, v4a, 3333, 40000, syn|ack, 0))
	run("crypto_egress", tcp4(v4a, v4b, 40000, 3333, ack|psh, 100))

	mv, err := m.ReadMetric("cryptofeat", "crypto_sessions_packets_out", probe.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(mv.Value) != 1 || mv.Type != "gauge" {
		t.Fatalf("metric %+v", mv)
	}
	var key struct {
		LoAddr string `json:"lo_addr"`
		HiAddr string `json:"hi_addr"`
		LoPort int    `json:"lo_port"`
		HiPort int    `json:"hi_port"`
		Proto  int    `json:"proto"`
	}
	var val struct {
		PktsIn   uint64 `json:"pkts_in"`
		PktsOut  uint64 `json:"pkts_out"`
		BytesOut uint64 `json:"bytes_out"`
		Server   string `json:"server"`
		Method   string `json:"method"`
	}
	if err := json.Unmarshal(mv.Value[0].Key, &key); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mv.Value[0].Value, &val); err != nil {
		t.Fatalf("%v: %s", err, mv.Value[0].Value)
	}
	if key.LoAddr != "192.0.2.10" || key.HiAddr != "198.51.100.20" || key.LoPort != 40000 || key.HiPort != 3333 || key.Proto != protoTCP {
		t.Errorf("key %s", mv.Value[0].Key)
	}
	if val.PktsIn != 1 || val.PktsOut != 2 || val.BytesOut != 180 || val.Server != "198.51.100.20" || val.Method != "METHOD_TCP_HANDSHAKE" {
		t.Errorf("value %s", mv.Value[0].Value)
	}

	// The raw path of a typed collector.
	raw, err := m.ReadRaw("cryptofeat", "sessions")
	if err != nil || len(raw) != 1 {
		t.Fatalf("raw: %v, %v", raw, err)
	}
	k, s, err := DecodeSession(raw[0].Key, raw[0].Values, 30e9)
	if err != nil {
		t.Fatal(err)
	}
	if k != (SessionKey{v4a, v4b, 40000, 3333, protoTCP}) || s.PktsIn != 1 || s.PktsOut != 2 || s.BytesIn != 40 || s.BytesOut != 180 ||
		s.Server != v4b || s.Method != MethodTCPHandshake || s.StartNs == 0 || s.LastNs < s.StartNs {
		t.Errorf("decoded %v %+v", k, s)
	}
	f := Derive(s, false)
	if f.ServerPackets != 1 || f.ClientPackets != 2 || f.ServerBits != 320 || f.ClientBits != 1440 || f.PacketRatio != 0.5 {
		t.Errorf("features %+v", f)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"crypto_sessions_packets_in": 1, "crypto_sessions_packets_out": 2,
		"crypto_sessions_bytes_in": 40, "crypto_sessions_bytes_out": 180,
	}
	for _, fam := range fams {
		w, ok := want[fam.GetName()]
		if !ok {
			continue
		}
		delete(want, fam.GetName())
		if len(fam.GetMetric()) != 1 {
			t.Errorf("%s: %v", fam.GetName(), fam.GetMetric())
			continue
		}
		mt := fam.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range mt.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if mt.GetGauge().GetValue() != w || labels["lo_addr"] != "192.0.2.10" || labels["hi_port"] != "3333" || labels["proto"] != "6" {
			t.Errorf("%s: %v", fam.GetName(), mt)
		}
	}
	if len(want) != 0 {
		t.Errorf("families missing from OpenMetrics: %v", want)
	}
}
