package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-shield/rampart/internal/detect/lucid"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/models"
	"github.com/rampart-shield/rampart/probes"
)

func (a *app) modelCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "model",
		Short: "Train, evaluate and inspect detection models",
		Long: `Detection models are versioned files. The DDoS model is a LUCID-style CNN
(internal/detect/lucid) over the first packets of each bidirectional session,
as the ddosfeat probe reports them; a default one, trained on traffic recorded
in the lab, is built into rampart and loaded at start.

  rampart model train ddos   train a model from labelled captures
  rampart model eval ddos    measure a model on labelled captures
  rampart model extract ddos turn a capture into a session file
  rampart model show         print a model's shape and training record

Captures are classic pcap files (tcpdump -w) holding one class of traffic
each: --benign files are labelled 0, --attack files 1. They are replayed
through the ddosfeat probe with BPF_PROG_TEST_RUN at their capture times, so
the samples are exactly what live detection would see; that needs root.
Session files (made by extract) need no root.`,
		Example: `  sudo rampart model train ddos --benign web.pcap,dns.pcap --attack syn.pcap --out ddos.json
  sudo rampart model eval ddos --model ddos.json --benign web2.pcap --attack syn2.pcap
  rampart model show ddos.json
  rampart model show                    # the built-in default model`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(a.modelTrainCommand(), a.modelEvalCommand(), a.modelExtractCommand(), a.modelShowCommand())
	return cmd
}

// argsKind requires the one positional argument KIND to be ddos.
func argsKind(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef("%s takes the model kind, ddos (got %d arguments)", cmd.CommandPath(), len(args))
	}
	if args[0] != "ddos" {
		return usagef("model kind %q: only ddos is supported", args[0])
	}
	return nil
}

// datasetFlags are the inputs shared by train, eval and extract.
type datasetFlags struct {
	benign, attack []string
	n              int
	windowNs       uint64
	egressFrom     string
}

func (d *datasetFlags) register(cmd *cobra.Command, files bool) {
	f := cmd.Flags()
	if files {
		f.StringSliceVar(&d.benign, "benign", nil, "benign captures or session files (comma-separated or repeated)")
		f.StringSliceVar(&d.attack, "attack", nil, "attack captures or session files (comma-separated or repeated)")
	}
	f.IntVar(&d.n, "n", lucid.DefaultN, "packets per session (ddosfeat n_packets and the model's N)")
	f.Uint64Var(&d.windowNs, "window-ns", lucid.DefaultWindowNs, "ddosfeat window_ns used to replay captures")
	f.StringVar(&d.egressFrom, "egress-from", "", "MAC whose frames replay through ddosfeat's egress program")
}

func (d *datasetFlags) check(needFiles bool) (net.HardwareAddr, error) {
	if needFiles && (len(d.benign) == 0 || len(d.attack) == 0) {
		return nil, usagef("give both --benign and --attack files")
	}
	if d.n < 1 || d.n > 1000 {
		return nil, usagef("--n %d: want 1 to 1000", d.n)
	}
	if d.windowNs == 0 {
		return nil, usagef("--window-ns must be positive")
	}
	if d.egressFrom == "" {
		return nil, nil
	}
	mac, err := net.ParseMAC(d.egressFrom)
	if err != nil {
		return nil, usagef("--egress-from: %v", err)
	}
	return mac, nil
}

// loader reads captures and session files; it creates the probe manager
// for the first capture.
type loader struct {
	a    *app
	opts lucid.DatasetOptions
	m    *probe.Manager
}

func (l *loader) close() {
	if l.m != nil {
		l.m.Close()
	}
}

// isSessionFile tells session files (JSON lines) from pcaps.
func isSessionFile(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	b, err := bufio.NewReader(f).Peek(1)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return b[0] == '{', nil
}

// needRoot fails early, with advice, when captures are given without root.
func needRoot(paths ...[]string) error {
	if os.Geteuid() == 0 {
		return nil
	}
	for _, ps := range paths {
		for _, p := range ps {
			if s, err := isSessionFile(p); err != nil {
				return err
			} else if !s {
				return fmt.Errorf("%s is a capture: replaying it through the ddosfeat probe needs root (run with sudo, or convert it once with `sudo rampart model extract ddos %s --out FILE.jsonl`)", p, p)
			}
		}
	}
	return nil
}

// sessions reads one file's sessions.
func (l *loader) sessions(ctx context.Context, path string) ([]*lucid.Session, error) {
	sess, err := isSessionFile(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if sess {
		ss, meta, err := lucid.ReadSessions(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if meta.N != 0 && meta.N != l.opts.N {
			fmt.Fprintf(l.a.stderr, "warning: %s was extracted with n=%d, the model uses n=%d\n", path, meta.N, l.opts.N)
		}
		return ss, nil
	}
	if l.m == nil {
		if l.m, err = probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Builtin: probes.Lookup}); err != nil {
			return nil, err
		}
	}
	var st lucid.DatasetStats
	o := l.opts
	o.Stats = &st
	name := filepath.Base(path)
	tty := isTerminal(l.a.stderr)
	if tty {
		o.Progress = func(n int) {
			if n%16384 == 0 {
				fmt.Fprintf(l.a.stderr, "\rreplaying %s: %d packets", name, n)
			}
		}
	}
	start := time.Now()
	ss, err := lucid.SessionsFromPcap(ctx, l.m, f, o)
	if tty {
		fmt.Fprint(l.a.stderr, "\r\033[K")
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprintf(l.a.stderr, "%s: %d packets, %d records, %d sessions (%.1fs)", name, st.Packets, st.Records, len(ss), time.Since(start).Seconds())
	if st.Skipped > 0 {
		fmt.Fprintf(l.a.stderr, "; %d frames skipped (too large to replay: capture with offloads off)", st.Skipped)
	}
	fmt.Fprintln(l.a.stderr)
	return ss, nil
}

// labelled is one input file's samples.
type labelled struct {
	path    string
	label   int
	samples []lucid.Sample
}

func (l *loader) load(ctx context.Context, benign, attack []string) ([]labelled, error) {
	var out []labelled
	for label, paths := range [][]string{benign, attack} {
		for _, p := range paths {
			ss, err := l.sessions(ctx, p)
			if err != nil {
				return nil, err
			}
			out = append(out, labelled{p, label, lucid.SamplesFrom(ss, label, l.opts.N)})
		}
	}
	return out, nil
}

func (a *app) modelTrainCommand() *cobra.Command {
	var d datasetFlags
	var o struct {
		out, name, version   string
		seed                 uint64
		epochs, maxPerFile   int
		holdout, lr, l2      float64
		balance              bool
		kernels, height, bsz int
	}
	cmd := &cobra.Command{
		Use:   "train ddos --benign FILE[,FILE...] --attack FILE[,FILE...] --out MODEL.json",
		Short: "Train a DDoS model from labelled captures",
		Long: `Train a LUCID-style CNN: every session of a --benign file is a sample labelled
benign, every session of an --attack file one labelled attack. Files are
captures (pcap; replayed through ddosfeat, which needs root) or session files
made by 'rampart model extract'.

A share --holdout of each class (seeded draw) is held out: training stops
early when the loss on it stops improving, and the model's metrics on it
(accuracy, precision, recall, F1, false positive rate) are printed and stored
in the model's training record. --max-per-file caps the samples taken from any
one file (seeded draw) so that one flood does not drown the rest; --balance
repeats samples of the smaller class of the training part until both classes
are equally large. The same files, flags and --seed give the same model, bit
for bit.

Progress (epoch, training loss, held-out loss and accuracy) is drawn on
stderr.`,
		Example: `  sudo rampart model train ddos --benign web.pcap,dns.pcap,ping.pcap \
      --attack syn.pcap,udp.pcap,slowloris.pcap --out ddos.json --seed 7

  # From session files, no root needed:
  rampart model train ddos --benign web.jsonl --attack syn.jsonl --out ddos.json --epochs 30`,
		Args: argsKind,
		RunE: func(cmd *cobra.Command, args []string) error {
			mac, err := d.check(true)
			if err != nil {
				return err
			}
			if o.out == "" {
				return usagef("give --out FILE for the model")
			}
			if o.holdout <= 0 || o.holdout >= 1 {
				return usagef("--holdout %g: want a share between 0 and 1 (e.g. 0.2)", o.holdout)
			}
			if o.epochs < 1 {
				return usagef("--epochs %d: want at least 1", o.epochs)
			}
			if err := needRoot(d.benign, d.attack); err != nil {
				return err
			}
			ctx := cmd.Context()
			ld := &loader{a: a, opts: lucid.DatasetOptions{N: d.n, WindowNs: d.windowNs, EgressFrom: mac}}
			defer ld.close()
			files, err := ld.load(ctx, d.benign, d.attack)
			if err != nil {
				return err
			}
			var train, hold []lucid.Sample
			for i, f := range files {
				s := lucid.Subsample(f.samples, o.maxPerFile, o.seed+uint64(i))
				tr, ho := lucid.SplitHoldout(s, o.holdout, o.seed+uint64(i))
				if len(s) < len(f.samples) {
					fmt.Fprintf(a.stderr, "%s: %d of %d samples used (--max-per-file)\n", filepath.Base(f.path), len(s), len(f.samples))
				}
				train, hold = append(train, tr...), append(hold, ho...)
			}
			nb, na := countLabels(train)
			if nb == 0 || na == 0 {
				return fmt.Errorf("the files gave %d benign and %d attack training samples: both classes are needed", nb, na)
			}
			if o.balance {
				train = lucid.Balance(train, o.seed)
			}
			cfg := lucid.TrainConfig{N: d.n, K: o.kernels, H: o.height, Epochs: o.epochs, BatchSize: o.bsz, LearningRate: o.lr, L2: o.l2,
				Seed: o.seed, Name: o.name, Version: o.version}
			hb, ha := countLabels(hold)
			fmt.Fprintf(a.stderr, "training on %d samples (%d benign, %d attack; %d after balancing), holding out %d (%d benign, %d attack)\n",
				nb+na, nb, na, len(train), len(hold), hb, ha)
			bar := newProgressBar(a.stderr, o.epochs)
			start := time.Now()
			m, err := lucid.Train(train, hold, cfg, bar.epoch)
			bar.done()
			if err != nil {
				return err
			}
			if err := m.SaveFile(o.out); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "trained %s (%s): %d epochs, best %d, %.1fs\n", m.Name, m.Version, m.Meta.Epochs, m.Meta.BestEpoch, time.Since(start).Seconds())
			if m.Meta.Val != nil {
				fmt.Fprintf(a.stdout, "held-out validation (%.0f%% of each file: %d samples, %d attacks):\n", 100*o.holdout, len(hold), ha)
				printModelMetrics(a.stdout, *m.Meta.Val)
			}
			fmt.Fprintf(a.stdout, "wrote %s\n", o.out)
			return nil
		},
	}
	d.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "", "model file to write")
	f.Uint64Var(&o.seed, "seed", 1, "seed of every random choice (split, sampling, initial weights, batches)")
	f.IntVar(&o.epochs, "epochs", 50, "maximum epochs (training stops earlier when the held-out loss stops improving for 5)")
	f.Float64Var(&o.holdout, "holdout", 0.2, "share of each file's samples held out for validation")
	f.IntVar(&o.maxPerFile, "max-per-file", 4000, "at most this many samples from one file (0: all)")
	f.BoolVar(&o.balance, "balance", true, "repeat samples of the smaller class until both classes are as large")
	f.Float64Var(&o.lr, "lr", 0, "learning rate (default 0.005)")
	f.Float64Var(&o.l2, "l2", 0, "L2 weight decay")
	f.IntVar(&o.kernels, "kernels", lucid.DefaultK, "convolution kernels (LUCID's 64)")
	f.IntVar(&o.height, "height", lucid.DefaultH, "kernel height in packets (LUCID's 3)")
	f.IntVar(&o.bsz, "batch", 64, "mini-batch size")
	f.StringVar(&o.name, "name", "ddos-lucid", "model name")
	f.StringVar(&o.version, "version", "", `model version (default "lucid-1 trained DATE seed SEED")`)
	return cmd
}

func countLabels(s []lucid.Sample) (benign, attack int) {
	for _, x := range s {
		if x.Label == 1 {
			attack++
		} else {
			benign++
		}
	}
	return
}

// loadModel reads path, or the built-in default model when path is "".
func loadModel(path string) (*lucid.Model, string, error) {
	if path == "" {
		m, err := models.DDoS()
		return m, "built-in " + models.DDoSFile, err
	}
	m, err := lucid.LoadFile(path)
	return m, path, err
}

func (a *app) modelEvalCommand() *cobra.Command {
	var d datasetFlags
	var o struct {
		model     string
		threshold float64
		asJSON    bool
		store     bool
	}
	cmd := &cobra.Command{
		Use:   "eval ddos [--model MODEL.json] --benign FILE[,FILE...] --attack FILE[,FILE...]",
		Short: "Measure a DDoS model on labelled captures",
		Long: `Score every session of the --benign and --attack files (captures, replayed
through ddosfeat as root, or session files) with a model, the built-in default
unless --model is given, and print, per file, how many sessions were called
attacks, then accuracy, precision, recall, F1 and the false positive rate over
all files, with the confusion counts (attack is the positive class; a score
>= --threshold is an attack).

For a fair number, evaluate on recordings that were not used for training.
--store writes the metrics into the model file's training record as its test
metrics (training.test).`,
		Example: `  sudo rampart model eval ddos --model ddos.json --benign web2.pcap --attack syn2.pcap,udp2.pcap
  sudo rampart model eval ddos --benign /tmp/ddosdata/test/test-ab.pcap --attack /tmp/ddosdata/test/test-syn.pcap
  rampart model eval ddos --model ddos.json --benign web.jsonl --attack syn.jsonl --json`,
		Args: argsKind,
		RunE: func(cmd *cobra.Command, args []string) error {
			mac, err := d.check(true)
			if err != nil {
				return err
			}
			if o.threshold <= 0 || o.threshold >= 1 {
				return usagef("--threshold %g: want a score between 0 and 1", o.threshold)
			}
			if o.store && o.model == "" {
				return usagef("--store needs --model FILE")
			}
			m, src, err := loadModel(o.model)
			if err != nil {
				return err
			}
			if d.n != m.N && cmd.Flags().Changed("n") {
				return usagef("--n %d: the model takes n=%d", d.n, m.N)
			}
			d.n = m.N
			if err := needRoot(d.benign, d.attack); err != nil {
				return err
			}
			ld := &loader{a: a, opts: lucid.DatasetOptions{N: d.n, WindowNs: d.windowNs, EgressFrom: mac}}
			defer ld.close()
			files, err := ld.load(cmd.Context(), d.benign, d.attack)
			if err != nil {
				return err
			}
			type fileResult struct {
				File     string        `json:"file"`
				Class    string        `json:"class"`
				Samples  int           `json:"samples"`
				Attacks  int           `json:"called_attack"`
				Metrics  lucid.Metrics `json:"-"`
				Accuracy float64       `json:"accuracy"`
			}
			var all []lucid.Sample
			var per []fileResult
			for _, f := range files {
				mt := lucid.Evaluate(m, f.samples, o.threshold)
				class := "benign"
				if f.label == 1 {
					class = "attack"
				}
				per = append(per, fileResult{File: f.path, Class: class, Samples: len(f.samples), Attacks: mt.TP + mt.FP, Metrics: mt, Accuracy: mt.Accuracy})
				all = append(all, f.samples...)
			}
			mt := lucid.Evaluate(m, all, o.threshold)
			if o.store {
				m.Meta.Test = &mt
				if err := m.SaveFile(o.model); err != nil {
					return err
				}
			}
			if o.asJSON {
				return printJSON(a.stdout, struct {
					Model     string        `json:"model"`
					Version   string        `json:"version"`
					Threshold float64       `json:"threshold"`
					Files     []fileResult  `json:"files"`
					Metrics   lucid.Metrics `json:"metrics"`
				}{src, m.Version, o.threshold, per, mt})
			}
			fmt.Fprintf(a.stdout, "model %s (%s), threshold %g\n", src, m.Version, o.threshold)
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "FILE\tCLASS\tSESSIONS\tCALLED ATTACK\tCORRECT")
			for _, r := range per {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.2f%%\n", r.File, r.Class, r.Samples, r.Attacks, 100*r.Accuracy)
			}
			tw.Flush()
			printModelMetrics(a.stdout, mt)
			if o.store {
				fmt.Fprintf(a.stdout, "stored as the test metrics of %s\n", o.model)
			}
			return nil
		},
	}
	d.register(cmd, true)
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "model file (default: the built-in model)")
	f.Float64Var(&o.threshold, "threshold", 0.5, "scores at or above this are attacks")
	f.BoolVar(&o.asJSON, "json", false, "print JSON")
	f.BoolVar(&o.store, "store", false, "store the metrics in the model file as its test metrics")
	return cmd
}

func (a *app) modelExtractCommand() *cobra.Command {
	var d datasetFlags
	var out string
	cmd := &cobra.Command{
		Use:   "extract ddos CAPTURE.pcap --out FILE.jsonl",
		Short: "Turn a capture into a session file",
		Long: `Replay a capture through the ddosfeat probe (as root) and write its sessions, the
first --n packets of each bidirectional session per window, as a session file:
JSON lines, a header then one session per line with every packet's features.
Session files train and evaluate models without root and without the
capture, and are much smaller.

The replay is lossless or fails: it waits for the probe's ring buffer to be
read every 1024 packets and checks that no record was lost.`,
		Example: `  sudo rampart model extract ddos syn.pcap --out syn.jsonl
  rampart model train ddos --benign web.jsonl --attack syn.jsonl --out ddos.json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("%s takes the model kind (ddos) and one capture (got %d arguments)", cmd.CommandPath(), len(args))
			}
			return argsKind(cmd, args[:1])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			mac, err := d.check(false)
			if err != nil {
				return err
			}
			if out == "" {
				return usagef("give --out FILE.jsonl")
			}
			if err := needRoot([]string{args[1]}); err != nil {
				return err
			}
			ld := &loader{a: a, opts: lucid.DatasetOptions{N: d.n, WindowNs: d.windowNs, EgressFrom: mac}}
			defer ld.close()
			ss, err := ld.sessions(cmd.Context(), args[1])
			if err != nil {
				return err
			}
			f, err := os.Create(out)
			if err != nil {
				return err
			}
			if err := lucid.WriteSessions(f, ss, lucid.SessionsMeta{N: d.n, WindowNs: d.windowNs, Source: filepath.Base(args[1])}); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "wrote %d sessions to %s\n", len(ss), out)
			return nil
		},
	}
	d.register(cmd, false)
	cmd.Flags().StringVar(&out, "out", "", "session file to write")
	return cmd
}

func (a *app) modelShowCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show [MODEL.json]",
		Short: "Print a model's name, version, shape and training record",
		Long: `Print what a model file holds: its name and version, its shape (packets per
sample N, features per packet F, kernels K and their height H, parameters),
its input features, and how it was trained (date, seed, samples, epochs, and
the metrics on held-out validation and test data). Without a file, the
built-in default model.`,
		Example: `  rampart model show
  rampart model show ddos.json
  rampart model show ddos.json --json`,
		Args: argsBetween(0, 1, "at most one model file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			m, src, err := loadModel(path)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(a.stdout, map[string]any{
					"source": src, "name": m.Name, "version": m.Version,
					"shape":    map[string]int{"n": m.N, "f": m.F, "k": m.K, "h": m.H, "params": m.Params()},
					"features": featureNames(m), "training": m.Meta,
				})
			}
			w := a.stdout
			fmt.Fprintf(w, "model     %s\n", src)
			fmt.Fprintf(w, "name      %s\n", m.Name)
			fmt.Fprintf(w, "version   %s\n", m.Version)
			fmt.Fprintf(w, "shape     n=%d packets, f=%d features, k=%d kernels of h=%d packets: %d parameters\n", m.N, m.F, m.K, m.H, m.Params())
			fmt.Fprintf(w, "features  %s\n", strings.Join(featureNames(m), " "))
			if m.Norm != nil {
				fmt.Fprintln(w, "input     min-max normalised with bounds learned in training")
			} else {
				fmt.Fprintln(w, "input     taken as it is (already normalised)")
			}
			t := m.Meta
			if t.Trained == "" && t.TrainSamples == 0 {
				fmt.Fprintln(w, "training  (no record)")
				return nil
			}
			fmt.Fprintf(w, "trained   %s, seed %d\n", t.Trained, t.Seed)
			fmt.Fprintf(w, "samples   %d training (%d attacks), %d validation (%d attacks)\n", t.TrainSamples, t.TrainAttacks, t.ValSamples, t.ValAttacks)
			fmt.Fprintf(w, "epochs    %d run, best %d; loss %.5f training, %.5f validation; batch %d, learning rate %g\n", t.Epochs, t.BestEpoch, t.TrainLoss, t.ValLoss, t.BatchSize, t.LearningRate)
			if t.Val != nil {
				fmt.Fprintln(w, "validation (held out from the training files):")
				printModelMetrics(w, *t.Val)
			}
			if t.Test != nil {
				fmt.Fprintln(w, "test (other recordings):")
				printModelMetrics(w, *t.Test)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func featureNames(m *lucid.Model) []string {
	out := make([]string, m.F)
	for i := range out {
		out[i] = m.FeatureName(i)
	}
	return out
}

// printMetrics prints binary classification metrics, attack positive.
func printModelMetrics(w io.Writer, m lucid.Metrics) {
	fmt.Fprintf(w, "  accuracy  %.4f\n  precision %.4f\n  recall    %.4f\n  f1        %.4f\n  fpr       %.4f\n", m.Accuracy, m.Precision, m.Recall, m.F1, m.FPR)
	fmt.Fprintf(w, "  tp %d  fp %d  tn %d  fn %d\n", m.TP, m.FP, m.TN, m.FN)
}

// isTerminal tells whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar draws training progress on one stderr line, redrawn with
// \r on a terminal, else one line per epoch.
type progressBar struct {
	w      io.Writer
	epochs int
	start  time.Time
	tty    bool
	drawn  bool
}

func newProgressBar(w io.Writer, epochs int) *progressBar {
	return &progressBar{w: w, epochs: epochs, start: time.Now(), tty: isTerminal(w)}
}

const barWidth = 24

func (p *progressBar) epoch(epoch int, trainLoss, valLoss, valAcc float64) {
	fill := barWidth * epoch / max(p.epochs, 1)
	line := fmt.Sprintf("epoch %3d/%d [%s%s] loss %.5f", epoch, p.epochs, strings.Repeat("#", fill), strings.Repeat(".", barWidth-fill), trainLoss)
	if !math.IsNaN(valLoss) {
		line += fmt.Sprintf("  held-out loss %.5f  accuracy %.2f%%", valLoss, 100*valAcc)
	}
	line += fmt.Sprintf("  %.0fs", time.Since(p.start).Seconds())
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	fmt.Fprint(p.w, "\r"+line+"\033[K")
	p.drawn = true
}

func (p *progressBar) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
