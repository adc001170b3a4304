package btfjson

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestAppendDecimal(t *testing.T) {
	values := []uint64{0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 99999999, 1e8, 1e8 + 1, 1e9, 1e16 - 1, 1e16,
		1e19 - 1, 1e19, math.MaxUint32, math.MaxInt64, 1 << 63, math.MaxUint64}
	for p := uint64(1); p < 1e19; p *= 10 {
		values = append(values, p-1, p, p+1)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		values = append(values, r.Uint64()>>r.IntN(64))
	}
	for _, v := range values {
		if got, want := string(appendUint([]byte("x"), v)), "x"+strconv.FormatUint(v, 10); got != want {
			t.Fatalf("appendUint(%d) = %s", v, got)
		}
		s := int64(v)
		if got, want := string(appendInt(nil, s)), strconv.FormatInt(s, 10); got != want {
			t.Fatalf("appendInt(%d) = %s", s, got)
		}
	}
	if got := string(appendInt(nil, math.MinInt64)); got != "-9223372036854775808" {
		t.Fatalf("appendInt(MinInt64) = %s", got)
	}
}
