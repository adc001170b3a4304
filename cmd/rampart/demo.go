package main

import (
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-shield/rampart/internal/demo"
)

func (a *app) demoCommand() *cobra.Command {
	var attack string
	var flood time.Duration
	var names []string
	for k, v := range demo.Attacks {
		names = append(names, fmt.Sprintf("  %-5s %s", k, v))
	}
	sort.Strings(names)
	cmd := &cobra.Command{
		Use:   "demo [--attack syn|syn6|udp|icmp]",
		Short: "Watch rampart stop a flood in a lab of network namespaces",
		Long: `Build a small lab on this machine — a benign HTTP client and an attacker in
network namespaces behind a router, a web server on this host — start a
private agent (firewall, traffic counters, threshold detector, enforcing
responder), then flood the server. The screen shows, live, the benign
client's request rate, the packets arriving and dropped each second, the
alert with its explanation, the drop rule, and its release after the flood
stops. Everything (namespaces, links, processes, the agent and its pinned
state) is removed at the end or on Ctrl-C. The traffic never leaves the lab.

Needs root. hping3 is used when installed; otherwise a built-in flooder.

Attacks:
` + strings.Join(names, "\n"),
		Example: `  sudo rampart demo
  sudo rampart demo --attack syn6
  sudo rampart demo --attack udp --flood 20s`,
		Args: argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("the demo needs root: it creates network namespaces and loads eBPF programs (sudo rampart demo)")
			}
			if _, ok := demo.Attacks[attack]; !ok {
				return usagef("--attack %q: want syn, syn6, udp or icmp", attack)
			}
			// A closed output pipe must not kill the demo before it cleans up.
			signal.Ignore(syscall.SIGPIPE)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			return demo.Run(ctx, demo.Options{Attack: attack, Flood: flood, Out: a.stdout})
		},
	}
	cmd.Flags().StringVar(&attack, "attack", "syn", "the flood: syn, syn6, udp or icmp")
	cmd.Flags().DurationVar(&flood, "flood", 10*time.Second, "how long the flood lasts")
	return cmd
}
