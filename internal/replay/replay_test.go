package replay_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/flow"
	"github.com/rampart-shield/rampart/internal/lab"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/internal/replay"
	"github.com/rampart-shield/rampart/probes/flowmon"
)

func newManager(t *testing.T) *probe.Manager {
	t.Helper()
	m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

type flowID struct {
	src, dst     string
	sport, dport uint16
	proto        uint8
	dir          flow.Direction
}

type counts struct{ packets, bytes uint64 }

func byFlow(fs []flow.Flow) map[flowID]counts {
	out := map[flowID]counts{}
	for _, f := range fs {
		id := flowID{f.Src.String(), f.Dst.String(), f.SrcPort, f.DstPort, f.Proto, f.Direction}
		c := out[id]
		c.packets += f.Packets
		c.bytes += f.Bytes
		out[id] = c
	}
	return out
}

// TestReplayMatchesLive captures traffic on a veth while flowmon counts it
// live, then replays the capture through a detached flowmon: the flows, their
// packets and bytes are the same, and their times are the capture's.
func TestReplayMatchesLive(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads eBPF programs and creates network namespaces")
	}
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump not installed (Debian: apt-get install tcpdump)")
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
	man, err := probe.ParseManifest(flowmon.Manifest())
	if err != nil {
		t.Fatal(err)
	}
	live := newManager(t)
	if _, err := live.Load(context.Background(), probe.LoadRequest{Manifest: man, Object: flowmon.Object(), Iface: lk.BIface}); err != nil {
		t.Fatal(err)
	}

	pcap := filepath.Join(t.TempDir(), "live.pcap")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dump := exec.CommandContext(ctx, "tcpdump", "-i", lk.BIface, "-w", pcap, "-U", "-n", "-s", "0", "--immediate-mode")
	dump.Stderr = os.Stderr
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	defer dump.Process.Kill()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if fi, err := os.Stat(pcap); err == nil && fi.Size() >= 24 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tcpdump did not start")
		}
	}
	time.Sleep(200 * time.Millisecond)

	// Traffic: pings, UDP datagrams of several sizes, a TCP exchange.
	if out, err := h.Run(ctx, 30*time.Second, "ping", "-c", "10", "-i", "0.01", "-q", lk.BAddr.String()); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	udp, err := net.ListenPacket("udp", net.JoinHostPort(lk.BAddr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	ln, err := net.Listen("tcp", net.JoinHostPort(lk.BAddr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			c.Write(buf[:n])
		}
	}()
	err = h.Do(func() error {
		u, err := net.Dial("udp", udp.LocalAddr().String())
		if err != nil {
			return err
		}
		defer u.Close()
		for i := 0; i < 20; i++ {
			if _, err := u.Write(make([]byte, 10+i*60)); err != nil {
				return err
			}
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 1000)
		for i := 0; i < 10; i++ {
			if _, err := c.Write(buf[:100+i*50]); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, buf[:100+i*50]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // FIN/ACKs and the capture's last writes
	dump.Process.Signal(syscall.SIGINT)
	dump.Wait()

	liveCol := flow.NewCollector(live, flow.Config{Probe: "flowmon", Map: "flows", Decode: flowmon.Sample})
	liveFlows, err := liveCol.Flush()
	if err != nil {
		t.Fatal(err)
	}

	// Replay through a detached flowmon, on the capture's clock.
	rep := newManager(t)
	if _, err := rep.Load(context.Background(), probe.LoadRequest{Manifest: man, Object: flowmon.Object(), Detached: true}); err != nil {
		t.Fatal(err)
	}
	ifc, err := net.InterfaceByName(lk.BIface)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pcap)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := replay.Run(rep, "flowmon", f, replay.Options{EgressFrom: ifc.HardwareAddr})
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 0 {
		t.Fatalf("%d packets could not be replayed", st.Skipped)
	}
	var lastNs uint64
	repCol := flow.NewCollector(rep, flow.Config{Probe: "flowmon", Map: "flows", Decode: flowmon.Sample,
		Clock: func() (uint64, time.Time) { lastNs = st.LastNs; return lastNs, time.Unix(0, int64(lastNs)) }})
	repFlows, err := repCol.Flush()
	if err != nil {
		t.Fatal(err)
	}

	lv, rp := byFlow(liveFlows), byFlow(repFlows)
	t.Logf("live: %d flows; replay: %d packets (%d in, %d out) → %d flows", len(lv), st.Packets, st.Ingress, st.Egress, len(rp))
	if len(lv) != 5 { // echo request, echo reply, UDP, TCP each way
		t.Fatalf("the live run saw %d flows, want 5: %v", len(lv), lv)
	}
	if fmt.Sprint(lv) != fmt.Sprint(rp) {
		for id, c := range lv {
			if rp[id] != c {
				t.Errorf("flow %+v: live %+v, replay %+v", id, c, rp[id])
			}
		}
		for id, c := range rp {
			if _, ok := lv[id]; !ok {
				t.Errorf("flow %+v only in the replay: %+v", id, c)
			}
		}
	}
	// Times come from the capture: within a few ms of the live ones.
	liveFirst := map[flowID]time.Time{}
	for _, f := range liveFlows {
		liveFirst[flowID{f.Src.String(), f.Dst.String(), f.SrcPort, f.DstPort, f.Proto, f.Direction}] = f.First
	}
	for _, f := range repFlows {
		id := flowID{f.Src.String(), f.Dst.String(), f.SrcPort, f.DstPort, f.Proto, f.Direction}
		if d := f.First.Sub(liveFirst[id]); d > 50*time.Millisecond || d < -50*time.Millisecond {
			t.Errorf("flow %+v: replayed first-seen %v, live %v", id, f.First, liveFirst[id])
		}
	}
}
