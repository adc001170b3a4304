package flow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/flow"
	"github.com/rampart-shield/rampart/internal/lab"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/probes/flowmon"
)

func ifaceCounter(t *testing.T, iface, name string) uint64 {
	t.Helper()
	b, err := os.ReadFile("/sys/class/net/" + iface + "/statistics/" + name)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAccountingIperf3 is issue 3's accuracy check: iperf3 with 1 and 8
// streams through a veth whose root end carries flowmon; the packets and
// bytes flowmon reports per direction equal the interface's counters for
// that traffic exactly, every stream has its flow, and each stream's bytes
// cover what iperf3 says it sent plus header overhead.
func TestAccountingIperf3(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads eBPF programs and creates network namespaces")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 not installed (Debian: apt-get install iperf3)")
	}
	for _, streams := range []int{1, 8} {
		t.Run(fmt.Sprintf("P%d", streams), func(t *testing.T) { accountingRun(t, streams) })
	}
}

func accountingRun(t *testing.T, streams int) {
	l := lab.ForTest(t)
	h, err := l.AddHost("client")
	if err != nil {
		t.Fatal(err)
	}
	lk, err := l.ConnectRoot(h, lab.LinkOptions{Quiet: true})
	if err != nil {
		t.Fatal(err)
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
	col := flow.NewCollector(m, flow.Config{Probe: "flowmon", Map: "flows", Decode: flowmon.Sample})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	port := 5201 + streams
	srv := exec.CommandContext(ctx, "iperf3", "-s", "-1", "-B", lk.BAddr.String(), "-p", strconv.Itoa(port))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	time.Sleep(300 * time.Millisecond)

	rx0, rxp0 := ifaceCounter(t, lk.BIface, "rx_bytes"), ifaceCounter(t, lk.BIface, "rx_packets")
	tx0, txp0 := ifaceCounter(t, lk.BIface, "tx_bytes"), ifaceCounter(t, lk.BIface, "tx_packets")
	out, err := h.Run(ctx, time.Minute, "iperf3", "-c", lk.BAddr.String(), "-p", strconv.Itoa(port), "-t", "2", "-P", strconv.Itoa(streams), "-J")
	if err != nil {
		t.Fatalf("iperf3: %v\n%s", err, out)
	}
	srv.Wait()
	time.Sleep(100 * time.Millisecond) // the last FIN/ACKs
	rx, rxp := ifaceCounter(t, lk.BIface, "rx_bytes")-rx0, ifaceCounter(t, lk.BIface, "rx_packets")-rxp0
	tx, txp := ifaceCounter(t, lk.BIface, "tx_bytes")-tx0, ifaceCounter(t, lk.BIface, "tx_packets")-txp0

	flows, err := col.Flush()
	if err != nil {
		t.Fatal(err)
	}
	var in, eg struct{ packets, bytes uint64 }
	perStream := map[uint16]uint64{} // client port -> bytes towards the server
	for _, f := range flows {
		if f.Proto != 6 {
			t.Errorf("unexpected non-TCP flow on a quiet link: %+v", f)
		}
		if f.Direction == flow.Ingress {
			in.packets += f.Packets
			in.bytes += f.Bytes
			if f.DstPort == uint16(port) {
				perStream[f.SrcPort] += f.Bytes
			}
		} else {
			eg.packets += f.Packets
			eg.bytes += f.Bytes
		}
	}
	t.Logf("P%d: ingress %d pkts %d bytes (iface rx %d/%d); egress %d pkts %d bytes (iface tx %d/%d); %d flows",
		streams, in.packets, in.bytes, rxp, rx, eg.packets, eg.bytes, txp, tx, len(flows))
	if in.packets != rxp || in.bytes != rx || eg.packets != txp || eg.bytes != tx {
		t.Fatalf("flowmon != interface counters: ingress %d/%d vs rx %d/%d, egress %d/%d vs tx %d/%d",
			in.packets, in.bytes, rxp, rx, eg.packets, eg.bytes, txp, tx)
	}
	// iperf3's own count: every data stream present, bytes within header overhead.
	var rep struct {
		End struct {
			Streams []struct {
				// What the server received: what crossed the wire (the
				// sender's count includes data left in socket buffers).
				Receiver struct {
					Bytes uint64 `json:"bytes"`
				} `json:"receiver"`
			} `json:"streams"`
		} `json:"end"`
		Start struct {
			Connected []struct {
				LocalPort uint16 `json:"local_port"`
			} `json:"connected"`
		} `json:"start"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("iperf3 JSON: %v", err)
	}
	if len(rep.Start.Connected) != streams || len(rep.End.Streams) != streams {
		t.Fatalf("iperf3 reports %d streams", len(rep.Start.Connected))
	}
	for i, c := range rep.Start.Connected {
		got, recv := perStream[c.LocalPort], rep.End.Streams[i].Receiver.Bytes
		if got < recv || float64(got) > float64(recv)*1.1+1e5 {
			t.Errorf("stream from port %d: flowmon %d bytes, iperf3 received %d payload bytes", c.LocalPort, got, recv)
		} else if i == 0 {
			t.Logf("stream from port %d: flowmon %d bytes = iperf3's %d payload bytes x %.4f (headers)", c.LocalPort, got, recv, float64(got)/float64(recv))
		}
	}
	// One control connection besides the data streams.
	if len(perStream) != streams+1 {
		t.Errorf("%d client flows to the server, want %d streams + 1 control", len(perStream), streams)
	}
}
