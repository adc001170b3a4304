// Command slowrate measures what the connection detector of an application
// watch (netio probe + PFA detector, internal/slowrate) costs a server:
// Apache httpd prefork serving a static 1 KiB page under benign load, with
// no watch and with a watch of its processes whose detector is running
// (detecting, with a model trained at the start on the same traffic),
// interleaved in rounds within one invocation, printed as throughput
// ratios and as CPU per request (Apache's, in whose context the probe's
// kernel work runs, plus the agent's). Three loads: wrk on keep-alive
// connections for a 1 KiB page (a recv and a send per request: the worst
// case), ab with a new connection per request (accept, recv, send, close
// each) and wrk with a web mix of object sizes (the benign load of the
// target).
//
//	sudo go run ./bench/slowrate              # 5 rounds of 5 s runs
//	sudo go run ./bench/slowrate -rounds 3 -t 3
//	sudo go run ./bench/slowrate -confs none,counts,counts-nosys,collect,watch -v
//
// -confs splits the cost: counts is the probe attached and counting
// without streaming events (its kernel side), counts-nosys the same
// without its syscall tracepoints (accept, close: while any is attached,
// every system call of every task takes the kernel's slow path), collect
// the events streamed and read by a collector with no detector, watch the
// detector too.
//
// Target (issue 7): at most 3% throughput loss.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rampart-shield/rampart/bench/internal/stats"
	"github.com/rampart-shield/rampart/internal/apptarget"
	"github.com/rampart-shield/rampart/internal/detect/pfa"
	"github.com/rampart-shield/rampart/internal/lab/apps"
	"github.com/rampart-shield/rampart/internal/netio"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/internal/procstat"
	"github.com/rampart-shield/rampart/internal/slowrate"
	rec "github.com/rampart-shield/rampart/probes/netio"
)

var (
	flushUS *string
	// keepHooks: the counts configurations attach only the programs
	// whose hook matches (to split the kernel-side cost by hook).
	keepHooks *string
	verbose   *bool
)

// groupCPU is the CPU time of the server's processes (user and system,
// with their reaped children), in seconds.
func groupCPU(srv *apps.Server) float64 {
	var ticks uint64
	for _, pid := range srv.PIDs() {
		n, _ := procstat.Ticks(pid, true) // a process gone meanwhile: 0
		ticks += n
	}
	return float64(ticks) / procstat.UserHZ
}

// bpfNS is the run time of the netio programs loaded (with
// kernel.bpf_stats_enabled), in ns.
func bpfNS() int64 {
	out, err := exec.Command("bpftool", "prog", "show", "-j").Output()
	if err != nil {
		return 0
	}
	var progs []struct {
		Name      string `json:"name"`
		RunTimeNS int64  `json:"run_time_ns"`
	}
	json.Unmarshal(out, &progs)
	var n int64
	for _, p := range progs {
		if strings.HasPrefix(p.Name, "netio_") {
			n += p.RunTimeNS
		}
	}
	return n
}

func main() {
	rounds := flag.Int("rounds", 5, "rounds; each runs both configurations, in alternating order")
	secs := flag.Int("t", 5, "seconds per load run")
	conns := flag.Int("c", 16, "concurrent client connections")
	workers := flag.Int("workers", 32, "Apache MaxRequestWorkers")
	prof := flag.String("cpuprofile", "", "write a CPU profile of the watched runs to this file")
	only := flag.String("load", "", "run only the loads whose name starts with this (wrk, ab, wrk web)")
	verbose = flag.Bool("v", false, "print the agent's and the BPF programs' CPU use of each watched run (enables kernel.bpf_stats_enabled)")
	keepHooks = flag.String("keep-hooks", "", "counts configurations: attach only the netio programs whose hook matches this regexp (e.g. sock_(recv|send))")
	flushUS = flag.String("flush-us", "", "netio_flush_us of the watch (default: the manifest's)")
	confList := flag.String("confs", "none,watch", "configurations: none, counts (probe counting only, no events), counts-nosys (the same without its syscall tracepoints), collect (events read, no detector), watch (the detector)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fatal("needs root (loads eBPF programs)")
	}
	for _, tool := range []string{"wrk", "ab"} {
		if _, err := exec.LookPath(tool); err != nil {
			fatal("needs " + tool + " (apt-get install wrk apache2-utils)")
		}
	}
	if *verbose {
		exec.Command("sysctl", "-q", "-w", "kernel.bpf_stats_enabled=1").Run()
		defer exec.Command("sysctl", "-q", "-w", "kernel.bpf_stats_enabled=0").Run()
	}
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := probe.NewManager(probe.ManagerOptions{Logger: quiet})
	if err != nil {
		fatal(err.Error())
	}
	defer m.Close()
	srv, err := apps.StartApache(ctx, apps.Options{Workers: *workers})
	if err != nil {
		fatal(err.Error())
	}
	defer srv.Close()
	url := srv.URL + "/static/1k.txt"
	loads := []struct {
		name string
		run  func() float64
	}{
		{"wrk keep-alive", func() float64 { return wrk(url, *secs, *conns) }},
		{"ab conn/request", func() float64 { return ab(url, *secs, *conns) }},
		{"wrk web mix", func() float64 { return wrkMix(srv.URL, *secs, *conns) }},
	}

	// A model of this traffic, trained once on both loads.
	fmt.Println("training a connection model on both loads...")
	model := train(ctx, m, srv, quiet, func() {
		wrk(url, 2, *conns)
		ab(url, 2, *conns)
		wrkMix(srv.URL, 2, *conns)
	})
	st := model.Stats()
	fmt.Printf("model: %d states, %d transitions, %d bytes, threshold %.2f bits, %d connections\n",
		st.States, st.Transitions, st.Bytes, model.Calibration.Threshold, model.Info.Conns)

	var pf *os.File
	if *prof != "" {
		if pf, err = os.Create(*prof); err != nil {
			fatal(err.Error())
		}
		pprof.StartCPUProfile(pf)
		defer pprof.StopCPUProfile()
	}
	for _, l := range loads {
		if *only != "" && !strings.HasPrefix(l.name, *only) {
			continue
		}
		res := map[string][]float64{}
		cpuPer := map[string][]float64{}
		confs := strings.Split(*confList, ",")
		var events uint64
		for r := 0; r < *rounds; r++ {
			for i := range confs {
				conf := confs[(i+r)%len(confs)]
				var stop func() uint64
				if !strings.HasPrefix(conf, "none") {
					stop = watch(ctx, m, srv, model, quiet, conf)
				}
				cpu0, bpf0, a0, t0 := stats.CPUSeconds(syscall.RUSAGE_SELF), bpfNS(), groupCPU(srv), time.Now()
				rps := l.run()
				el := time.Since(t0).Seconds()
				acpu, scpu := groupCPU(srv)-a0, stats.CPUSeconds(syscall.RUSAGE_SELF)-cpu0
				if stop != nil {
					events += stop()
				}
				// CPU per request: Apache's (the kernel's work for the probe
				// runs in its context) plus, when watched, the agent's.
				perReq := acpu / (rps * float64(*secs))
				if conf != "none" {
					perReq = (acpu + scpu) / (rps * float64(*secs))
				}
				cpuPer[conf] = append(cpuPer[conf], perReq)
				if conf != "none" && *verbose {
					fmt.Printf("   agent CPU %.1f%% of a CPU, BPF programs %.1f%% of a CPU\n", 100*(stats.CPUSeconds(syscall.RUSAGE_SELF)-cpu0)/el, 100*float64(bpfNS()-bpf0)/1e9/el)
				}
				res[conf] = append(res[conf], rps)
				fmt.Printf("%-16s round %d %-6s %9.0f req/s\n", l.name, r+1, conf, rps)
			}
		}
		mb, cb := stats.Median(res["none"]), stats.Median(cpuPer["none"])
		fmt.Printf("%-16s median req/s: none %.0f", l.name, mb)
		for _, c := range confs {
			if c != "none" {
				mw := stats.Median(res[c])
				fmt.Printf(", %s %.0f (ratio %.3f, loss %.1f%%)", c, mw, mw/mb, 100*(1-mw/mb))
			}
		}
		fmt.Printf("; target <= 3%% for watch; %.0f events/s detected\n", float64(events)/float64(*rounds**secs))
		fmt.Printf("%-16s median CPU per request (Apache, plus the agent when watched): none %.1f µs", l.name, cb*1e6)
		for _, c := range confs {
			if c != "none" {
				cw := stats.Median(cpuPer[c])
				fmt.Printf(", %s %.1f µs (+%.1f%%)", c, cw*1e6, 100*(cw/cb-1))
			}
		}
		fmt.Printf("\n\n")
	}
}

// train watches srv, runs load and returns the model the service learned.
func train(ctx context.Context, m *probe.Manager, srv *apps.Server, log *slog.Logger, load func()) *pfa.Model {
	c, err := netio.WatchWith(ctx, m, apptarget.Spec{PIDs: []int{srv.MainPID}, Tree: true}, netio.WatchOptions{Probe: "netio-bench"})
	if err != nil {
		fatal("watch: " + err.Error())
	}
	svc := &slowrate.Service{Name: "bench", Collector: c, Log: log,
		Config: slowrate.Config{Train: 3 * time.Second, MinConns: 50, Limit: 32, BlockAfter: -1}}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(sctx) }()
	load()
	for deadline := time.Now().Add(30 * time.Second); svc.Model() == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			fatal(fmt.Sprintf("no model after the training load: %+v", svc.Status()))
		}
	}
	cancel()
	<-done
	c.Close()
	m.Unload("netio-bench")
	return svc.Model()
}

// watch starts a watch of srv's processes detecting with model; the stop
// function returns the events the detector saw.
func watch(ctx context.Context, m *probe.Manager, srv *apps.Server, model *pfa.Model, log *slog.Logger, conf string) func() uint64 {
	o := netio.WatchOptions{Probe: "netio-bench", Params: map[string]string{}}
	if strings.HasPrefix(conf, "counts") {
		o.Params["netio_io_events"] = "0"
	}
	if *flushUS != "" {
		o.Params["netio_flush_us"] = *flushUS
	}
	if conf == "counts-nosys" || (*keepHooks != "" && strings.HasPrefix(conf, "counts")) {
		// The counting probe without its syscall tracepoints (accept,
		// close): what those cost every task on the host.
		man, err := probe.ParseManifest(rec.Manifest())
		if err != nil {
			fatal(err.Error())
		}
		man.Programs = slices.DeleteFunc(man.Programs, func(p probe.Program) bool {
			if *keepHooks != "" {
				return !regexp.MustCompile(*keepHooks).MatchString(p.Hook)
			}
			return strings.HasPrefix(p.Hook, "tracepoint:syscalls/")
		})
		if _, err := m.Load(ctx, probe.LoadRequest{Name: "netio-bench", Manifest: man, Object: rec.Object(), Origin: "builtin",
			Params: map[string]string{"netio_io_events": "0"}}); err != nil {
			fatal("load: " + err.Error())
		}
	}
	c, err := netio.WatchWith(ctx, m, apptarget.Spec{PIDs: []int{srv.MainPID}, Tree: true}, o)
	if err != nil {
		fatal("watch: " + err.Error())
	}
	if conf != "watch" {
		var n uint64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for b := range c.Batches() {
				n += uint64(len(b))
			}
		}()
		return func() uint64 {
			c.Close()
			<-done
			m.Unload("netio-bench")
			return 0
		}
	}
	svc := &slowrate.Service{Name: "bench", Collector: c, Log: log,
		Config: slowrate.Config{Model: model, Limit: 32, BlockAfter: -1}}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(sctx) }()
	time.Sleep(200 * time.Millisecond)
	return func() uint64 {
		n := svc.Status().Events
		cancel()
		<-done
		c.Close()
		m.Unload("netio-bench")
		return n
	}
}

var (
	wrkRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	abRE  = regexp.MustCompile(`Requests per second:\s+([0-9.]+)`)
)

func wrk(url string, secs, conns int) float64 {
	return run(wrkRE, "wrk", "-t", "1", "-c", strconv.Itoa(conns), "-d", strconv.Itoa(secs)+"s", url)
}

// mixScript picks each request's object the way web traffic does (after
// the Choi-Limb model Cogo's clients followed: many small objects, a heavy
// tail; mean response about 21 KiB) and pads its URL by a random length.
const mixScript = `
local paths = {}
local function add(p, n) for i = 1, n do paths[#paths + 1] = p end end
add("/static/100.txt", 4); add("/static/1k.txt", 6); add("/static/10k.txt", 6)
add("/static/50k.txt", 3); add("/static/200k.txt", 1)
math.randomseed(7)
request = function()
  local p = paths[math.random(#paths)] .. "?pad=" .. string.rep("x", math.random(0, 200))
  return wrk.format("GET", p)
end
`

// wrkMix is wrk on keep-alive connections requesting the web mix.
func wrkMix(base string, secs, conns int) float64 {
	f, err := os.CreateTemp("", "rampart-mix-*.lua")
	if err != nil {
		fatal(err.Error())
	}
	defer os.Remove(f.Name())
	f.WriteString(mixScript)
	f.Close()
	return run(wrkRE, "wrk", "-t", "1", "-c", strconv.Itoa(conns), "-d", strconv.Itoa(secs)+"s", "-s", f.Name(), base)
}

// ab runs for secs with a new connection per request (no -k).
func ab(url string, secs, conns int) float64 {
	return run(abRE, "ab", "-q", "-r", "-c", strconv.Itoa(conns), "-t", strconv.Itoa(secs), "-n", "10000000", url)
}

func run(re *regexp.Regexp, name string, args ...string) float64 {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		fatal(fmt.Sprintf("%s: %v\n%s", name, err, out))
	}
	m := re.FindSubmatch(out)
	if m == nil {
		fatal(name + " printed no rate:\n" + string(out))
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func fatal(msg string) {
	fmt.Fprintln(os.Stderr, "slowrate bench:", msg)
	os.Exit(1)
}
