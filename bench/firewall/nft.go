package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// nftBin is the nft binary (-nft).
var nftBin = "/usr/sbin/nft"

// nftTableName names a netdev table of this run: the process id keeps
// concurrent runs apart, and the prefix says whose it is.
func nftTableName(kind string) string {
	return fmt.Sprintf("rampart_bench_fw_%d_%s", os.Getpid(), kind)
}

// nftRuleset is a netdev table holding the set of the first n blocked
// prefixes. With iface it also has a named counter and an ingress chain on
// that device that drops (and counts) packets from the set, as an
// nftables-based blocklist would.
func nftRuleset(table string, n int, iface string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table netdev %s {\n", table)
	if iface != "" {
		b.WriteString("\tcounter drops { }\n")
	}
	b.WriteString("\tset blocked {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = {")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		if i%8 == 0 {
			b.WriteString("\n\t\t\t")
		} else {
			b.WriteString(" ")
		}
		b.WriteString(blockPrefix(i).String())
	}
	b.WriteString("\n\t\t}\n\t}\n")
	if iface != "" {
		fmt.Fprintf(&b, "\tchain ingress {\n\t\ttype filter hook ingress device %q priority -500; policy accept;\n", iface)
		b.WriteString("\t\tip saddr @blocked counter name drops drop\n\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func nftRun(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, nftBin, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("nft %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(tailString(out, 1024)))
	}
	return out, nil
}

// nftDeleteTable deletes a table of ours; one that is not there is not an
// error. It does not take the run's context: it also runs after SIGINT.
func nftDeleteTable(table string) error {
	out, err := nftRun(context.Background(), "list", "table", "netdev", table)
	if err != nil {
		if strings.Contains(string(out), "No such file") {
			return nil
		}
		return err
	}
	_, err = nftRun(context.Background(), "delete", "table", "netdev", table)
	return err
}

// nftSetElements counts the elements of the table's set as the kernel
// holds them (adjacent intervals are not merged without auto-merge).
func nftSetElements(ctx context.Context, table string) (int, error) {
	out, err := nftRun(ctx, "-j", "list", "set", "netdev", table, "blocked")
	if err != nil {
		return 0, err
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, fmt.Errorf("nft -j list set: %w", err)
	}
	for _, x := range doc.Nftables {
		if x.Set != nil {
			return len(x.Set.Elem), nil
		}
	}
	return 0, fmt.Errorf("nft -j list set: no set in the output")
}

// nftDrops reads the table's named counter (packets dropped by the rule).
func nftDrops(ctx context.Context, table string) (uint64, error) {
	out, err := nftRun(ctx, "-j", "list", "counter", "netdev", table, "drops")
	if err != nil {
		return 0, err
	}
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, fmt.Errorf("nft -j list counter: %w", err)
	}
	for _, x := range doc.Nftables {
		if x.Counter != nil {
			return x.Counter.Packets, nil
		}
	}
	return 0, fmt.Errorf("nft -j list counter: no counter in the output")
}
