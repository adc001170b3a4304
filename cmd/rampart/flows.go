package main

import (
	"fmt"
	"net"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func (a *app) flowsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "Show the flows the agent's flowmon probe records",
		Long: `The agent attaches the built-in flowmon probe (by default to the interface
of the default route, ingress and egress) and turns its per-flow counters into
NetFlow-like records: reported when a flow goes idle, ends (FIN/RST) or has
run for the active timeout, and exported as IPFIX to any collector configured.`,
		Example: `  sudo rampart flows top
  sudo rampart flows top --by packets -n 20
  sudo rampart flows recent -n 50 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	var n int
	var byPackets, asJSON bool
	top := &cobra.Command{
		Use:   "top",
		Short: "The source addresses that sent the most, flows still running included",
		Long: `Rank source addresses by the bytes (or packets) they sent since the agent
started, across every interface flowmon watches. Flows still running count
with what they sent so far, so a flood shows at once, not after it ends.`,
		Example: `  sudo rampart flows top
  sudo rampart flows top -n 20 --by-packets
  sudo rampart flows top --json | jq '.[0].addr'`,
		Args: argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.TopTalkers(cmd.Context(), n, byPackets)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.stdout, list)
			}
			if len(list) == 0 {
				fmt.Fprintln(a.stdout, "no flows yet")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "SOURCE\tBYTES\tPACKETS\tFLOWS REPORTED\t")
			for _, t := range list {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", t.Addr, t.Bytes, t.Packets, t.Flows)
			}
			return tw.Flush()
		},
	}
	top.Flags().IntVarP(&n, "top", "n", 10, "how many sources")
	top.Flags().BoolVar(&byPackets, "by-packets", false, "rank by packets instead of bytes")
	top.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var rn int
	var rjson bool
	recent := &cobra.Command{
		Use:   "recent",
		Short: "The latest flow records",
		Long: `Print the latest flow records the agent reported: one per flow direction,
with the packets and bytes since the flow's previous record, the TCP flags
seen and why it was reported (idle, active, end, forced, evicted).`,
		Example: `  sudo rampart flows recent
  sudo rampart flows recent -n 1000 --json > flows.json`,
		Args: argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			list, err := c.Flows(cmd.Context(), rn)
			if err != nil {
				return err
			}
			if rjson {
				return printJSON(a.stdout, list)
			}
			if len(list) == 0 {
				fmt.Fprintln(a.stdout, "no flow records yet (a flow is reported when it ends, goes idle or reaches the active timeout)")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "LAST\tDIR\tPROTO\tSOURCE\tDESTINATION\tPACKETS\tBYTES\tFLAGS\tREASON")
			for _, f := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%#02x\t%s\n", f.Last.Local().Format("15:04:05.000"), f.Direction, f.Proto,
					hostPort(f.Src.String(), f.SrcPort), hostPort(f.Dst.String(), f.DstPort), f.Packets, f.Bytes, f.TCPFlags, f.EndReason)
			}
			return tw.Flush()
		},
	}
	recent.Flags().IntVarP(&rn, "n", "n", 100, "how many records")
	recent.Flags().BoolVar(&rjson, "json", false, "print JSON")
	cmd.AddCommand(top, recent)
	return cmd
}

func hostPort(addr string, port uint16) string {
	return net.JoinHostPort(addr, strconv.Itoa(int(port)))
}
