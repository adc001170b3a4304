package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	appwatch "github.com/rampart-shield/rampart/internal/app"
	"github.com/rampart-shield/rampart/internal/apptarget"
	"github.com/rampart-shield/rampart/internal/reqmon"
)

func (a *app) appCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Watch servers per request and per connection: application-layer and slow-rate DoS",
		Long: `An application watch follows a set of processes (a PID, a process tree, every
process of an executable, or a cgroup) through tracepoints, with no
instrumentation of the server. It runs two detectors (--detectors), each on
a probe instance of its own, both trained on the same benign window (--train,
default 200 s):

requests     each request (the work done for one client connection between
             reading a request and finishing its response) is charged its
             on-CPU time, page faults, memory, bytes received and sent and
             backend bytes; a K-means model of those vectors flags any request
             that no benign cluster accepts, while it is still running (a
             request burning CPU on a pathological regex, within 50 ms of
             crossing its cluster's threshold).
connections  each connection's socket events (accept, reads and writes with
             their sizes and gaps, close; a tick every 250 ms while it is
             idle; a stalled-send mark while its peer does not read) become a
             stream of symbols scored by a probabilistic suffix automaton (a
             PFA, as in Cogo) learned from the benign window; when anomalous
             connections hold 25% of what the server can hold (--max-conns),
             or its connections are about to reach it, the watch raises one
             alert per offending connection: Slowloris (headers trickled
             in), slow read (responses not read), slow POST.

Alerts go to the responder (rampart respond): in enforce mode it kills the
worker (its supervisor restarts it) or closes the connection, and blocks a
client that keeps offending.`,
		Example: `  sudo rampart app watch --exec /usr/sbin/nginx
  sudo rampart app watch --pid 4242 --tree --train 5m --out /var/lib/rampart/web
  sudo rampart app watch --cgroup system.slice/apache2.service --action close-sockets
  sudo rampart app watch --exec /usr/sbin/apache2 --max-conns 150 --detectors connections
  sudo rampart app list
  sudo rampart app requests nginx --inflight
  sudo rampart app stop nginx`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}

	var req appwatch.WatchRequest
	var pids []int
	var nsOf int
	var mappersFile string
	watch := &cobra.Command{
		Use:   "watch [--pid PID [--tree] | --exec PATH | --cgroup PATH | --all]",
		Short: "Start watching a running server's requests",
		Long: `Start watching processes that are already running (and those that start
later, for --exec and --cgroup). The agent loads a probe instance per
detector for the watch, trains each model on the first --train of benign
traffic (or uses --model / --conn-model) and then scores every request while
it runs and every connection on each of its events and ticks.

Targets:
  --pid PID       one process (host PID; with --pid-ns-of, as seen inside
                  that process's PID namespace); --tree adds its descendants
  --exec PATH     every process running PATH, now and later, and its children
  --cgroup PATH   every task in a cgroup v2 directory or below (absolute, or
                  relative to /sys/fs/cgroup), e.g. a container's
  --all           every task on the host

Detectors (--detectors, default both): "requests" loads probe reqmon-NAME,
"connections" loads probe netio-NAME. For the connections detector tell it
how many connections the server holds at once with --max-conns, as every
process of the watch counts against that one limit:
  Apache prefork        MaxRequestWorkers (each worker holds one connection)
  Apache event/worker   MaxRequestWorkers (plus the async connections it keeps)
  nginx                 worker_processes x worker_connections
Without it the limit is 1024; against a server that can really hold that
many, slow connections are no exhaustion and raise nothing (nginx withstands
Slowloris). Training needs benign traffic only; connections open when the
watch starts are not followed. After a block alert (5 offending connections
from one address) the address's new connections are closed as they are
accepted for a minute. Closing many sockets quickly needs the responder's
rate limit raised: respond: max-per-second: {close-sockets: 200}.`,
		Example: `  sudo rampart app watch --exec /usr/sbin/apache2 --train 10m
  sudo rampart app watch --exec /usr/sbin/apache2 --mappers examples/mappers/apache.yaml
  sudo rampart app watch --exec /usr/sbin/apache2 --max-conns 150 --out /var/lib/rampart/apache
  sudo rampart app watch --exec /usr/sbin/apache2 --max-conns 150 --conn-model /var/lib/rampart/apache/conn-model.json
  sudo rampart app watch --exec /usr/sbin/nginx --detectors connections --max-conns 2048
  sudo rampart app watch --pid $(pgrep -o node) --tree --name shop
  sudo rampart app watch --pid 1 --pid-ns-of $(docker inspect -f '{{.State.Pid}}' web) --tree`,
		Args: argsExactly(0, "no arguments (the target is given by flags)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Target.PIDs = pids
			req.Target.PIDNamespaceOf = nsOf
			for i, e := range req.Target.Execs {
				if abs, err := filepath.Abs(e); err == nil {
					req.Target.Execs[i] = abs
				}
			}
			if req.OutDir != "" {
				if abs, err := filepath.Abs(req.OutDir); err == nil {
					req.OutDir = abs
				}
			}
			if req.Model != "" {
				if abs, err := filepath.Abs(req.Model); err == nil {
					req.Model = abs
				}
			}
			if req.ConnModel != "" {
				if abs, err := filepath.Abs(req.ConnModel); err == nil {
					req.ConnModel = abs
				}
			}
			for _, d := range req.Detectors {
				if d != appwatch.DetectRequests && d != appwatch.DetectConnections {
					return usageError{fmt.Errorf("--detectors %q: want requests, connections or both (requests,connections)", d)}
				}
			}
			if mappersFile != "" {
				if len(req.Detectors) > 0 && !slices.Contains(req.Detectors, appwatch.DetectRequests) {
					return usageError{errors.New("--mappers maps requests: it needs the requests detector (--detectors requests)")}
				}
				ms, err := reqmon.ReadMappers(mappersFile)
				if err != nil {
					return usageError{fmt.Errorf("--mappers: %w", err)}
				}
				req.Mappers = ms
			}
			if err := req.Target.Validate(); err != nil {
				return usageError{err}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			info, err := c.WatchApp(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "watching %s as %q (probe %s, %d processes)\n", info.Target, info.Name, info.Probe, len(info.Processes))
			tr := req.Train
			if tr == "" {
				tr = "200s"
			}
			if info.Probe != "" {
				switch {
				case req.NoDetect:
					fmt.Fprintln(a.stdout, "requests: monitoring only: no model, no alerts")
				case req.Model != "":
					fmt.Fprintf(a.stdout, "requests: detecting with the model in %s\n", req.Model)
				default:
					fmt.Fprintf(a.stdout, "requests: training on the next %s of requests (benign traffic, please), then detecting\n", tr)
				}
			}
			if info.ConnProbe != "" {
				limit := "1024 (the default; set --max-conns)"
				if req.MaxConns > 0 {
					limit = fmt.Sprint(req.MaxConns)
				}
				if req.ConnModel != "" {
					fmt.Fprintf(a.stdout, "connections (probe %s): detecting with the model in %s, limit %s\n", info.ConnProbe, req.ConnModel, limit)
				} else {
					fmt.Fprintf(a.stdout, "connections (probe %s): training on the next %s of connections, then detecting; limit %s\n", info.ConnProbe, tr, limit)
				}
			}
			fmt.Fprintf(a.stdout, "follow it: rampart app show %s; rampart app requests %s --inflight\n", info.Name, info.Name)
			return nil
		},
	}
	f := watch.Flags()
	f.StringVar(&req.Name, "name", "", "name of the watch (default from the target)")
	f.IntSliceVar(&pids, "pid", nil, "process id to watch (repeatable)")
	f.IntVar(&nsOf, "pid-ns-of", 0, "the --pid values are PIDs inside the PID namespace of this host PID")
	f.BoolVar(&req.Target.Tree, "tree", false, "with --pid: watch the processes' descendants too")
	f.StringSliceVar(&req.Target.Execs, "exec", nil, "executable whose processes to watch (repeatable)")
	f.StringSliceVar(&req.Target.Cgroups, "cgroup", nil, "cgroup v2 directory to watch (repeatable)")
	f.BoolVar(&req.Target.All, "all", false, "watch every task on the host")
	f.BoolVar(&req.NoDetect, "no-detect", false, "only account requests: no model, no alerts")
	f.StringVar(&req.Train, "train", "", "benign training window of both detectors (default 200s)")
	f.IntVar(&req.MinTrain, "min-train", 0, "fewest requests to train on (default 1000)")
	f.StringVar(&req.Model, "model", "", "detect with this model file (model.json from an earlier --out)")
	f.StringVar(&req.OutDir, "out", "", "directory for train/test/scores/clusters/normalisation CSV files and model.json (requests), conn-model.json, conn-stats.json, conn-verdicts.jsonl (connections)")
	f.StringVar(&req.Action, "action", "", "suggested action for an offending request: kill (default), close-sockets, log")
	f.IntVar(&req.K, "k", 0, "number of clusters (default: chosen automatically)")
	f.IntVar(&req.BlockAfter, "block-after", 0, "offences from one client before a block alert (default 3 requests, 5 connections; -1 never)")
	f.StringSliceVar(&req.Detectors, "detectors", nil, "detectors to run: requests (per-request resources), connections (slow-rate DoS); default both")
	f.IntVar(&req.MaxConns, "max-conns", 0, "connections the server holds at once, all its processes together (Apache MaxRequestWorkers; nginx workers x worker_connections; default 1024)")
	f.StringVar(&req.ConnModel, "conn-model", "", "detect connections with this model file (conn-model.json from an earlier --out)")
	f.BoolVar(&req.ScoreAll, "score-all", false, "score every completed request in the agent; by default the kernel drops those the model is sure to accept (a 1-in-64 sample still comes through, as do all requests in flight)")
	f.StringVar(&mappersFile, "mappers", "", "uprobe request mappers (YAML: executable, function, return, action begin|end, id arg0..arg5|ret|tid) for servers the socket mapping serves too coarsely; example: examples/mappers/apache.yaml")

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "The watches, their phase and counters",
		Long: `List the watches: their target, how many processes they follow now,
the detector's phase (training or detecting), requests completed and in
flight, alerts raised, and requests lost (evicted from the kernel's table
before they completed, or dropped with a full ring buffer).`,
		Example: `  sudo rampart app list
  sudo rampart app list --json | jq '.[].detect.alerts'`,
		Args: argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ws, err := c.Apps(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.stdout, ws)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTARGET\tPROCS\tPHASE\tREQUESTS\tIN FLIGHT\tALERTS\tLOST\tCONNS\tCONN PHASE\tVERDICTS\tCONN ALERTS")
			for _, w := range ws {
				phase, alerts := "monitor", "-"
				if w.Detect != nil {
					phase = w.Detect.Phase
					alerts = fmt.Sprint(w.Detect.Alerts)
				}
				if w.Probe == "" {
					phase = "-"
				}
				conns, cphase, verdicts, calerts := "-", "-", "-", "-"
				if c := w.Connections; c != nil {
					conns, cphase = fmt.Sprint(c.Conns+uint64(c.TrainedConns)), c.Phase
					verdicts, calerts = fmt.Sprint(c.Verdicts), fmt.Sprint(c.Alerts)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", w.Name, w.Target, len(w.Processes), phase, w.Monitor.Completed, w.Monitor.InFlight, alerts,
					w.Monitor.Evicted+int64(w.Monitor.RingbufLost), conns, cphase, verdicts, calerts)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	show := &cobra.Command{
		Use:   "show NAME",
		Short: "One watch in detail (JSON)",
		Long: `Show one watch as JSON: its target and processes, the probe instance,
the monitor's and the kernel's counters, and the detector's status (phase,
requests trained on, k, requests scored, outliers, alerts).`,
		Example: `  sudo rampart app show nginx
  sudo rampart app show nginx | jq .detect`,
		Args: argsExactly(1, "the watch's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			w, err := c.App(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printJSON(a.stdout, w)
		},
	}

	var inflight bool
	var n int
	requests := &cobra.Command{
		Use:   "requests NAME",
		Short: "Requests in flight (--inflight, most CPU first) or just completed",
		Long: `List a watch's requests with their resources: on-CPU time, page faults,
memory, bytes received and sent. --inflight shows the requests running now
(as of the last sweep, every 50 ms), the most CPU first; without it, the
latest completed requests, newest first, with what completed them.`,
		Example: `  sudo rampart app requests nginx --inflight
  sudo rampart app requests node -n 100 --json`,
		Args: argsExactly(1, "the watch's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			rs, err := c.AppRequests(cmd.Context(), args[0], inflight, n)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.stdout, rs)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PID\tCONN\tSTATE\tDURATION\tCPU\tFAULTS\tMEM\tRX\tTX")
			for _, r := range rs {
				state := r.Reason
				if r.InFlight {
					state = "in flight"
					if r.Running {
						state = "running"
					}
				}
				v := r.Vector
				fmt.Fprintf(tw, "%d\t%s\t%s\t%v\t%v\t%.0f\t%s\t%s\t%s\n", r.PID, r.Conn, state,
					time.Duration(r.Duration*1e6).Round(time.Millisecond), time.Duration(v["cpu_ns"]).Round(100*time.Microsecond),
					v["page_faults"], bytesText(v["mem_bytes"]), bytesText(v["rx_bytes"]), bytesText(v["tx_bytes"]))
			}
			return tw.Flush()
		},
	}
	requests.Flags().BoolVar(&inflight, "inflight", false, "requests still running")
	requests.Flags().IntVar(&n, "n", 20, "at most this many")
	requests.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	stop := &cobra.Command{
		Use:   "stop NAME",
		Short: "Stop a watch and unload its probes",
		Long: `Stop a watch: its detector stops, its probe instances are unloaded and
its processes are no longer followed. Alerts and audit entries stay.`,
		Example: `  sudo rampart app stop nginx`,
		Args:    argsExactly(1, "the watch's name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.StopApp(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "stopped %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(watch, list, show, requests, stop)
	return cmd
}

func bytesText(v float64) string {
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.1fG", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1fM", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1fk", v/(1<<10))
	}
	return fmt.Sprintf("%.0f", v)
}

// watchSpecFromFlags is used by the agent's --watch flag: "exec:/usr/sbin/nginx",
// "pid:1234", "tree:1234", "cgroup:system.slice/x.service".
func watchSpecFromFlags(s string) (apptarget.Spec, error) {
	kind, val, ok := strings.Cut(s, ":")
	if !ok || val == "" {
		return apptarget.Spec{}, fmt.Errorf("watch %q: want exec:PATH, pid:PID, tree:PID or cgroup:PATH", s)
	}
	var sp apptarget.Spec
	switch kind {
	case "exec":
		sp.Execs = []string{val}
	case "cgroup":
		sp.Cgroups = []string{val}
	case "pid", "tree":
		var p int
		if _, err := fmt.Sscan(val, &p); err != nil {
			return sp, fmt.Errorf("watch %q: %q is not a PID", s, val)
		}
		sp.PIDs, sp.Tree = []int{p}, kind == "tree"
	default:
		return sp, fmt.Errorf("watch %q: want exec:PATH, pid:PID, tree:PID or cgroup:PATH", s)
	}
	return sp, sp.Validate()
}
