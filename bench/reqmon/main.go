// Command reqmon measures what per-request accounting costs a server: wrk
// throughput against nginx (a static 1 KiB file) and the lab's Node.js app
// (its home page) with no watch and with a reqmon watch of the server's
// processes (monitor and detector running), interleaved in rounds within
// one invocation, printed as ratios. The watched runs detect with a model
// trained once before the rounds on the same load.
//
//	sudo go run ./bench/reqmon              # 5 rounds of 5 s runs
//	sudo go run ./bench/reqmon -rounds 2 -t 3
//
// Target (issue 6): at most 5% throughput loss with reqmon attached.
package main

import (
	"context"
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

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/rampart-shield/rampart/bench/internal/stats"
	"github.com/rampart-shield/rampart/internal/apptarget"
	"github.com/rampart-shield/rampart/internal/detect/kmeans"
	"github.com/rampart-shield/rampart/internal/lab/apps"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/internal/reqmon"
	"github.com/rampart-shield/rampart/probes"
	rqprobe "github.com/rampart-shield/rampart/probes/reqmon"
)

var (
	keepHooks  *string
	sweepEvery *time.Duration
)

func main() {
	rounds := flag.Int("rounds", 5, "rounds; each runs both configurations, in alternating order")
	secs := flag.Int("t", 5, "seconds per wrk run")
	conns := flag.Int("c", 32, "wrk connections")
	threads := flag.Int("threads", 1, "wrk threads")
	prof := flag.String("cpuprofile", "", "write a CPU profile of this process (the agent side) to this file")
	only := flag.String("server", "", "run only this server (nginx or node)")
	confList := flag.String("confs", "none,empty,kernel,reqmon", "configurations: none, empty (programs that only return, on the hot hooks), kernel (the probe, no reader), reqmon (the watch)")
	keepHooks = flag.String("keep-hooks", "", "probe-only runs: attach only the reqmon programs whose hook matches this regexp (e.g. sock_(recv|send)), to split the kernel cost by hook")
	sweepEvery = flag.Duration("sweep", 0, "the watch's sweep interval (0: reqmon's default)")
	pin := flag.Bool("pin", true, "pin the server (one nginx worker) to CPU 0 and wrk to CPU 1, as when the load comes from elsewhere; the agent is not pinned and its CPU is reported")
	flag.Parse()
	if *pin {
		wrkPrefix = []string{"taskset", "-c", "1"}
	}
	if *prof != "" {
		f, err := os.Create(*prof)
		if err != nil {
			fatal(err.Error())
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if os.Geteuid() != 0 {
		fatal("needs root (loads eBPF programs)")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		fatal("needs wrk (apt-get install wrk)")
	}
	ctx := context.Background()
	m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Builtin: probes.Lookup})
	if err != nil {
		fatal(err.Error())
	}
	defer m.Close()

	opts := apps.Options{}
	if *pin {
		opts.Workers = 1
	}
	for _, c := range []struct {
		name  string
		start func(context.Context, apps.Options) (*apps.Server, error)
		path  string
	}{
		{"nginx", apps.StartNginx, "/static/1k.txt"},
		{"node", apps.StartNode, "/"},
	} {
		if *only != "" && c.name != *only {
			continue
		}
		srv, err := c.start(ctx, opts)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v (skipped)\n", c.name, err)
			continue
		}
		if *pin {
			for _, pid := range srv.PIDs() {
				if out, err := exec.Command("taskset", "-a", "-cp", "0", strconv.Itoa(pid)).CombinedOutput(); err != nil {
					fatal(fmt.Sprintf("pin %s %d: %v %s", c.name, pid, err, out))
				}
			}
		}
		// The model the watched runs detect with, trained once on this
		// server's load (in use, training happens once per window: the
		// steady state is detection; training time is benchmarked apart).
		model := train(ctx, m, srv, func() { wrk(srv.URL+c.path, 3, *conns, *threads) })
		res, agentCPU := map[string][]float64{}, map[string][]float64{}
		confs := strings.Split(*confList, ",")
		for r := 0; r < *rounds; r++ {
			for i := range confs {
				conf := confs[(i+r)%len(confs)]
				var stop func()
				switch conf {
				case "empty":
					stop = emptyHooks()
				case "kernel":
					stop = kernelOnly(ctx, m, srv)
				case "reqmon":
					stop = watch(ctx, m, srv, model)
				}
				cpu0, t0 := stats.CPUSeconds(syscall.RUSAGE_SELF), time.Now()
				rps := wrk(srv.URL+c.path, *secs, *conns, *threads)
				cpu := (stats.CPUSeconds(syscall.RUSAGE_SELF) - cpu0) / time.Since(t0).Seconds()
				if stop != nil {
					stop()
				}
				res[conf] = append(res[conf], rps)
				agentCPU[conf] = append(agentCPU[conf], cpu)
				fmt.Printf("%-6s round %d %-8s %9.0f req/s  agent %.3f cores\n", c.name, r+1, conf, rps, cpu)
			}
		}
		srv.Close()
		// Ratios within a round (runs side by side), then their median:
		// the machine's throughput drifts by more than the effect from one
		// minute to the next, less within a round.
		ratio := func(conf string) float64 {
			var rs []float64
			for i := range min(len(res[conf]), len(res["none"])) {
				rs = append(rs, res[conf][i]/res["none"][i])
			}
			return stats.Median(rs)
		}
		mb, me, mk, mw := stats.Median(res["none"]), stats.Median(res["empty"]), stats.Median(res["kernel"]), stats.Median(res["reqmon"])
		fmt.Printf("%-6s median req/s (median of per-round ratios to none): none %.0f, empty programs on the hot hooks %.0f (%.3f), probe only (no reader) %.0f (%.3f), reqmon watch %.0f (%.3f, loss %.1f%%; target <= 5%%); the watch's agent used %.3f cores\n\n",
			c.name, mb, me, ratio("empty"), mk, ratio("kernel"), mw, ratio("reqmon"), 100*(1-ratio("reqmon")), stats.Median(agentCPU["reqmon"]))
	}
}

// train runs a training watch while load runs and returns its model.
func train(ctx context.Context, m *probe.Manager, srv *apps.Server, load func()) *kmeans.Model {
	mon, err := reqmon.Start(ctx, reqmon.Options{Manager: m, Probe: "reqmon-train", Spec: apptarget.Spec{PIDs: []int{srv.MainPID}, Tree: true},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fatal("watch: " + err.Error())
	}
	defer m.Unload("reqmon-train")
	defer mon.Close()
	svc := &reqmon.Service{Name: "train", Monitor: mon, Config: reqmon.DetectorConfig{Train: time.Second}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go svc.Run(sctx)
	load()
	for deadline := time.Now().Add(30 * time.Second); svc.Model() == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			fatal(fmt.Sprintf("no model after the training load: %+v", svc.Status()))
		}
	}
	return svc.Model()
}

// watch starts a reqmon watch of the server's processes with the request
// detector running on model (the cost measured is the probe, the sweeps
// and the scoring of every request, completed and in flight).
func watch(ctx context.Context, m *probe.Manager, srv *apps.Server, model *kmeans.Model) func() {
	mon, err := reqmon.Start(ctx, reqmon.Options{Manager: m, Probe: "reqmon-bench", Spec: apptarget.Spec{PIDs: []int{srv.MainPID}, Tree: true}, Sweep: *sweepEvery,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fatal("watch: " + err.Error())
	}
	svc := &reqmon.Service{Name: "bench", Monitor: mon, Config: reqmon.DetectorConfig{Model: model, Features: model.Features()}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(sctx) }()
	time.Sleep(200 * time.Millisecond)
	return func() {
		cancel()
		<-done
		mon.Close()
		m.Unload("reqmon-bench")
	}
}

// kernelOnly loads the probe and its targets but reads nothing: the
// kernel side's cost alone.
func kernelOnly(ctx context.Context, m *probe.Manager, srv *apps.Server) func() {
	// The programs a watch attaches (no send hook: reqmon.Options.Sends),
	// or with -keep-hooks only those whose hook matches: the kernel cost
	// by hook.
	man, err := probe.ParseManifest(rqprobe.Manifest())
	if err != nil {
		fatal(err.Error())
	}
	re := regexp.MustCompile(*keepHooks)
	man.Programs = slices.DeleteFunc(man.Programs, func(p probe.Program) bool {
		return (*keepHooks == "" && p.Name == rqprobe.ProgSend) || !re.MatchString(p.Hook)
	})
	req := probe.LoadRequest{Name: "reqmon", Manifest: man, Object: rqprobe.Object(), Origin: "builtin"}
	if _, err := m.Load(ctx, req); err != nil {
		fatal("load: " + err.Error())
	}
	r, err := apptarget.Resolve(apptarget.Spec{PIDs: []int{srv.MainPID}, Tree: true})
	if err != nil {
		fatal(err.Error())
	}
	ports, _ := reqmon.ListeningPorts()
	err = m.WithMaps("reqmon", func(maps map[string]*ebpf.Map) error {
		for _, p := range ports {
			maps["listen_ports"].Update(uint32(p), uint8(1), ebpf.UpdateAny)
		}
		return apptarget.Install(maps, r)
	})
	if err != nil {
		fatal(err.Error())
	}
	time.Sleep(200 * time.Millisecond)
	return func() { m.Unload("reqmon") }
}

// emptyHooks attaches a program that only returns to each of reqmon's
// hot tp_btf hooks (socket reads, context switches): the cost
// of the hooks themselves on this kernel, the floor under any probe on
// them.
func emptyHooks() func() {
	var links []link.Link
	for _, hook := range []string{"sock_recv_length", "sched_switch"} {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "rq_empty", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp,
			AttachTo: hook, License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
		if err != nil {
			fatal("empty program on " + hook + ": " + err.Error())
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
		p.Close()
		if err != nil {
			fatal("attach " + hook + ": " + err.Error())
		}
		links = append(links, l)
	}
	time.Sleep(200 * time.Millisecond)
	return func() {
		for _, l := range links {
			l.Close()
		}
	}
}

var rpsRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// wrkPrefix runs wrk under taskset when -pin.
var wrkPrefix []string

func wrk(url string, secs, conns, threads int) float64 {
	args := append(append([]string{}, wrkPrefix...), "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", strconv.Itoa(secs)+"s", url)
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		fatal(fmt.Sprintf("wrk: %v\n%s", err, out))
	}
	m := rpsRE.FindSubmatch(out)
	if m == nil {
		fatal("wrk printed no Requests/sec:\n" + string(out))
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func fatal(msg string) {
	fmt.Fprintln(os.Stderr, "reqmon bench:", msg)
	os.Exit(1)
}
