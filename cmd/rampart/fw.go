package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/internal/firewall"
	"github.com/rampart-shield/rampart/internal/respond"
)

type respondDecision = respond.Decision

func (a *app) fwCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fw",
		Short: "List and change the firewall's rules (XDP drop, pass and rate limit)",
		Long: `The agent's firewall (agent --firewall IFACE) filters packets at XDP on ingress
and TC on egress. A rule matches the remote prefix (source on ingress,
destination on egress), the local prefix, protocol, ports and TCP flags; its
action is drop, pass or ratelimit (a token bucket per source). Among rules
whose remote prefix contains the packet's address, the longest prefix is
tried first, then list order (the rule id). Allowlisted prefixes always pass.

Rules and counters live in pinned BPF maps: they keep working while the
agent is down, and a restarted agent adopts them. A rule may expire (--ttl);
the data plane stops applying it at that moment even with no agent running.`,
		Example: `  sudo rampart fw add --src 198.51.100.0/24 --action drop --ttl 10m --desc "scanner"
  sudo rampart fw add --proto tcp --dport 22 --src 203.0.113.5 --action pass --id 1
  sudo rampart fw add --src 2001:db8::/32 --proto udp --action ratelimit --rate 100
  sudo rampart fw list
  sudo rampart fw delete 3
  sudo rampart fw batch rules.yaml
  sudo rampart fw allow 192.0.2.10
  sudo rampart fw flush`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "The rules in order, with packets and bytes matched",
		Long: `List the rules in the order they are tried (among rules whose remote prefix
has the same length; a longer prefix is always tried first), with the
packets and bytes each matched since it was added, its expiry and its
description. Rules the responder added have descriptions starting with
"rampart ", then the alert's kind and id.`,
		Example: `  sudo rampart fw list
  sudo rampart fw list --json | jq '.[] | select(.packets > 0)'`,
		Args: argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			rules, err := c.Rules(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.stdout, rules)
			}
			return a.printRules(rules)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var r firewall.Rule
	var id int
	add := &cobra.Command{
		Use:   "add --action drop|pass|ratelimit [match flags]",
		Short: "Append a rule (or insert it at --id)",
		Long: `Add one rule. Flags left out match anything. The remote prefix (--src on
ingress, --dst with --direction egress) is looked up in the rule trie; the
other fields are checked for every candidate. Ports need --proto tcp or udp,
--tcpflags needs --proto tcp. With --ttl the rule expires: the data plane
stops applying it at that moment, and the agent removes it.`,
		Example: `  sudo rampart fw add --src 198.51.100.0/24 --action drop --ttl 1h --desc "scanner"
  sudo rampart fw add --id 1 --src 203.0.113.5 --proto tcp --dport 22 --action pass
  sudo rampart fw add --dst 192.0.2.80 --proto tcp --dport 443 --tcpflags syn,!ack --action ratelimit --rate 200
  sudo rampart fw add --direction egress --dst 2001:db8::/32 --proto udp --action drop`,
		Args: argsExactly(0, "no arguments (the rule is given with flags)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			op := firewall.Op{Op: "append", Rule: r}
			if id > 0 {
				op = firewall.Op{Op: "insert", ID: id, Rule: r}
			}
			return a.batch(cmd, []firewall.Op{op}, asJSON)
		},
	}
	ruleFlags(add, &r)
	add.Flags().IntVar(&id, "id", 0, "insert at this position (1 = first); default: append")
	add.Flags().BoolVar(&asJSON, "json", false, "print the resulting rules as JSON")

	var ur firewall.Rule
	update := &cobra.Command{
		Use:   "update ID --action ... [match flags]",
		Short: "Replace the rule at ID (its counters continue)",
		Long: `Replace the rule at position ID with the rule the flags describe. The rule
keeps its kernel slot, so its packet and byte counters continue.`,
		Example: `  sudo rampart fw update 2 --src 198.51.100.0/24 --action ratelimit --rate 50`,
		Args:    argsExactly(1, "the rule's id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 {
				return usagef("rule id %q: want a number from 1", args[0])
			}
			return a.batch(cmd, []firewall.Op{{Op: "update", ID: n, Rule: ur}}, asJSON)
		},
	}
	ruleFlags(update, &ur)

	var dr firewall.Rule
	del := &cobra.Command{
		Use:   "delete ID... | delete [match flags]",
		Short: "Delete rules by id, or the first rule matching the flags exactly",
		Long: `Delete rules by their current ids (several in one batch), or, with no id,
the first rule that matches exactly the packets the flags describe with the
same action (as Polycube's firewall deletes by match).`,
		Example: `  sudo rampart fw delete 3
  sudo rampart fw delete 5 4 3          # one batch; ids as they are now
  sudo rampart fw delete --src 198.51.100.0/24 --action drop`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ops []firewall.Op
			if len(args) == 0 {
				if dr.Action == "" {
					return usagef("give rule ids, or the rule to delete by its flags (at least --action)")
				}
				ops = append(ops, firewall.Op{Op: "delete", Rule: dr})
			}
			// Delete from the highest id down so each id means what the
			// current listing shows.
			ids := make([]int, 0, len(args))
			for _, s := range args {
				n, err := strconv.Atoi(s)
				if err != nil || n < 1 {
					return usagef("rule id %q: want a number from 1", s)
				}
				ids = append(ids, n)
			}
			slices.Sort(ids)
			slices.Reverse(ids)
			for _, n := range ids {
				ops = append(ops, firewall.Op{Op: "delete", ID: n})
			}
			return a.batch(cmd, ops, false)
		},
	}
	ruleFlags(del, &dr)

	batch := &cobra.Command{
		Use:   "batch FILE|-",
		Short: "Apply a file of operations (YAML or JSON) all or nothing",
		Long: `Apply operations in one batch: each sees the list as the operations before it
left it; if any is invalid, nothing changes and the error names it.

  operations:
    - {op: insert, id: 1, rule: {src: 203.0.113.5, proto: tcp, dport: 22, action: pass}}
    - {op: append, rule: {src: 198.51.100.0/24, action: drop, ttl: 1h}}
    - {op: update, id: 3, rule: {src: 192.0.2.0/24, action: ratelimit, rate: 50}}
    - {op: delete, id: 4}
    - {op: delete, rule: {src: 10.0.0.0/8, action: drop}}   # by exact match

A list of operations without the operations: key works too.`,
		Example: `  sudo rampart fw batch rules.yaml
  ./make-blocklist | sudo rampart fw batch -`,
		Args: argsExactly(1, "a file (or - for standard input)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			if args[0] == "-" {
				data, err = io.ReadAll(io.LimitReader(os.Stdin, 64<<20))
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return err
			}
			ops, err := parseBatch(data)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			return a.batch(cmd, ops, asJSON)
		},
	}
	batch.Flags().BoolVar(&asJSON, "json", false, "print the resulting rules as JSON")

	flush := &cobra.Command{
		Use:   "flush",
		Short: "Delete every rule (the allowlist stays)",
		Long: `Delete every rule in one batch, the responder's included. The allowlist is
not touched (fw allow --remove changes it).`,
		Example: `  sudo rampart fw flush`,
		Args:    argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			n, err := c.FlushRules(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "deleted %d rule%s\n", n, plural(n))
			return nil
		},
	}

	var remove bool
	allow := &cobra.Command{
		Use:   "allow [--remove] PREFIX...",
		Short: "Add prefixes to the allowlist (always passed, never blocked by the responder)",
		Long: `The allowlist is checked before every rule: a packet from (on egress: to)
an allowlisted prefix always passes, and the responder never blocks an
address inside it. It is pinned with the rules.`,
		Example: `  sudo rampart fw allow 192.0.2.0/24 2001:db8:ffff::1
  sudo rampart fw allow --remove 192.0.2.0/24`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			pl, err := c.ChangeAllowlist(cmd.Context(), args, remove)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "allowlist: %s\n", strings.Join(pl.Prefixes, " "))
			return nil
		},
	}
	allow.Flags().BoolVar(&remove, "remove", false, "remove the prefixes instead")

	status := &cobra.Command{
		Use:   "status",
		Short: "The firewall's interface, rule count, allowlist and packet counters",
		Long: `Print the interface the firewall guards, how many rules it has, its
allowlist and its packet counters: all packets, passed, dropped, passed by
the allowlist, dropped by a rate limit, not IP and malformed (both passed),
and expired rules skipped.`,
		Example: `  sudo rampart fw status
  sudo rampart fw status --json | jq .stats.dropped`,
		Args: argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			st, err := c.FirewallStatus(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.stdout, st)
			}
			fmt.Fprintf(a.stdout, "interface %s, %d rule%s, allowlist: %s\n", st.Iface, st.Rules, plural(st.Rules), strings.Join(st.Allowlist, " "))
			for _, k := range []string{"packets", "passed", "dropped", "allowlisted", "ratelimited", "not_ip", "malformed", "expired_skipped"} {
				fmt.Fprintf(a.stdout, "  %-16s %d\n", k, st.Stats[k])
			}
			return nil
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	cmd.AddCommand(list, add, update, del, batch, flush, allow, status)
	return cmd
}

func ruleFlags(cmd *cobra.Command, r *firewall.Rule) {
	f := cmd.Flags()
	f.StringVar(&r.Action, "action", "", "drop, pass or ratelimit")
	f.StringVar(&r.Direction, "direction", "", "ingress (XDP, default) or egress (TC)")
	f.StringVar(&r.Family, "family", "", "ipv4 or ipv6, for a rule with no address")
	f.StringVar(&r.Src, "src", "", "source address or prefix")
	f.StringVar(&r.Dst, "dst", "", "destination address or prefix")
	f.StringVar(&r.Proto, "proto", "", "tcp, udp, icmp, icmpv6 or a protocol number")
	f.StringVar(&r.Sport, "sport", "", "source port or range LO-HI (tcp/udp)")
	f.StringVar(&r.Dport, "dport", "", "destination port or range LO-HI (tcp/udp)")
	f.StringVar(&r.TCPFlags, "tcpflags", "", `TCP flags set, or clear with "!": e.g. "syn,!ack"`)
	f.Uint32Var(&r.Rate, "rate", 0, "ratelimit: packets per second per source")
	f.Uint32Var(&r.Burst, "burst", 0, "ratelimit: bucket size (default: the rate)")
	f.StringVar(&r.TTL, "ttl", "", "expire after this long, e.g. 10m")
	f.StringVar(&r.Description, "desc", "", "a description (at most 63 bytes)")
}

func parseBatch(data []byte) ([]firewall.Op, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	js = bytes.TrimSpace(js)
	var ops []firewall.Op
	if len(js) > 0 && js[0] == '[' {
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		err = dec.Decode(&ops)
	} else {
		var b struct {
			Operations []firewall.Op `json:"operations"`
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		err = dec.Decode(&b)
		ops = b.Operations
	}
	if err != nil {
		return nil, err
	}
	if len(ops) == 0 {
		return nil, fmt.Errorf("no operations")
	}
	return ops, nil
}

func (a *app) batch(cmd *cobra.Command, ops []firewall.Op, asJSON bool) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	rules, err := c.Batch(cmd.Context(), ops)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(a.stdout, rules)
	}
	fmt.Fprintf(a.stderr, "applied %d operation%s; %d rule%s now\n", len(ops), plural(len(ops)), len(rules), plural(len(rules)))
	if len(rules) <= 50 {
		return a.printRules(rules)
	}
	return nil
}

func (a *app) printRules(rules []firewall.Rule) error {
	if len(rules) == 0 {
		fmt.Fprintln(a.stdout, "no rules")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDIR\tSRC\tDST\tPROTO\tSPORT\tDPORT\tFLAGS\tACTION\tPACKETS\tBYTES\tEXPIRES\tDESCRIPTION")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, r := range rules {
		act := r.Action
		if act == firewall.ActionRateLimit {
			act = fmt.Sprintf("ratelimit %d/s", r.Rate)
		}
		exp := "-"
		if !r.Expires.IsZero() {
			exp = "in " + time.Until(r.Expires).Round(time.Second).String()
		}
		src, dst := r.Src, r.Dst
		if src == "" && dst == "" && r.Family != "" {
			src = "any " + r.Family
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", r.ID, r.Direction, dash(src), dash(dst), dash(r.Proto),
			dash(r.Sport), dash(r.Dport), dash(r.TCPFlags), act, r.Packets, r.Bytes, exp, r.Description)
	}
	return tw.Flush()
}

// alertCommand hands alerts to the responder and shows its decisions.
func (a *app) alertCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "respond",
		Short: "The responder: send alerts, read the audit trail, switch observe/enforce",
		Long: `The responder turns alerts into actions by the policy in the agent's config
(respond:): block or rate-limit the sources in the firewall for a while, kill
a process, close its sockets. In observe mode (the default) it only records
what it would do. It never acts on the host's own addresses, its default
gateways, the API's peers or the allowlist, caps new actions per second, and
records every decision, with the alert behind it, in the audit trail.`,
		Example: `  sudo rampart respond mode enforce
  sudo rampart respond alert --kind udp-flood --source 198.51.100.7 --suggest block
  sudo rampart respond audit -n 20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	mode := &cobra.Command{
		Use:   "mode observe|enforce",
		Short: "Switch the responder between observe and enforce",
		Long: `In observe mode the responder records what it would do and changes
nothing; in enforce mode it acts. The switch itself is audited.`,
		Example: `  sudo rampart respond mode enforce
  sudo rampart respond mode observe`,
		Args: argsExactly(1, "observe or enforce"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.SetMode(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "responder mode: %s\n", args[0])
			return nil
		},
	}
	var al alert.Alert
	var asJSON bool
	send := &cobra.Command{
		Use:   "alert --kind KIND [--source ADDR ...] [--pid PID] [--suggest ACTION]",
		Short: "Hand an alert from an outside detector to the responder",
		Long: `Send an alert as the agent's own detectors raise them: the responder applies
its policy (the first rule matching the kind and detector, or the alert's
suggestion) and prints its decisions. Use it to connect other detectors, or
to test a policy in observe mode.`,
		Example: `  sudo rampart respond alert --kind udp-flood --source 198.51.100.7 --suggest block
  sudo rampart respond alert --kind redos --pid 4242 --suggest kill --summary "regex in /search"`,
		Args: argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if al.Detector == "" {
				al.Detector = "external"
			}
			res, err := c.SendAlert(cmd.Context(), al)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.stdout, res)
			}
			return a.printDecisions(res.Decisions)
		},
	}
	sf := send.Flags()
	sf.StringVar(&al.Kind, "kind", "", "what was detected, e.g. udp-flood")
	sf.StringVar(&al.Detector, "detector", "", "who detected it (default external)")
	sf.StringArrayVar(&al.Subject.Sources, "source", nil, "an offending source address or prefix (repeatable)")
	sf.IntVar(&al.Subject.PID, "pid", 0, "an offending process")
	sf.StringVar(&al.Subject.Conn, "conn", "", "an offending connection SRC:PORT->DST:PORT")
	sf.StringVar(&al.Suggested, "suggest", "", "suggested action: block, ratelimit, kill, close-sockets")
	sf.Float64Var(&al.Score, "score", 0, "the detector's score")
	sf.Float64Var(&al.Thresh, "threshold", 0, "the threshold it crossed")
	sf.StringVar(&al.Summary, "summary", "", "one line of explanation")
	sf.BoolVar(&asJSON, "json", false, "print JSON")
	var n int
	audit := &cobra.Command{
		Use:   "audit",
		Short: "The responder's last decisions, oldest first",
		Long: `Print the responder's decisions: what it did (or would do, in observe mode,
or refused to do: allowlisted, rate-limited), to what, why (the alert), and
when its blocks expire or were extended. The full trail is also written as
JSON lines to the agent's --audit-file.`,
		Example: `  sudo rampart respond audit
  sudo rampart respond audit -n 500 --json | jq 'select(.outcome == "applied")'`,
		Args: argsExactly(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ds, err := c.Audit(cmd.Context(), n)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.stdout, ds)
			}
			return a.printDecisions(ds)
		},
	}
	audit.Flags().IntVarP(&n, "n", "n", 50, "how many decisions")
	audit.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(mode, send, audit)
	return cmd
}

func (a *app) printDecisions(ds []respondDecision) error {
	if len(ds) == 0 {
		fmt.Fprintln(a.stdout, "no decisions")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tMODE\tACTION\tTARGET\tOUTCOME\tDETAIL\tALERT")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Time.Local().Format("15:04:05"), d.Mode, d.Action, d.Target, d.Outcome, d.Detail, d.Alert)
	}
	return tw.Flush()
}
