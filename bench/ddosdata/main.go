// Command ddosdata records labelled traffic in the lab and (re)trains the
// default DDoS model from it: the script behind models/ddos-lucid.json.
//
//	sudo go run ./bench/ddosdata -out /tmp/ddosdata -variant test   # record the test variant
//	sudo go run ./bench/ddosdata -out /tmp/ddosdata -train          # record train (and test), train, evaluate
//
// It records internal/traffic's scenarios for a variant into
// DIR/VARIANT/ (one pcap per scenario plus recordings.json). With -train
// it then builds the rampart binary and runs
//
//	rampart model train ddos --benign DIR/train/... --attack DIR/train/... --out MODEL --seed SEED
//	rampart model eval ddos --model MODEL --benign DIR/test/... --attack DIR/test/... --store
//
// so the model is made, and measured on held-out recordings (the test
// variant: other rates, sizes, ports and durations, recorded separately),
// by the same commands a user runs. See README.md in this folder.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rampart-shield/rampart/internal/traffic"
)

func main() {
	out := flag.String("out", "", "folder for the recordings (DIR/train, DIR/test) and the rampart binary")
	variant := flag.String("variant", "train", "variant to record: train or test")
	train := flag.Bool("train", false, "train on DIR/train, write -model, evaluate on DIR/test (recording what is missing)")
	reuse := flag.Bool("reuse", false, "do not record a variant again when DIR/VARIANT/recordings.json exists")
	only := flag.String("only", "", "record only these scenarios (comma-separated; see -list)")
	list := flag.Bool("list", false, "list the scenarios and exit")
	model := flag.String("model", "models/ddos-lucid.json", "model file -train writes")
	seed := flag.Uint64("seed", 1, "training seed")
	epochs := flag.Int("epochs", 50, "maximum training epochs")
	evalOnly := flag.Bool("eval", false, "evaluate -model on DIR/VARIANT (after recording it unless -reuse)")
	flag.Parse()
	if *list {
		for _, s := range traffic.Scenarios() {
			c, _ := traffic.ClassOf(s)
			fmt.Printf("%-10s %s\n", s, c)
		}
		return
	}
	if *out == "" {
		fail(errors.New("give -out DIR"))
	}
	if os.Geteuid() != 0 {
		fail(errors.New("needs root: it builds network namespaces, captures with tcpdump and replays through eBPF"))
	}
	v := traffic.Variant(*variant)
	if v != traffic.Train && v != traffic.Test {
		fail(fmt.Errorf("-variant %q: want train or test", *variant))
	}
	var scen []string
	if *only != "" {
		scen = strings.Split(*only, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	record := func(v traffic.Variant, force bool) ([]traffic.Recording, error) {
		dir := filepath.Join(*out, string(v))
		if recs, err := traffic.ReadManifest(dir); err == nil && !force {
			fmt.Fprintf(os.Stderr, "using the %s recordings in %s\n", v, dir)
			return recs, nil
		}
		fmt.Fprintf(os.Stderr, "recording the %s variant into %s\n", v, dir)
		start := time.Now()
		_, err := traffic.Record(ctx, traffic.Options{Dir: dir, Variant: v, Only: scen,
			Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "  "+f+"\n", a...) }})
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "recorded the %s variant in %v\n", v, time.Since(start).Round(time.Second))
		return traffic.ReadManifest(dir)
	}
	recs, err := record(v, !*reuse)
	if err != nil {
		fail(err)
	}
	if !*train && !*evalOnly {
		return
	}
	bin, err := buildRampart(ctx, *out)
	if err != nil {
		fail(err)
	}
	if *evalOnly {
		if err := run(ctx, bin, evalArgs(*model, recs, false)...); err != nil {
			fail(err)
		}
		return
	}
	trainRecs, testRecs := recs, recs
	other := traffic.Test
	if v == traffic.Test {
		other = traffic.Train
	}
	otherRecs, err := record(other, false)
	if err != nil {
		fail(err)
	}
	if v == traffic.Train {
		testRecs = otherRecs
	} else {
		trainRecs = otherRecs
	}
	benign, attack := split(trainRecs)
	version := fmt.Sprintf("ddos-lucid-1 trained %s seed %d on lab recordings (bench/ddosdata)", time.Now().UTC().Format(time.DateOnly), *seed)
	if err := run(ctx, bin, "model", "train", "ddos", "--benign", benign, "--attack", attack, "--out", *model,
		"--seed", strconv.FormatUint(*seed, 10), "--epochs", strconv.Itoa(*epochs), "--version", version); err != nil {
		fail(err)
	}
	fmt.Println()
	if err := run(ctx, bin, evalArgs(*model, testRecs, true)...); err != nil {
		fail(err)
	}
}

func evalArgs(model string, recs []traffic.Recording, store bool) []string {
	benign, attack := split(recs)
	args := []string{"model", "eval", "ddos", "--model", model, "--benign", benign, "--attack", attack}
	if store {
		args = append(args, "--store")
	}
	return args
}

// split lists the benign and the attack recordings, comma-separated.
func split(recs []traffic.Recording) (benign, attack string) {
	var b, a []string
	for _, r := range recs {
		if r.Class == traffic.Attack {
			a = append(a, r.Path)
		} else {
			b = append(b, r.Path)
		}
	}
	return strings.Join(b, ","), strings.Join(a, ",")
}

// buildRampart builds cmd/rampart into dir.
func buildRampart(ctx context.Context, dir string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin, err := filepath.Abs(filepath.Join(dir, "rampart"))
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", bin, "./cmd/rampart")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building rampart (run this from the repository root): %w", err)
	}
	return bin, nil
}

// run runs the rampart binary, showing the command line.
func run(ctx context.Context, bin string, args ...string) error {
	fmt.Printf("$ rampart %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "ddosdata: %v\n", err)
	os.Exit(1)
}
