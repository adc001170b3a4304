// Command cryptodata records crypto-mining and benign traffic in the lab,
// trains the crypto-mining random forest and ships it:
//
//	sudo go run ./bench/cryptodata -out DIR [-minutes N] [-compress F]
//
// It records -runs training recordings and one held-out recording (other
// seeds and other parameter ranges: crypto.TrainProfile and
// crypto.HeldOutProfile), picks the forest's configuration by
// cross-validation on the training rows (folds by session), trains with a
// fixed seed, measures the model on the held-out recording, writes it
// (models/crypto-forest.json by default) with the held-out metrics in its
// metadata, and prints the metrics and the feature importances. DIR
// receives every dataset as CSV and a JSON report. -retrain skips
// recording and trains on DIR's datasets again.
package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/rampart-shield/rampart/internal/detect/crypto"
	"github.com/rampart-shield/rampart/internal/detect/forest"
	"github.com/rampart-shield/rampart/internal/lab"
)

// The forest's fixed parts; cross-validation picks MinLeaf, MaxFeatures
// and whether to balance the classes from grid.
const (
	trees     = 150
	maxDepth  = 16
	trainSeed = 20250601
	folds     = 5
)

type choice struct {
	minLeaf, maxFeatures int
	balance              bool
}

var grid = func() []choice {
	var g []choice
	for _, b := range []bool{false, true} {
		for _, c := range [][2]int{{1, 4}, {2, 4}, {1, 6}, {2, 6}, {4, 6}, {1, 10}, {2, 10}, {4, 10}, {2, 16}, {4, 16}} {
			g = append(g, choice{c[0], c[1], b})
		}
	}
	return g
}()

// Thresholds reported; the detector alerts at 0.8 by default.
const detectorThreshold = 0.8

func main() {
	out := flag.String("out", "", "folder for the datasets and the report (required)")
	minutes := flag.Float64("minutes", 12, "real-time minutes of traffic per recording")
	compress := flag.Float64("compress", 5, "time compression of the traffic (a recording takes minutes/compress)")
	sessions := flag.Int("sessions", 48, "mining sessions, and sessions of each benign kind, per training recording")
	heldSessions := flag.Int("heldout-sessions", 10, "sessions per kind in the held-out recording")
	runs := flag.Int("runs", 2, "training recordings (each with its own seed)")
	seed := flag.Uint64("seed", 1, "seed of the first training recording (the others, and the held-out one, derive theirs)")
	modelPath := flag.String("model", "models/crypto-forest.json", "where to write the model")
	version := flag.String("version", time.Now().UTC().Format("2006-01-02")+".1", "model version")
	retrain := flag.Bool("retrain", false, "train on DIR's datasets instead of recording")
	verbose := flag.Bool("v", false, "log progress")
	showMisses := flag.Bool("misses", false, "list the held-out rows the model gets wrong")
	evalPath := flag.String("eval", "", "only evaluate this model file on DIR/heldout.csv (no training)")
	forestFlag := flag.String("forest", "", "skip cross-validation and use MINLEAF,MAXFEATURES,BALANCE (e.g. 1,4,true)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "cryptodata: -out DIR is required")
		flag.Usage()
		os.Exit(2)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	lvl := slog.LevelWarn
	if *verbose {
		lvl = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	if *evalPath != "" {
		evaluate(*evalPath, filepath.Join(*out, "heldout.csv"))
		return
	}
	var train, held dataset
	if *retrain {
		paths, _ := filepath.Glob(filepath.Join(*out, "train-*.csv"))
		sort.Strings(paths)
		if len(paths) == 0 {
			fail(fmt.Errorf("no %s", filepath.Join(*out, "train-*.csv")))
		}
		for i, p := range paths {
			ds, err := readCSV(p, i+1)
			if err != nil {
				fail(err)
			}
			train.add(ds)
		}
		var err error
		if held, err = readCSV(filepath.Join(*out, "heldout.csv"), 0); err != nil {
			fail(err)
		}
	} else {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		base := crypto.RecordConfig{
			Duration: time.Duration(*minutes * float64(time.Minute)),
			Speedup:  *compress, Sessions: *sessions, Log: log,
		}
		for run := 1; run <= *runs; run++ {
			cfg := base
			cfg.Seed, cfg.Profile = *seed+uint64(run-1)*0x9e3779b97f4a7c15, crypto.TrainProfile
			fmt.Printf("recording training traffic %d of %d: %d sessions per kind, %.0f min compressed %g× (%s)\n",
				run, *runs, cfg.Sessions, *minutes, *compress, wallOf(cfg))
			ds, err := record(ctx, cfg, filepath.Join(*out, fmt.Sprintf("train-%d", run)), run)
			if err != nil {
				fail(err)
			}
			train.add(ds)
		}
		cfg := base
		cfg.Seed, cfg.Profile, cfg.Sessions = *seed^0x686f6c646f7574, crypto.HeldOutProfile, *heldSessions
		fmt.Printf("recording held-out traffic: %d sessions per kind, other seeds and parameters (%s)\n", cfg.Sessions, wallOf(cfg))
		var err error
		if held, err = record(ctx, cfg, filepath.Join(*out, "heldout"), 0); err != nil {
			fail(err)
		}
	}
	fmt.Printf("training: %d rows (%d mining) from %d sessions; held-out: %d rows (%d mining)\n",
		len(train.d.Y), positives(train.d), len(train.groups()), len(held.d.Y), positives(held.d))

	// The configuration: grouped cross-validation on the training rows.
	cfg := forest.Config{Trees: trees, MaxDepth: maxDepth, Seed: trainSeed}
	balance := false
	var cv []cvResult
	if *forestFlag != "" {
		if _, err := fmt.Sscanf(*forestFlag, "%d,%d,%t", &cfg.MinLeaf, &cfg.MaxFeatures, &balance); err != nil {
			fail(fmt.Errorf("-forest %q: %v", *forestFlag, err))
		}
	} else {
		fmt.Printf("\ncross-validation on the training rows (%d folds by session):\n", folds)
		fmt.Println("  balance  min_leaf  max_features  F1@0.5  FPR@0.5  F1@0.8  FPR@0.8")
		best := -1.0
		var bestScores []float64
		for _, g := range grid {
			c := cfg
			c.MinLeaf, c.MaxFeatures = g.minLeaf, g.maxFeatures
			r := crossValidate(train, c, g.balance)
			cv = append(cv, r)
			fmt.Printf("  %-7t  %-8d  %-12d  %.4f  %.4f   %.4f  %.4f\n", g.balance, g.minLeaf, g.maxFeatures, r.At5.F1, r.At5.FPR, r.At8.F1, r.At8.FPR)
			if s := r.score(); s > best {
				best, cfg, balance, bestScores = s, c, g.balance, r.scores
			}
		}
		if err := writeScores(filepath.Join(*out, "cv-scores.csv"), train, bestScores); err != nil {
			fail(err)
		}
		fmt.Printf("  chosen: balance %t, min_leaf %d, max_features %d (best F1 at 0.5 plus F1 at 0.8)\n", balance, cfg.MinLeaf, cfg.MaxFeatures)
	}

	td := train.d
	if balance {
		td = balanced(td)
	}
	f, err := forest.Train(td, cfg, nil)
	if err != nil {
		fail(err)
	}
	f.Name, f.Version = "crypto-forest", *version
	at5 := forest.Evaluate(f, held.d, 0.5)
	at8 := forest.Evaluate(f, held.d, detectorThreshold)
	f.Info.HeldOut = &at5
	var buf bytes.Buffer
	if err := f.Save(&buf); err != nil {
		fail(err)
	}
	if err := os.WriteFile(*modelPath, buf.Bytes(), 0o644); err != nil {
		fail(err)
	}

	fmt.Printf("\nmodel %s %s: %d trees (depth %d, min leaf %d, %d features per split, seed %d, balanced %t), trained in %.1fs on %d rows, written to %s (%d bytes)\n",
		f.Name, f.Version, f.NumTrees(), cfg.MaxDepth, cfg.MinLeaf, cfg.MaxFeatures, cfg.Seed, balance, f.Info.Seconds, f.Info.Samples, *modelPath, buf.Len())
	fmt.Println("\nheld-out metrics:")
	fmt.Println("  threshold  accuracy  precision  recall  F1      FPR     TP  FP  TN  FN")
	for _, m := range []forest.Metrics{at5, at8} {
		fmt.Printf("  %-9.2f  %.4f    %.4f     %.4f  %.4f  %.4f  %-3d %-3d %-3d %d\n", m.Threshold, m.Accuracy, m.Precision, m.Recall, m.F1, m.FPR, m.TP, m.FP, m.TN, m.FN)
	}
	perKind := byKind(f, held, detectorThreshold)
	fmt.Printf("\nheld-out rows by kind (flagged: scored at least %.2f):\n", detectorThreshold)
	for _, k := range sortedKeys(perKind) {
		c := perKind[k]
		fmt.Printf("  %-12s %4d rows, %4d flagged, mean score %.3f\n", k, c.Rows, c.Flagged, c.Score/float64(max(1, c.Rows)))
	}
	sessions5, sessions8 := bySession(f, held)
	fmt.Printf("held-out mining sessions flagged at their last snapshot: %d of %d at 0.5, %d at 0.8\n", sessions5, countMining(held), sessions8)
	if *showMisses {
		fmt.Printf("\nheld-out rows misclassified at %.2f:\n", detectorThreshold)
		for i, x := range held.d.X {
			p := f.Predict(x)
			if (p >= detectorThreshold) == (held.d.Y[i] == 1) {
				continue
			}
			fmt.Printf("  %-11s session %-3d snapshot %d  score %.2f:", held.kinds[i], held.sessions[i], held.snapshots[i], p)
			for j, n := range held.d.Names {
				if j > 0 {
					fmt.Printf(" %s=%.4g", n, x[j])
				}
			}
			fmt.Println()
		}
	}
	fmt.Println("\nfeature importance (mean decrease in impurity):")
	for _, c := range f.Importance() {
		fmt.Printf("  %-24s %.4f\n", c.Name, c.Contribution)
	}

	report := map[string]any{
		"model": f.Name, "version": f.Version, "config": f.Info.Config, "balanced": balance, "cross_validation": cv,
		"train_rows": len(train.d.Y), "train_mining": positives(train.d),
		"heldout_rows": len(held.d.Y), "heldout_mining": positives(held.d),
		"heldout_0.5": at5, "heldout_0.8": at8, "heldout_by_kind": perKind,
		"importance": f.Importance(),
	}
	b, _ := json.MarshalIndent(report, "", "  ")
	if err := os.WriteFile(filepath.Join(*out, "report.json"), b, 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "cryptodata:", err)
	os.Exit(1)
}

func wallOf(c crypto.RecordConfig) string {
	return fmt.Sprintf("about %s", time.Duration(float64(c.Duration)/c.Speedup).Round(time.Second))
}

// dataset is a dataset with each row's recording, session, snapshot and
// kind.
type dataset struct {
	d         forest.Dataset
	kinds     []string
	runs      []int
	sessions  []int
	snapshots []int
}

func (ds *dataset) add(o dataset) {
	if ds.d.Names == nil {
		ds.d.Names = o.d.Names
	}
	ds.d.X, ds.d.Y = append(ds.d.X, o.d.X...), append(ds.d.Y, o.d.Y...)
	ds.kinds, ds.runs = append(ds.kinds, o.kinds...), append(ds.runs, o.runs...)
	ds.sessions, ds.snapshots = append(ds.sessions, o.sessions...), append(ds.snapshots, o.snapshots...)
}

// group is a row's session across recordings.
func (ds *dataset) group(i int) int { return ds.runs[i]<<20 | ds.sessions[i] }

func (ds *dataset) groups() map[int]bool {
	g := map[int]bool{}
	for i := range ds.d.Y {
		g[ds.group(i)] = true
	}
	return g
}

func positives(d forest.Dataset) int {
	n := 0
	for _, y := range d.Y {
		n += y
	}
	return n
}

// record runs one recording in its own lab and writes PREFIX.csv and
// PREFIX-sessions.json.
func record(ctx context.Context, cfg crypto.RecordConfig, prefix string, run int) (dataset, error) {
	if os.Geteuid() != 0 {
		return dataset{}, errors.New("recording needs root (network namespaces and eBPF): run with sudo, or use -retrain")
	}
	_ = lab.Sweep(10 * time.Minute)
	l, err := lab.New()
	if err != nil {
		return dataset{}, err
	}
	defer l.Close()
	rec, err := crypto.Record(ctx, l, cfg)
	if err != nil {
		return dataset{}, err
	}
	failed := 0
	for _, s := range rec.Sessions {
		if s.Err != "" {
			failed++
			fmt.Printf("  session %s from %s failed: %s\n", s.Kind, s.Client, s.Err)
		}
	}
	fmt.Printf("  %d rows %v in %s; %d sessions, %d failed; probe: %d packets counted, %d table full, %d restarts\n",
		len(rec.Rows), rec.Kinds(), rec.Wall.Round(time.Second), len(rec.Sessions), failed, rec.Stats.Counted, rec.Stats.TableFull, rec.Stats.Restarted)
	ds := dataset{d: rec.Data}
	for _, r := range rec.Rows {
		ds.kinds, ds.runs = append(ds.kinds, r.Kind), append(ds.runs, run)
		ds.sessions, ds.snapshots = append(ds.sessions, r.Session), append(ds.snapshots, r.Snapshot)
	}
	if err := writeCSV(prefix+".csv", rec); err != nil {
		return ds, err
	}
	b, _ := json.MarshalIndent(rec.Sessions, "", "  ")
	return ds, os.WriteFile(prefix+"-sessions.json", b, 0o644)
}

// CSV: kind, session, snapshot, label, then the features.
func writeCSV(path string, rec *crypto.Recording) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write(append([]string{"kind", "session", "snapshot", "label"}, rec.Data.Names...))
	for i, r := range rec.Rows {
		row := []string{r.Kind, strconv.Itoa(r.Session), strconv.Itoa(r.Snapshot), strconv.Itoa(rec.Data.Y[i])}
		for _, x := range rec.Data.X[i] {
			row = append(row, strconv.FormatFloat(x, 'g', -1, 64))
		}
		w.Write(row)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readCSV(path string, run int) (dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return dataset{}, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return dataset{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) < 2 || len(rows[0]) != 4+len(forest.FeatureNames) {
		return dataset{}, fmt.Errorf("%s: not a cryptodata dataset", path)
	}
	ds := dataset{d: forest.Dataset{Names: rows[0][4:]}}
	for i, r := range rows[1:] {
		y, err1 := strconv.Atoi(r[3])
		sess, err2 := strconv.Atoi(r[1])
		snap, err3 := strconv.Atoi(r[2])
		if err := errors.Join(err1, err2, err3); err != nil {
			return dataset{}, fmt.Errorf("%s row %d: %w", path, i+2, err)
		}
		x := make([]float64, len(r)-4)
		for j := range x {
			if x[j], err = strconv.ParseFloat(r[4+j], 64); err != nil {
				return dataset{}, fmt.Errorf("%s row %d: %w", path, i+2, err)
			}
		}
		ds.d.X, ds.d.Y = append(ds.d.X, x), append(ds.d.Y, y)
		ds.kinds, ds.runs = append(ds.kinds, r[0]), append(ds.runs, run)
		ds.sessions, ds.snapshots = append(ds.sessions, sess), append(ds.snapshots, snap)
	}
	return ds, nil
}

// cvResult is one configuration's cross-validated quality: every training
// row predicted by the forest trained on the folds without its session.
type cvResult struct {
	Balance     bool           `json:"balance"`
	MinLeaf     int            `json:"min_leaf"`
	MaxFeatures int            `json:"max_features"`
	At5         forest.Metrics `json:"at_0.5"`
	At8         forest.Metrics `json:"at_0.8"`
	scores      []float64      // out-of-fold, per training row
}

// score ranks configurations: F1 at 0.5 (the majority vote, the model's
// own operating point) plus F1 at the detector's default threshold.
func (r cvResult) score() float64 { return r.At5.F1 + r.At8.F1 }

func crossValidate(ds dataset, cfg forest.Config, balance bool) cvResult {
	// Folds by session: sorted groups dealt round robin.
	var gs []int
	for g := range ds.groups() {
		gs = append(gs, g)
	}
	sort.Ints(gs)
	fold := map[int]int{}
	for i, g := range gs {
		fold[g] = i % folds
	}
	scores := make([]float64, len(ds.d.Y))
	for k := range folds {
		var tr forest.Dataset
		tr.Names = ds.d.Names
		var test []int
		for i := range ds.d.Y {
			if fold[ds.group(i)] == k {
				test = append(test, i)
			} else {
				tr.X, tr.Y = append(tr.X, ds.d.X[i]), append(tr.Y, ds.d.Y[i])
			}
		}
		if balance {
			tr = balanced(tr)
		}
		f, err := forest.Train(tr, cfg, nil)
		if err != nil {
			fail(err)
		}
		for _, i := range test {
			scores[i] = f.Predict(ds.d.X[i])
		}
	}
	return cvResult{Balance: balance, MinLeaf: cfg.MinLeaf, MaxFeatures: cfg.MaxFeatures, At5: metricsOf(scores, ds.d.Y, 0.5), At8: metricsOf(scores, ds.d.Y, detectorThreshold), scores: scores}
}

// metricsOf is forest.Evaluate for precomputed scores.
func metricsOf(scores []float64, y []int, thr float64) forest.Metrics {
	m := forest.Metrics{Threshold: thr}
	for i, s := range scores {
		switch got, want := s >= thr, y[i] == 1; {
		case got && want:
			m.TP++
		case got:
			m.FP++
		case want:
			m.FN++
		default:
			m.TN++
		}
	}
	r := func(a, b int) float64 {
		if b == 0 {
			return 0
		}
		return float64(a) / float64(b)
	}
	m.Accuracy, m.Precision, m.Recall, m.FPR = r(m.TP+m.TN, len(scores)), r(m.TP, m.TP+m.FP), r(m.TP, m.TP+m.FN), r(m.FP, m.FP+m.TN)
	if m.Precision+m.Recall > 0 {
		m.F1 = 2 * m.Precision * m.Recall / (m.Precision + m.Recall)
	}
	return m
}

type kindStats struct {
	Rows    int     `json:"rows"`
	Flagged int     `json:"flagged"`
	Score   float64 `json:"score_sum"`
}

func byKind(f *forest.Forest, ds dataset, thr float64) map[string]*kindStats {
	out := map[string]*kindStats{}
	for i, x := range ds.d.X {
		k := ds.kinds[i]
		if out[k] == nil {
			out[k] = &kindStats{}
		}
		s := f.Predict(x)
		out[k].Rows++
		out[k].Score += s
		if s >= thr {
			out[k].Flagged++
		}
	}
	return out
}

// bySession counts the mining sessions whose last row scores at least 0.5
// and 0.8.
func bySession(f *forest.Forest, ds dataset) (at5, at8 int) {
	last := map[int]int{}
	for i := range ds.d.Y {
		if ds.d.Y[i] == 1 {
			if j, ok := last[ds.group(i)]; !ok || ds.snapshots[i] > ds.snapshots[j] {
				last[ds.group(i)] = i
			}
		}
	}
	for _, i := range last {
		s := f.Predict(ds.d.X[i])
		if s >= 0.5 {
			at5++
		}
		if s >= detectorThreshold {
			at8++
		}
	}
	return at5, at8
}

func countMining(ds dataset) int {
	g := map[int]bool{}
	for i, y := range ds.d.Y {
		if y == 1 {
			g[ds.group(i)] = true
		}
	}
	return len(g)
}

// balanced repeats the minority class's rows (whole copies, round robin)
// until it is about as large as the majority: the forest then weighs both
// classes alike, instead of favouring benign, five times as common.
func balanced(d forest.Dataset) forest.Dataset {
	var pos, neg []int
	for i, y := range d.Y {
		if y == 1 {
			pos = append(pos, i)
		} else {
			neg = append(neg, i)
		}
	}
	minority := pos
	if len(neg) < len(pos) {
		minority = neg
	}
	if len(minority) == 0 {
		return d
	}
	out := forest.Dataset{Names: d.Names, X: append([][]float64(nil), d.X...), Y: append([]int(nil), d.Y...)}
	extra := (max(len(pos), len(neg)) - len(minority)) / len(minority) * len(minority)
	for k := 0; k < extra; k++ {
		i := minority[k%len(minority)]
		out.X, out.Y = append(out.X, d.X[i]), append(out.Y, d.Y[i])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// writeScores writes the chosen configuration's out-of-fold scores of the
// training rows: run, session, snapshot, kind, label, score.
func writeScores(path string, ds dataset, scores []float64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"run", "session", "snapshot", "kind", "label", "score"})
	for i, s := range scores {
		w.Write([]string{strconv.Itoa(ds.runs[i]), strconv.Itoa(ds.sessions[i]), strconv.Itoa(ds.snapshots[i]), ds.kinds[i], strconv.Itoa(ds.d.Y[i]), strconv.FormatFloat(s, 'f', 4, 64)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// evaluate prints a saved model's metrics on a recording.
func evaluate(modelPath, csvPath string) {
	mf, err := os.Open(modelPath)
	if err != nil {
		fail(err)
	}
	defer mf.Close()
	f, err := forest.Load(mf, forest.FeatureNames)
	if err != nil {
		fail(err)
	}
	ds, err := readCSV(csvPath, 0)
	if err != nil {
		fail(err)
	}
	fmt.Printf("model %s %s on %s: %d rows (%d mining)\n", f.Name, f.Version, csvPath, len(ds.d.Y), positives(ds.d))
	fmt.Println("  threshold  accuracy  precision  recall  F1      FPR     TP  FP  TN  FN")
	for _, thr := range []float64{0.5, detectorThreshold} {
		m := forest.Evaluate(f, ds.d, thr)
		fmt.Printf("  %-9.2f  %.4f    %.4f     %.4f  %.4f  %.4f  %-3d %-3d %-3d %d\n", m.Threshold, m.Accuracy, m.Precision, m.Recall, m.F1, m.FPR, m.TP, m.FP, m.TN, m.FN)
	}
}
