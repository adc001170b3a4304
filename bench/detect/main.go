// Command detect measures rampart's closed loop against the targets of
// the network-detection issue, in one run:
//
//   - time from the start of a flood (the first flood packets arriving on
//     the server's interface) to the first packet the firewall drops, for
//     a flood at full rate (trafgen, or the lab flooder without it) and for
//     one just above the UDP threshold (1.25x, the lab flooder paced);
//
//   - the agent's CPU while it is dropping the full-rate flood in XDP;
//
//   - CNN inference rate of the shipped model on one core.
//
//     sudo go run ./bench/detect [-rounds 3]
//
// The agent is the real binary (built first), with --firewall on the root
// end of a lab link and the responder in enforce mode.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rampart-shield/rampart/bench/internal/stats"
	"github.com/rampart-shield/rampart/internal/api"
	"github.com/rampart-shield/rampart/internal/detect/threshold"
	"github.com/rampart-shield/rampart/internal/lab"
	"github.com/rampart-shield/rampart/internal/procstat"
	"github.com/rampart-shield/rampart/models"
)

func main() {
	rounds := flag.Int("rounds", 3, "floods per kind")
	flag.IntVar(&floodCPUs, "flood-cpus", 2, "trafgen processes for the full-rate flood")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "detect: needs root (lab namespaces, eBPF)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "detect:", err)
		os.Exit(1)
	}
}

func readUint(path string) uint64 {
	b, _ := os.ReadFile(path)
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func rx(iface string) uint64 { return readUint("/sys/class/net/" + iface + "/statistics/rx_packets") }

// cpuTicks is a process's user+system time in clock ticks.
func cpuTicks(pid int) uint64 {
	n, _ := procstat.Ticks(pid, false)
	return n
}

const userHZ = 100

var floodCPUs = 2

type result struct {
	kind      string
	pps       float64 // arriving on the interface, before mitigation
	firstDrop time.Duration
	agentCPU  float64 // share of one core while dropping
	dropPPS   float64
}

func run(ctx context.Context, rounds int) error {
	dir, err := os.MkdirTemp("", "rampart-bench-detect-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "rampart")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/rampart").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	l, err := lab.New()
	if err != nil {
		return err
	}
	defer l.Close()
	atk, err := l.AddHost("attacker")
	if err != nil {
		return err
	}
	lk, err := l.ConnectRoot(atk, lab.LinkOptions{Quiet: true, Channels: 2})
	if err != nil {
		return err
	}
	if err := exec.Command("sysctl", "-q", "-w", "net.ipv4.conf."+lk.BIface+".rp_filter=1").Run(); err != nil {
		return err
	}
	fmt.Printf("lab %s: attacker %s -> server %s on %s (2 channels, native XDP)\n", l.ID, lk.AAddr, lk.BAddr, lk.BIface)

	_, trafgenErr := exec.LookPath("trafgen")
	var results []result
	kinds := []string{"full", "near"}
	for r := 0; r < rounds; r++ {
		for _, kind := range kinds {
			res, err := flood(ctx, bin, dir, l, atk, lk, kind, trafgenErr == nil, r)
			if err != nil {
				return fmt.Errorf("%s flood, round %d: %w", kind, r+1, err)
			}
			fmt.Fprintf(os.Stderr, "  round %d %-4s: %8.0f pkts/s arriving, first drop after %v, agent %.1f%% of a core while dropping %.0f pkts/s\n",
				r+1, kind, res.pps, res.firstDrop.Round(time.Millisecond), 100*res.agentCPU, res.dropPPS)
			results = append(results, res)
		}
	}
	cnn, err := cnnRate()
	if err != nil {
		return err
	}
	report(results, cnn, trafgenErr == nil)
	return nil
}

// flood starts a fresh agent, floods, and measures one run.
func flood(ctx context.Context, bin, dir string, l *lab.Lab, atk *lab.Host, lk *lab.Link, kind string, trafgen bool, round int) (result, error) {
	res := result{kind: kind}
	sock := filepath.Join(dir, fmt.Sprintf("api-%s-%d.sock", kind, round))
	pins := filepath.Join("/sys/fs/bpf", fmt.Sprintf("rampart-bench-%s-%s-%d", l.ID, kind, round))
	defer os.RemoveAll(pins)
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("respond:\n  mode: enforce\n  rules:\n    - {action: suggested, duration: 30s}\n"), 0o600)
	agent := exec.CommandContext(ctx, bin, "agent", "--socket", sock, "--no-default", "--config", cfg, "--firewall", lk.BIface,
		"--pin-root", pins, "--audit-file", "-", "--log-level", "warn")
	agent.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := agent.Start(); err != nil {
		return res, err
	}
	defer func() {
		agent.Process.Signal(os.Interrupt)
		agent.Wait()
	}()
	c := api.NewUnixClient(sock)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := c.FirewallStatus(ctx); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("the agent did not come up")
		}
	}
	time.Sleep(1500 * time.Millisecond) // the detectors' first look

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stopFlood func()
	base := rx(lk.BIface)
	if kind == "full" && trafgen {
		conf := filepath.Join(dir, "udp.trafgen")
		os.WriteFile(conf, []byte(trafgenUDP(lk)), 0o600)
		p, err := atk.Start("timeout", "-s", "INT", "-k", "3", "40", "trafgen", "--dev", lk.AIface, "--conf", conf, "--no-sock-mem", "--notouch-irq", "--cpus", strconv.Itoa(floodCPUs))
		if err != nil {
			return res, err
		}
		stopFlood = func() { p.Stop() }
	} else {
		f := lab.Flood{Iface: lk.AIface, SrcMAC: lk.AMAC, DstMAC: lk.BMAC, Dst: lk.BAddr, Src: netip.PrefixFrom(lk.AAddr, 32), Kind: "udp", Port: 9, Size: 18}
		if kind == "near" {
			f.Rate = int(1.25 * threshold.DefaultLimits.UDPPPS)
		}
		done := make(chan struct{})
		go func() { defer close(done); atk.Flood(fctx, f) }()
		stopFlood = func() { cancel(); <-done }
	}
	defer stopFlood()
	// The flood starts when its packets arrive; the first drop is the
	// firewall's counter moving.
	var start, first time.Time
	for deadline := time.Now().Add(15 * time.Second); first.IsZero(); time.Sleep(5 * time.Millisecond) {
		now := time.Now()
		if start.IsZero() && rx(lk.BIface) > base+50 {
			start = now
		}
		if !start.IsZero() {
			st, err := c.FirewallStatus(ctx)
			if err == nil && st.Stats["dropped"] > 0 {
				first = now
			}
		}
		if now.After(deadline) {
			return res, fmt.Errorf("no drop 15 s into the flood (arrived: %d packets)", rx(lk.BIface)-base)
		}
	}
	res.firstDrop = first.Sub(start)
	// Arrival rate and the agent's CPU while it drops.
	time.Sleep(500 * time.Millisecond)
	st0, _ := c.FirewallStatus(ctx)
	r0, t0, cpu0 := rx(lk.BIface), time.Now(), cpuTicks(agent.Process.Pid)
	time.Sleep(3 * time.Second)
	st1, _ := c.FirewallStatus(ctx)
	r1, t1, cpu1 := rx(lk.BIface), time.Now(), cpuTicks(agent.Process.Pid)
	dt := t1.Sub(t0).Seconds()
	res.pps = float64(r1-r0) / dt
	res.dropPPS = float64(st1.Stats["dropped"]-st0.Stats["dropped"]) / dt
	res.agentCPU = float64(cpu1-cpu0) / userHZ / dt
	return res, nil
}

// trafgenUDP is one 60-byte UDP packet from the attacker to the server.
func trafgenUDP(lk *lab.Link) string {
	hex := func(b net.HardwareAddr) string {
		var s []string
		for _, x := range b {
			s = append(s, fmt.Sprintf("0x%02x", x))
		}
		return strings.Join(s, ", ")
	}
	s, d := lk.AAddr.As4(), lk.BAddr.As4()
	return fmt.Sprintf("{\n %s,\n %s,\n c16(0x0800),\n 0x45, 0x00, c16(46), c16(0), c16(0), 64, 17, csumip(14, 33),\n %d, %d, %d, %d,\n %d, %d, %d, %d,\n c16(40000), c16(9), c16(26), c16(0),\n fill(0x00, 18),\n}\n",
		hex(lk.BMAC), hex(lk.AMAC), s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3])
}

// cnnRate is the shipped model's inference rate on one core, over samples
// shaped like live ones (mostly zero rows and one-hot features).
func cnnRate() (float64, error) {
	m, err := models.DDoS()
	if err != nil {
		return 0, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	samples := make([][][]float32, 100000)
	for i := range samples {
		rows := make([][]float32, m.N)
		n := 1 + rng.IntN(m.N)
		for r := range rows {
			rows[r] = make([]float32, m.F)
			if r < n {
				for f := range rows[r] {
					if rng.IntN(3) == 0 {
						rows[r][f] = rng.Float32()
					}
				}
			}
		}
		samples[i] = rows
	}
	out := make([]float32, len(samples))
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	start := time.Now()
	m.PredictBatch(samples, out)
	return float64(len(samples)) / time.Since(start).Seconds(), nil
}

func report(rs []result, cnn float64, trafgen bool) {
	by := map[string][]result{}
	for _, r := range rs {
		by[r.kind] = append(by[r.kind], r)
	}
	fmt.Println()
	fmt.Printf("%-34s %12s %14s %16s %14s\n", "flood", "pkts/s", "first drop", "agent CPU", "dropped/s")
	names := map[string]string{"full": "UDP, full rate (lab flooder)", "near": fmt.Sprintf("UDP, 1.25x threshold (%.0f pps)", 1.25*threshold.DefaultLimits.UDPPPS)}
	if trafgen {
		names["full"] = "UDP, full rate (trafgen)"
	}
	med := map[string]float64{}
	for _, k := range []string{"full", "near"} {
		var pps, fd, cpu, dr []float64
		for _, r := range by[k] {
			pps, fd, cpu, dr = append(pps, r.pps), append(fd, r.firstDrop.Seconds()), append(cpu, r.agentCPU), append(dr, r.dropPPS)
		}
		med[k] = stats.Median(fd)
		fmt.Printf("%-34s %12.0f %13.3fs %15.1f%% %14.0f   (medians of %d; first drop min-max %.3f-%.3f s)\n",
			names[k], stats.Median(pps), stats.Median(fd), 100*stats.Median(cpu), stats.Median(dr), len(fd), minf(fd), maxf(fd))
	}
	fmt.Println()
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "not met"
	}
	fmt.Printf("time to first drop, full-rate flood:     %.3f s (target <= 1 s for 0.5-1 Mpps: %s%s)\n", med["full"], verdict(med["full"] <= 1),
		map[bool]string{true: "", false: "; this flood is below 0.5 Mpps"}[stats.Median(pps(by["full"])) >= 5e5])
	fmt.Printf("time to first drop, just above threshold: %.3f s (target <= 2 s: %s)\n", med["near"], verdict(med["near"] <= 2))
	fmt.Printf("CNN inference, one core:                 %.0f samples/s (target >= 55,000: %s)\n", cnn, verdict(cnn >= 55000))
}

func pps(rs []result) []float64 {
	var out []float64
	for _, r := range rs {
		out = append(out, r.pps)
	}
	return out
}

func minf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}

func maxf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
