package lucid

// Metrics are binary classification results with "attack" (label 1) as
// the positive class.
type Metrics struct {
	Accuracy  float64 `json:"accuracy"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	// FPR is the false positive rate FP / (FP + TN).
	FPR float64 `json:"fpr"`
	TP  int     `json:"tp"`
	FP  int     `json:"fp"`
	TN  int     `json:"tn"`
	FN  int     `json:"fn"`
}

// Evaluate scores samples with m and counts a score >= threshold as an
// attack. Ratios with a zero denominator are 0.
func Evaluate(m *Model, samples []Sample, threshold float64) Metrics {
	xs := make([][][]float32, len(samples))
	for i := range samples {
		xs[i] = samples[i].Packets
	}
	scores := make([]float32, len(samples))
	m.PredictBatch(xs, scores)
	labels := make([]int, len(samples))
	for i := range samples {
		labels[i] = samples[i].Label
	}
	return metricsOf(scores, labels, threshold)
}

func metricsOf(scores []float32, labels []int, threshold float64) Metrics {
	var r Metrics
	for i, s := range scores {
		pos := float64(s) >= threshold
		switch {
		case pos && labels[i] == 1:
			r.TP++
		case pos:
			r.FP++
		case labels[i] == 1:
			r.FN++
		default:
			r.TN++
		}
	}
	r.Accuracy = ratio(r.TP+r.TN, len(scores))
	r.Precision = ratio(r.TP, r.TP+r.FP)
	r.Recall = ratio(r.TP, r.TP+r.FN)
	r.FPR = ratio(r.FP, r.FP+r.TN)
	if r.Precision+r.Recall > 0 {
		r.F1 = 2 * r.Precision * r.Recall / (r.Precision + r.Recall)
	}
	return r
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
