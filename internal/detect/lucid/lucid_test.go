package lucid

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/probes/ddosfeat"
)

// ---- hand-built tiny model: n=4, F=2, K=2, h=2 ----

// tinyModel returns the model and input used by the hand-computed tests.
//
//	input rows: r0=[1,0] r1=[0,2] r2=[1,1] r3=[2,1]
//	kernel 0: row i=0 [1,-1], row i=1 [0.5,0.5], bias 0
//	kernel 1: row i=0 [0,1],  row i=1 [-1,0],   bias -0.25
//	dense [0.5, -1], bias 0.25
func tinyModel(t *testing.T) (*Model, [][]float32) {
	t.Helper()
	m, err := NewModel(4, 2, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	set := func(k, i int, w0, w1 float32) {
		m.Conv[m.ConvIndex(k, i, 0)] = w0
		m.Conv[m.ConvIndex(k, i, 1)] = w1
	}
	set(0, 0, 1, -1)
	set(0, 1, 0.5, 0.5)
	set(1, 0, 0, 1)
	set(1, 1, -1, 0)
	m.ConvBias[0], m.ConvBias[1] = 0, -0.25
	m.Dense[0], m.Dense[1] = 0.5, -1
	m.DenseBias = 0.25
	return m, [][]float32{{1, 0}, {0, 2}, {1, 1}, {2, 1}}
}

// Hand computation (P = n-h+1 = 3 positions):
//
//	kernel 0: p0 = r0·[1,-1] + r1·[.5,.5] = 1 + 1    = 2
//	          p1 = r1·[1,-1] + r2·[.5,.5] = -2 + 1   = -1
//	          p2 = r2·[1,-1] + r3·[.5,.5] = 0 + 1.5  = 1.5
//	          max 2 at p0, + bias 0 -> ReLU 2
//	kernel 1: p0 = r0·[0,1] + r1·[-1,0] = 0 + 0    = 0
//	          p1 = r1·[0,1] + r2·[-1,0] = 2 - 1    = 1
//	          p2 = r2·[0,1] + r3·[-1,0] = 1 - 2    = -1
//	          max 1 at p1, + bias -0.25 -> ReLU 0.75
//	logit = 0.5*2 + (-1)*0.75 + 0.25 = 0.5
//	score = 1/(1+e^-0.5) = 0.6224593312018546
const tinyScore = 0.6224593312018546

func TestForwardTiny(t *testing.T) {
	m, x := tinyModel(t)
	if got := m.Predict(x); math.Abs(float64(got)-tinyScore) > 1e-6 {
		t.Fatalf("Predict = %.9f, want %.9f", got, tinyScore)
	}
	out := make([]float32, 3)
	m.PredictBatch([][][]float32{x, x[:2], x}, out)
	if out[0] != out[2] || math.Abs(float64(out[0])-tinyScore) > 1e-6 {
		t.Fatalf("PredictBatch = %v, want %.9f", out, tinyScore)
	}
	// x[:2] pads rows r2, r3 with zeros: kernel 0 = max(2, -2, 0) = 2,
	// kernel 1 = max(0, 2, 0) - 0.25 = 1.75; logit = 1 - 1.75 + 0.25 = -0.5.
	if want := 1 / (1 + math.Exp(0.5)); math.Abs(float64(out[1])-want) > 1e-6 {
		t.Fatalf("padded sample scores %.9f, want %.9f", out[1], want)
	}
}

func TestBackwardTiny(t *testing.T) {
	m, x := tinyModel(t)
	g := NewGradients(m)
	loss := m.Gradient(x, 1, g)
	// label 1: loss = -ln(0.62245933) = ln(1+e^-0.5) = 0.4740769841801067
	// dL/dlogit = y - 1 = -0.3775406687981454 =: gz
	const gz = tinyScore - 1
	if math.Abs(loss-0.4740769841801067) > 1e-6 {
		t.Errorf("loss = %.9f, want 0.474076984", loss)
	}
	// dense: gz * pooled = [gz*2, gz*0.75]; dense bias: gz
	// kernel deltas (both ReLUs active): gz*dense = [gz*0.5, -gz]
	// conv bias: the deltas; kernel 0 routes to p0 (rows r0, r1), kernel 1
	// to p1 (rows r1, r2): dW[k][i][f] = delta_k * x[p_k+i][f]
	d0, d1 := float32(gz*0.5), float32(-gz)
	want := &Gradients{Conv: make([]float32, len(m.Conv))}
	want.Dense = []float32{gz * 2, gz * 0.75}
	want.DenseBias = gz
	want.ConvBias = []float32{d0, d1}
	want.Conv[m.ConvIndex(0, 0, 0)] = d0 * 1 // r0[0]
	want.Conv[m.ConvIndex(0, 0, 1)] = d0 * 0 // r0[1]
	want.Conv[m.ConvIndex(0, 1, 0)] = d0 * 0 // r1[0]
	want.Conv[m.ConvIndex(0, 1, 1)] = d0 * 2 // r1[1]
	want.Conv[m.ConvIndex(1, 0, 0)] = d1 * 0 // r1[0]
	want.Conv[m.ConvIndex(1, 0, 1)] = d1 * 2 // r1[1]
	want.Conv[m.ConvIndex(1, 1, 0)] = d1 * 1 // r2[0]
	want.Conv[m.ConvIndex(1, 1, 1)] = d1 * 1 // r2[1]
	compareGrads(t, g, want, 1e-6)

	// label 0: dL/dlogit = y; everything scales by y/(y-1).
	g.Reset()
	loss = m.Gradient(x, 0, g)
	if math.Abs(loss-0.9740769841801067) > 1e-6 { // ln(1+e^0.5)
		t.Errorf("label 0 loss = %.9f, want 0.974076984", loss)
	}
	if math.Abs(float64(g.DenseBias)-tinyScore) > 1e-6 {
		t.Errorf("label 0 dense bias gradient = %g, want %g", g.DenseBias, tinyScore)
	}
}

func compareGrads(t *testing.T, got, want *Gradients, tol float64) {
	t.Helper()
	cmp := func(name string, g, w []float32) {
		for i := range w {
			if math.Abs(float64(g[i]-w[i])) > tol {
				t.Errorf("%s[%d] = %.9f, want %.9f", name, i, g[i], w[i])
			}
		}
	}
	cmp("conv", got.Conv, want.Conv)
	cmp("conv_bias", got.ConvBias, want.ConvBias)
	cmp("dense", got.Dense, want.Dense)
	cmp("dense_bias", []float32{got.DenseBias}, []float32{want.DenseBias})
}

func TestExplainTiny(t *testing.T) {
	m, x := tinyModel(t)
	e := m.Explain(x)
	if math.Abs(float64(e.Score)-tinyScore) > 1e-6 || math.Abs(float64(e.Logit)-0.5) > 1e-6 {
		t.Fatalf("score %g logit %g, want %g 0.5", e.Score, e.Logit, tinyScore)
	}
	// Bias = 0.25 + 0.5*0 + (-1)*(-0.25) = 0.5.
	// Kernel 0 (dense 0.5) at p0: (0,f0) 0.5*1*1 = 0.5, (1,f1) 0.5*0.5*2 = 0.5.
	// Kernel 1 (dense -1) at p1: (1,f1) -1*1*2 = -2, (2,f0) -1*-1*1 = 1.
	// Cells: (1,f1) -1.5, (2,f0) 1, (0,f0) 0.5; sum 0 + bias 0.5 = logit.
	if math.Abs(float64(e.Bias)-0.5) > 1e-6 {
		t.Errorf("bias = %g, want 0.5", e.Bias)
	}
	want := []Contribution{{1, "f1", 2, -1.5}, {2, "f0", 1, 1}, {0, "f0", 1, 0.5}}
	if !slices.Equal(e.Top, want) {
		t.Errorf("top = %+v, want %+v", e.Top, want)
	}
	// Windows: p0 holds kernel 0 (0.5*2 = 1), p1 kernel 1 (-1*0.75).
	wantW := []Window{{0, 1, 1}, {1, 1, -0.75}}
	if !slices.Equal(e.Windows, wantW) {
		t.Errorf("windows = %+v, want %+v", e.Windows, wantW)
	}
}

// ---- numerical gradient check ----

// refLoss is a float64 reference forward pass with the Model's layout.
func refLoss(n, f, k, h int, conv, cb, dense []float64, db float64, x [][]float64, label float64) float64 {
	logit := db
	for kk := range k {
		best := math.Inf(-1)
		for p := 0; p+h <= n; p++ {
			z := 0.0
			for i := range h {
				for ff := range f {
					z += conv[(i*f+ff)*k+kk] * x[p+i][ff]
				}
			}
			best = max(best, z)
		}
		logit += dense[kk] * max(best+cb[kk], 0)
	}
	return max(logit, 0) - label*logit + math.Log1p(math.Exp(-math.Abs(logit)))
}

// refMargins returns, over kernels, the smallest gap between the best and
// second-best position and the smallest |max + bias| (distance from the
// ReLU kink).
func refMargins(n, f, k, h int, conv, cb []float64, x [][]float64) (gap, kink float64) {
	gap, kink = math.Inf(1), math.Inf(1)
	for kk := range k {
		var zs []float64
		for p := 0; p+h <= n; p++ {
			z := 0.0
			for i := range h {
				for ff := range f {
					z += conv[(i*f+ff)*k+kk] * x[p+i][ff]
				}
			}
			zs = append(zs, z)
		}
		slices.Sort(zs)
		gap = min(gap, zs[len(zs)-1]-zs[len(zs)-2])
		kink = min(kink, math.Abs(zs[len(zs)-1]+cb[kk]))
	}
	return gap, kink
}

func to64(v []float32) []float64 {
	r := make([]float64, len(v))
	for i, x := range v {
		r[i] = float64(x)
	}
	return r
}

func TestGradientNumerical(t *testing.T) {
	// K = 9 exercises both the 8-kernel blocked path and the remainder.
	const n, f, k, h = 5, 4, 9, 2
	rng := rand.New(rand.NewPCG(1, 2))
	m, _ := NewModel(n, f, k, h)
	m.InitWeights(rng)
	for i := range m.ConvBias {
		m.ConvBias[i] = float32(rng.Float64() - 0.3)
	}
	m.DenseBias = 0.1
	conv, cb, dense := to64(m.Conv), to64(m.ConvBias), to64(m.Dense)
	db := float64(m.DenseBias)

	type smp struct {
		x32   [][]float32
		x64   [][]float64
		label int
	}
	var samples []smp
	for len(samples) < 4 {
		x32 := make([][]float32, n)
		x64 := make([][]float64, n)
		for r := range n {
			x32[r] = make([]float32, f)
			x64[r] = make([]float64, f)
			for c := range f {
				if rng.IntN(4) == 0 {
					continue // keep some zeros: the sparse path
				}
				v := float32(rng.Float64())
				x32[r][c], x64[r][c] = v, float64(v)
			}
		}
		if gap, kink := refMargins(n, f, k, h, conv, cb, x64); gap < 0.02 || kink < 0.02 {
			continue // too close to a max-pool tie or a ReLU kink
		}
		samples = append(samples, smp{x32, x64, len(samples) % 2})
	}

	g := NewGradients(m)
	var loss32 float64
	for _, s := range samples {
		loss32 += m.Gradient(s.x32, s.label, g)
	}
	total := func() float64 {
		var l float64
		for _, s := range samples {
			l += refLoss(n, f, k, h, conv, cb, dense, db, s.x64, float64(s.label))
		}
		return l
	}
	if l := total(); math.Abs(l-loss32) > 1e-5*math.Abs(l) {
		t.Fatalf("float32 loss %g, float64 reference %g", loss32, l)
	}
	const eps = 1e-4
	numeric := func(p *float64) float64 {
		old := *p
		*p = old + eps
		up := total()
		*p = old - eps
		down := total()
		*p = old
		return (up - down) / (2 * eps)
	}
	checked, nonzero := 0, 0
	check := func(name string, i int, analytic float32, p *float64) {
		num := numeric(p)
		a := float64(analytic)
		checked++
		scale := max(math.Abs(a), math.Abs(num))
		if scale < 1e-7 {
			return // both zero (dead kernel or zero input)
		}
		nonzero++
		if rel := math.Abs(a-num) / scale; rel > 1e-3 {
			t.Errorf("%s[%d]: analytic %.9g numeric %.9g (relative error %.2g)", name, i, a, num, rel)
		}
	}
	for i := range conv {
		check("conv", i, g.Conv[i], &conv[i])
	}
	for i := range cb {
		check("conv_bias", i, g.ConvBias[i], &cb[i])
	}
	for i := range dense {
		check("dense", i, g.Dense[i], &dense[i])
	}
	check("dense_bias", 0, g.DenseBias, &db)
	if checked != m.Params() || nonzero < m.Params()/3 {
		t.Fatalf("checked %d of %d parameters, %d with nonzero gradient", checked, m.Params(), nonzero)
	}
}

// ---- synthetic sessions ----

var (
	cliAddr = netip.MustParseAddr("10.0.0.1")
	srvAddr = netip.MustParseAddr("10.0.0.200")
)

// synthSession makes one session's packets. Attacks are floods of tiny
// SYNs or equal-sized UDP datagrams from one side with microsecond gaps;
// benign sessions are TCP connections, DNS lookups and pings with varied
// sizes, both directions and millisecond-to-second gaps, and look-alikes
// of the attacks that differ only in timing and count (SYN retries to a
// dead port, unanswered DNS queries).
func synthSession(rng *rand.Rand, attack bool) []ddosfeat.PacketFeatures {
	key := ddosfeat.SessionKey{LoAddr: cliAddr, HiAddr: srvAddr, LoPort: uint16(1024 + rng.IntN(60000)), HiPort: 80}
	ts := uint64(1e12 + rng.IntN(1e9))
	var pkts []ddosfeat.PacketFeatures
	add := func(p ddosfeat.PacketFeatures, gapNs float64) {
		ts += uint64(gapNs)
		p.Session, p.TimestampNs = key, ts
		pkts = append(pkts, p)
	}
	if attack {
		count := 4 + rng.IntN(20)
		if rng.IntN(3) > 0 { // SYN flood
			key.Proto = protoTCP
			win := []uint16{512, 1024, 8192, 64240}[rng.IntN(4)]
			df := uint16(rng.IntN(2)) * ddosfeat.FlagDF
			for range count {
				add(ddosfeat.PacketFeatures{Proto: protoTCP, IPLen: uint16(40 + 4*rng.IntN(6)), IPFlagsFrag: df,
					TCPFlags: tcpSYN, TCPWindow: win}, rng.Float64()*50e3)
			}
		} else { // UDP flood
			key.Proto, key.HiPort = protoUDP, 53
			size := uint16(8 + rng.IntN(40))
			for range count {
				add(ddosfeat.PacketFeatures{Proto: protoUDP, IPLen: 20 + size, UDPLen: size}, rng.Float64()*80e3)
			}
		}
		return pkts
	}
	switch rng.IntN(5) {
	case 3: // SYN retransmissions to a dead port: like a SYN flood but slow
		key.Proto = protoTCP
		gap := 1e9
		for range 2 + rng.IntN(4) {
			add(ddosfeat.PacketFeatures{Proto: protoTCP, IPLen: 60, IPFlagsFrag: ddosfeat.FlagDF, TCPFlags: tcpSYN, TCPWindow: 64240}, gap*(0.9+0.2*rng.Float64()))
			gap *= 2
		}
	case 4: // an unanswered DNS query, sometimes retried
		key.Proto, key.HiPort = protoUDP, 53
		for range 1 + rng.IntN(2) {
			size := uint16(20 + rng.IntN(60))
			add(ddosfeat.PacketFeatures{Proto: protoUDP, IPLen: 20 + size, UDPLen: size}, 1e9+rng.Float64()*4e9)
		}
	case 0: // TCP connection
		key.Proto = protoTCP
		add(ddosfeat.PacketFeatures{Proto: protoTCP, IPLen: 60, IPFlagsFrag: ddosfeat.FlagDF, TCPFlags: tcpSYN, TCPWindow: 64240}, 0)
		add(ddosfeat.PacketFeatures{Proto: protoTCP, IPLen: 60, IPFlagsFrag: ddosfeat.FlagDF, TCPFlags: tcpSYN | tcpACK, TCPAck: 1, TCPWindow: 65160, FromHi: true}, 2e5+rng.Float64()*5e7)
		add(ddosfeat.PacketFeatures{Proto: protoTCP, IPLen: 52, IPFlagsFrag: ddosfeat.FlagDF, TCPFlags: tcpACK, TCPAck: 1, TCPWindow: 502}, 1e5+rng.Float64()*1e6)
		for i := range 2 + rng.IntN(12) {
			pl := uint16(rng.IntN(1400))
			add(ddosfeat.PacketFeatures{Proto: protoTCP, IPLen: 52 + pl, IPFlagsFrag: ddosfeat.FlagDF, TCPFlags: tcpPSH | tcpACK,
				TCPPayloadLen: pl, TCPAck: 1000, TCPWindow: uint16(500 + rng.IntN(3000)), FromHi: i%2 == 1}, 1e6+rng.Float64()*3e8)
		}
	case 1: // DNS
		key.Proto, key.HiPort = protoUDP, 53
		for i := range 2 + 2*rng.IntN(3) {
			size := uint16(30 + rng.IntN(60))
			if i%2 == 1 {
				size = uint16(100 + rng.IntN(400))
			}
			add(ddosfeat.PacketFeatures{Proto: protoUDP, IPLen: 20 + size, UDPLen: size, FromHi: i%2 == 1}, 5e5+rng.Float64()*5e7)
		}
	default: // ping
		key.Proto, key.LoPort, key.HiPort = protoICMP, 0, 0
		for i := range 2 * (1 + rng.IntN(5)) {
			typ := uint8(8)
			if i%2 == 1 {
				typ = 0
			}
			add(ddosfeat.PacketFeatures{Proto: protoICMP, IPLen: 84, ICMPType: typ, FromHi: i%2 == 1}, 1e6+rng.Float64()*1e9)
		}
	}
	return pkts
}

// synthSamples makes count samples of n packets, half attacks.
func synthSamples(seed uint64, count, n int) []Sample {
	rng := rand.New(rand.NewPCG(seed, 99))
	out := make([]Sample, count)
	for i := range out {
		attack := i%2 == 0
		pkts := synthSession(rng, attack)
		out[i] = Sample{Key: pkts[0].Session.String(), Packets: FromPackets(pkts, n), Label: map[bool]int{false: 0, true: 1}[attack]}
	}
	return out
}

// ---- training ----

func sameWeights(a, b *Model) bool {
	return slices.Equal(a.Conv, b.Conv) && slices.Equal(a.ConvBias, b.ConvBias) &&
		slices.Equal(a.Dense, b.Dense) && a.DenseBias == b.DenseBias
}

func TestTrainSynthetic(t *testing.T) {
	train := synthSamples(1, 1200, DefaultN)
	val := synthSamples(2, 300, DefaultN)
	test := synthSamples(3, 600, DefaultN)
	cfg := TrainConfig{Epochs: 15, Seed: 7, Workers: 2}
	epochs := 0
	m, err := Train(train, val, cfg, func(epoch int, tl, vl, va float64) {
		epochs = epoch
		if testing.Verbose() {
			t.Logf("epoch %d train loss %.4f val loss %.4f val acc %.4f", epoch, tl, vl, va)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if epochs == 0 || m.Meta.Epochs != epochs || m.Meta.BestEpoch < 1 || m.Meta.TrainSamples != 1200 || m.Meta.ValSamples != 300 || m.Meta.Val == nil {
		t.Fatalf("meta %+v after %d progress calls", m.Meta, epochs)
	}
	res := Evaluate(m, test, 0.5)
	t.Logf("held-out: %+v", res)
	if res.F1 <= 0.98 || res.TP+res.FP+res.TN+res.FN != len(test) {
		t.Fatalf("held-out F1 %.4f, want > 0.98 (%+v)", res.F1, res)
	}
	if !strings.Contains(m.Version, "seed 7") {
		t.Errorf("version %q", m.Version)
	}

	// Same seed, one worker instead of two: bit-identical weights.
	cfg.Workers = 1
	m2, err := Train(train, val, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !sameWeights(m, m2) {
		t.Fatal("two runs with the same seed gave different weights")
	}
}

func TestTrainDeterministicDropout(t *testing.T) {
	train := synthSamples(4, 300, DefaultN)
	cfg := TrainConfig{K: 16, Epochs: 3, Seed: 11, Dropout: 0.3, L2: 1e-4, ValFraction: 0.2, Workers: 2}
	a, err := Train(train, nil, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Meta.ValSamples != 60 || a.Meta.TrainSamples != 240 {
		t.Fatalf("validation split %d/%d, want 240/60", a.Meta.TrainSamples, a.Meta.ValSamples)
	}
	cfg.Workers = 1
	b, _ := Train(train, nil, cfg, nil)
	if !sameWeights(a, b) {
		t.Fatal("dropout training is not deterministic across worker counts")
	}
	cfg.Seed = 12
	c, _ := Train(train, nil, cfg, nil)
	if sameWeights(a, c) {
		t.Fatal("different seeds gave the same weights")
	}
}

func TestEarlyStopping(t *testing.T) {
	// Validation labels are the opposite of the training labels, so the
	// validation loss rises as the model learns: training must stop
	// Patience epochs after the best one and restore its weights.
	train := synthSamples(6, 200, DefaultN)
	val := slices.Clone(train)
	for i := range val {
		val[i].Label = 1 - val[i].Label
	}
	var losses []float64
	m, err := Train(train, val, TrainConfig{K: 8, Epochs: 30, Patience: 2, Seed: 1}, func(_ int, _, vl, _ float64) {
		losses = append(losses, vl)
	})
	if err != nil {
		t.Fatal(err)
	}
	best := slices.Index(losses, slices.Min(losses)) + 1
	if m.Meta.BestEpoch != best || m.Meta.Epochs != best+2 || m.Meta.Epochs >= 30 {
		t.Fatalf("best epoch %d, ran %d, val losses %v", m.Meta.BestEpoch, m.Meta.Epochs, losses)
	}
	var loss float64
	for _, s := range val {
		p := float64(m.Predict(s.Packets))
		if s.Label == 0 {
			p = 1 - p
		}
		loss -= math.Log(p)
	}
	if loss /= float64(len(val)); math.Abs(loss-m.Meta.ValLoss) > 1e-4*m.Meta.ValLoss {
		t.Fatalf("returned model's validation loss %g, best epoch's %g: best weights not restored", loss, m.Meta.ValLoss)
	}
}

func TestTrainErrors(t *testing.T) {
	if _, err := Train(nil, nil, TrainConfig{}, nil); err == nil {
		t.Error("no samples: no error")
	}
	bad := []Sample{{Packets: [][]float32{{1, 2}}, Label: 2}}
	if _, err := Train(bad, nil, TrainConfig{}, nil); err == nil || !strings.Contains(err.Error(), "label 2") {
		t.Errorf("bad label: %v", err)
	}
	ragged := []Sample{{Packets: [][]float32{{1, 2}, {1}}}}
	if _, err := Train(ragged, nil, TrainConfig{}, nil); err == nil {
		t.Error("ragged rows: no error")
	}
	short := []Sample{{Packets: [][]float32{{1, 2}}}}
	if _, err := Train(short, nil, TrainConfig{H: 3}, nil); err == nil {
		t.Error("h > n: no error")
	}
}

func TestEvaluateMetrics(t *testing.T) {
	r := metricsOf([]float32{0.9, 0.8, 0.2, 0.6, 0.1}, []int{1, 1, 1, 0, 0}, 0.5)
	// TP 2 (0.9, 0.8), FN 1 (0.2), FP 1 (0.6), TN 1 (0.1)
	want := Metrics{Accuracy: 0.6, Precision: 2.0 / 3, Recall: 2.0 / 3, F1: 2.0 / 3, FPR: 0.5, TP: 2, FP: 1, TN: 1, FN: 1}
	if math.Abs(r.F1-want.F1) > 1e-12 || r.TP != 2 || r.FP != 1 || r.TN != 1 || r.FN != 1 || r.Accuracy != 0.6 || r.FPR != 0.5 {
		t.Fatalf("metrics %+v, want %+v", r, want)
	}
}

// ---- persistence ----

func trainedSmall(t *testing.T) (*Model, []Sample) {
	t.Helper()
	samples := synthSamples(5, 200, DefaultN)
	m, err := Train(samples, nil, TrainConfig{K: 16, Epochs: 2, Seed: 3, Version: "lucid-1 test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m, samples
}

func TestSaveLoadRoundTrip(t *testing.T) {
	m, samples := trainedSmall(t)
	m.Meta.Test = &Metrics{F1: 0.5}
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil {
		t.Fatal(err)
	}
	l, err := Load(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !sameWeights(m, l) || !slices.Equal(m.Norm.Max, l.Norm.Max) || l.Version != "lucid-1 test" || l.Meta.Test == nil || l.Meta.TrainSamples != 200 {
		t.Fatalf("loaded model differs: version %q meta %+v", l.Version, l.Meta)
	}
	for _, s := range samples {
		if a, b := m.Predict(s.Packets), l.Predict(s.Packets); a != b {
			t.Fatalf("prediction %g before save, %g after load", a, b)
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	m, _ := trainedSmall(t)
	var buf bytes.Buffer
	if err := m.Save(&buf); err != nil {
		t.Fatal(err)
	}
	edit := func(f func(map[string]any)) []byte {
		var v map[string]any
		if err := json.Unmarshal(buf.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		f(v)
		b, _ := json.Marshal(v)
		return b
	}
	cases := []struct {
		name, want string
		file       []byte
	}{
		{"version", "format version 2 is not supported", edit(func(v map[string]any) { v["format_version"] = 2 })},
		{"format", "not a LUCID model file", edit(func(v map[string]any) { v["format"] = "other" })},
		{"shape", "conv has", edit(func(v map[string]any) { v["hyper"].(map[string]any)["k"] = 17 })},
		{"weights", "dense has 15 weights", edit(func(v map[string]any) {
			w := v["weights"].(map[string]any)
			w["dense"] = w["dense"].([]any)[1:]
		})},
		{"normaliser", "normaliser has", edit(func(v map[string]any) {
			nz := v["normalizer"].(map[string]any)
			nz["min"], nz["max"] = []any{0}, []any{1}
		})},
		{"features", "made for features", edit(func(v map[string]any) { v["features"].([]any)[0] = "ttl" })},
		{"json", "not valid JSON", []byte("{")},
	}
	for _, c := range cases {
		_, err := Load(bytes.NewReader(c.file))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// ---- sample preparation ----

func TestFromPackets(t *testing.T) {
	key := ddosfeat.SessionKey{LoAddr: cliAddr, HiAddr: srvAddr, LoPort: 5000, HiPort: 80, Proto: protoTCP}
	t0 := uint64(5e9)
	pkts := []ddosfeat.PacketFeatures{ // out of order on purpose
		{Session: key, TimestampNs: t0 + 1500e6, Proto: protoUDP, IPLen: 128, UDPLen: 108, FromHi: false},
		{Session: key, TimestampNs: t0, Proto: protoTCP, IPLen: 60, IPFlagsFrag: ddosfeat.FlagDF, TCPFlags: tcpSYN, TCPWindow: 64240, FromHi: true},
		{Session: key, TimestampNs: t0 + 250e6, Proto: protoTCP, IPLen: 1500, IPFlagsFrag: ddosfeat.FlagMF | 3, TCPFlags: tcpACK | tcpPSH | tcpFIN | tcpRST | tcpURG,
			TCPPayloadLen: 1448, TCPAck: 77, TCPWindow: 501, FromHi: false},
		{Session: key, TimestampNs: t0 + 2e9, Proto: protoICMPv6, IPLen: 104, ICMPType: 128, FromHi: true},
		{Session: key, TimestampNs: t0 + 3e9, Proto: 47, IPLen: 90, FromHi: true},
	}
	orig := slices.Clone(pkts)
	rows := FromPackets(pkts, 7)
	if !slices.Equal(pkts, orig) {
		t.Fatal("FromPackets modified its input")
	}
	if len(rows) != 7 || len(FeatureNames) != NumFeatures {
		t.Fatalf("%d rows, %d names, want 7, %d", len(rows), len(FeatureNames), NumFeatures)
	}
	want := make([][]float32, 7)
	for i := range want {
		want[i] = make([]float32, NumFeatures)
	}
	set := func(r int, kv map[int]float32) {
		for k, v := range kv {
			want[r][k] = v
		}
	}
	set(0, map[int]float32{FeatIPLen: 60, FeatIPDF: 1, FeatProtoTCP: 1, FeatTCPSYN: 1, FeatTCPWindow: 64240})
	set(1, map[int]float32{FeatTimestamp: 0.25, FeatIPLen: 1500, FeatIPMF: 1, FeatFragOffset: 24, FeatProtoTCP: 1, FeatTCPLen: 1448,
		FeatTCPAckNonzero: 1, FeatTCPACK: 1, FeatTCPPSH: 1, FeatTCPFIN: 1, FeatTCPRST: 1, FeatTCPURG: 1, FeatTCPWindow: 501, FeatReverse: 1})
	set(2, map[int]float32{FeatTimestamp: 1.5, FeatIPLen: 128, FeatProtoUDP: 1, FeatUDPLen: 108, FeatReverse: 1})
	set(3, map[int]float32{FeatTimestamp: 2, FeatIPLen: 104, FeatProtoICMP: 1, FeatICMPType: 128})
	set(4, map[int]float32{FeatTimestamp: 3, FeatIPLen: 90, FeatProtoOther: 1})
	for r := range want {
		if !slices.Equal(rows[r], want[r]) {
			t.Errorf("row %d = %v, want %v", r, rows[r], want[r])
		}
	}
	// Truncation keeps the earliest packets.
	rows = FromPackets(pkts, 2)
	if len(rows) != 2 || !slices.Equal(rows[0], want[0]) || !slices.Equal(rows[1], want[1]) {
		t.Errorf("truncated to 2: %v", rows)
	}
	if rows := FromPackets(nil, 3); len(rows) != 3 || slices.ContainsFunc(rows, func(r []float32) bool { return slices.ContainsFunc(r, func(v float32) bool { return v != 0 }) }) {
		t.Errorf("no packets: %v", rows)
	}
}

func TestNormalizer(t *testing.T) {
	samples := []Sample{
		{Packets: [][]float32{{10, 1, 5}, {20, 0, 5}}},
		{Packets: [][]float32{{40, 1, 5}, {0, 0, 0}}},
	}
	nz := FitNormalizer(samples)
	// Bounds include 0: feature 0 [0,40], feature 1 [0,1], feature 2 [0,5].
	if !slices.Equal(nz.Min, []float32{0, 0, 0}) || !slices.Equal(nz.Max, []float32{40, 1, 5}) {
		t.Fatalf("bounds %v %v", nz.Min, nz.Max)
	}
	x := [][]float32{{20, 1, 5}, {80, -3, 2.5}, {0, 0, 0}}
	nz.Apply(x)
	want := [][]float32{{0.5, 1, 1}, {1, 0, 0.5}, {0, 0, 0}} // 80 and -3 clamp
	for i := range want {
		if !slices.Equal(x[i], want[i]) {
			t.Errorf("row %d = %v, want %v", i, x[i], want[i])
		}
	}
	constant := &Normalizer{Min: []float32{0}, Max: []float32{0}}
	if v := constant.Value(0, 7); v != 0 {
		t.Errorf("constant feature normalises 7 to %g, want 0", v)
	}
	if v := nz.Value(0, float32(math.NaN())); v != 0 {
		t.Errorf("NaN normalises to %g", v)
	}
	b, _ := json.Marshal(nz)
	var back Normalizer
	if err := json.Unmarshal(b, &back); err != nil || !slices.Equal(back.Max, nz.Max) || back.Validate() != nil {
		t.Errorf("JSON round trip %s: %v", b, err)
	}
	if (&Normalizer{Min: []float32{2}, Max: []float32{1}}).Validate() == nil {
		t.Error("min > max accepted")
	}
}

// ---- inference paths ----

func benchModel(tb testing.TB) (*Model, [][][]float32) {
	tb.Helper()
	samples := synthSamples(9, 1024, DefaultN)
	m, err := NewModel(DefaultN, NumFeatures, DefaultK, DefaultH)
	if err != nil {
		tb.Fatal(err)
	}
	m.InitWeights(rand.New(rand.NewPCG(1, 1)))
	for i := range m.ConvBias {
		m.ConvBias[i] = 0.05 * float32(i%5)
	}
	m.Norm = FitNormalizer(samples)
	xs := make([][][]float32, len(samples))
	for i := range samples {
		xs[i] = samples[i].Packets
	}
	return m, xs
}

// slowPredict is a direct, unoptimised forward pass.
func slowPredict(m *Model, sample [][]float32) float64 {
	x := make([][]float64, m.N)
	for r := range x {
		x[r] = make([]float64, m.F)
		if r < len(sample) {
			for f, v := range sample[r] {
				if m.Norm != nil {
					v = m.Norm.Value(f, v)
				}
				x[r][f] = float64(v)
			}
		}
	}
	loss := refLoss(m.N, m.F, m.K, m.H, to64(m.Conv), to64(m.ConvBias), to64(m.Dense), float64(m.DenseBias), x, 1)
	return math.Exp(-loss) // loss for label 1 is -log(score)
}

func TestPredictMatchesReference(t *testing.T) {
	m, xs := benchModel(t)
	out := make([]float32, len(xs))
	m.PredictBatch(xs, out) // 1024 samples: parallel when GOMAXPROCS > 1
	for i, x := range xs {
		if want := slowPredict(m, x); math.Abs(float64(out[i])-want) > 1e-5 {
			t.Fatalf("sample %d: PredictBatch %g, reference %g", i, out[i], want)
		}
		if p := m.Predict(x); p != out[i] {
			t.Fatalf("sample %d: Predict %g, PredictBatch %g", i, p, out[i])
		}
	}
	e := m.Explain(xs[0])
	if e.Score != out[0] || len(e.Top) != ExplainTop || len(e.Windows) == 0 {
		t.Fatalf("explain %+v, score %g", e, out[0])
	}
	for i := 1; i < len(e.Top); i++ {
		if math.Abs(float64(e.Top[i].Contribution)) > math.Abs(float64(e.Top[i-1].Contribution)) {
			t.Fatalf("explain top not sorted: %+v", e.Top)
		}
	}
}

func TestPredictBatchNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops scratch buffers at random under the race detector")
	}
	m, xs := benchModel(t)
	out := make([]float32, 200) // below the parallel threshold
	m.PredictBatch(xs[:200], out)
	if a := testing.AllocsPerRun(20, func() { m.PredictBatch(xs[:200], out) }); a > 1 {
		t.Fatalf("%g allocations per batch of 200", a)
	}
}

func BenchmarkPredict(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	m, xs := benchModel(b)
	benchPredict(b, m, xs)
}

// BenchmarkPredictDense is the worst case: no zero inputs to skip.
func BenchmarkPredictDense(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	m, xs := benchModel(b)
	rng := rand.New(rand.NewPCG(2, 2))
	m.Norm = nil
	for _, x := range xs {
		for _, row := range x {
			for f := range row {
				row[f] = float32(0.01 + rng.Float64())
			}
		}
	}
	benchPredict(b, m, xs)
}

// BenchmarkPredictParallel uses all of GOMAXPROCS.
func BenchmarkPredictParallel(b *testing.B) {
	m, xs := benchModel(b)
	benchPredict(b, m, xs)
}

func benchPredict(b *testing.B, m *Model, xs [][][]float32) {
	out := make([]float32, len(xs))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		m.PredictBatch(xs, out)
	}
	b.ReportMetric(float64(b.N*len(xs))/time.Since(start).Seconds(), "samples/s")
}

func BenchmarkTrainEpoch(b *testing.B) {
	train := synthSamples(1, 1200, DefaultN)
	for b.Loop() {
		if _, err := Train(train, nil, TrainConfig{Epochs: 1, Seed: 1}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAssembler(t *testing.T) {
	key := func(i int) ddosfeat.SessionKey {
		return ddosfeat.SessionKey{LoAddr: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), HiAddr: netip.MustParseAddr("192.0.2.1"), Proto: 6}
	}
	a := NewAssembler(3, 1000, 4)
	pkt := func(i int, ts uint64) ddosfeat.PacketFeatures {
		return ddosfeat.PacketFeatures{Session: key(i), TimestampNs: ts}
	}
	if d := a.Add(pkt(1, 10)); len(d) != 0 {
		t.Fatal("completed too early")
	}
	a.Add(pkt(1, 20))
	d := a.Add(pkt(1, 30))
	if len(d) != 1 || len(d[0].Packets) != 3 || d[0].FirstNs != 10 || d[0].LastNs != 30 {
		t.Fatalf("full session: %+v", d)
	}
	a.Add(pkt(2, 100))
	a.Add(pkt(3, 900))
	if d := a.Flush(1500); len(d) != 1 || d[0].Key != key(2) {
		t.Fatalf("idle flush: %+v", d)
	}
	// More than Max open: the oldest complete early.
	for i := 4; i <= 8; i++ {
		a.Add(pkt(i, 1000+uint64(i)))
	}
	if a.Open() != 4 {
		t.Fatalf("open %d, want 4", a.Open())
	}
	if d := a.Flush(0); len(d) != 4 || d[0].Key != key(5) {
		t.Fatalf("flush all: %d sessions, first %v", len(d), d[0].Key)
	}
}
