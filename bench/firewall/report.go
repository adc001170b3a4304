package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
)

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread is "min-max" of v with the given format for each.
func spread(v []float64, format string) string {
	if len(v) == 0 {
		return "-"
	}
	return fmt.Sprintf(format+"-"+format, slices.Min(v), slices.Max(v))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func report(w io.Writer, o options, prog *progReport, env *floodEnv, floods []floodRun, iperfs []iperfRun) {
	var targets []string
	target := func(format string, a ...any) { targets = append(targets, fmt.Sprintf(format, a...)) }

	if prog != nil && o.parts[1] {
		fmt.Fprintf(w, "1. XDP program cost: fw_xdp through BPF_PROG_TEST_RUN (Manager.TestRun), repeat %d, 60-byte UDP frame, %d round(s)\n", prog.repeat, o.progRounds)
		fmt.Fprintln(w, "   Manager.TestRun returns no per-run duration, so the time is taken around the call and divided by repeat:")
		fmt.Fprintln(w, "   CPU = the calling thread's CPU time / repeat. wall = (wall(repeat) - wall(1000)) / (repeat - 1000); the")
		fmt.Fprintf(w, "   subtraction takes out a call's fixed cost, mostly sleep: the kernel moves the program into the XDP dispatcher\n")
		fmt.Fprintf(w, "   and out again for every call with repeat > 1, each time waiting for an RCU grace period (%s ms per call\n", spread(prog.overheadMs, "%.1f"))
		fmt.Fprintf(w, "   here, median %.1f), which leaves wall noisy; raw = wall(repeat) / repeat, uncorrected. Targets use CPU.\n", median(prog.overheadMs))
		fmt.Fprintf(w, "   %-16s %-24s %6s %11s %11s %7s %11s %7s\n", "rules", "packet", "CPU", "CPU", "CPU vs", "wall", "wall", "raw")
		fmt.Fprintf(w, "   %-16s %-24s %6s %11s %11s %7s %11s %7s\n", "", "", "ns/pkt", "min-max", "1 prefix", "ns/pkt", "min-max", "ns/pkt")
		med, wallMed := map[string]float64{}, map[string]float64{}
		row := func(rules, desc, key string, sel func(progSample) bool, ratioTo string) {
			var wall, raw, cpu []float64
			for _, s := range prog.samples {
				if sel(s) {
					wall, raw, cpu = append(wall, s.wallNs), append(raw, s.rawNs), append(cpu, s.cpuNs)
				}
			}
			if len(wall) == 0 {
				return
			}
			med[key], wallMed[key] = median(cpu), median(wall)
			ratio := "-"
			if ratioTo != "" {
				ratio = fmt.Sprintf("%.2fx", med[key]/med[ratioTo])
			}
			fmt.Fprintf(w, "   %-16s %-24s %6.1f %11s %11s %7.1f %11s %7.1f\n", rules, desc, median(cpu), spread(cpu, "%.1f"), ratio, median(wall), spread(wall, "%.1f"), median(raw))
		}
		for _, pkt := range []string{"blocked", "unblocked"} {
			src := blockedSrc
			if pkt == "unblocked" {
				src = unblockedSrc
			}
			for _, n := range []int{1, o.prefixes} {
				rules, ratioTo := "1 prefix", ""
				if n > 1 {
					rules, ratioTo = fmt.Sprintf("%d prefixes", n), fmt.Sprint(1, pkt)
				}
				row(rules, fmt.Sprintf("%s (%s)", pkt, src), fmt.Sprint(n, pkt),
					func(s progSample) bool { return s.prefixes == n && s.pkt == pkt }, ratioTo)
			}
		}
		row("reference", "blocked: count + drop", "ref", func(s progSample) bool { return s.pkt == "reference" }, "")
		fmt.Fprintln(w, "   reference = an 11-instruction XDP program that counts the packet in a per-CPU array and drops it (the test-run")
		fmt.Fprintf(w, "   floor); for it the kernel's own per-run duration is at hand (cilium/ebpf Program.Benchmark): %.1f ns (%s)\n", median(prog.refKernelNs), spread(prog.refKernelNs, "%.1f"))
		fmt.Fprintln(w)
		for _, pkt := range []string{"blocked", "unblocked"} {
			one, many := med[fmt.Sprint(1, pkt)], med[fmt.Sprint(o.prefixes, pkt)]
			wOne, wMany := wallMed[fmt.Sprint(1, pkt)], wallMed[fmt.Sprint(o.prefixes, pkt)]
			target("XDP cost, %d prefixes / 1 prefix, %-9s packet: %5.2fx          (target <= 1.2x: %s; by wall time: %.2fx)", o.prefixes, pkt, many/one, verdict(many/one <= 1.2), wMany/wOne)
			target("XDP cost, %d prefixes, %-9s packet:         %5.1f ns/packet (target <= 60 ns: %s; by wall time: %.1f ns)", o.prefixes, pkt, many, verdict(many <= 60), wMany)
		}
	}

	if prog != nil && o.parts[2] {
		fmt.Fprintf(w, "2. Rule updates: %d blocked /24 prefixes, %d runs each\n", o.prefixes, o.applies)
		fmt.Fprintf(w, "   %-62s %9s %15s\n", "", "ms median", "ms min-max")
		fmt.Fprintf(w, "   %-62s %9.1f %15s\n", fmt.Sprintf("firewall Apply of %d append ops (empty list before)", o.prefixes), median(prog.applyMs), spread(prog.applyMs, "%.1f"))
		fmt.Fprintf(w, "   %-62s %9.1f %15s\n", "firewall Flush of them (between the Apply runs)", median(prog.flushMs), spread(prog.flushMs, "%.1f"))
		if prog.nftErr != nil {
			fmt.Fprintf(w, "   nft: not measured: %v\n", prog.nftErr)
		} else {
			fmt.Fprintf(w, "   %-62s %9.1f %15s\n", fmt.Sprintf("nft -f: netdev table with an interval set of %d prefixes", o.prefixes), median(prog.nftMs), spread(prog.nftMs, "%.1f"))
			fmt.Fprintf(w, "   %-62s %9.1f %15s\n", "nft delete table (between the loads)", median(prog.nftDelMs), spread(prog.nftDelMs, "%.1f"))
			fmt.Fprintf(w, "   the kernel's nft set held %d elements; Apply / nft -f = %.2f\n", prog.nftElements, median(prog.applyMs)/median(prog.nftMs))
		}
		fmt.Fprintln(w)
		a := median(prog.applyMs)
		target("Apply of %d inserts:                         %5.1f ms        (target <= 100 ms: %s; nft -f of the same set: %.1f ms)", o.prefixes, a, verdict(a <= 100), median(prog.nftMs))
	}

	if len(floods) > 0 {
		reportFlood(w, o, env, floods, target)
	}
	if len(iperfs) > 0 {
		reportIperf(w, o, env, iperfs, target)
	}
	if len(targets) > 0 {
		fmt.Fprintln(w, "Targets:")
		for _, t := range targets {
			fmt.Fprintln(w, "  "+t)
		}
	}
}

// floodStats are one configuration's medians in one source mode.
type floodStats struct {
	runs, retries, noisy int
	mpps, busyNs, rxNs   []float64 // per run
	trafgenNs, sirqNs    []float64
	noise, steal         []float64
	dropFrac             []float64
	sent, dropped, txDr  uint64
}

func reportFlood(w io.Writer, o options, env *floodEnv, runs []floodRun, target func(string, ...any)) {
	// The sender's own CPU per packet it sent, by mode: the median of the
	// sender-only runs (trafgen to the ifb sink device).
	senderNs := map[string]float64{}
	for _, mode := range modes {
		var v []float64
		for _, r := range runs {
			if r.cfg == cfgSender && r.mode == mode {
				v = append(v, 1e9*r.used()/float64(r.sent+r.txDropped))
			}
		}
		if len(v) > 0 {
			senderNs[mode] = median(v)
		}
	}
	stats := map[string]*floodStats{}
	for _, r := range runs {
		k := r.cfg + "/" + r.mode
		s := stats[k]
		if s == nil {
			s = &floodStats{}
			stats[k] = s
		}
		s.runs++
		s.retries += r.retries
		if r.noisy {
			s.noisy++
		}
		d := float64(max(r.dropped, 1))
		s.mpps = append(s.mpps, float64(r.dropped)/r.seconds/1e6)
		s.busyNs = append(s.busyNs, 1e9*r.used()/d)
		if sn, ok := senderNs[r.mode]; ok && r.cfg != cfgSender {
			s.rxNs = append(s.rxNs, (1e9*r.used()-sn*float64(r.sent+r.txDropped))/d)
		}
		s.trafgenNs = append(s.trafgenNs, 1e9*r.trafgen/float64(max(r.sent+r.txDropped, 1)))
		s.sirqNs = append(s.sirqNs, 1e9*r.softirq/d)
		s.noise = append(s.noise, r.noise)
		s.steal = append(s.steal, r.steal)
		s.dropFrac = append(s.dropFrac, float64(r.dropped)/float64(max(r.sent+r.txDropped, 1)))
		s.sent += r.sent
		s.dropped += r.dropped
		s.txDr += r.txDropped
	}
	fwMode := env.fwMode
	if fwMode == "" {
		fwMode = "?"
	}
	fmt.Fprintf(w, "3. UDP flood on a veth, 60-byte frames, trafgen --cpus %d in netns %s -> %s (root end %s, %d channels),\n", o.floodCPUs, env.atk.NS, env.alk.BAddr, env.alk.BIface, o.channels)
	fmt.Fprintf(w, "   %d blocked /24s; %d round(s) x %.0f s per configuration and source mode; medians (min-max) over the runs\n", o.prefixes, o.rounds, o.seconds)
	fmt.Fprintf(w, "   single = from %s; random = 10.0-%d.*.* (%d blocked /24s); firewall attached as %s\n", blockedSrc, randomTop(o.prefixes), (randomTop(o.prefixes)+1)*256, fwMode)
	fmt.Fprintf(w, "   %-9s %-6s %4s %6s %11s %6s %8s %11s %8s %8s %8s %7s %6s %6s %7s\n",
		"config", "src", "runs", "Mpps", "Mpps", "drop/", "busy ns", "busy ns", "rx-path", "rx-path", "trafgen", "softirq", "noise", "steal", "again/")
	fmt.Fprintf(w, "   %-9s %-6s %4s %6s %11s %6s %8s %11s %8s %8s %8s %7s %6s %6s %7s\n",
		"", "", "", "median", "min-max", "sent", "/drop", "min-max", "ns/drop", "min-max", "ns/pkt", "ns/drop", "s/run", "s/run", "noisy")
	for _, cfg := range o.floodConfigs {
		for _, mode := range modes {
			s := stats[cfg+"/"+mode]
			if s == nil {
				continue
			}
			rx, rxr := "-", "-"
			if len(s.rxNs) > 0 {
				rx, rxr = fmt.Sprintf("%.0f", median(s.rxNs)), spread(s.rxNs, "%.0f")
			}
			if cfg == cfgSender {
				rx, rxr = "(ref)", ""
			}
			fmt.Fprintf(w, "   %-9s %-6s %4d %6.2f %11s %6.3f %8.0f %11s %8s %8s %8.0f %7.0f %6.2f %6.2f %7s\n",
				cfg, mode, s.runs, median(s.mpps), spread(s.mpps, "%.2f"), median(s.dropFrac), median(s.busyNs), spread(s.busyNs, "%.0f"),
				rx, rxr, median(s.trafgenNs), median(s.sirqNs), median(s.noise), median(s.steal), fmt.Sprintf("%d/%d", s.retries, s.noisy))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "   ratios of the medians, side by side:")
	fmt.Fprintf(w, "   %-40s %10s %10s\n", "", "single", "random")
	busy := func(s *floodStats) []float64 { return s.busyNs }
	rxPath := func(s *floodStats) []float64 { return s.rxNs }
	mpps := func(s *floodStats) []float64 { return s.mpps }
	sirq := func(s *floodStats) []float64 { return s.sirqNs }
	ratioLine := func(name, a, b string, metric func(*floodStats) []float64) []float64 {
		var out []float64
		cells := []string{}
		for _, mode := range modes {
			sa, sb := stats[a+"/"+mode], stats[b+"/"+mode]
			if sa == nil || sb == nil || len(metric(sa)) == 0 || len(metric(sb)) == 0 {
				cells = append(cells, "-")
				out = append(out, -1)
				continue
			}
			r := median(metric(sa)) / median(metric(sb))
			out = append(out, r)
			cells = append(cells, fmt.Sprintf("%.3f", r))
		}
		fmt.Fprintf(w, "   %-40s %10s %10s\n", name, cells[0], cells[1])
		return out
	}
	busyR := ratioLine("firewall / nft, busy ns per drop", cfgFirewall, cfgNft, busy)
	rxR := ratioLine("firewall / nft, rx-path ns per drop", cfgFirewall, cfgNft, rxPath)
	ratioLine("firewall / nft, softirq ns per drop", cfgFirewall, cfgNft, sirq)
	ratioLine("firewall / nft, Mpps dropped", cfgFirewall, cfgNft, mpps)
	if _, ok := stats[cfgXDPDrop+"/"+modeSingle]; ok {
		ratioLine("xdp-drop / nft, rx-path ns per drop", cfgXDPDrop, cfgNft, rxPath)
		ratioLine("firewall / xdp-drop, rx-path ns per drop", cfgFirewall, cfgXDPDrop, rxPath)
	}
	var leaked uint64
	if env != nil {
		leaked = env.leaked.Load()
	}
	fmt.Fprintf(w, "   flood packets that got past the filters to the root namespace's socket: %d\n", leaked)
	fmt.Fprintln(w)
	for i, mode := range modes {
		if rxR[i] >= 0 {
			target("flood CPU per dropped packet, firewall / nft, %-6s sources: %5.3f  (receive path, busy minus the sender's own; target <= 0.8: %s)", mode, rxR[i], verdict(rxR[i] <= 0.8))
		}
		if busyR[i] >= 0 {
			target("flood CPU per dropped packet, firewall / nft, %-6s sources: %5.3f  (whole-machine busy incl. the sender; target <= 0.8: %s)", mode, busyR[i], verdict(busyR[i] <= 0.8))
		}
	}
}

func reportIperf(w io.Writer, o options, env *floodEnv, runs []iperfRun, target func(string, ...any)) {
	fmt.Fprintf(w, "4. Benign TCP during the flood: iperf3 -P %d -t %d from netns %s (its own veth, %s) to %s in the root netns,\n", o.streams, o.iperfSeconds, env.cli.NS, env.clk.AAddr, env.clk.BAddr)
	fmt.Fprintf(w, "   while the random-source flood of part 3 is dropped on %s: at full rate (trafgen --cpus %d, as in part 3)\n", env.alk.BIface, o.floodCPUs)
	if o.pacedPPS > 0 {
		fmt.Fprintf(w, "   and paced to %d pps (trafgen --cpus 1 --rate); ", o.pacedPPS)
	} else {
		fmt.Fprint(w, "   ")
	}
	fmt.Fprintf(w, "%d round(s), order rotated; iperf3 -A %s\n", o.rounds, o.pin)
	fmt.Fprintf(w, "   %-28s %4s %7s %13s %9s %8s %12s %6s %7s\n", "flood, dropped by", "runs", "Gbit/s", "Gbit/s", "/no flood", "retrans", "flood Mpps", "noise", "again/")
	fmt.Fprintf(w, "   %-28s %4s %7s %13s %9s %8s %12s %6s %7s\n", "", "", "median", "min-max", "", "total", "dropped", "s/run", "noisy")
	base := 0.0
	med := map[iperfCfg]float64{}
	for _, cfg := range o.iperfConfigs() {
		var g, mp, noise []float64
		var retrans uint64
		var again, noisy int
		for _, r := range runs {
			if r.cfg == cfg {
				g = append(g, r.gbps)
				mp = append(mp, float64(r.dropped)/r.seconds/1e6)
				noise = append(noise, r.noise)
				retrans += r.retrans
				again += r.retries
				if r.noisy {
					noisy++
				}
			}
		}
		if len(g) == 0 {
			continue
		}
		med[cfg] = median(g)
		if cfg.filter == "" {
			base = median(g)
		}
		ratio, drop := "-", "-"
		if cfg.filter != "" {
			ratio = fmt.Sprintf("%.3f", median(g)/base)
			drop = fmt.Sprintf("%.3f", median(mp))
		}
		fmt.Fprintf(w, "   %-28s %4d %7.2f %13s %9s %8d %12s %6.2f %7s\n", cfg, len(g), median(g), spread(g, "%.1f"), ratio, retrans, drop, median(noise), fmt.Sprintf("%d/%d", again, noisy))
	}
	fmt.Fprintln(w)
	if base > 0 {
		fw, nft := iperfCfg{cfgFirewall, 0}, iperfCfg{cfgNft, 0}
		target("benign TCP during the full-rate flood, firewall dropping it / no flood: %5.3f  (no number given: reported; nft dropping it: %.3f)", med[fw]/base, med[nft]/base)
		if o.pacedPPS > 0 {
			fw, nft = iperfCfg{cfgFirewall, o.pacedPPS}, iperfCfg{cfgNft, o.pacedPPS}
			target("benign TCP during the %d kpps flood, firewall dropping it / no flood: %5.3f  (no number given: reported; nft dropping it: %.3f)", o.pacedPPS/1000, med[fw]/base, med[nft]/base)
		}
	}
}
