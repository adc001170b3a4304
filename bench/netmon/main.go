// Command netmon measures what rampart's network probes cost the traffic
// they watch: iperf3 throughput and whole-machine CPU with no probe, with
// flowmon, ddosfeat and cryptofeat each, with all three, and with
// softflowd capturing the same interface, interleaved in rounds within one
// invocation; plus flowmon's byte accuracy against the interface counters.
//
//	sudo go run ./bench/netmon            # 5 rounds of 5 s runs
//	sudo go run ./bench/netmon -quick     # 1 round of 2 s runs
//
// See README.md in this folder for the setup and how to read the table.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	benchstats "github.com/rampart-shield/rampart/bench/internal/stats"
	"github.com/rampart-shield/rampart/internal/lab"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/probes/cryptofeat"
	"github.com/rampart-shield/rampart/probes/ddosfeat"
	"github.com/rampart-shield/rampart/probes/flowmon"
)

type options struct {
	rounds, seconds, streams, warmup, channels int
	settle                                     time.Duration
	configs                                    string
	softflowd                                  string
	ddosParams                                 string
	maxNoise                                   float64
	rate                                       float64
	retries                                    int
	pin                                        string
	rps                                        bool
	verbose                                    bool
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 5, "rounds; each runs every configuration once, in an order rotated per round")
	flag.IntVar(&o.seconds, "t", 5, "seconds of traffic per run (iperf3 -t)")
	flag.IntVar(&o.streams, "P", 4, "parallel TCP streams (iperf3 -P)")
	flag.IntVar(&o.warmup, "warmup", 1, "unmeasured runs without probes before the first round")
	flag.IntVar(&o.channels, "channels", 2, "rx/tx channels on each end of the veth pair")
	flag.DurationVar(&o.settle, "settle", 300*time.Millisecond, "pause after setting a configuration up, before measuring")
	flag.StringVar(&o.configs, "configs", strings.Join(configNames(), ","), "configurations to run (comma-separated); none is always run")
	flag.StringVar(&o.softflowd, "softflowd", "softflowd", "softflowd binary")
	flag.StringVar(&o.ddosParams, "ddos-params", "", "ddosfeat parameter overrides, e.g. n_packets=100,window_ns=1000000000")
	flag.Float64Var(&o.maxNoise, "max-noise", 0.1, "measure a run again when other processes took more than this share of one CPU during it")
	flag.IntVar(&o.retries, "retries", 2, "how often a disturbed run is measured again before it is kept (and flagged)")
	flag.Float64Var(&o.rate, "rate", 0, "total offered load in Gbit/s, split over the streams (iperf3 -b); 0: as fast as possible")
	flag.StringVar(&o.pin, "pin", defaultPin(), "iperf3 -A CLIENT,SERVER CPU affinity; empty: no pinning")
	flag.BoolVar(&o.rps, "rps", true, "with -pin, steer each link end's receive processing to its iperf3 CPU (per-interface rps_cpus)")
	flag.BoolVar(&o.verbose, "v", false, "print every run's measurements to stderr as it completes")
	quick := flag.Bool("quick", false, "a quick check: -rounds 1 -t 2 -warmup 1")
	flag.Parse()
	if *quick {
		o.rounds, o.seconds, o.warmup = 1, 2, 1
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "netmon: needs root (it loads eBPF programs and makes lab namespaces)")
		os.Exit(2)
	}
	if o.rounds < 1 || o.seconds < 1 || o.streams < 1 {
		fmt.Fprintln(os.Stderr, "netmon: -rounds, -t and -P must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "netmon:", err)
		stop()
		os.Exit(1)
	}
}

// defaultPin puts the client on the first CPU and the server on the last.
func defaultPin() string {
	n := runtime.NumCPU()
	if n < 2 {
		return ""
	}
	return fmt.Sprintf("0,%d", n-1)
}

// A config is one setup measured: some probes loaded, or softflowd running.
type config struct {
	name      string
	probes    []string
	softflowd bool
}

var allConfigs = []config{
	{name: "none"},
	{name: "flowmon", probes: []string{"flowmon"}},
	{name: "ddosfeat", probes: []string{"ddosfeat"}},
	{name: "cryptofeat", probes: []string{"cryptofeat"}},
	{name: "all three", probes: []string{"flowmon", "ddosfeat", "cryptofeat"}},
	{name: "softflowd", softflowd: true},
}

func configNames() []string {
	var out []string
	for _, c := range allConfigs {
		out = append(out, strings.ReplaceAll(c.name, " ", "-"))
	}
	return out
}

func pickConfigs(list string) ([]config, error) {
	want := map[string]bool{"none": true}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		found := false
		for _, c := range configNames() {
			found = found || c == n
		}
		if !found {
			return nil, fmt.Errorf("unknown configuration %q (have: %s)", n, strings.Join(configNames(), ", "))
		}
		want[n] = true
	}
	var out []config
	for _, c := range allConfigs {
		if want[strings.ReplaceAll(c.name, " ", "-")] {
			out = append(out, c)
		}
	}
	return out, nil
}

type bundle struct {
	man *probe.Manifest
	obj []byte
}

func loadBundles() (map[string]bundle, error) {
	out := map[string]bundle{}
	for name, b := range map[string][2][]byte{
		"flowmon":    {flowmon.Manifest(), flowmon.Object()},
		"ddosfeat":   {ddosfeat.Manifest(), ddosfeat.Object()},
		"cryptofeat": {cryptofeat.Manifest(), cryptofeat.Object()},
	} {
		man, err := probe.ParseManifest(b[0])
		if err != nil {
			return nil, fmt.Errorf("%s manifest: %w", name, err)
		}
		out[name] = bundle{man, b[1]}
	}
	return out, nil
}

// result is one measured run.
type result struct {
	cfg     string
	round   int
	bytes   uint64  // received by the iperf3 server
	gbps    float64 // iperf3 receiver throughput
	retrans uint64
	busy    float64 // whole-machine busy CPU seconds during the run
	sampled float64 // busy as the sampled /proc/stat columns add up
	irq     float64 // irq + softirq (sampled)
	steal   float64 // of which steal
	monitor float64 // CPU seconds of the monitor's user space: this process (the agent) and softflowd
	foreign float64 // CPU seconds of other user-space processes alive at the end (lower bound)
	others  float64 // busy - steal - ours: foreign, short-lived foreign, irq work on idle CPUs
	acc     *accuracy
	events  uint64 // ddosfeat records the manager received
	sf      sfStats
	retries int  // runs measured again because noise was too high
	noisy   bool // noise still above the limit after the retries
}

// noise is the CPU time other processes (alive at the run's end) took
// during the run. Steal is not in it: on this kind of VM it is reported
// even where the guest's busy time does not change.
func (r result) noise() float64 { return r.foreign }

// accuracy compares flowmon's counts with the interface's counters.
type accuracy struct {
	inBytes, inPkts, outBytes, outPkts uint64 // flowmon, on the measured interface
	dev                                ifCounters
	flows                              int
}

// bench holds the lab and the tools every run uses.
type bench struct {
	o       options
	lk      *lab.Link
	sender  *lab.Host
	port    int
	m       *probe.Manager
	bundles map[string]bundle
	params  map[string]string
	tmp     string
	sink    *net.UDPConn
	exports atomic.Uint64
}

func run(ctx context.Context, o options) error {
	configs, err := pickConfigs(o.configs)
	if err != nil {
		return err
	}
	b := &bench{o: o}
	if b.bundles, err = loadBundles(); err != nil {
		return err
	}
	if b.params, err = parseParams(o.ddosParams); err != nil {
		return err
	}
	for i := 0; i < len(configs); i++ {
		if configs[i].softflowd {
			if _, err := exec.LookPath(o.softflowd); err != nil {
				fmt.Fprintf(os.Stderr, "netmon: %s not found, skipping that configuration (apt-get install -y softflowd)\n", o.softflowd)
				configs = append(configs[:i], configs[i+1:]...)
				i--
			}
		}
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		return errors.New("iperf3 not found (apt-get install -y iperf3)")
	}

	// The probe manager attaches from goroutines of its own, which run in
	// the root network namespace whatever namespace Load is called from; so
	// the measured interface is the root end of a veth pair whose other
	// end is in the lab host that sends.
	l, err := lab.New()
	if err != nil {
		return err
	}
	defer l.Close()
	if b.sender, err = l.AddHost("sender"); err != nil {
		return err
	}
	if b.lk, err = l.ConnectRoot(b.sender, lab.LinkOptions{Quiet: true, Channels: o.channels}); err != nil {
		return err
	}

	if err := b.steer(ctx); err != nil {
		return err
	}
	if b.port, err = freePort(b.lk.BAddr); err != nil {
		return err
	}
	srv, err := startBG("iperf3", "-s", "-B", b.lk.BAddr.String(), "-p", strconv.Itoa(b.port))
	if err != nil {
		return err
	}
	defer srv.stop(2 * time.Second)
	if err := waitListening(ctx, srv, b.port); err != nil {
		return err
	}

	if b.m, err = probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		return err
	}
	defer b.m.Close()

	// softflowd exports to a socket of ours on 127.0.0.1, read and discarded.
	if b.sink, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0"))); err != nil {
		return err
	}
	defer b.sink.Close()
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := b.sink.ReadFrom(buf); err != nil {
				return
			}
			b.exports.Add(1)
		}
	}()
	if b.tmp, err = os.MkdirTemp("", "rampart-netmon-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.tmp)

	fmt.Fprintf(os.Stderr, "netmon: lab %s: iperf3 -P %d -t %d from %s (netns %s) to %s:%d on %s (root netns, %d channels), probes on %s; %d round(s) of %d configurations\n",
		l.ID, o.streams, o.seconds, b.lk.AAddr, b.sender.NS, b.lk.BAddr, b.port, b.lk.BIface, o.channels, b.lk.BIface, o.rounds, len(configs))

	for i := 0; i < o.warmup; i++ {
		if _, err := b.runOne(ctx, config{name: "warmup"}, -1); err != nil {
			return fmt.Errorf("warmup: %w", err)
		}
	}
	var results []result
	for r := 0; r < o.rounds; r++ {
		for i := range configs {
			c := configs[(i+r)%len(configs)]
			res, err := b.runOne(ctx, c, r)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, c.name, err)
			}
			if o.verbose {
				fmt.Fprintf(os.Stderr, "round %d %-11s %6.2f Gbit/s %7.3f GB  busy %5.2f s (columns %.2f, irq %.2f, steal %.2f) %4.0f ms/GB  monitor %.3f s  foreign %.2f s  unattributed %+.2f s  retrans %d\n",
					r+1, c.name, res.gbps, float64(res.bytes)/1e9, res.busy, res.sampled, res.irq, res.steal, 1e3*res.busy/(float64(res.bytes)/1e9), res.monitor, res.foreign, res.others, res.retrans)
			}
			results = append(results, res)
		}
	}
	report(os.Stdout, o, configs, results, b.exports.Load())
	return nil
}

func parseParams(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-ddos-params: %q is not NAME=VALUE", kv)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

// freePort picks a TCP port free on addr (the root end of the lab link).
func freePort(addr netip.Addr) (int, error) {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits for the iperf3 server's listening socket, read from
// /proc/net/tcp so that no connection disturbs the server.
func waitListening(ctx context.Context, p *bg, port int) error {
	hexPort := fmt.Sprintf(":%04X ", port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			b, _ := os.ReadFile(f)
			for _, line := range strings.Split(string(b), "\n") {
				fs := strings.Fields(line)
				if len(fs) > 3 && strings.HasSuffix(fs[1]+" ", hexPort) && fs[3] == "0A" {
					return nil
				}
			}
		}
		if !p.running() {
			return fmt.Errorf("iperf3 server exited: %s", p.output())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("iperf3 server not listening on port %d after 10 s: %s", port, p.output())
}

// runOne sets c up, measures an iperf3 run (again, up to -retries times,
// while other processes disturb it) and tears c down.
func (b *bench) runOne(ctx context.Context, c config, round int) (res result, err error) {
	res = result{cfg: c.name, round: round}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	var loaded []string
	defer func() {
		for i := len(loaded) - 1; i >= 0; i-- {
			if uerr := b.m.Unload(loaded[i]); uerr != nil && err == nil {
				err = uerr
			}
		}
	}()
	for _, name := range c.probes {
		bd := b.bundles[name]
		req := probe.LoadRequest{Name: name, Manifest: bd.man, Object: bd.obj, Iface: b.lk.BIface}
		if name == "ddosfeat" {
			req.Params = b.params
		}
		if _, err := b.m.Load(ctx, req); err != nil {
			return res, fmt.Errorf("load %s: %w", name, err)
		}
		loaded = append(loaded, name)
		if name == "ddosfeat" {
			// A subscriber, as the agent's event API has: records are
			// decoded and delivered, not only drained.
			events, cancel, err := b.m.Subscribe("ddosfeat", "")
			if err != nil {
				return res, err
			}
			done := make(chan struct{})
			go func() {
				for {
					select {
					case <-events:
					case <-done:
						return
					}
				}
			}()
			defer func() { cancel(); close(done) }()
		}
	}
	var sf *bg
	ctl := filepath.Join(b.tmp, "softflowd.ctl")
	if c.softflowd {
		os.Remove(ctl)
		sink := b.sink.LocalAddr().(*net.UDPAddr)
		// -d: foreground; -N: leave promiscuous mode off; export IPFIX
		// (-v 10) only to our sink on 127.0.0.1.
		sf, err = startBG(b.o.softflowd, "-d", "-N", "-i", b.lk.BIface, "-v", "10",
			"-n", fmt.Sprintf("127.0.0.1:%d", sink.Port),
			"-p", filepath.Join(b.tmp, "softflowd.pid"), "-c", ctl)
		if err != nil {
			return res, err
		}
		defer func() {
			if serr := sf.stop(3 * time.Second); serr != nil && err == nil {
				err = fmt.Errorf("softflowd: %w: %s", serr, sf.output())
			}
		}()
		if err := waitFile(ctx, sf, ctl); err != nil {
			return res, err
		}
	}
	if err := sleep(ctx, b.o.settle); err != nil {
		return res, err
	}

	dev0, err := readIfCounters(b.lk.BIface)
	if err != nil {
		return res, err
	}
	for try := 0; ; try++ {
		if res, err = b.measure(ctx, c, round, sf); err != nil {
			return res, err
		}
		res.retries = try
		limit := b.o.maxNoise * float64(b.o.seconds)
		if res.noise() <= limit || try >= b.o.retries || round < 0 {
			res.noisy = res.noise() > limit && round >= 0
			break
		}
		wait := time.Duration(1<<try) * time.Second
		fmt.Fprintf(os.Stderr, "netmon: round %d, %s: other processes used %.2f CPU s during the run (limit %.2f): measuring again in %v\n",
			round+1, c.name, res.foreign, limit, wait)
		if err := sleep(ctx, wait); err != nil {
			return res, err
		}
	}

	if slices.Contains(loaded, "flowmon") {
		if res.acc, err = b.flowmonAccuracy(ctx, dev0); err != nil {
			return res, err
		}
	}
	for _, name := range loaded {
		if name != "ddosfeat" {
			continue
		}
		if pi, err := b.m.Get(name); err == nil {
			for _, ev := range pi.Events {
				res.events += ev.Received
			}
		}
	}
	if sf != nil {
		if !sf.running() {
			return res, fmt.Errorf("softflowd exited during the run: %s", sf.output())
		}
		// Export what it tracked (to our sink), then read its counters.
		softflowctl(ctx, ctl, "expire-all")
		res.sf = parseSoftflowd(softflowctl(ctx, ctl, "statistics"))
	}
	return res, nil
}

// measure runs iperf3 once and measures the CPU used meanwhile.
func (b *bench) measure(ctx context.Context, c config, round int, sf *bg) (result, error) {
	res := result{cfg: c.name, round: round}
	snap0 := snapshotProcs()
	children0 := benchstats.CPUSeconds(syscall.RUSAGE_CHILDREN)
	self0 := benchstats.CPUSeconds(syscall.RUSAGE_SELF)
	var tool0 uint64
	if sf != nil {
		tool0 = procCPU(sf.pid())
	}
	args := []string{"-c", b.lk.BAddr.String(), "-p", strconv.Itoa(b.port),
		"-P", strconv.Itoa(b.o.streams), "-t", strconv.Itoa(b.o.seconds), "-J"}
	if b.o.rate > 0 {
		// iperf3 -b limits each stream.
		args = append(args, "-b", strconv.FormatFloat(b.o.rate*1e9/float64(b.o.streams), 'f', 0, 64))
	}
	args = append(args, b.affinity()...)
	cpu0, err := readCPUTimes()
	if err != nil {
		return res, err
	}
	out, err := b.sender.Run(ctx, time.Duration(b.o.seconds)*time.Second+30*time.Second, "iperf3", args...)
	cpu1, cerr := readCPUTimes()
	self1 := benchstats.CPUSeconds(syscall.RUSAGE_SELF)
	children1 := benchstats.CPUSeconds(syscall.RUSAGE_CHILDREN)
	var tool1 uint64
	if sf != nil {
		tool1 = procCPU(sf.pid())
	}
	snap1 := snapshotProcs()
	if err != nil {
		return res, err
	}
	if cerr != nil {
		return res, cerr
	}
	ip, err := parseIperf(out)
	if err != nil {
		return res, err
	}
	res.bytes = ip.End.SumReceived.Bytes
	res.gbps = ip.End.SumReceived.BitsPerSecond / 1e9
	res.retrans = ip.End.SumSent.Retransmits
	res.busy = cpu1.busySince(cpu0)
	res.sampled = float64(cpu1.sampled()-cpu0.sampled()) / userHZ
	res.monitor = self1 - self0 + float64(tool1-tool0)/userHZ
	own, foreign := cpuSplit(snap0, snap1)
	res.steal = float64(cpu1.steal-cpu0.steal) / userHZ
	res.foreign = float64(foreign) / userHZ
	// Busy time not spent by this benchmark's processes and kernel threads
	// nor stolen: other processes (short-lived ones included) and interrupt
	// work done while a CPU was idle.
	res.others = res.busy - res.steal - float64(own)/userHZ - (children1 - children0)
	res.irq = float64(cpu1.irq-cpu0.irq) / userHZ
	return res, nil
}

// steer sets receive packet steering on the lab link's two ends so that
// each end's receive processing runs on the CPU of the iperf3 process
// there: data (and the probes' ingress programs) on the server's CPU, ACKs
// on the client's. Without it, a TCP flow's segments are queued to
// whichever CPU sent them (the client's, or the server's when an ACK
// triggers sending from softirq), arrive out of order and cause spurious
// retransmissions that change throughput from run to run far more than
// any probe. Only the lab's own interfaces are touched.
func (b *bench) steer(ctx context.Context) error {
	if b.o.pin == "" || !b.o.rps {
		return nil
	}
	cli, srv, ok := strings.Cut(b.o.pin, ",")
	if !ok {
		return fmt.Errorf("-pin %q: want CLIENT,SERVER", b.o.pin)
	}
	mask := func(cpu string) (string, error) {
		n, err := strconv.Atoi(cpu)
		if err != nil || n < 0 || n > 63 {
			return "", fmt.Errorf("-pin %q: bad CPU %q", b.o.pin, cpu)
		}
		return strconv.FormatUint(1<<n, 16), nil
	}
	srvMask, err := mask(srv)
	if err != nil {
		return err
	}
	cliMask, err := mask(cli)
	if err != nil {
		return err
	}
	for q := 0; q < max(b.o.channels, 1); q++ {
		p := fmt.Sprintf("/sys/class/net/%s/queues/rx-%d/rps_cpus", b.lk.BIface, q)
		if err := os.WriteFile(p, []byte(srvMask), 0o644); err != nil {
			return fmt.Errorf("rps: %w", err)
		}
		// The sender's end lives in the lab host: its sysfs is visible only
		// from a process in that namespace.
		p = fmt.Sprintf("/sys/class/net/%s/queues/rx-%d/rps_cpus", b.lk.AIface, q)
		if _, err := b.sender.Run(ctx, 10*time.Second, "sh", "-c", "echo "+cliMask+" > "+p); err != nil {
			return fmt.Errorf("rps: %w", err)
		}
	}
	return nil
}

// affinity pins the iperf3 client and server to CPUs (iperf3 -A): unpinned,
// where the scheduler puts them changes throughput more than any probe.
func (b *bench) affinity() []string {
	if b.o.pin == "" {
		return nil
	}
	return []string{"-A", b.o.pin}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// waitFile waits until p created path (softflowd makes its control socket
// once capture is set up).
func waitFile(ctx context.Context, p *bg, path string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("%s exited: %s", p.name, p.output())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: no %s after 10 s: %s", p.name, path, p.output())
}

// softflowctl runs a softflowctl command and returns its output ("" on
// error).
func softflowctl(ctx context.Context, ctl, command string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "softflowctl", "-c", ctl, command).CombinedOutput()
	if err != nil {
		return ""
	}
	return string(out)
}

// sfStats are softflowd's own counters (softflowctl statistics).
type sfStats struct{ processed, dropped, flowsExported uint64 }

// parseSoftflowd reads lines such as "Packets processed: 131054",
// "Packets dropped by libpcap: 2198" and "Flows exported: 5 (5 records)
// in 1 packets (0 failures)".
func parseSoftflowd(out string) sfStats {
	var s sfStats
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.Fields(v + " x")[0], 10, 64)
		if err != nil {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "packets processed":
			s.processed = n
		case "packets dropped by libpcap":
			s.dropped = n
		case "flows exported":
			s.flowsExported = n
		}
	}
	return s
}

// flowmonAccuracy sums flowmon's flows on the measured interface and reads
// the interface counters once no packet moves any more, so both cover the
// same packets: everything since dev0 was read (after attaching).
func (b *bench) flowmonAccuracy(ctx context.Context, dev0 ifCounters) (*accuracy, error) {
	for tries := 0; ; tries++ {
		before, err := readIfCounters(b.lk.BIface)
		if err != nil {
			return nil, err
		}
		raw, err := b.m.ReadRaw("flowmon", flowmon.FlowsMap)
		if err != nil {
			return nil, err
		}
		after, err := readIfCounters(b.lk.BIface)
		if err != nil {
			return nil, err
		}
		if before != after && tries < 50 {
			select { // a late packet (FIN, ACK): try again once quiet
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		a := &accuracy{dev: after.sub(dev0)}
		for _, e := range raw {
			s, err := flowmon.Sample(e.Key, e.Values)
			if err != nil {
				return nil, err
			}
			if int(s.Ifindex) != b.lk.BIndex {
				continue
			}
			a.flows++
			if uint8(s.Direction) == flowmon.DirIngress {
				a.inBytes += s.Bytes
				a.inPkts += s.Packets
			} else {
				a.outBytes += s.Bytes
				a.outPkts += s.Packets
			}
		}
		return a, nil
	}
}

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

// stats are one configuration's medians over its runs.
type stats struct {
	runs                      int
	gbps, busyPerGB, monPerGB float64
	noise, steal              float64 // medians per run, seconds
	gbpsLo, gbpsHi            float64 // min and max
	busyLo, busyHi            float64 // min and max busy/GB
	acc                       accuracy
	hasAcc                    bool
	events, gb, retrans       float64
	sf                        sfStats
	retries, noisy            int
}

func summarize(results []result, cfg string) stats {
	var gbps, busy, mon, noise, steal []float64
	var st stats
	for _, r := range results {
		if r.cfg != cfg {
			continue
		}
		gb := float64(r.bytes) / 1e9
		st.runs++
		gbps = append(gbps, r.gbps)
		busy = append(busy, r.busy/gb)
		mon = append(mon, r.monitor/gb)
		noise = append(noise, r.noise())
		steal = append(steal, r.steal)
		st.gb += gb
		st.events += float64(r.events)
		st.sf.processed += r.sf.processed
		st.sf.dropped += r.sf.dropped
		st.sf.flowsExported += r.sf.flowsExported
		st.retries += r.retries
		if r.noisy {
			st.noisy++
		}
		st.retrans += float64(r.retrans)
		if a := r.acc; a != nil {
			st.hasAcc = true
			st.acc.inBytes += a.inBytes
			st.acc.inPkts += a.inPkts
			st.acc.outBytes += a.outBytes
			st.acc.outPkts += a.outPkts
			st.acc.flows += a.flows
			st.acc.dev.rxBytes += a.dev.rxBytes
			st.acc.dev.rxPackets += a.dev.rxPackets
			st.acc.dev.txBytes += a.dev.txBytes
			st.acc.dev.txPackets += a.dev.txPackets
		}
	}
	st.gbps, st.busyPerGB, st.monPerGB, st.noise, st.steal = median(gbps), median(busy), median(mon), median(noise), median(steal)
	if len(gbps) > 0 {
		st.gbpsLo, st.gbpsHi = slices.Min(gbps), slices.Max(gbps)
		st.busyLo, st.busyHi = slices.Min(busy), slices.Max(busy)
	}
	return st
}

func report(w io.Writer, o options, configs []config, results []result, exports uint64) {
	all := map[string]stats{}
	for _, c := range configs {
		all[c.name] = summarize(results, c.name)
	}
	base := all["none"]
	load := "unlimited rate"
	if o.rate > 0 {
		load = fmt.Sprintf("offered load %g Gbit/s", o.rate)
	}
	pin := "unpinned"
	if o.pin != "" {
		pin = "client,server on CPUs " + o.pin
		if o.rps {
			pin += ", receive steering to them"
		}
	}
	fmt.Fprintf(w, "iperf3 -P %d -t %d, %s, over a veth pair (%d channels; %s), %d round(s), medians per configuration; GB = 1e9 bytes received\n",
		o.streams, o.seconds, load, o.channels, pin, o.rounds)
	fmt.Fprintf(w, "%-11s %4s %7s %13s %7s %10s %11s %11s %8s %6s %6s %7s %8s\n",
		"config", "runs", "Gbit/s", "Gbit/s", "/none", "busy ms/GB", "busy ms/GB", "added ms/GB", "monitor", "noise", "steal", "again", "retrans")
	fmt.Fprintf(w, "%-11s %4s %7s %13s %7s %10s %11s %11s %8s %6s %6s %7s %8s\n",
		"", "", "median", "min-max", "", "median", "min-max", "vs none", "ms/GB", "s/run", "s/run", "/noisy", "total")
	for _, c := range configs {
		s := all[c.name]
		added := "-"
		if c.name != "none" {
			added = fmt.Sprintf("%+.1f", 1e3*(s.busyPerGB-base.busyPerGB))
		}
		fmt.Fprintf(w, "%-11s %4d %7.2f %13s %7.3f %10.0f %11s %11s %8.2f %6.2f %6.2f %7s %8.0f\n",
			c.name, s.runs, s.gbps, fmt.Sprintf("%.1f-%.1f", s.gbpsLo, s.gbpsHi), s.gbps/base.gbps,
			1e3*s.busyPerGB, fmt.Sprintf("%.0f-%.0f", 1e3*s.busyLo, 1e3*s.busyHi), added, 1e3*s.monPerGB, s.noise, s.steal,
			fmt.Sprintf("%d/%d", s.retries, s.noisy), s.retrans)
	}
	fmt.Fprintln(w)
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	if s, ok := all["all three"]; ok {
		r := s.gbps / base.gbps
		fmt.Fprintf(w, "throughput, all three probes / none:           %.3f  (target >= 0.95: %s)\n", r, verdict(r >= 0.95))
	}
	fm, okF := all["flowmon"]
	sf, okS := all["softflowd"]
	if okF && okS {
		af, as := fm.busyPerGB-base.busyPerGB, sf.busyPerGB-base.busyPerGB
		if as > 0 && af <= 0 {
			fmt.Fprintf(w, "added CPU per GB, flowmon / softflowd:         <= 0  (%+.1f / %+.1f ms/GB: flowmon's is below the noise; target <= 0.333: met)\n", 1e3*af, 1e3*as)
		} else if as > 0 {
			r := af / as
			fmt.Fprintf(w, "added CPU per GB, flowmon / softflowd:         %.3f  (%+.1f / %+.1f ms/GB; target <= 0.333: %s)\n", r, 1e3*af, 1e3*as, verdict(r <= 1.0/3))
		} else {
			fmt.Fprintf(w, "added CPU per GB, flowmon / softflowd:         n/a (softflowd added %+.1f ms/GB: within noise)\n", 1e3*as)
		}
	}
	for _, c := range configs {
		s := all[c.name]
		if !s.hasAcc {
			continue
		}
		a := s.acc
		fmt.Fprintf(w, "flowmon accuracy (%s: %d runs incl. repeats, %d flows on the interface; since attaching):\n", c.name, s.runs+s.retries, a.flows)
		fmt.Fprintf(w, "  ingress bytes   %14d / rx_bytes   %14d = %s\n", a.inBytes, a.dev.rxBytes, exact(a.inBytes, a.dev.rxBytes))
		fmt.Fprintf(w, "  ingress packets %14d / rx_packets %14d = %s\n", a.inPkts, a.dev.rxPackets, exact(a.inPkts, a.dev.rxPackets))
		fmt.Fprintf(w, "  egress bytes    %14d / tx_bytes   %14d = %s\n", a.outBytes, a.dev.txBytes, exact(a.outBytes, a.dev.txBytes))
	}
	for _, c := range configs {
		s := all[c.name]
		if s.events > 0 {
			fmt.Fprintf(w, "ddosfeat records received by the manager (%s): %.0f in %d runs\n", c.name, s.events, s.runs)
		}
		if c.softflowd {
			fmt.Fprintf(w, "softflowd (softflowctl statistics, %d runs): %d packets processed, %d dropped by libpcap, %d flows exported; %d IPFIX datagrams reached our sink on 127.0.0.1\n",
				s.runs, s.sf.processed, s.sf.dropped, s.sf.flowsExported, exports)
		}
	}
	fmt.Fprintln(w, "busy = whole-machine user+nice+system+irq+softirq+steal during each run, from /proc/stat as CPUs x elapsed - idle - iowait")
	fmt.Fprintln(w, "  (the sampled columns miss tick-aligned work); added = median busy/GB minus none's median busy/GB.")
	fmt.Fprintln(w, "monitor = user-space CPU of this process (the agent: probe manager, ring-buffer reader) plus softflowd's own.")
	fmt.Fprintln(w, "noise = CPU time of other user-space processes (those alive at the run's end); steal = hypervisor steal (inside busy).")
	fmt.Fprintf(w, "again/noisy = runs measured again because noise exceeded %.2f s (-max-noise x -t) / runs kept although still above\n", o.maxNoise*float64(o.seconds))
	fmt.Fprintf(w, "  it after -retries %d.\n", o.retries)
}

// exact prints a/b as a fraction with enough digits to show any difference.
func exact(a, b uint64) string {
	if b == 0 {
		return "n/a (no traffic)"
	}
	if a == b {
		return "1 (exact)"
	}
	return fmt.Sprintf("%.9f (differs by %d)", float64(a)/float64(b), int64(a)-int64(b))
}
