package probe

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"
)

const hooksSource = `
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

enum hook_id { H_TP_BTF, H_RAW_TP, H_TRACEPOINT, H_UPROBE, H_URETPROBE };

struct hit {
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, enum hook_id);
	__type(value, struct hit);
} hits SEC(".maps");

static __always_inline void bump(enum hook_id id)
{
	struct hit one = { 1 }, *h = bpf_map_lookup_elem(&hits, &id);

	if (!h && bpf_map_update_elem(&hits, &id, &one, BPF_NOEXIST) == 0)
		return;
	h = bpf_map_lookup_elem(&hits, &id);
	if (h)
		__sync_fetch_and_add(&h->count, 1);
}

SEC("tp_btf/sched_process_exec") int on_tp_btf(void *ctx) { bump(H_TP_BTF); return 0; }
SEC("raw_tp/sched_process_exec") int on_raw_tp(void *ctx) { bump(H_RAW_TP); return 0; }
SEC("tracepoint/sched/sched_process_exec") int on_tracepoint(void *ctx) { bump(H_TRACEPOINT); return 0; }
SEC("uprobe") int on_uprobe(void *ctx) { bump(H_UPROBE); return 0; }
SEC("uretprobe") int on_uretprobe(void *ctx) { bump(H_URETPROBE); return 0; }

char LICENSE[] SEC("license") = "GPL";
`

func findLibc(t *testing.T) string {
	for _, p := range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", "/usr/lib/libc.so.6", "/lib64/libc.so.6"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("no libc.so.6 found for the uprobe hooks")
	return ""
}

// TestHooks loads a probe compiled from C source with one program on each
// tracing hook kind, plainly and with swap-on-read (which puts a pivot of
// each program type in front), and checks that every program runs.
func TestHooks(t *testing.T) {
	requireBPF(t)
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("clang not installed: cannot compile the C source")
	}
	if _, err := os.Stat("/bin/true"); err != nil {
		t.Skip("/bin/true missing")
	}
	libc := findLibc(t)
	for _, swap := range []bool{false, true} {
		name := "plain"
		if swap {
			name = "swap-on-read"
		}
		t.Run(name, func(t *testing.T) {
			m := newTestManager(t)
			man := &Manifest{
				Name: "hooks",
				Programs: []Program{
					{Name: "on_tp_btf", Hook: "tp_btf:sched_process_exec"},
					{Name: "on_raw_tp", Hook: "raw_tp:sched_process_exec"},
					{Name: "on_tracepoint", Hook: "tracepoint:sched/sched_process_exec"},
					// coreutils' true calls setlocale only when given one argument.
					{Name: "on_uprobe", Hook: "uprobe:" + libc + ":setlocale"},
					{Name: "on_uretprobe", Hook: "uretprobe:" + libc + ":setlocale"},
				},
				Metrics: []Metric{{Name: "hits", Map: "hits", Type: "counter", ValueField: "count", SwapOnRead: swap,
					Labels: []Label{{Name: "hook", Field: "."}}}},
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			info, err := m.Load(ctx, LoadRequest{Manifest: man, Source: []byte(hooksSource)})
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if info.Swapping != swap {
				t.Fatalf("swapping = %v", info.Swapping)
			}
			for _, p := range info.Programs {
				t.Logf("%s → %s (%s, %s)", p.Name, p.Hook, p.Type, p.Mode)
			}
			const n = 5
			for i := 0; i < n; i++ {
				if out, err := exec.CommandContext(ctx, "/bin/true", "--version").CombinedOutput(); err != nil {
					t.Fatalf("/bin/true: %v %s", err, out)
				}
			}
			mv, err := m.ReadMetric("hooks", "hits", ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]uint64{}
			for _, e := range mv.Value {
				var k string
				var v struct {
					Count uint64 `json:"count"`
				}
				if err := json.Unmarshal(e.Key, &k); err != nil {
					t.Fatalf("key %s: %v", e.Key, err)
				}
				json.Unmarshal(e.Value, &v)
				got[k] = v.Count
			}
			// Other processes may exec or call setlocale too: at least n.
			for _, h := range []string{"H_TP_BTF", "H_RAW_TP", "H_TRACEPOINT", "H_UPROBE", "H_URETPROBE"} {
				if got[h] < n {
					t.Errorf("%s fired %d times, want at least %d (all: %v)", h, got[h], n, got)
				}
			}
		})
	}
}
