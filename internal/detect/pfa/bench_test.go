package pfa

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkLearn learns from 1x, 2x and 4x benign traces: ns/event stays
// about the same, i.e. learning is linear.
func BenchmarkLearn(b *testing.B) {
	for _, x := range []int{1, 2, 4} {
		evs := newGen(1).benignConns(1, 5000*x)
		b.Run(fmt.Sprintf("%dx", x), func(b *testing.B) {
			for b.Loop() {
				if _, err := Learn(evs, ModelConfig{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
			b.ReportMetric(float64(len(evs)), "events")
		})
	}
}

// BenchmarkCount is the learning pass alone (symbolise and count, no
// model building).
func BenchmarkCount(b *testing.B) {
	for _, x := range []int{1, 2, 4} {
		evs := newGen(1).benignConns(1, 5000*x)
		b.Run(fmt.Sprintf("%dx", x), func(b *testing.B) {
			for b.Loop() {
				l, _ := NewLearner(ModelConfig{})
				for _, ev := range evs {
					l.Observe(ev)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
		})
	}
}

// BenchmarkScore runs the detector over concurrent benign connections
// and an attack, Advance every 500 ms.
func BenchmarkScore(b *testing.B) {
	m := model(b)
	g := newGen(8)
	t0 := dur(time.Hour)
	evs := g.benignLoad(1, 5000, t0, 500*time.Second)
	for i := range 100 {
		s := t0 + int64(i)*dur(time.Second)
		evs = append(evs, g.slowloris(1, s, s+dur(60*time.Second), 0)...)
	}
	sortEvents(evs)
	end := evs[len(evs)-1].Time + dur(time.Second)
	var syms int64
	for b.Loop() {
		d, _ := NewDetector(m, Config{})
		run(b, d, evs, 500*time.Millisecond, end)
		syms = d.Stats().Symbols
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*syms), "ns/symbol")
}
