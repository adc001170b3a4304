package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ntpcounter "github.com/rampart-shield/rampart/examples/ntp-counter"
	packetcounter "github.com/rampart-shield/rampart/examples/packet-counter"
	"github.com/rampart-shield/rampart/internal/lab"
)

// counterLab is a quiet veth between a lab host and the root namespace:
// only the packets a test sends cross it.
type counterLab struct {
	host  *lab.Host
	link  *lab.Link
	iface string
}

func newCounterLab(t *testing.T) counterLab {
	t.Helper()
	l := lab.ForTest(t)
	h, err := l.AddHost("client")
	if err != nil {
		t.Fatal(err)
	}
	lk, err := l.ConnectRoot(h, lab.LinkOptions{Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	return counterLab{host: h, link: lk, iface: lk.BIface}
}

// ping sends n echo requests from the lab host to the root end and fails
// the test unless all n are answered.
func (c counterLab) ping(t *testing.T, n int, flood bool) {
	t.Helper()
	args := []string{"-n", "-q", "-c", fmt.Sprint(n), "-W", "2"}
	if flood {
		args = append(args, "-f")
	} else {
		args = append(args, "-i", "0.01")
	}
	args = append(args, c.link.BAddr.String())
	out, err := c.host.Run(context.Background(), 2*time.Minute, "ping", args...)
	if err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("%d packets transmitted, %d received", n, n)) {
		t.Fatalf("ping lost packets:\n%s", out)
	}
}

func packetCounterManifest(t *testing.T, mutate func(*Manifest)) *Manifest {
	t.Helper()
	man, err := ParseManifest(packetcounter.Manifest())
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(man)
	}
	return man
}

type counterKey struct {
	Dir   string `json:"dir"`
	Proto int    `json:"proto"`
}

type counterValue struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// icmpCounts sums the ICMP entries of a packets read per direction.
func icmpCounts(t *testing.T, mv MetricValue) (in, out counterValue) {
	t.Helper()
	for _, e := range mv.Value {
		var k counterKey
		var v counterValue
		if err := json.Unmarshal(e.Key, &k); err != nil {
			t.Fatalf("key %s: %v", e.Key, err)
		}
		if err := json.Unmarshal(e.Value, &v); err != nil {
			t.Fatalf("value %s: %v", e.Value, err)
		}
		if k.Proto != 1 {
			t.Errorf("unexpected non-ICMP traffic on a quiet link: %s = %s", e.Key, e.Value)
			continue
		}
		switch k.Dir {
		case "DIR_INGRESS":
			in.Packets += v.Packets
			in.Bytes += v.Bytes
		case "DIR_EGRESS":
			out.Packets += v.Packets
			out.Bytes += v.Bytes
		default:
			t.Errorf("unexpected direction %q", k.Dir)
		}
	}
	return in, out
}

// TestSwapOnReadExact reads a swap-on-read metric in a tight loop while a
// ping flood runs; the sum of all reads must equal the packets sent, each
// direction, with no loss and no double count.
func TestSwapOnReadExact(t *testing.T) {
	requireBPF(t)
	c := newCounterLab(t)
	man := packetCounterManifest(t, func(m *Manifest) {
		for i := range m.Metrics {
			m.Metrics[i].SwapOnRead = true
		}
	})
	m := newTestManager(t)
	info, err := m.Load(context.Background(), LoadRequest{Name: "pc", Manifest: man, Object: packetcounter.Object(), Iface: c.iface})
	if err != nil {
		t.Fatal(err)
	}
	if !info.Swapping || !info.Programs[0].Pivot {
		t.Fatalf("probe does not swap: %+v", info)
	}
	const n = 20000
	var total, bytesTotal struct{ in, out counterValue }
	var reads, nonEmpty atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			mv, err := m.ReadMetric("pc", "packets", ReadOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			in, out := icmpCounts(t, mv)
			total.in.Packets += in.Packets
			total.out.Packets += out.Packets
			reads.Add(1)
			if in.Packets+out.Packets > 0 {
				nonEmpty.Add(1)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	c.ping(t, n, true)
	close(stop)
	wg.Wait()
	// Whatever arrived after the last read in the loop.
	mv, err := m.ReadMetric("pc", "packets", ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in, out := icmpCounts(t, mv)
	total.in.Packets += in.Packets
	total.out.Packets += out.Packets
	// The bytes metric shares the map: every swap above stashed its share.
	mv, err = m.ReadMetric("pc", "bytes", ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bytesTotal.in, bytesTotal.out = icmpCounts(t, mv)

	t.Logf("%d reads (%d with traffic), %d swaps", reads.Load(), nonEmpty.Load(), mustInfo(t, m, "pc").Swaps)
	if total.in.Packets != n || total.out.Packets != n {
		t.Fatalf("sum of reads: %d in, %d out; want %d each way", total.in.Packets, total.out.Packets, n)
	}
	// An echo of 56 data bytes is a 98-byte frame.
	if bytesTotal.in.Bytes != 98*n || bytesTotal.out.Bytes != 98*n {
		t.Fatalf("bytes: %d in, %d out; want %d each way", bytesTotal.in.Bytes, bytesTotal.out.Bytes, 98*n)
	}
	if nonEmpty.Load() < 10 {
		t.Fatalf("only %d reads overlapped the traffic: the test did not exercise the swap under load", nonEmpty.Load())
	}
}

func mustInfo(t *testing.T, m *Manager, name string) ProbeInfo {
	t.Helper()
	pi, err := m.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return pi
}

const verifierRejectSource = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tc")
int count_ingress(struct __sk_buff *skb)
{
	/* Reads packet data without a bounds check: the verifier refuses. */
	void *data = (void *)(long)skb->data;
	return *(int *)data;
}

SEC("tc")
int count_egress(struct __sk_buff *skb) { return -1; }

char LICENSE[] SEC("license") = "GPL";
`

// TestBrokenProbeKeepsOld: every kind of bad replacement fails with a clear
// error and the running probe of the same name keeps counting.
func TestBrokenProbeKeepsOld(t *testing.T) {
	requireBPF(t)
	c := newCounterLab(t)
	m := newTestManager(t)
	ctx := context.Background()
	good := LoadRequest{Name: "pc", Manifest: packetCounterManifest(t, nil), Object: packetcounter.Object(), Iface: c.iface}
	if _, err := m.Load(ctx, good); err != nil {
		t.Fatal(err)
	}
	expect := uint64(0)
	check := func(step string) {
		t.Helper()
		c.ping(t, 5, false)
		expect += 5
		mv, err := m.ReadMetric("pc", "packets", ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		in, out := icmpCounts(t, mv)
		if in.Packets != expect || out.Packets != expect {
			t.Fatalf("after %s: old probe counted %d in, %d out; want %d", step, in.Packets, out.Packets, expect)
		}
	}
	check("first load")

	cases := []struct {
		name   string
		mutate func(r *LoadRequest)
		kind   ErrorKind
		want   string
	}{
		{"missing program", func(r *LoadRequest) {
			r.Manifest = packetCounterManifest(t, func(m *Manifest) { m.Programs[0].Name = "nope" })
		}, KindInvalid, `program "nope" is not in the object`},
		{"missing map", func(r *LoadRequest) {
			r.Manifest = packetCounterManifest(t, func(m *Manifest) { m.Metrics[0].Map = "nope" })
		}, KindInvalid, `map "nope" is not in the object`},
		{"bad value field", func(r *LoadRequest) {
			r.Manifest = packetCounterManifest(t, func(m *Manifest) { m.Metrics[0].ValueField = "nope" })
		}, KindInvalid, "value-field"},
		{"interface not found", func(r *LoadRequest) { r.Iface = "nosuchif0" }, KindInvalid, `interface "nosuchif0" not found`},
		{"unknown hook", func(r *LoadRequest) { r.Attach = []string{"count_ingress=kprobe:tcp_sendmsg"} }, KindInvalid, "unknown hook"},
		{"tracepoint not found", func(r *LoadRequest) {
			r.Attach = []string{"count_ingress=tracepoint:nosuch/thing"}
		}, KindInvalid, "tracepoint nosuch/thing not found"},
		{"wrong program type", func(r *LoadRequest) {
			r.Attach = []string{"count_ingress=xdp:" + c.iface}
		}, KindInvalid, "needs XDP"},
		{"bad manifest", func(r *LoadRequest) {
			r.Manifest = packetCounterManifest(t, func(m *Manifest) { m.Metrics[0].Type = "histogram" })
		}, KindInvalid, "counter, gauge or untyped"},
		{"not an object", func(r *LoadRequest) { r.Object = []byte("not an ELF file") }, KindInvalid, "not a usable eBPF object"},
		{"unknown parameter", func(r *LoadRequest) { r.Params = map[string]string{"N_SESSION": "1"} }, KindInvalid, "no constant"},
	}
	if _, err := exec.LookPath("clang"); err == nil {
		cases = append(cases, struct {
			name   string
			mutate func(r *LoadRequest)
			kind   ErrorKind
			want   string
		}{"verifier rejection", func(r *LoadRequest) {
			r.Object, r.Source = nil, []byte(verifierRejectSource)
			r.Manifest = packetCounterManifest(t, func(m *Manifest) { m.Metrics = nil })
		}, KindRejected, "verifier rejected"})
	} else {
		t.Log("clang not installed: the verifier-rejection case is skipped")
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.mutate(&r)
			_, err := m.Load(ctx, r)
			if err == nil {
				t.Fatal("bad load succeeded")
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Kind != tc.kind || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v (kind %d); want kind %d containing %q", err, KindOf(err), tc.kind, tc.want)
			}
			if tc.kind == KindRejected && pe.Detail == "" {
				t.Fatal("a kernel rejection must carry the verifier log tail")
			}
			check(tc.name)
		})
	}
	// A good replacement takes over: fresh maps, still counting.
	if _, err := m.Load(ctx, good); err != nil {
		t.Fatal(err)
	}
	expect = 0
	check("replacement")
	if got := len(m.List()); got != 1 {
		t.Fatalf("%d probes loaded, want 1", got)
	}
}

// TestReplaceXDP: XDP allows one program per interface, so replacing a probe
// on the same XDP hook must take over the running link; a failed
// replacement must leave the old program attached and its link intact.
func TestReplaceXDP(t *testing.T) {
	requireBPF(t)
	c := newCounterLab(t)
	m := newTestManager(t)
	ctx := context.Background()
	man, err := ParseManifest(ntpcounter.Manifest())
	if err != nil {
		t.Fatal(err)
	}
	req := LoadRequest{Name: "ntp", Manifest: man, Object: ntpcounter.Object(), Iface: c.iface}
	first, err := m.Load(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	second, err := m.Load(ctx, req)
	if err != nil {
		t.Fatalf("replacing on the same XDP hook: %v", err)
	}
	if first.Programs[0].ID == second.Programs[0].ID {
		t.Fatal("the program was not replaced")
	}
	// Swap-on-read variant: the link now points at a pivot.
	swapMan, _ := ParseManifest(ntpcounter.Manifest())
	for i := range swapMan.Metrics {
		swapMan.Metrics[i].SwapOnRead = true
	}
	req.Manifest = swapMan
	if _, err := m.Load(ctx, req); err != nil {
		t.Fatalf("replacing with a swapping probe: %v", err)
	}
	bad := req
	bad.Params = map[string]string{"ntp_port": "70000"}
	if _, err := m.Load(ctx, bad); err == nil || KindOf(err) != KindInvalid {
		t.Fatalf("out-of-range parameter: %v", err)
	}
	out, err := exec.Command("ip", "-d", "link", "show", c.iface).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "prog/xdp") {
		t.Fatalf("no XDP program on %s after a failed replacement:\n%s", c.iface, out)
	}
	if err := m.Unload("ntp"); err != nil {
		t.Fatal(err)
	}
	out, _ = exec.Command("ip", "-d", "link", "show", c.iface).CombinedOutput()
	if strings.Contains(string(out), "prog/xdp") {
		t.Fatalf("XDP program still attached after unload:\n%s", out)
	}
}
