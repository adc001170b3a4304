package flow

import (
	"errors"
	"net"
	"testing"
	"time"
)

// listenLoopback opens a UDP socket on 127.0.0.1 with a free port.
func listenLoopback(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readMessages(t *testing.T, c *net.UDPConn, n int) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 65536)
	for len(out) < n {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, _, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(out), n, err)
		}
		out = append(out, append([]byte(nil), buf[:k]...))
	}
	return out
}

func TestExporterSendsToCollector(t *testing.T) {
	col := listenLoopback(t)
	x, err := NewExporter(col.LocalAddr().String(), ExporterOptions{
		ObservationDomain: 99,
		MTU:               512,
		Now:               func() time.Time { return testT0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()

	var flows []Flow
	for i := range 40 {
		f := testFlows()[i%5]
		f.SrcPort = uint16(1000 + i)
		flows = append(flows, f)
	}
	if err := x.Export(flows[:25]); err != nil {
		t.Fatal(err)
	}
	if err := x.Export(flows[25:]); err != nil {
		t.Fatal(err)
	}
	if err := x.Export(nil); err != nil {
		t.Fatal(err)
	}
	st := x.Stats()
	if st.Records != 40 || st.SendErrors != 0 || st.Invalid != 0 || st.Messages < 2 {
		t.Fatalf("stats %+v", st)
	}
	msgs := readMessages(t, col, int(st.Messages))
	ms, got := mustDecodeAll(t, msgs)
	sameFlows(t, got, flows)
	seq := uint32(0)
	for i, m := range ms {
		if len(msgs[i]) > 512 || m.domain != 99 || m.seq != seq || m.exportTime != uint32(testT0.Unix()) {
			t.Errorf("message %d: %d bytes, header %+v", i, len(msgs[i]), m)
		}
		seq += uint32(len(m.records))
	}

	// Invalid records are counted and reported; the others are sent.
	bad := testFlows()[0]
	bad.Dst = testFlows()[3].Dst
	err = x.Export([]Flow{bad, testFlows()[1]})
	if !errors.Is(err, ErrInvalidFlow) {
		t.Fatalf("err %v", err)
	}
	if st := x.Stats(); st.Invalid != 1 || st.Records != 41 {
		t.Fatalf("stats %+v", st)
	}
	readMessages(t, col, 1)

	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	if err := x.Export(flows); !errors.Is(err, net.ErrClosed) {
		t.Errorf("export after close: %v", err)
	}
	if err := x.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestExporterCountsSendErrorsAndResendsTemplates(t *testing.T) {
	// A port nobody listens on: the kernel answers with ICMP port
	// unreachable and a later send on the connected socket fails.
	col := listenLoopback(t)
	addr := col.LocalAddr().String()
	col.Close()

	x, err := NewExporter(addr, ExporterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	deadline := time.Now().Add(5 * time.Second)
	var exportErr error
	for exportErr == nil && time.Now().Before(deadline) {
		exportErr = x.Export(testFlows())
		time.Sleep(10 * time.Millisecond)
	}
	if exportErr == nil {
		t.Fatal("no send error")
	}
	st := x.Stats()
	if st.SendErrors == 0 || st.Messages == 0 {
		t.Errorf("stats %+v", st)
	}
	// After a failed send the next message carries the templates again.
	if x.enc.templatesSent {
		t.Error("templates not scheduled for resending")
	}
}

func TestNewExporterErrors(t *testing.T) {
	if _, err := NewExporter("127.0.0.1:4739", ExporterOptions{MTU: 100}); err == nil {
		t.Error("MTU 100 accepted")
	}
	if _, err := NewExporter("no-port", ExporterOptions{}); err == nil {
		t.Error("address without port accepted")
	}
}
