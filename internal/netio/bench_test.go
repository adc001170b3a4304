package netio_test

import (
	"io"
	"net"
	"os"
	"testing"

	"github.com/rampart-shield/rampart/internal/apptarget"
	"github.com/rampart-shield/rampart/internal/netio"
	rec "github.com/rampart-shield/rampart/probes/netio"
)

// BenchmarkLoopbackEcho measures what the probe costs a server: one op is a
// 64-byte request and its echo over loopback TCP inside this process (four
// socket calls, so four sock_*_length tracepoint hits). Compare the
// sub-benchmarks' ns/op:
//
//	none            no probe loaded
//	unwatched       netio attached, this process not watched (the cost
//	                every other process on the host pays)
//	watched         this process watched, RECV/SEND events streamed to a
//	                collector (the agent's decoding included: same CPUs)
//	watched-counts  watched with netio_io_events=0: counters only
//
// (watched - none) / 4 is the cost of one event end to end.
func BenchmarkLoopbackEcho(b *testing.B) {
	for _, mode := range []string{"none", "unwatched", "watched", "watched-counts"} {
		b.Run(mode, func(b *testing.B) {
			var c *netio.Collector
			if mode != "none" {
				m := newManager(b)
				spec := apptarget.Spec{PIDs: []int{os.Getpid()}}
				o := netio.WatchOptions{}
				if mode == "unwatched" {
					spec = apptarget.Spec{PIDs: []int{1}}
				}
				if mode == "watched-counts" {
					o.Params = map[string]string{rec.ParamIOEvents: "0"}
				}
				var err error
				c, err = netio.WatchWith(ctx, m, spec, o)
				checkWatch(b, err)
				defer c.Close()
				go func() {
					for range c.Batches() {
					}
				}()
			}
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				s, err := ln.Accept()
				if err != nil {
					return
				}
				echo(s)
			}()
			conn, err := net.Dial("tcp4", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			msg := make([]byte, 64)
			stats, stop := progStats(b)
			defer stop()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := conn.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(conn, msg); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if ps := stats(); ps != nil {
				var runs, ns float64
				for _, n := range []string{"netio_recv", "netio_send"} {
					runs += ps[n][0]
					ns += ps[n][0] * ps[n][1]
				}
				if runs > 0 {
					b.ReportMetric(ns/runs, "bpf-ns/call")
				}
			}
			if c != nil {
				st := c.Stats()
				b.ReportMetric(float64(st.Kernel.Events)/float64(b.N), "events/op")
				b.ReportMetric(float64(st.Kernel.RingFull+st.StreamLost)/float64(b.N), "lost/op")
				b.Logf("stats %+v", st)
			}
		})
	}
}
