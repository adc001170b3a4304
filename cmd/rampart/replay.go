package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-shield/rampart/internal/api"
	"github.com/rampart-shield/rampart/internal/flow"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/internal/replay"
	"github.com/rampart-shield/rampart/probes"
	"github.com/rampart-shield/rampart/probes/flowmon"
)

func (a *app) replayCommand() *cobra.Command {
	var o struct {
		probe, manifest, egressFrom string
		asJSON                      bool
	}
	cmd := &cobra.Command{
		Use:   "replay FILE.pcap [--probe NAME | --manifest FILE] [--egress-from MAC]",
		Short: "Run a packet probe over a capture, as live traffic would",
		Long: `Replay a capture (classic pcap with Ethernet frames, as tcpdump -w writes)
through a packet probe with BPF_PROG_TEST_RUN: the same kernel code that runs
on live traffic, driven packet by packet. Probes that read their clock
through rp_now() (flowmon does) see the capture's timestamps.

The probe is loaded privately, detached (no agent needed, but root is). Frames
whose source MAC is --egress-from go through the probe's egress program (the
MAC of the interface the capture was taken on); all others through its
ingress program.

For flowmon the result is its flow records; for other probes, their metrics
as JSON.`,
		Example: `  sudo tcpdump -i eth0 -w /tmp/eth0.pcap -c 10000
  sudo rampart replay /tmp/eth0.pcap --egress-from $(cat /sys/class/net/eth0/address)
  sudo rampart replay /tmp/eth0.pcap --probe ddosfeat --json`,
		Args: argsExactly(1, "one argument, the capture file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var mac net.HardwareAddr
			if o.egressFrom != "" {
				var err error
				if mac, err = net.ParseMAC(o.egressFrom); err != nil {
					return usagef("--egress-from: %v", err)
				}
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Builtin: probes.Lookup})
			if err != nil {
				return err
			}
			defer m.Close()
			req := probe.LoadRequest{Name: o.probe}
			if o.manifest != "" {
				if req, err = api.ReadLoadRequest(o.probe, api.ProbeFiles{Manifest: o.manifest}); err != nil {
					return err
				}
			}
			req.Detached = true
			info, err := m.Load(context.Background(), req)
			if err != nil {
				return err
			}
			start := time.Now()
			st, err := replay.Run(m, info.Name, f, replay.Options{EgressFrom: mac, Progress: func(n int) {
				fmt.Fprintf(a.stderr, "\rreplayed %d packets", n)
			}})
			if st.Packets >= 1024 {
				fmt.Fprintln(a.stderr)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "replayed %d packets (%d ingress, %d egress, %d skipped) of %s in %v\n",
				st.Packets, st.Ingress, st.Egress, st.Skipped, time.Duration(st.LastNs-st.FirstNs), time.Since(start).Round(time.Millisecond))
			if info.Name == "flowmon" && o.manifest == "" {
				col := flow.NewCollector(m, flow.Config{Probe: info.Name, Map: "flows", Decode: flowmon.Sample,
					Clock: func() (uint64, time.Time) { return st.LastNs, time.Unix(0, int64(st.LastNs)) }})
				flows, err := col.Flush()
				if err != nil {
					return err
				}
				if o.asJSON {
					return printJSON(a.stdout, flows)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "FIRST\tLAST\tDIR\tPROTO\tSOURCE\tDESTINATION\tPACKETS\tBYTES\tFLAGS")
				for _, f := range flows {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t%#02x\n", f.First.UTC().Format("15:04:05.000"), f.Last.UTC().Format("15:04:05.000"),
						f.Direction, f.Proto, hostPort(f.Src.String(), f.SrcPort), hostPort(f.Dst.String(), f.DstPort), f.Packets, f.Bytes, f.TCPFlags)
				}
				return tw.Flush()
			}
			vals, err := m.ReadMetrics(info.Name, probe.ReadOptions{})
			if err != nil {
				return err
			}
			return printJSON(a.stdout, vals)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.probe, "probe", "flowmon", "built-in probe to replay through (or the name for --manifest)")
	f.StringVarP(&o.manifest, "manifest", "m", "", "a probe of yours: its manifest (object path relative to it)")
	f.StringVar(&o.egressFrom, "egress-from", "", "MAC whose frames count as egress (the captured interface's address)")
	f.BoolVar(&o.asJSON, "json", false, "print JSON")
	return cmd
}
