package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/rampart-shield/rampart/internal/bpftest"
	"github.com/rampart-shield/rampart/internal/firewall"
	"github.com/rampart-shield/rampart/internal/probe"
)

// XDP verdicts.
const (
	xdpDrop = 1
	xdpPass = 2
)

// The blocklist: n adjacent /24s from 10.0.0.0 (10.0.0.0/24 ...
// 10.39.15.0/24 for 10,000). The flood's sources are inside it; the
// packet of the program benchmark that passes comes from just outside it.
var (
	blockedSrc   = netip.MustParseAddr("10.19.136.7") // in prefix 5000, 10.19.136.0/24
	unblockedSrc = netip.MustParseAddr("10.40.0.1")   // past the 10,000th prefix
	// floodDst stands in for the lab address in the program benchmark.
	floodDst = netip.MustParseAddr("198.18.0.2")
)

const (
	floodSport = 4000
	floodDport = 9  // discard
	payloadLen = 18 // 14 + 20 + 8 + 18 = 60-byte frames
)

// blockPrefix is the i-th blocked /24.
func blockPrefix(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i)}), 24)
}

// blockOps appends a drop rule for each of the first n blocked prefixes.
func blockOps(n int) []firewall.Op {
	ops := make([]firewall.Op, n)
	for i := range ops {
		ops[i] = firewall.Op{Op: "append", Rule: firewall.Rule{Src: blockPrefix(i).String(), Action: firewall.ActionDrop}}
	}
	return ops
}

// oneBlockOp is the single-prefix list: the /24 of blockedSrc.
func oneBlockOp() []firewall.Op {
	return []firewall.Op{{Op: "append", Rule: firewall.Rule{Src: netip.PrefixFrom(blockedSrc, 24).Masked().String(), Action: firewall.ActionDrop}}}
}

func udpFrame(src, dst netip.Addr) []byte {
	return bpftest.Eth(bpftest.EtherTypeIPv4, bpftest.IPv4(bpftest.ProtoUDP, src, dst, bpftest.UDP(floodSport, floodDport, make([]byte, payloadLen))))
}

// progSample is one timed measurement of the XDP program.
type progSample struct {
	prefixes int
	pkt      string  // "blocked", "unblocked" or "reference"
	wallNs   float64 // (wall(repeat) - wall(small)) / (repeat - small): per run, the fixed cost of a call taken out
	rawNs    float64 // wall(repeat) / repeat
	cpuNs    float64 // the calling thread's CPU time / repeat
}

// progReport is part 1 and part 2.
type progReport struct {
	repeat           uint32
	samples          []progSample
	overheadMs       []float64 // wall time of the small calls
	refKernelNs      []float64 // the reference program's per-run duration as the kernel measured it
	applyMs, flushMs []float64 // Apply of the 10,000 appends; Flush of them
	nftMs, nftDelMs  []float64 // nft -f of a netdev table with a set of the same prefixes; nft delete table
	nftElements      int
	nftErr           error
}

// threadCPU is the calling OS thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// timedCall runs fn (one BPF_PROG_TEST_RUN) on a locked OS thread and
// returns its wall time and the thread's CPU time.
func timedCall(fn func() (uint32, error), want uint32) (wall, cpu time.Duration, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c0, t0 := threadCPU(), time.Now()
	rc, err := fn()
	t1, c1 := time.Now(), threadCPU()
	if err != nil {
		return 0, 0, err
	}
	if rc != want {
		return 0, 0, fmt.Errorf("XDP verdict %d, want %d", rc, want)
	}
	return t1.Sub(t0), c1 - c0, nil
}

// smallRepeat is the repeat count of the calls that measure a call's fixed
// cost. With repeat > 1 the kernel registers the program with the XDP
// dispatcher for the run and unregisters it after (bpf_prog_change_xdp);
// each change waits for an RCU grace period, which adds milliseconds of
// sleep (in 4 ms ticks here) to every call's wall time.
const smallRepeat = 1000

// measureProg times run (a closure over one test run with a repeat count):
// three small calls for the fixed cost, then one with repeat runs.
func measureProg(run func(repeat uint32) (uint32, error), repeat, want uint32) (progSample, []float64, error) {
	var small []float64
	for i := 0; i < 3; i++ {
		w, _, err := timedCall(func() (uint32, error) { return run(smallRepeat) }, want)
		if err != nil {
			return progSample{}, nil, err
		}
		small = append(small, float64(w.Nanoseconds()))
	}
	w, c, err := timedCall(func() (uint32, error) { return run(repeat) }, want)
	if err != nil {
		return progSample{}, nil, err
	}
	wall := float64(w.Nanoseconds())
	s := progSample{
		wallNs: (wall - median(small)) / float64(repeat-smallRepeat),
		rawNs:  wall / float64(repeat),
		cpuNs:  float64(c.Nanoseconds()) / float64(repeat),
	}
	for i := range small {
		small[i] /= 1e6
	}
	return s, small, nil
}

// benchProgram runs parts 1 and 2 on a detached firewall.
func benchProgram(ctx context.Context, o options, m *probe.Manager, tmp string) (*progReport, error) {
	rep := &progReport{repeat: o.repeat}
	f, err := firewall.Start(ctx, firewall.Options{Manager: m, Detached: true, Logger: quiet()})
	if err != nil {
		return nil, fmt.Errorf("firewall (detached): %w", err)
	}
	defer f.Close(false)
	many := blockOps(o.prefixes)
	pkts := []struct {
		name string
		data []byte
		want uint32
	}{
		{"blocked", udpFrame(blockedSrc, floodDst), xdpDrop},
		{"unblocked", udpFrame(unblockedSrc, floodDst), xdpPass},
	}
	sets := []struct {
		n   int
		ops []firewall.Op
	}{{1, oneBlockOp()}, {o.prefixes, many}}

	// Part 1: rounds alternate the two rule sets (order rotated), each
	// measured with both packets after a short warm-up run.
	for r := 0; r < o.progRounds; r++ {
		for i := range sets {
			s := sets[(i+r)%len(sets)]
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if _, err := f.Flush(); err != nil {
				return nil, err
			}
			if err := f.Apply(s.ops); err != nil {
				return nil, err
			}
			for _, p := range pkts {
				run := func(repeat uint32) (uint32, error) {
					return m.TestRun(firewall.ProbeName, "fw_xdp", p.data, repeat)
				}
				ps, small, err := measureProg(run, o.repeat, p.want)
				if err != nil {
					return nil, fmt.Errorf("%d prefixes, %s packet: %w", s.n, p.name, err)
				}
				ps.prefixes, ps.pkt = s.n, p.name
				rep.samples = append(rep.samples, ps)
				rep.overheadMs = append(rep.overheadMs, small...)
				if o.verbose {
					fmt.Fprintf(os.Stderr, "prog round %d: %5d prefixes, %-9s %6.1f ns/pkt wall (raw %6.1f; small calls %v ms), %6.1f ns/pkt thread CPU\n", r+1, s.n, p.name, ps.wallNs, ps.rawNs, small, ps.cpuNs)
				}
			}
		}
	}

	// The reference: an XDP program that only counts and drops, run the
	// same way (not through the manager: it is not a probe).
	if err := benchReference(ctx, o, rep, pkts[0].data); err != nil {
		return nil, fmt.Errorf("reference program: %w", err)
	}

	// Part 2: Apply of the appends into an empty list, then Flush.
	for i := 0; i < o.applies; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if _, err := f.Flush(); err != nil {
			return nil, err
		}
		if i > 0 { // the first flush removed part 1's rules
			rep.flushMs = append(rep.flushMs, ms(time.Since(t0)))
		}
		t0 = time.Now()
		if err := f.Apply(many); err != nil {
			return nil, fmt.Errorf("apply of %d appends: %w", len(many), err)
		}
		rep.applyMs = append(rep.applyMs, ms(time.Since(t0)))
	}
	t0 := time.Now()
	if _, err := f.Flush(); err != nil {
		return nil, err
	}
	rep.flushMs = append(rep.flushMs, ms(time.Since(t0)))

	// nft: the same prefixes as a set in a netdev table (no chain: nothing
	// is attached, like the detached firewall).
	rep.nftErr = benchNftLoad(ctx, o, rep, tmp)
	return rep, nil
}

func benchReference(ctx context.Context, o options, rep *progReport, pkt []byte) error {
	prog, cnt, err := xdpDropProgram()
	if err != nil {
		return err
	}
	defer cnt.Close()
	defer prog.Close()
	run := func(repeat uint32) (uint32, error) {
		return prog.Run(&ebpf.RunOptions{Data: pkt, Repeat: repeat})
	}
	for r := 0; r < o.progRounds; r++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		ps, _, err := measureProg(run, o.repeat, xdpDrop)
		if err != nil {
			return err
		}
		ps.pkt = "reference"
		rep.samples = append(rep.samples, ps)
		// For this program (not a probe) the kernel's own figure is at
		// hand: it checks the wall-time method.
		rc, d, err := prog.Benchmark(pkt, int(o.repeat), nil)
		if err != nil {
			return err
		}
		if rc != xdpDrop {
			return fmt.Errorf("XDP verdict %d, want %d", rc, xdpDrop)
		}
		rep.refKernelNs = append(rep.refKernelNs, float64(d.Nanoseconds()))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func benchNftLoad(ctx context.Context, o options, rep *progReport, tmp string) error {
	table := nftTableName("load")
	file := filepath.Join(tmp, "nft-load.nft")
	if err := os.WriteFile(file, []byte(nftRuleset(table, o.prefixes, "")), 0o600); err != nil {
		return err
	}
	defer nftDeleteTable(table)
	for i := 0; i < o.applies; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		t0 := time.Now()
		if out, err := exec.CommandContext(ctx, o.nft, "-f", file).CombinedOutput(); err != nil {
			return fmt.Errorf("nft -f: %v: %s", err, strings.TrimSpace(string(out)))
		}
		rep.nftMs = append(rep.nftMs, ms(time.Since(t0)))
		if i == 0 {
			n, err := nftSetElements(ctx, table)
			if err != nil {
				return err
			}
			rep.nftElements = n
		}
		t0 = time.Now()
		if err := nftDeleteTable(table); err != nil {
			return err
		}
		rep.nftDelMs = append(rep.nftDelMs, ms(time.Since(t0)))
	}
	return nil
}
