// Command firewall measures rampart's firewall: the XDP program's own cost
// with BPF_PROG_TEST_RUN (1 blocked prefix against 10,000), the time to
// apply 10,000 rules (and nft's time to load the same set), the CPU per
// dropped packet of a UDP flood on a lab veth against an nftables
// netdev-ingress set of the same prefixes, and benign TCP throughput while
// the flood is dropped; all in one invocation, with interleaved rounds.
//
//	sudo go run ./bench/firewall            # about 6 minutes
//	sudo go run ./bench/firewall -quick     # under a minute
//
// See README.md in this folder for the setup and how to read the tables.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf/rlimit"

	"github.com/rampart-shield/rampart/internal/lab"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/probes"
)

type options struct {
	quick        bool
	repeat       uint32
	progRounds   int
	applies      int
	prefixes     int
	rounds       int
	seconds      float64
	warm         time.Duration
	iperfSeconds int
	streams      int
	floodCPUs    int
	channels     int
	pin          string
	floodConfigs []string
	parts        map[int]bool
	iperf        bool
	xps          bool
	pacedPPS     int
	maxNoise     float64
	retries      int
	trafgen      string
	nft          string
	verbose      bool
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func main() {
	var o options
	var repeat uint
	var parts, configs string
	flag.UintVar(&repeat, "repeat", 5_000_000, "part 1: BPF_PROG_TEST_RUN repeat count per timed call (-quick: 1000000)")
	flag.IntVar(&o.progRounds, "prog-rounds", 5, "part 1: rounds, each timing both rule sets with both packets")
	flag.IntVar(&o.applies, "applies", 5, "part 2: timed Apply batches (and nft -f loads)")
	flag.IntVar(&o.prefixes, "prefixes", 10_000, "blocked /24 prefixes (10.0.0.0/24 upwards)")
	flag.IntVar(&o.rounds, "rounds", 3, "parts 3 and 4: rounds; each runs every configuration once, order rotated per round")
	flag.Float64Var(&o.seconds, "t", 5, "part 3: measured seconds per flood run")
	flag.DurationVar(&o.warm, "warm", time.Second, "parts 3 and 4: flood time before measuring starts")
	flag.IntVar(&o.iperfSeconds, "iperf-t", 5, "part 4: iperf3 -t")
	flag.IntVar(&o.streams, "P", 4, "part 4: iperf3 parallel streams")
	flag.IntVar(&o.pacedPPS, "paced-pps", 100_000, "part 4: also measure with the flood paced to this rate (trafgen --rate); 0: only the full-rate flood")
	flag.IntVar(&o.floodCPUs, "flood-cpus", runtime.NumCPU(), "trafgen --cpus (worker processes)")
	flag.IntVar(&o.channels, "channels", 2, "rx/tx channels on each end of the lab veths (set before XDP attaches)")
	flag.StringVar(&o.pin, "pin", defaultPin(), "part 4: iperf3 -A CLIENT,SERVER CPU affinity (with receive steering on the client link); empty: none")
	flag.StringVar(&configs, "configs", strings.Join([]string{cfgSender, cfgXDPDrop, cfgFirewall, cfgNft}, ","), "part 3 configurations (firewall and nft are always run)")
	flag.BoolVar(&o.xps, "xps", true, "parts 3 and 4: steer the attacker's CPU i to tx queue i of its veth end (xps_cpus)")
	flag.StringVar(&parts, "parts", "1,2,3,4", "parts to run")
	flag.Float64Var(&o.maxNoise, "max-noise", 0.1, "parts 3 and 4: measure a run again when other processes took more than this share of one CPU during it")
	flag.IntVar(&o.retries, "retries", 2, "parts 3 and 4: how often a disturbed run is measured again before it is kept (and flagged)")
	flag.StringVar(&o.trafgen, "trafgen", "/usr/sbin/trafgen", "trafgen binary")
	flag.StringVar(&o.nft, "nft", "/usr/sbin/nft", "nft binary")
	flag.BoolVar(&o.verbose, "v", false, "print every measurement to stderr as it completes")
	flag.BoolVar(&o.quick, "quick", false, "a quick check (under a minute): -repeat 1000000 -prog-rounds 3 -rounds 1 -t 2 -warm 500ms -iperf-t 2 -retries 0, unless given")
	flag.Parse()
	if o.quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		quick("repeat", func() { repeat = 1_000_000 })
		quick("prog-rounds", func() { o.progRounds = 3 })
		quick("rounds", func() { o.rounds = 1 })
		quick("t", func() { o.seconds = 2 })
		quick("warm", func() { o.warm = 500 * time.Millisecond })
		quick("iperf-t", func() { o.iperfSeconds = 2 })
		quick("retries", func() { o.retries = 0 })
	}
	o.repeat = uint32(min(repeat, 1<<31))
	nftBin = o.nft
	o.parts = map[int]bool{}
	for _, p := range strings.Split(parts, ",") {
		switch p = strings.TrimSpace(p); p {
		case "1", "2", "3", "4":
			o.parts[int(p[0]-'0')] = true
		case "":
		default:
			fmt.Fprintf(os.Stderr, "firewall bench: -parts: unknown part %q (1-4)\n", p)
			os.Exit(2)
		}
	}
	o.iperf = o.parts[4]
	want := map[string]bool{cfgFirewall: true, cfgNft: true}
	for _, c := range strings.Split(configs, ",") {
		c = strings.TrimSpace(c)
		switch c {
		case cfgSender, cfgXDPDrop, cfgFirewall, cfgNft:
			want[c] = true
		case "":
		default:
			fmt.Fprintf(os.Stderr, "firewall bench: -configs: unknown configuration %q\n", c)
			os.Exit(2)
		}
	}
	for _, c := range []string{cfgSender, cfgXDPDrop, cfgFirewall, cfgNft} {
		if want[c] {
			o.floodConfigs = append(o.floodConfigs, c)
		}
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "firewall bench: needs root (it loads eBPF programs and makes lab namespaces)")
		os.Exit(2)
	}
	if o.repeat < 1000 || o.progRounds < 1 || o.applies < 1 || o.prefixes <= 5000 || o.prefixes > 65536 || o.rounds < 1 || o.seconds <= 0 || o.iperfSeconds < 1 || o.streams < 1 || o.floodCPUs < 1 {
		// The flood's single source is in prefix 5000 (10.19.136.0/24).
		fmt.Fprintln(os.Stderr, "firewall bench: bad numbers: -repeat >= 1000, -prefixes 5001-65536, the others >= 1")
		os.Exit(2)
	}
	// SIGPIPE too: with the output piped into head(1), say, a write to the
	// closed pipe must end the run through the cleanup, not kill it.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "firewall bench:", err)
		stop()
		os.Exit(1)
	}
}

// defaultPin puts the iperf3 client on the first CPU and the server on the
// last.
func defaultPin() string {
	n := runtime.NumCPU()
	if n < 2 {
		return ""
	}
	return fmt.Sprintf("0,%d", n-1)
}

func run(ctx context.Context, o options) error {
	for _, tool := range []struct{ path, why string }{
		{o.nft, "nftables"}, {o.trafgen, "netsniff-ng"}, {"iperf3", "iperf3"}, {"ethtool", "ethtool"}, {"timeout", "coreutils"},
	} {
		if _, err := exec.LookPath(tool.path); err != nil {
			return fmt.Errorf("%s not found (apt-get install -y %s)", tool.path, tool.why)
		}
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("memlock: %w", err)
	}
	// What a run killed outright (SIGKILL) left: its pins (an XDP program
	// still attached through a pinned link), its nft tables, its lab.
	sweepStale()
	if err := lab.Sweep(10 * time.Minute); err != nil {
		fmt.Fprintln(os.Stderr, "firewall bench: sweeping old labs:", err)
	}
	tmp, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", pinPrefix, os.Getpid()))
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// The firewall pins its maps and links: keep them in a folder of our
	// own on bpffs, never in the agent's /sys/fs/bpf/rampart.
	pinRoot, err := os.MkdirTemp(bpffs, fmt.Sprintf("%s%d-", pinPrefix, os.Getpid()))
	if err != nil {
		return fmt.Errorf("pin root on bpffs: %w", err)
	}
	defer os.RemoveAll(pinRoot)
	m, err := probe.NewManager(probe.ManagerOptions{Logger: quiet(), Builtin: probes.Lookup, PinRoot: pinRoot})
	if err != nil {
		return err
	}
	defer m.Close()

	w := os.Stdout
	var prog *progReport
	if o.parts[1] || o.parts[2] {
		fmt.Fprintf(os.Stderr, "firewall bench: parts 1-2: BPF_PROG_TEST_RUN x %d, %d round(s); %d Apply batches of %d appends\n", o.repeat, o.progRounds, o.applies, o.prefixes)
		if prog, err = benchProgram(ctx, o, m, tmp); err != nil {
			return err
		}
	}
	var floods []floodRun
	var iperfs []iperfRun
	var env *floodEnv
	if o.parts[3] || o.parts[4] {
		var cleanup func()
		env, cleanup, err = setupLab(ctx, o, m, tmp)
		if err != nil {
			return err
		}
		defer cleanup()
		fmt.Fprintf(os.Stderr, "firewall bench: lab %s: trafgen --cpus %d in netns %s on %s (%s) -> %s on %s (root netns, %d channels)\n",
			env.l.ID, o.floodCPUs, env.atk.NS, env.alk.AIface, env.alk.AAddr, env.alk.BAddr, env.alk.BIface, o.channels)
		if o.parts[3] {
			fmt.Fprintf(os.Stderr, "firewall bench: part 3: %d round(s) x %d configurations x 2 source modes x %.0f s\n", o.rounds, len(o.floodConfigs), o.seconds)
			floods, err = env.benchFlood(ctx)
			if err != nil {
				return err
			}
		}
		if o.parts[4] {
			fmt.Fprintf(os.Stderr, "firewall bench: part 4: iperf3 -P %d -t %d from netns %s (%s) to %s:%d, %d round(s)\n", o.streams, o.iperfSeconds, env.cli.NS, env.clk.AAddr, env.clk.BAddr, env.port, o.rounds)
			iperfs, err = env.benchIperf(ctx)
			if err != nil {
				return err
			}
		}
	}
	report(w, o, prog, env, floods, iperfs)
	return nil
}

// Names of this benchmark's runtime state carry the pid of the run.
const (
	bpffs     = "/sys/fs/bpf"
	pinPrefix = "rampart-bench-fw-" // + pid + "-" + random: the pin root and the temp folder
)

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(string(b[i+1:]), " Z")
}

// sweepStale removes the pin roots and nft tables of runs whose process
// is gone. Removing a pin root unpins the firewall's links, which detaches
// its programs.
func sweepStale() {
	for _, dir := range []string{bpffs, os.TempDir()} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			rest, ok := strings.CutPrefix(e.Name(), pinPrefix)
			if !ok {
				continue
			}
			pidStr, _, _ := strings.Cut(rest, "-")
			if pid, err := strconv.Atoi(pidStr); err == nil && pid > 0 && !alive(pid) {
				if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
					fmt.Fprintln(os.Stderr, "firewall bench: removing what a killed run left:", err)
				}
			}
		}
	}
	out, err := exec.Command(nftBin, "list", "tables", "netdev").CombinedOutput()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "table" {
			continue
		}
		rest, ok := strings.CutPrefix(f[2], "rampart_bench_fw_")
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "_")
		if pid, err := strconv.Atoi(pidStr); err == nil && pid > 0 && !alive(pid) {
			if err := nftDeleteTable(f[2]); err != nil {
				fmt.Fprintln(os.Stderr, "firewall bench: removing a stale nft table:", err)
			}
		}
	}
}
