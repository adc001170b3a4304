package probe

import (
	"strings"
	"testing"
)

const goodManifest = `
name: packet-counter
description: counts packets
object: counter.o
programs:
  - name: count_ingress
    hook: tc-ingress
  - name: count_egress
    hook: tc-egress:eth0
metrics:
  - name: packets
    map: counters
    type: Counter
    help: Packets seen.
    value-field: packets
    labels:
      - {name: direction, field: dir}
      - {name: site, value: lab}
    formats: {key.addr: ip}
    swap-on-read: true
events:
  - {name: drops, map: events, type: struct drop_event}
parameters:
  N_SESSION: 1024
  verbose: true
`

func TestParseManifest(t *testing.T) {
	m, err := ParseManifest([]byte(goodManifest))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "packet-counter" || len(m.Programs) != 2 || m.Metrics[0].Type != "counter" || !m.Metrics[0].SwapOnRead {
		t.Fatalf("parsed wrongly: %+v", m)
	}
	if got := m.SwapGroup(); len(got) != 1 || got[0] != "counters" {
		t.Fatalf("swap group %v", got)
	}
	// The same manifest as JSON parses the same.
	js := `{"name":"packet-counter","programs":[{"name":"count_ingress","hook":"xdp:lo"}],"metrics":[{"name":"packets","map":"counters","type":"gauge"}]}`
	if _, err := ParseManifest([]byte(js)); err != nil {
		t.Fatal(err)
	}
}

func TestParseManifestErrors(t *testing.T) {
	base := "programs:\n  - {name: p, hook: xdp:lo}\n"
	cases := []struct{ name, doc, want string }{
		{"empty", "", "empty"},
		{"not yaml", "programs: [", "manifest"},
		{"unknown field", base + "metricz: []\n", "unknown field"},
		{"no programs", "name: x\n", "no programs"},
		{"bad hook kind", "programs:\n  - {name: p, hook: kprobe:tcp_sendmsg}\n", "unknown hook"},
		{"bad tracepoint", "programs:\n  - {name: p, hook: tracepoint:nocategory}\n", "CATEGORY/NAME"},
		{"bad uprobe", "programs:\n  - {name: p, hook: uprobe:/bin/true}\n", "BINARY:SYMBOL"},
		{"bad iface", "programs:\n  - {name: p, hook: xdp:a/b}\n", "not an interface"},
		{"dup program", "programs:\n  - {name: p, hook: xdp}\n  - {name: p, hook: xdp}\n", "twice"},
		{"no hook", "programs:\n  - {name: p}\n", "no hook"},
		{"bad name", "name: Bad Name\n" + base, "name"},
		{"bad metric type", base + "metrics:\n  - {name: m, map: x, type: histogram}\n", "counter, gauge or untyped"},
		{"bad metric name", base + "metrics:\n  - {name: 'm-1', map: x}\n", "letters"},
		{"dup metric", base + "metrics:\n  - {name: m, map: xx}\n  - {name: m, map: yy}\n", "twice"},
		{"reserved label", base + "metrics:\n  - {name: m, map: x, labels: [{name: cpu, field: a}]}\n", "reserved"},
		{"bad format", base + "metrics:\n  - {name: m, map: x, formats: {key.a: ipv5}}\n", "not one of"},
		{"format root", base + "metrics:\n  - {name: m, map: x, formats: {a: ipv4}}\n", "start with key or value"},
		{"event no type", base + "events:\n  - {name: e, map: rb}\n", "record struct"},
		{"event keep", base + "events:\n  - {name: e, map: rb, type: x, keep: 100000}\n", "keep"},
		{"param type", base + "parameters: {N: abc}\n", "number or a boolean"},
		{"object and source", "object: a.o\nsource: a.c\n" + base, "not both"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want error containing %q, got %v", c.want, err)
			}
		})
	}
}

func TestParseHook(t *testing.T) {
	cases := map[string]Hook{
		"xdp:eth0":                            {Kind: HookXDP, Target: "eth0"},
		"tc-egress":                           {Kind: HookTCEgress},
		"tracepoint:sock/inet_sock_set_state": {Kind: HookTracepoint, Target: "sock/inet_sock_set_state"},
		"tp_btf:sched_switch":                 {Kind: HookTPBTF, Target: "sched_switch"},
		"raw_tp:sched_switch":                 {Kind: HookRawTP, Target: "sched_switch"},
		"uprobe:/usr/bin/node:uv_accept":      {Kind: HookUprobe, Target: "/usr/bin/node", Symbol: "uv_accept"},
		"uretprobe:/lib/libc.so.6:malloc":     {Kind: HookUretprobe, Target: "/lib/libc.so.6", Symbol: "malloc"},
	}
	for s, want := range cases {
		got, err := ParseHook(s)
		if err != nil || got != want {
			t.Errorf("ParseHook(%q) = %+v, %v; want %+v", s, got, err, want)
		}
		if err == nil && got.String() != s {
			t.Errorf("String() = %q, want %q", got.String(), s)
		}
	}
}

// FuzzParseManifest: any input either parses into a manifest that validates
// again, or is rejected with an error; it never panics.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(goodManifest))
	f.Add([]byte(`{"programs":[{"name":"p","hook":"tp_btf:x"}],"parameters":{"a":1.5}}`))
	f.Add([]byte("programs:\n  - {name: p, hook: 'uprobe:/a:b:c'}\nmetrics:\n  - {name: m, map: x, labels: [{name: l}]}\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if m != nil {
				t.Fatal("manifest returned with an error")
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed manifest does not validate again: %v", err)
		}
		for _, p := range m.Programs {
			if _, err := ParseHook(p.Hook); err != nil {
				t.Fatalf("accepted a bad hook %q: %v", p.Hook, err)
			}
		}
	})
}
