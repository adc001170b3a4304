package netio

import (
	"net/netip"
	"testing"

	"github.com/rampart-shield/rampart/internal/probe"
	rec "github.com/rampart-shield/rampart/probes/netio"
)

// BenchmarkCollector is the collector's cost per event in user space:
// decoding, time order, bookkeeping and delivery to a reader, for
// keep-alive connections (a recv and a send per request).
func BenchmarkCollector(b *testing.B) {
	c, ch := fake(b, Options{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range c.Batches() {
		}
	}()
	lp := netip.MustParseAddrPort("10.0.0.1:80")
	raws := make([][]byte, 1024)
	for i := range raws {
		k := rec.Recv
		if i%2 == 1 {
			k = rec.Send
		}
		raws[i] = encode(rec.Event{Kind: k, Cookie: uint64(i%64 + 1), TGID: uint32(100 + i%16), Size: 300, Proto: rec.ProtoTCP,
			Local: lp, Remote: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.2"), uint16(40000+i%64))})
	}
	b.ResetTimer()
	t := uint64(1)
	for i := 0; b.Loop(); i++ {
		raw := append([]byte(nil), raws[i%len(raws)]...)
		t += 1000
		for j := range 8 {
			raw[j] = byte(t >> (8 * j))
		}
		ch <- probe.Event{Raw: raw}
	}
	b.StopTimer()
	close(ch) // the collector stops, closing Events
	<-done
}
