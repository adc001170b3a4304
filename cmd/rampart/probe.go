package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-shield/rampart/internal/api"
	"github.com/rampart-shield/rampart/internal/probe"
)

func (a *app) probeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Load, list, read and unload probes in the running agent",
		Long: `A probe is one eBPF object plus its manifest: the programs and their hooks
(xdp:IFACE, tc-ingress:IFACE, tracepoint:CAT/NAME, uprobe:BIN:SYMBOL, ...),
the maps exported as metrics and the ring buffers exported as event streams.

These commands talk to a running agent (see rampart agent) over its unix
socket, or over TCP with --server.`,
		Example: `  sudo rampart probe load packet-counter --iface eth0
  sudo rampart probe list
  sudo rampart probe metrics packet-counter
  sudo rampart probe unload packet-counter`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(a.probeLoadCommand(), a.probeListCommand(), a.probeShowCommand(),
		a.probeUnloadCommand(), a.probeMetricsCommand(), a.probeEventsCommand())
	return cmd
}

func (a *app) probeLoadCommand() *cobra.Command {
	var o struct {
		manifest, object, source, iface string
		attach, params                  []string
	}
	cmd := &cobra.Command{
		Use:   "load NAME [--manifest FILE] [--object FILE.o | --source FILE.c] [--attach HOOK ...]",
		Short: "Load (or replace) a probe",
		Long: `Load a probe under NAME, replacing a probe of that name if one is loaded.

With --manifest, the probe is yours: the manifest is checked here first, then
the object (or C source, which the agent compiles with clang) named in the
manifest is read — paths in the manifest are relative to the manifest's
directory — and sent to the agent. --object or --source override the
manifest's path.

Without --manifest, NAME is a built-in probe (e.g. packet-counter).

--attach moves programs to other hooks: PROGRAM=HOOK, or just HOOK when the
probe has one program. --iface fills network hooks that name no interface.
--param sets a load-time constant of the manifest (e.g. N_SESSION=4096).`,
		Example: `  # The built-in packet counter on eth0:
  sudo rampart probe load packet-counter --iface eth0

  # Your own probe: manifest + compiled object, attached to tc ingress of eth1:
  sudo rampart probe load synmon --manifest ./synmon/manifest.yaml --attach tc-ingress:eth1

  # Compile from C source on the agent, with a parameter:
  sudo rampart probe load synmon --manifest ./synmon/manifest.yaml --source ./synmon/synmon.bpf.c --param N_SESSION=4096`,
		Args: argsExactly(1, "one argument, the probe NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !probe.ProbeNameRE.MatchString(name) {
				return usagef("probe name %q: use lower-case letters, digits, '_', '.', '-' (at most 63)", name)
			}
			if o.object != "" && o.source != "" {
				return usagef("give --object or --source, not both")
			}
			params, err := parseParams(o.params)
			if err != nil {
				return err
			}
			req := probe.LoadRequest{Name: name}
			switch {
			case o.manifest != "":
				req, err = api.ReadLoadRequest(name, api.ProbeFiles{Manifest: o.manifest, Object: o.object, Source: o.source})
				if err != nil {
					return err
				}
			case o.object != "" || o.source != "":
				return usagef("--object and --source need --manifest: the manifest says which programs attach where and which maps are metrics")
			}
			req.Attach, req.Iface, req.Params = o.attach, o.iface, params

			c, err := a.client()
			if err != nil {
				return err
			}
			info, err := c.Load(cmd.Context(), req)
			if err != nil {
				return err
			}
			printLoaded(a.stdout, info)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.manifest, "manifest", "m", "", "the probe's manifest (YAML or JSON)")
	f.StringVar(&o.object, "object", "", "compiled eBPF object (overrides the manifest's object)")
	f.StringVar(&o.source, "source", "", "C source the agent compiles (overrides the manifest's source)")
	f.StringArrayVar(&o.attach, "attach", nil, "attach override: HOOK or PROGRAM=HOOK (repeatable)")
	f.StringVar(&o.iface, "iface", "", "interface for network hooks that name none")
	f.StringArrayVar(&o.params, "param", nil, "load-time constant: NAME=VALUE (repeatable)")
	return cmd
}

// parseParams turns K=V flags into a map.
func parseParams(list []string) (map[string]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(list))
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, usagef("--param %q: want NAME=VALUE, e.g. N_SESSION=4096", kv)
		}
		m[k] = v
	}
	return m, nil
}

func printLoaded(w io.Writer, info probe.ProbeInfo) {
	fmt.Fprintf(w, "loaded %s (%s) in %s\n", info.Name, info.Origin, info.LoadDuration.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, p := range info.Programs {
		fmt.Fprintf(tw, "  program\t%s → %s\t%s\n", p.Name, p.Hook, p.Mode)
	}
	for _, m := range info.Metrics {
		fmt.Fprintf(tw, "  metric\t%s\t%s\n", m.Name, metricTraits(m))
	}
	for _, e := range info.Events {
		fmt.Fprintf(tw, "  events\t%s\t%s\n", e.Name, e.Type)
	}
	tw.Flush()
	if len(info.Metrics) > 0 {
		fmt.Fprintf(w, "read it with: rampart probe metrics %s\n", info.Name)
	}
	if len(info.Events) > 0 {
		fmt.Fprintf(w, "follow it with: rampart probe events %s\n", info.Name)
	}
}

func metricTraits(m probe.MetricInfo) string {
	t := []string{m.Type}
	if m.SwapOnRead {
		t = append(t, "swap-on-read")
	}
	if m.EmptyOnRead {
		t = append(t, "empty-on-read")
	}
	return strings.Join(t, ", ")
}

func (a *app) probeListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the loaded probes",
		Long: `List the probes the agent has loaded: their origin (builtin or user), how
many programs and metrics each has, how many swap-on-read cycles it has done
and how long ago it was loaded.`,
		Example: `  sudo rampart probe list
  sudo rampart probe list --json | jq '.[].name'`,
		Aliases: []string{"ls"},
		Args:    argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.List(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.stdout, list)
			}
			if len(list) == 0 {
				fmt.Fprintln(a.stdout, "no probes loaded (load one with: rampart probe load packet-counter)")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tORIGIN\tPROGRAMS\tMETRICS\tSWAPS\tLOADED")
			for _, p := range list {
				swaps := "-"
				if p.Swapping {
					swaps = fmt.Sprint(p.Swaps)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", p.Name, p.Origin, len(p.Programs), len(p.Metrics), swaps, ago(p.LoadedAt))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// ago renders how long ago t was, coarsely.
func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return t.Format(time.RFC3339)
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func (a *app) probeShowCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show one probe in detail",
		Long: `Show everything the agent knows about a loaded probe: its programs and where
they are attached (and how: driver or generic XDP, tcx, ...), its metrics
with their maps and key/value types, its event streams with received and lost
counts, and its parameters.`,
		Example: `  sudo rampart probe show packet-counter
  sudo rampart probe show packet-counter --json`,
		Args: argsExactly(1, "one argument, the probe NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			info, err := c.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.stdout, info)
			}
			printProbe(a.stdout, info)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printProbe(w io.Writer, p probe.ProbeInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", p.Name)
	if p.Description != "" {
		fmt.Fprintf(tw, "description:\t%s\n", p.Description)
	}
	fmt.Fprintf(tw, "origin:\t%s\n", p.Origin)
	if !p.LoadedAt.IsZero() {
		fmt.Fprintf(tw, "loaded:\t%s (%s, took %s)\n", p.LoadedAt.Local().Format(time.RFC3339), ago(p.LoadedAt), p.LoadDuration.Round(time.Millisecond))
	}
	if p.Swapping {
		fmt.Fprintf(tw, "swap-on-read:\tyes, %d swaps\n", p.Swaps)
	}
	if len(p.Params) > 0 {
		keys := make([]string, 0, len(p.Params))
		for k := range p.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var kv []string
		for _, k := range keys {
			kv = append(kv, k+"="+p.Params[k])
		}
		fmt.Fprintf(tw, "params:\t%s\n", strings.Join(kv, " "))
	}
	tw.Flush()

	if len(p.Programs) > 0 {
		fmt.Fprintln(w, "programs:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, pr := range p.Programs {
			extra := ""
			if pr.Pivot {
				extra = "  (via dispatcher)"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\tid %d%s\n", pr.Name, pr.Hook, pr.Type, pr.Mode, pr.ID, extra)
		}
		tw.Flush()
	}
	if len(p.Metrics) > 0 {
		fmt.Fprintln(w, "metrics:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, m := range p.Metrics {
			fmt.Fprintf(tw, "  %s\t%s\tmap %s (%s, key %s, value %s)\n", m.Name, metricTraits(m), m.Map, m.MapType, orDash(m.KeyType), orDash(m.ValueType))
			if m.Help != "" {
				fmt.Fprintf(tw, "  \t%s\n", m.Help)
			}
		}
		tw.Flush()
	}
	if len(p.Events) > 0 {
		fmt.Fprintln(w, "events:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, e := range p.Events {
			fmt.Fprintf(tw, "  %s\tmap %s\t%s\treceived %d, lost %d\n", e.Name, e.Map, e.Type, e.Received, e.Lost)
		}
		tw.Flush()
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) probeUnloadCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "unload NAME",
		Short: "Detach and unload a probe",
		Long: `Detach a probe's programs from their hooks and free its maps. Its metrics
disappear from /metrics and its event streams end.`,
		Example: `  sudo rampart probe unload packet-counter`,
		Aliases: []string{"rm"},
		Args:    argsExactly(1, "one argument, the probe NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Unload(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "unloaded %s\n", args[0])
			return nil
		},
	}
}

func (a *app) probeMetricsCommand() *cobra.Command {
	var asJSON, openMetrics, perCPU bool
	cmd := &cobra.Command{
		Use:   "metrics NAME [METRIC]",
		Short: "Read a probe's metrics",
		Long: `Read the metrics of a loaded probe: every metric, or only METRIC.

The default output is a table with one row per map entry: the metric, its key
and its value as compact JSON. --json prints the agent's JSON (name, type,
timestamp and the decoded entries); --openmetrics prints the probe's metrics
in the OpenMetrics text format, as Prometheus would scrape them.

Reading a metric marked swap-on-read or empty-on-read resets it: each read
returns what was counted since the previous one.

--percpu keeps per-CPU values as arrays instead of summing them.`,
		Example: `  sudo rampart probe metrics packet-counter
  sudo rampart probe metrics packet-counter packets --json
  sudo rampart probe metrics packet-counter --percpu
  sudo rampart probe metrics packet-counter --openmetrics`,
		Args: argsBetween(1, 2, "the probe NAME and optionally a METRIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON && openMetrics {
				return usagef("give --json or --openmetrics, not both")
			}
			if openMetrics && (len(args) > 1 || perCPU) {
				return usagef("--openmetrics prints every metric of the probe, summed over CPUs: leave out METRIC and --percpu")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, opts := cmd.Context(), probe.ReadOptions{PerCPU: perCPU}
			if openMetrics {
				b, err := c.OpenMetrics(ctx, args[0])
				if err != nil {
					return err
				}
				_, err = a.stdout.Write(b)
				return err
			}
			var vals []probe.MetricValue
			if len(args) == 2 {
				v, err := c.Metric(ctx, args[0], args[1], opts)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(a.stdout, v)
				}
				vals = []probe.MetricValue{v}
			} else {
				if vals, err = c.Metrics(ctx, args[0], opts); err != nil {
					return err
				}
				if asJSON {
					if vals == nil {
						vals = []probe.MetricValue{}
					}
					return printJSON(a.stdout, vals)
				}
			}
			return printMetrics(a.stdout, vals)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print the agent's JSON")
	f.BoolVar(&openMetrics, "openmetrics", false, "print OpenMetrics text")
	f.BoolVar(&perCPU, "percpu", false, "per-CPU values as arrays instead of sums")
	return cmd
}

func printMetrics(w io.Writer, vals []probe.MetricValue) error {
	if len(vals) == 0 {
		fmt.Fprintln(w, "the probe exports no metrics")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tKEY\tVALUE")
	for _, v := range vals {
		if len(v.Value) == 0 {
			fmt.Fprintf(tw, "%s\t-\t(no entries)\n", v.Name)
			continue
		}
		for _, e := range v.Value {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, compactJSON(e.Key), compactJSON(e.Value))
		}
	}
	return tw.Flush()
}

func compactJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "-"
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

func (a *app) probeEventsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "events NAME [STREAM]",
		Short: "Follow a probe's event streams",
		Long: `Print the events of a probe's ring buffers as JSON lines (probe, stream,
seq, time and the decoded record in data) as they arrive, until Ctrl-C.
Without STREAM, every stream of the probe is followed.`,
		Example: `  sudo rampart probe events conntrack
  sudo rampart probe events conntrack new_flow | jq .data.saddr`,
		Args: argsBetween(1, 2, "the probe NAME and optionally a STREAM"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			stream := ""
			if len(args) == 2 {
				stream = args[1]
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err = c.Events(ctx, args[0], stream, func(ev probe.Event) error {
				b, err := json.Marshal(ev)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(a.stdout, "%s\n", b)
				return err
			})
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of rampart and of the running agent",
		Long: `Print this binary's version and, when an agent answers on the socket (or
--server), the agent's version.`,
		Example: `  rampart version
  rampart --server http://10.0.0.5:9443 --token-file ./token version`,
		Args: argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(a.stdout, "rampart %s\n", version)
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
			defer cancel()
			if h, err := c.Health(ctx); err != nil {
				fmt.Fprintf(a.stdout, "agent: not reachable at %s\n", c.Where())
			} else {
				fmt.Fprintf(a.stdout, "agent %s at %s\n", h.Version, c.Where())
			}
			return nil
		},
	}
}
