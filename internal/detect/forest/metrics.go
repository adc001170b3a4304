package forest

// Metrics is a binary classifier's quality on a labelled set. Ratios whose
// divisor is zero are 0.
type Metrics struct {
	Threshold float64 `json:"threshold"` // Predict(x) >= Threshold counts as 1
	Accuracy  float64 `json:"accuracy"`  // (TP+TN) / all
	Precision float64 `json:"precision"` // TP / (TP+FP)
	Recall    float64 `json:"recall"`    // TP / (TP+FN)
	F1        float64 `json:"f1"`        // harmonic mean of precision and recall
	FPR       float64 `json:"fpr"`       // FP / (FP+TN)
	TP        int     `json:"tp"`
	FP        int     `json:"fp"`
	TN        int     `json:"tn"`
	FN        int     `json:"fn"`
}

// Evaluate classifies every row of d with f (Predict(x) >= threshold is
// class 1) and compares with d's labels. It panics on rows of the wrong
// length, like Predict.
func Evaluate(f *Forest, d Dataset, threshold float64) Metrics {
	m := Metrics{Threshold: threshold}
	for i, x := range d.X {
		got := f.Predict(x) >= threshold
		switch want := d.Y[i] == 1; {
		case got && want:
			m.TP++
		case got && !want:
			m.FP++
		case !got && want:
			m.FN++
		default:
			m.TN++
		}
	}
	m.Accuracy = ratio(m.TP+m.TN, m.TP+m.TN+m.FP+m.FN)
	m.Precision = ratio(m.TP, m.TP+m.FP)
	m.Recall = ratio(m.TP, m.TP+m.FN)
	if m.Precision+m.Recall > 0 {
		m.F1 = 2 * m.Precision * m.Recall / (m.Precision + m.Recall)
	}
	m.FPR = ratio(m.FP, m.FP+m.TN)
	return m
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
