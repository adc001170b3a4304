package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"github.com/rampart-shield/rampart/bench/internal/stats"
	ntpcounter "github.com/rampart-shield/rampart/examples/ntp-counter"
	packetcounter "github.com/rampart-shield/rampart/examples/packet-counter"
	tcpstates "github.com/rampart-shield/rampart/examples/tcp-states"
	"github.com/rampart-shield/rampart/internal/lab"
	"github.com/rampart-shield/rampart/internal/probe"
)

func main() {
	loads := flag.Int("loads", 20, "load + attach repetitions")
	sizes := flag.String("sizes", "10000,100000,1000000", "map sizes for the read benchmark")
	swaps := flag.Int("swaps", 50, "swap-on-read cycles")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "probecore:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "probecore: needs root (it loads eBPF programs and makes a lab namespace)")
		os.Exit(2)
	}
	if err := run(*loads, *sizes, *swaps); err != nil {
		fmt.Fprintln(os.Stderr, "probecore:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

type row struct {
	what, got, target, dynmon string
	ratio                     float64
}

func run(loads int, sizes string, swaps int) error {
	l, err := lab.New()
	if err != nil {
		return err
	}
	defer l.Close()
	h, err := l.AddHost("peer")
	if err != nil {
		return err
	}
	lk, err := l.ConnectRoot(h, lab.LinkOptions{Quiet: true})
	if err != nil {
		return err
	}
	m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer m.Close()
	ctx := context.Background()
	var rows []row

	// 1. Load + attach of precompiled probes (medians of `loads`), through
	// the manager as the API does it.
	man, err := probe.ParseManifest(packetcounter.Manifest())
	if err != nil {
		return err
	}
	loadMedian := func(req probe.LoadRequest) (time.Duration, error) {
		var d []time.Duration
		for i := 0; i < loads; i++ {
			start := time.Now()
			if _, err := m.Load(ctx, req); err != nil {
				return 0, err
			}
			d = append(d, time.Since(start))
			if err := m.Unload(req.Name); err != nil {
				return 0, err
			}
		}
		return stats.Median(d), nil
	}
	swapMan, _ := probe.ParseManifest(packetcounter.Manifest())
	for i := range swapMan.Metrics {
		swapMan.Metrics[i].SwapOnRead = true
	}
	ntpMan, err := probe.ParseManifest(ntpcounter.Manifest())
	if err != nil {
		return err
	}
	tcpMan, err := probe.ParseManifest(tcpstates.Manifest())
	if err != nil {
		return err
	}
	for _, c := range []struct {
		what, dynmon string
		req          probe.LoadRequest
	}{
		{"tcp-states: 1 tracepoint, hash, ring buffer", "195 ms", probe.LoadRequest{Name: "ts", Manifest: tcpMan, Object: tcpstates.Object()}},
		{"ntp-counter: 1 XDP program, 2 maps", "195 ms", probe.LoadRequest{Name: "ntp", Manifest: ntpMan, Object: ntpcounter.Object(), Iface: lk.BIface}},
		{"packet-counter: 2 TCX programs (kernel RCU wait each)", "195 ms", probe.LoadRequest{Name: "pc", Manifest: man, Object: packetcounter.Object(), Iface: lk.BIface}},
		{"packet-counter with swap-on-read (2 instances, 2 pivots)", "389 ms", probe.LoadRequest{Name: "pc", Manifest: swapMan, Object: packetcounter.Object(), Iface: lk.BIface}},
	} {
		med, err := loadMedian(c.req)
		if err != nil {
			return fmt.Errorf("%s: %w", c.what, err)
		}
		rows = append(rows, row{fmt.Sprintf("load+attach %s", c.what), ms(med), "20 ms", c.dynmon, float64(med) / float64(20*time.Millisecond)})
	}

	// 2. Read + decode to JSON of a 5-tuple → TCP-fields hash map.
	bm := &probe.Manifest{
		Name:     "bench",
		Programs: []probe.Program{{Name: "fill", Hook: "xdp:" + lk.BIface}},
		Metrics: []probe.Metric{
			{Name: "flows", Map: "flows", Type: "gauge", ValueField: "packets"},
			{Name: "flows128k", Map: "flows128k", Type: "gauge", ValueField: "packets"},
			{Name: "small", Map: "small", Type: "counter", ValueField: "packets", SwapOnRead: true},
		},
	}
	if _, err := m.Load(ctx, probe.LoadRequest{Name: "bench", Manifest: bm, Object: _BenchFlowsBytes}); err != nil {
		return err
	}
	fill := func(first, count, which uint32) error {
		pkt := make([]byte, 64)
		binary.NativeEndian.PutUint32(pkt[0:], first)
		binary.NativeEndian.PutUint32(pkt[4:], count)
		binary.NativeEndian.PutUint32(pkt[8:], which)
		_, err := m.TestRun("bench", "fill", pkt, 1)
		return err
	}
	filled := uint32(0)
	readMedian := func(metric string, size int) (time.Duration, int, error) {
		var d []time.Duration
		var bytesOut int
		for i := 0; i < 7; i++ {
			start := time.Now()
			mv, err := m.ReadMetric("bench", metric, probe.ReadOptions{})
			if err != nil {
				return 0, 0, err
			}
			js := mv.AppendJSON(nil) // what the API writes
			d = append(d, time.Since(start))
			bytesOut = len(js)
			if len(mv.Value) != size {
				return 0, 0, fmt.Errorf("read %d entries, want %d", len(mv.Value), size)
			}
		}
		return stats.Median(d), bytesOut, nil
	}
	for _, size := range splitInts(sizes) {
		if uint32(size) > filled {
			if err := fill(filled, uint32(size)-filled, 0); err != nil {
				return err
			}
			filled = uint32(size)
		}
		med, bytesOut, err := readMedian("flows", size)
		if err != nil {
			return err
		}
		target, ratio := "-", 0.0
		if size == 100000 {
			target, ratio = "100 ms", float64(med)/float64(100*time.Millisecond)
		}
		rows = append(rows, row{fmt.Sprintf("read+decode to JSON, %d entries, 1M-entry map (%.1f MB JSON)", size, float64(bytesOut)/1e6), ms(med), target, "-", ratio})
		if size == 100000 {
			if err := fill(0, 100000, 2); err != nil {
				return err
			}
			med, _, err := readMedian("flows128k", size)
			if err != nil {
				return err
			}
			rows = append(rows, row{"  same, 100000 entries in a 128k-entry map", ms(med), "100 ms", "-", float64(med) / float64(100*time.Millisecond)})
		}
	}

	// 3. Swap-on-read cycle on a 1k-entry map: switch, wait, read, clear,
	// decode. Each cycle first fills the active instance with 1024 entries.
	var d []time.Duration
	var dswap []time.Duration
	var total uint64
	for i := 0; i < swaps; i++ {
		if err := fill(0, 1024, 1); err != nil {
			return err
		}
		start := time.Now()
		mv, err := m.ReadMetric("bench", "small", probe.ReadOptions{})
		if err != nil {
			return err
		}
		d = append(d, time.Since(start))
		pi, err := m.Get("bench")
		if err != nil {
			return err
		}
		dswap = append(dswap, pi.LastSwap)
		if len(mv.Value) != 1024 {
			return fmt.Errorf("swap read %d entries, want 1024", len(mv.Value))
		}
		total += uint64(len(mv.Value))
	}
	med := stats.Median(d)
	rows = append(rows, row{fmt.Sprintf("swap-on-read cycle, 1k entries (median of %d)", swaps), ms(stats.Median(dswap)), "1 ms", "4 ms", float64(stats.Median(dswap)) / float64(time.Millisecond)})
	rows = append(rows, row{"  same, plus decoding the 1k entries to JSON", ms(med), "-", "-", 0})

	fmt.Printf("%-68s %12s %8s %8s %8s\n", "benchmark", "measured", "target", "Dynmon", "/target")
	for _, r := range rows {
		ratio := "-"
		if r.ratio > 0 {
			ratio = fmt.Sprintf("%.2f", r.ratio)
		}
		fmt.Printf("%-68s %12s %8s %8s %8s\n", r.what, r.got, r.target, r.dynmon, ratio)
	}
	return nil
}

func splitInts(s string) []int {
	var out []int
	cur, have := 0, false
	for _, c := range s + "," {
		if c >= '0' && c <= '9' {
			cur, have = cur*10+int(c-'0'), true
			continue
		}
		if have {
			out = append(out, cur)
		}
		cur, have = 0, false
	}
	return out
}
