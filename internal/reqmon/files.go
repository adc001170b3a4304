package reqmon

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/rampart-shield/rampart/internal/detect/kmeans"
)

// outFiles writes FineLame-style files to a directory:
//
//	train.csv          the training set: one row per benign request
//	test.csv           every request scored after training
//	scores.csv         per scored request (by id): distance to each
//	                   cluster, accepting cluster, score, outlier flag,
//	                   and for detections the time from the request's
//	                   start to its flagging
//	clusters.csv       per cluster: size, centre, thresholds
//	normalisation.csv  per feature: transform, centre, scale
//	model.json         the model, for `--model` next time
//
// A nil *outFiles writes nothing.
type outFiles struct {
	dir          string
	mu           sync.Mutex
	train, tests *csvFile
	scores       *kmeans.ScoresWriter
	scoresFile   *os.File
	features     []string
}

type csvFile struct {
	f *os.File
	b *bufio.Writer
	w *csv.Writer
}

func newCSV(path string, header []string) (*csvFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	b := bufio.NewWriterSize(f, 64<<10)
	c := &csvFile{f: f, b: b, w: csv.NewWriter(b)}
	return c, c.w.Write(header)
}

func (c *csvFile) row(r []string) { _ = c.w.Write(r) }

func (c *csvFile) close() error {
	c.w.Flush()
	if err := c.b.Flush(); err != nil {
		c.f.Close()
		return err
	}
	return c.f.Close()
}

func openOutFiles(dir string, features []string) (*outFiles, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	o := &outFiles{dir: dir, features: features}
	head := append([]string{"id", "pid", "conn", "start_ns", "duration_ns", "reason"}, features...)
	var err error
	if o.train, err = newCSV(filepath.Join(dir, "train.csv"), head); err != nil {
		return nil, err
	}
	if o.tests, err = newCSV(filepath.Join(dir, "test.csv"), head); err != nil {
		return nil, err
	}
	return o, nil
}

func f64(v float64) string { return strconv.FormatFloat(v, 'g', 8, 64) }

func sampleRow(s Sample, x []float64) []string {
	r := []string{strconv.FormatUint(s.ID, 10), strconv.FormatUint(uint64(s.TGID), 10), s.Conn(),
		strconv.FormatUint(s.Start, 10), strconv.FormatInt(int64(s.Duration), 10), s.Reason.String()}
	for _, v := range x {
		r = append(r, f64(v))
	}
	return r
}

func (o *outFiles) trainRow(s Sample, x []float64) {
	if o == nil {
		return
	}
	o.mu.Lock()
	o.train.row(sampleRow(s, x))
	o.mu.Unlock()
}

// test records a completed request scored after training (scored with
// the in-flight rule, as the detector does: only excess counts).
func (o *outFiles) test(s Sample, x []float64, m *kmeans.Model) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tests.row(sampleRow(s, x))
	if o.scores != nil {
		_, _ = o.scores.Write(strconv.FormatUint(s.ID, 10), x, true, 0)
	}
}

// detection records the moment a request was flagged (in flight or not).
func (o *outFiles) detection(s Sample, x []float64) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.scores != nil {
		_, _ = o.scores.Write(strconv.FormatUint(s.ID, 10), x, true, max(s.Duration, 1))
		_ = o.scores.Flush()
	}
}

// model writes the trained model (model.json, clusters.csv,
// normalisation.csv) and starts scores.csv.
func (o *outFiles) model(m *kmeans.Model) error {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.train.w.Flush()
	_ = o.train.b.Flush()
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{{"model.json", m.Save}, {"clusters.csv", m.WriteClusters}, {"normalisation.csv", m.WriteNormalisation}} {
		var b bytes.Buffer
		if err := f.write(&b); err != nil {
			return err
		}
		if err := writeFileAtomic(o.dir, f.name, b.Bytes()); err != nil {
			return err
		}
	}
	fh, err := os.Create(filepath.Join(o.dir, "scores.csv"))
	if err != nil {
		return err
	}
	sw, err := m.NewScoresWriter(fh)
	if err != nil {
		fh.Close()
		return err
	}
	o.scoresFile, o.scores = fh, sw
	return nil
}

func (o *outFiles) close() {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range []*csvFile{o.train, o.tests} {
		_ = c.close()
	}
	if o.scores != nil {
		_ = o.scores.Flush()
		_ = o.scoresFile.Close()
	}
}
