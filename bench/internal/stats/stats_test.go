package stats

import (
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	in := []float64{5, 1, 3}
	if m := Median(in); m != 3 {
		t.Errorf("median %v", m)
	}
	if in[0] != 5 {
		t.Error("the input was sorted in place")
	}
	if m := Median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("even count: %v", m)
	}
	if m := Median([]time.Duration{3 * time.Second, time.Second}); m != 2*time.Second {
		t.Errorf("durations: %v", m)
	}
	if m := Median[float64](nil); m != 0 {
		t.Errorf("none: %v", m)
	}
}
