package reqmon

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// The copy decode must agree with a field-by-field little-endian decode of
// the same bytes for every generated type it is used on.
func TestDecodeMatchesBinaryRead(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	raw := func(n int) []byte {
		b := make([]byte, n+3) // longer than needed: only the prefix counts
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for i := 0; i < 50; i++ {
		b := raw(sizeRecord)
		var got, want reqmonRqRecord
		if err := decode(b, &got, sizeRecord, "record"); err != nil {
			t.Fatal(err)
		}
		if err := binary.Read(bytes.NewReader(b[:sizeRecord]), binary.LittleEndian, &want); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("record: copy %+v, binary.Read %+v", got, want)
		}
		b = raw(sizeThread)
		var gt, wt reqmonRqThread
		decode(b, &gt, sizeThread, "thread")
		binary.Read(bytes.NewReader(b[:sizeThread]), binary.LittleEndian, &wt)
		if gt != wt {
			t.Fatalf("thread: copy %+v, binary.Read %+v", gt, wt)
		}
	}
	var r reqmonRqRecord
	if err := decode(make([]byte, sizeRecord-1), &r, sizeRecord, "record"); err == nil {
		t.Fatal("a short record decoded")
	}
}
