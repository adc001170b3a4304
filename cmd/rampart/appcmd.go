package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	appwatch "github.com/rampart-shield/rampart/internal/app"
	"github.com/rampart-shield/rampart/internal/apptarget"
)

func (a *app) appCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Watch servers per request: resources, in-flight anomaly detection",
		Long: `An application watch follows a set of processes (a PID, a process tree, every
process of an executable, or a cgroup) through tracepoints, with no
instrumentation of the server: each request (the work done for one client
connection between reading a request and finishing its response) is charged
its on-CPU time, page faults, memory, bytes received and sent and backend
bytes.

After a training window of benign traffic (default 200 s) a K-means model of
those resource vectors flags any request that no benign cluster accepts,
while it is still running: a request burning CPU on a pathological regex is
flagged within a sweep (50 ms) of crossing its cluster's threshold. Alerts go
to the responder (rampart respond): in enforce mode it kills the worker
(its supervisor restarts it) or closes the connection, and blocks a client
that keeps offending.`,
		Example: `  sudo rampart app watch --exec /usr/sbin/nginx
  sudo rampart app watch --pid 4242 --tree --train 5m --out /var/lib/rampart/web
  sudo rampart app watch --cgroup system.slice/apache2.service --action close-sockets
  sudo rampart app list
  sudo rampart app requests nginx --inflight
  sudo rampart app stop nginx`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}

	var req appwatch.WatchRequest
	var pids []int
	var nsOf int
	watch := &cobra.Command{
		Use:   "watch [--pid PID [--tree] | --exec PATH | --cgroup PATH | --all]",
		Short: "Start watching a running server's requests",
		Long: `Start watching processes that are already running (and those that start
later, for --exec and --cgroup). The agent loads a reqmon probe instance for
the watch, trains a model on the first --train of requests (or uses --model)
and then scores every request while it runs.

Targets:
  --pid PID       one process (host PID; with --pid-ns-of, as seen inside
                  that process's PID namespace); --tree adds its descendants
  --exec PATH     every process running PATH, now and later, and its children
  --cgroup PATH   every task in a cgroup v2 directory or below (absolute, or
                  relative to /sys/fs/cgroup), e.g. a container's
  --all           every task on the host`,
		Example: `  sudo rampart app watch --exec /usr/sbin/apache2 --train 10m
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
			switch {
			case req.NoDetect:
				fmt.Fprintln(a.stdout, "monitoring only: no model, no alerts")
			case req.Model != "":
				fmt.Fprintf(a.stdout, "detecting with the model in %s\n", req.Model)
			default:
				tr := req.Train
				if tr == "" {
					tr = "200s"
				}
				fmt.Fprintf(a.stdout, "training on the next %s of requests (benign traffic, please), then detecting\n", tr)
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
	f.StringVar(&req.Train, "train", "", "benign training window (default 200s)")
	f.IntVar(&req.MinTrain, "min-train", 0, "fewest requests to train on (default 1000)")
	f.StringVar(&req.Model, "model", "", "detect with this model file (model.json from an earlier --out)")
	f.StringVar(&req.OutDir, "out", "", "directory for train/test/scores/clusters/normalisation CSV files and model.json")
	f.StringVar(&req.Action, "action", "", "suggested action for an offending request: kill (default), close-sockets, log")
	f.IntVar(&req.K, "k", 0, "number of clusters (default: chosen automatically)")
	f.IntVar(&req.BlockAfter, "block-after", 0, "offences from one client before a block alert (default 3; -1 never)")

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
		Args:  argsExactly(0, "no arguments"),
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
			fmt.Fprintln(tw, "NAME\tTARGET\tPROCS\tPHASE\tREQUESTS\tIN FLIGHT\tALERTS\tLOST")
			for _, w := range ws {
				phase, alerts := "monitor", "-"
				if w.Detect != nil {
					phase = w.Detect.Phase
					alerts = fmt.Sprint(w.Detect.Alerts)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%s\t%d\n", w.Name, w.Target, len(w.Processes), phase, w.Monitor.Completed, w.Monitor.InFlight, alerts, w.Monitor.Evicted+int64(w.Monitor.RingbufLost))
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
		Args:  argsExactly(1, "the watch's name"),
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
		Args:  argsExactly(1, "the watch's name"),
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
		Short: "Stop a watch and unload its probe",
		Long: `Stop a watch: its detector stops, its probe instances are unloaded and
its processes are no longer followed. Alerts and audit entries stay.`,
		Example: `  sudo rampart app stop nginx`,
		Args:  argsExactly(1, "the watch's name"),
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
