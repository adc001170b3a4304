package models

import (
	"testing"

	"github.com/rampart-shield/rampart/internal/detect/lucid"
)

// TestDDoS: the shipped DDoS model loads, has the shape live detection
// feeds it, and its training record holds held-out metrics that meet the
// acceptance bar (F1 >= 0.99, FPR <= 1%). TestDefaultModelOnFreshRecordings
// in internal/traffic measures it on fresh recordings.
func TestDDoS(t *testing.T) {
	m, err := DDoS()
	if err != nil {
		t.Fatal(err)
	}
	if m.N != lucid.DefaultN || m.F != lucid.NumFeatures || m.Norm == nil || m.Name != "ddos-lucid" || m.Version == "" {
		t.Fatalf("model %s %q: n=%d f=%d, normaliser %v", m.Name, m.Version, m.N, m.F, m.Norm != nil)
	}
	for name, mt := range map[string]*lucid.Metrics{"validation": m.Meta.Val, "test": m.Meta.Test} {
		if mt == nil {
			t.Errorf("no %s metrics in the training record", name)
			continue
		}
		if mt.F1 < 0.99 || mt.FPR > 0.01 || mt.TN+mt.FP < 1000 || mt.TP+mt.FN < 1000 {
			t.Errorf("%s metrics %+v", name, *mt)
		}
	}
	if m.Meta.Seed != 1 {
		t.Errorf("trained with seed %d, the script uses 1", m.Meta.Seed)
	}
	// A fresh copy each call.
	m2, _ := DDoS()
	m2.Conv[0]++
	if m.Conv[0] == m2.Conv[0] {
		t.Error("DDoS returns shared weights")
	}
}
