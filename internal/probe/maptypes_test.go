package probe

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/rampart-shield/rampart/internal/lab"
	"github.com/rampart-shield/rampart/internal/probe/testobj"
)

// requireBPF skips tests that need root and a BPF-capable kernel.
func requireBPF(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load eBPF programs")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("needs a kernel with BTF (/sys/kernel/btf/vmlinux)")
	}
}

func newTestManager(t *testing.T) *Manager {
	t.Helper()
	m, err := NewManager(ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// The entry bpf/testdata/maptypes.bpf.c writes, rendered as the decoder
// must render it (see the table in that file's header comment).
const (
	recJSON = `{"packets":4886718345,"bytes":1500,"port":443,"proto":6,"flags":18,"addr":"192.0.2.1","tag":"rampart","color":"BLUE","u":{"u32":67305985,"b":[1,2,3,4]},"range":[{"lo":1,"hi":2},{"lo":1024,"hi":65535}]}`
	k5JSON  = `{"saddr":"10.0.0.1","daddr":"10.0.0.2","sport":12345,"dport":80,"proto":6,"pad":[0,0,0]}`
)

func compact(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("invalid JSON %s: %v", s, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestMapTypes loads the test object through the manager, runs its fill
// program once and checks the decoded entry of every map type.
func TestMapTypes(t *testing.T) {
	requireBPF(t)
	l := lab.ForTest(t)
	h, err := l.AddHost("peer")
	if err != nil {
		t.Fatal(err)
	}
	lk, err := l.ConnectRoot(h, lab.LinkOptions{Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	mapNames := []string{"hash", "array", "lru_hash", "percpu_hash", "percpu_array", "lru_percpu_hash", "queue", "stack", "lpm_trie"}
	man := &Manifest{
		Name:     "maptypes",
		Programs: []Program{{Name: "fill", Hook: "xdp:" + lk.BIface}},
		Events:   []EventStream{{Name: "records", Map: "ringbuf", Type: "struct event"}},
	}
	for _, n := range mapNames {
		man.Metrics = append(man.Metrics, Metric{Name: n, Map: n, Type: "gauge", ValueField: "packets"})
	}
	m := newTestManager(t)
	info, err := m.Load(context.Background(), LoadRequest{Manifest: man, Object: testobj.Object()})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if len(info.Metrics) != len(mapNames) {
		t.Fatalf("metrics: %+v", info.Metrics)
	}
	events, cancel, err := m.Subscribe("maptypes", "records")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()

	p, _ := m.get("maptypes")
	ret, err := p.inst[0].Programs["fill"].Run(&ebpf.RunOptions{Data: make([]byte, 64)})
	if err != nil || ret != 2 {
		t.Fatalf("run fill: ret %d, %v", ret, err)
	}

	want := map[string]string{
		"hash":            `[{"key":` + k5JSON + `,"value":` + recJSON + `}]`,
		"lru_hash":        `[{"key":{"addr":"2001:db8::1","mac":"02:00:00:00:00:01","vlan":100},"value":` + recJSON + `}]`,
		"percpu_hash":     `[{"key":` + k5JSON + `,"value":` + recJSON + `}]`,
		"lru_percpu_hash": `[{"key":{"addr":"198.51.100.7","spi":4096},"value":` + recJSON + `}]`,
		"queue":           `[{"value":` + recJSON + `}]`,
		"stack":           `[{"value":` + recJSON + `}]`,
		"lpm_trie":        `[{"key":{"prefixlen":24,"addr":"192.168.1.0"},"value":` + recJSON + `}]`,
	}
	for _, n := range mapNames {
		mv, err := m.ReadMetric("maptypes", n, ReadOptions{})
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		got, _ := json.Marshal(mv.Value)
		if n == "array" || n == "percpu_array" {
			// 16 slots; slot 1 holds the record, the others are zero.
			if len(mv.Value) != 16 || string(mv.Value[1].Key) != "1" || compact(t, string(mv.Value[1].Value)) != compact(t, recJSON) {
				t.Errorf("%s: got %s", n, got)
			}
			if !strings.Contains(string(mv.Value[0].Value), `"packets":0`) {
				t.Errorf("%s: slot 0 not zero: %s", n, mv.Value[0].Value)
			}
			continue
		}
		if compact(t, string(got)) != compact(t, want[n]) {
			t.Errorf("%s:\n got %s\nwant %s", n, got, want[n])
		}
	}
	// Per-CPU on request: one value per possible CPU, the record on one of them.
	mv, err := m.ReadMetric("maptypes", "percpu_hash", ReadOptions{PerCPU: true})
	if err != nil {
		t.Fatal(err)
	}
	var perCPU []json.RawMessage
	if err := json.Unmarshal(mv.Value[0].Value, &perCPU); err != nil {
		t.Fatalf("per-CPU value is not an array: %s", mv.Value[0].Value)
	}
	ncpu, _ := ebpf.PossibleCPU()
	hits := 0
	for _, v := range perCPU {
		if compact(t, string(v)) == compact(t, recJSON) {
			hits++
		}
	}
	if len(perCPU) != ncpu || hits != 1 {
		t.Errorf("per-CPU: %d values (want %d), %d with the record (want 1): %s", len(perCPU), ncpu, hits, mv.Value[0].Value)
	}
	// Queues and stacks are emptied by reading.
	if mv, _ := m.ReadMetric("maptypes", "queue", ReadOptions{}); len(mv.Value) != 0 {
		t.Errorf("queue not empty after read: %v", mv.Value)
	}
	// Ring buffer: one decoded record.
	select {
	case ev := <-events:
		wantEv := `{"seq":1,"addr":"2001:db8::2","msg":"hello","rec":` + recJSON + `}`
		if compact(t, string(ev.Data)) != compact(t, wantEv) {
			t.Errorf("ringbuf:\n got %s\nwant %s", ev.Data, wantEv)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no ring buffer record within 5 s")
	}
}

// TestDetachedRaw: a detached probe attaches nothing yet runs through
// TestRun; raw reads and lookup-and-delete serve typed collectors.
func TestDetachedRaw(t *testing.T) {
	requireBPF(t)
	m := newTestManager(t)
	man := &Manifest{Name: "raw", Programs: []Program{{Name: "fill", Hook: "xdp"}},
		Metrics: []Metric{{Name: "lpm", Map: "lpm_trie", Type: "gauge", ValueField: "packets", SwapOnRead: true}}}
	info, err := m.Load(context.Background(), LoadRequest{Manifest: man, Object: testobj.Object(), Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	if !info.Detached || info.Programs[0].Mode != "" {
		t.Fatalf("not detached: %+v", info)
	}
	if ret, err := m.TestRun("raw", "fill", make([]byte, 64), 1); err != nil || ret != 2 {
		t.Fatalf("test run through the pivot: %d, %v", ret, err)
	}
	entries, err := m.ReadRaw("raw", "percpu_hash")
	if err != nil || len(entries) != 1 {
		t.Fatalf("raw read: %v, %v", entries, err)
	}
	ncpu, _ := ebpf.PossibleCPU()
	if len(entries[0].Values) != ncpu || len(entries[0].Key) != 16 {
		t.Fatalf("raw entry shape: key %d bytes, %d values", len(entries[0].Key), len(entries[0].Values))
	}
	vals, ok, err := m.TakeRaw("raw", "percpu_hash", entries[0].Key)
	if err != nil || !ok || len(vals) != ncpu {
		t.Fatalf("take: %v %v %v", vals, ok, err)
	}
	if _, ok, _ := m.TakeRaw("raw", "percpu_hash", entries[0].Key); ok {
		t.Fatal("entry still there after take")
	}
	if _, err := m.ReadRaw("raw", "lpm_trie"); KindOf(err) != KindInvalid {
		t.Fatalf("raw access to a swapped map: %v", err)
	}
	// The pivot fed the active instance: the swap read finds the LPM entry.
	mv, err := m.ReadMetric("raw", "lpm", ReadOptions{})
	if err != nil || len(mv.Value) != 1 {
		t.Fatalf("swap read on a detached probe: %v %v", mv.Value, err)
	}
}

// TestSubscriptionEndsOnUnload: event subscribers learn that their probe is
// gone: the channel closes, after delivering what was sent.
func TestSubscriptionEndsOnUnload(t *testing.T) {
	requireBPF(t)
	m := newTestManager(t)
	man := &Manifest{Name: "ev", Programs: []Program{{Name: "fill", Hook: "xdp"}},
		Events: []EventStream{{Name: "records", Map: "ringbuf", Type: "struct event"}}}
	if _, err := m.Load(context.Background(), LoadRequest{Manifest: man, Object: testobj.Object(), Detached: true}); err != nil {
		t.Fatal(err)
	}
	ch, cancel, err := m.Subscribe("ev", "")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if _, err := m.TestRun("ev", "fill", make([]byte, 64), 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	if err := m.Unload("ev"); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("unexpected event after unload")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the subscription did not end when its probe was unloaded")
	}
}

// TestUnloadWhileStreaming: unloading a probe whose ring buffer is being
// filled and read does not crash the reader (it once asked the closed
// reader how much was pending and faulted).
func TestUnloadWhileStreaming(t *testing.T) {
	requireBPF(t)
	m := newTestManager(t)
	man := &Manifest{Name: "ev", Programs: []Program{{Name: "fill", Hook: "xdp"}},
		Events: []EventStream{{Name: "records", Map: "ringbuf", Type: "struct event"}}}
	pkt := make([]byte, 64)
	for i := 0; i < 30; i++ {
		if _, err := m.Load(context.Background(), LoadRequest{Manifest: man, Object: testobj.Object(), Detached: true}); err != nil {
			t.Fatal(err)
		}
		ch, cancel, err := m.SubscribeBatch("ev", "records")
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		filled := make(chan struct{})
		go func() {
			defer close(filled)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := m.TestRun("ev", "fill", pkt, 64); err != nil {
					return // unloaded
				}
			}
		}()
		go func() {
			for range ch {
			}
		}()
		time.Sleep(time.Duration(i%7) * 300 * time.Microsecond)
		if err := m.Unload("ev"); err != nil {
			t.Fatal(err)
		}
		close(stop)
		<-filled
		cancel()
	}
}
