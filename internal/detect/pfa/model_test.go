package pfa

import (
	"math"
	"testing"
	"time"
)

var (
	symA  = EventSymbol(Accept, 0, 0)
	symR1 = EventSymbol(Recv, 3, 0)
	symR2 = EventSymbol(Recv, 4, 0)
	symC  = EventSymbol(Close, 0, 1)
	symT  = EventSymbol(Tick, int(Recv), 4)
)

func learnStreams(t testing.TB, cfg ModelConfig, streams ...[]Symbol) *Model {
	t.Helper()
	l, err := NewLearner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range streams {
		if err := l.Stream(s); err != nil {
			t.Fatal(err)
		}
	}
	m, err := l.Model()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Witten-Bell by hand on three streams, depth 1:
// empty context: A 3, R1 2, R2 1, C 3 (N 9, T 4);
// after A: R1 2, R2 1 (N 3, T 2); after ^: A 3 (N 3, T 1).
func TestWittenBell(t *testing.T) {
	m := learnStreams(t, ModelConfig{Depth: 1, MinCount: 1},
		[]Symbol{symA, symR1, symC}, []Symbol{symA, symR1, symC}, []Symbol{symA, symR2, symC})
	u := 1.0 / SymbolSpace
	p0 := func(c float64) float64 { return (c + 4*u) / 13 }
	for _, c := range []struct {
		name   string
		stream []Symbol
		s      Symbol
		want   float64
	}{
		{"R1 after A", []Symbol{symA}, symR1, (2 + 2*p0(2)) / 5},
		{"R2 after A", []Symbol{symA}, symR2, (1 + 2*p0(1)) / 5},
		{"C after A (unseen there)", []Symbol{symA}, symC, 2 * p0(3) / 5},
		{"tick after A (never seen)", []Symbol{symA}, symT, 2 * p0(0) / 5},
		{"A first", nil, symA, (3 + p0(3)) / 4},
		{"R1 first (unseen after ^)", nil, symR1, p0(2) / 4},
		{"C after C (context unseen: order 0)", []Symbol{symA, symR1, symC}, symC, p0(3)},
	} {
		if got := m.Prob(c.stream, c.s); math.Abs(got-c.want) > 1e-12*c.want {
			t.Errorf("%s: P = %v, want %v", c.name, got, c.want)
		}
	}
}

// Every context's smoothed distribution sums to 1 over the symbol space,
// and no symbol has probability 0.
func TestProbabilitiesNormalisedAndNonzero(t *testing.T) {
	g := newGen(5)
	m, err := Learn(g.benignConns(1, 2000), ModelConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, stream := range [][]Symbol{
		nil,
		{symA},
		{symA, EventSymbol(Recv, 3, 1), StateSymbol(0, 2)},
		{symT, symT, symT},               // an unseen context
		{symA, symR1, symC, symA, symR2}, // longer than the depth
	} {
		sum, minP := 0.0, 1.0
		for code := range SymbolSpace {
			p := m.Prob(stream, Symbol(code))
			sum += p
			minP = min(minP, p)
		}
		if math.Abs(sum-1) > 1e-9 || !(minP > 0) {
			t.Errorf("after %v: probabilities sum to %v, least %v", stream, sum, minP)
		}
	}
	// A transition never seen in training still has a small probability.
	ctx := []Symbol{symA, EventSymbol(Recv, 1, 1), StateSymbol(0, 1)}
	if p := m.Prob(ctx, symT); !(p > 0 && p < 1e-5) {
		t.Errorf("P(%v | %v) = %v, want small but nonzero", symT, ctx, p)
	}
}

// Learning does (Depth+1) count updates per symbol at most (fewer only at
// the start of a stream): the work grows linearly with the traces.
func TestLearningIsLinear(t *testing.T) {
	var perSym []float64
	var syms []int64
	for _, n := range []int{1000, 2000, 4000} {
		g := newGen(11)
		l, _ := NewLearner(ModelConfig{})
		for _, ev := range g.benignConns(1, n) {
			if err := l.Observe(ev); err != nil {
				t.Fatal(err)
			}
		}
		info := l.Info()
		if info.Updates > int64(DefaultDepth+1)*info.Symbols || info.Updates < int64(DefaultDepth)*info.Symbols {
			t.Errorf("%d conns: %d updates for %d symbols", n, info.Updates, info.Symbols)
		}
		perSym = append(perSym, float64(info.Updates)/float64(info.Symbols))
		syms = append(syms, info.Symbols)
	}
	t.Logf("updates per symbol for 1x, 2x, 4x traces: %.4f %.4f %.4f (symbols %v)", perSym[0], perSym[1], perSym[2], syms)
	for i := 1; i < len(perSym); i++ {
		if math.Abs(perSym[i]-perSym[0]) > 0.01*perSym[0] {
			t.Errorf("updates per symbol changed from %v to %v", perSym[0], perSym[i])
		}
	}
}

func TestPruningAndStats(t *testing.T) {
	g := newGen(7)
	evs := g.benignConns(1, 3000)
	all, err := Learn(evs, ModelConfig{MinCount: 1})
	if err != nil {
		t.Fatal(err)
	}
	pruned, err := Learn(evs, ModelConfig{MinCount: 5})
	if err != nil {
		t.Fatal(err)
	}
	sa, sp := all.Stats(), pruned.Stats()
	t.Logf("min count 1: %+v; min count 5: %+v", sa, sp)
	if sa.States != all.Info.Contexts || sa.Transitions != all.Info.Transitions {
		t.Errorf("unpruned model keeps %d states and %d transitions of %d and %d", sa.States, sa.Transitions, all.Info.Contexts, all.Info.Transitions)
	}
	if !(sp.States < sa.States && sp.Transitions < sa.Transitions && sp.Bytes < sa.Bytes) {
		t.Errorf("pruning did not shrink the model: %+v vs %+v", sp, sa)
	}
	if sp.PerOrder[0] != 1 || len(sp.PerOrder) != DefaultDepth+1 {
		t.Errorf("per order %v", sp.PerOrder)
	}
	// A pruned context backs off: its probabilities stay normalised.
	sum := 0.0
	for code := range SymbolSpace {
		sum += pruned.Prob([]Symbol{symT, symT}, Symbol(code))
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("pruned model sums to %v", sum)
	}
}

func TestModelConfig(t *testing.T) {
	for _, c := range []ModelConfig{{Depth: 5}, {Depth: -1}, {MinCount: -1}, {Tick: time.Microsecond}, {Tick: time.Minute, MaxIdle: time.Second}} {
		if _, err := NewLearner(c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
	l, _ := NewLearner(ModelConfig{})
	if _, err := l.Model(); err == nil {
		t.Error("empty model built")
	}
	if err := l.Stream([]Symbol{symA, Start}); err == nil {
		t.Error("Start learned as a symbol")
	}
}
