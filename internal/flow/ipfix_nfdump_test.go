package flow

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The interop test runs the nfdump collector (Debian package "nfdump",
// tested with 1.7.1) on loopback, exports flows to it and reads back what it
// stored.

// nfcapdProc is a running nfcapd.
type nfcapdProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	port int
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// udpSocketState looks the UDP socket bound to 127.0.0.1:port up in
// /proc/net/udp and returns its receive queue in bytes.
func udpSocketState(port int) (rxQueue int, bound bool, err error) {
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	local := fmt.Sprintf("0100007F:%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue ...
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 || fs[1] != local {
			continue
		}
		_, rx, ok := strings.Cut(fs[4], ":")
		if !ok {
			return 0, true, fmt.Errorf("bad queue field %q", fs[4])
		}
		n, err := strconv.ParseInt(rx, 16, 64)
		return int(n), true, err
	}
	return 0, false, sc.Err()
}

// freeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	c := listenLoopback(t)
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	return port
}

// startNfcapd starts nfcapd in the foreground, listening on 127.0.0.1 only
// and writing into dir, and waits until its socket is bound. It is killed
// in cleanup whatever happens.
func startNfcapd(t *testing.T, bin, dir string) *nfcapdProc {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := freeUDPPort(t)
		p := &nfcapdProc{out: &syncBuffer{}, port: port, done: make(chan struct{})}
		// -t: one file for the whole test unless it runs across an hour
		// boundary (the reader takes every file in dir).
		p.cmd = exec.Command(bin, "-b", "127.0.0.1", "-p", strconv.Itoa(port), "-w", dir, "-t", "3600")
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("start nfcapd: %v", err)
		}
		go func() { p.cmd.Wait(); close(p.done) }()
		t.Cleanup(func() {
			select {
			case <-p.done:
			default:
				p.cmd.Process.Kill()
				<-p.done
			}
		})
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, bound, err := udpSocketState(port)
			if err != nil {
				t.Fatalf("reading /proc/net/udp: %v", err)
			}
			if bound && strings.Contains(p.out.String(), "Startup") {
				return p
			}
			select {
			case <-p.done:
				lastErr = fmt.Errorf("nfcapd exited: %v\n%s", p.cmd.ProcessState, p.out.String())
			case <-time.After(20 * time.Millisecond):
				if time.Now().After(deadline) {
					t.Fatalf("nfcapd did not bind 127.0.0.1:%d\n%s", port, p.out.String())
				}
				continue
			}
			break
		}
	}
	t.Fatalf("nfcapd: %v", lastErr)
	return nil
}

// stop waits until nfcapd has read every datagram, then terminates it so
// that it closes its file, and returns its output.
func (p *nfcapdProc) stop(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rx, _, err := udpSocketState(p.port)
		if err != nil {
			t.Fatal(err)
		}
		if rx == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nfcapd did not read its socket (%d bytes queued)", rx)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let it process the last datagram
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("nfcapd did not exit on SIGTERM\n%s", p.out.String())
	}
	return p.out.String()
}

// interopFlows are the known records plus many generated ones, enough for
// several messages and template refreshes.
func interopFlows() (known, bulk []Flow) {
	known = testFlows()
	known = append(known, Flow{ // GRE: no ports
		Src: netip.MustParseAddr("203.0.113.9"), Dst: netip.MustParseAddr("203.0.113.10"),
		Proto: 47, TOS: 0xfc, Ifindex: 1 << 20, Direction: Ingress,
		First: testT0.Add(-4*time.Second + 1*time.Millisecond), Last: testT0.Add(-3*time.Second + 999*time.Millisecond),
		Packets: 1<<32 - 1, Bytes: 1<<32 - 1, EndReason: IdleTimeout,
	}, Flow{ // TCP over IPv6 with every flag bit set, counters beyond 2^32 and 2^63
		Src: netip.MustParseAddr("2001:db8:1:2:3:4:5:6"), Dst: netip.MustParseAddr("ff02::fb"),
		SrcPort: 5353, DstPort: 5353, Proto: 6, TCPFlags: 0xff, Ifindex: 2, Direction: Egress,
		First: testT0.Add(-7 * time.Millisecond), Last: testT0.Add(-7 * time.Millisecond),
		Packets: 1<<33 + 1, Bytes: 1<<63 + 12345, EndReason: EndOfFlow,
	})
	for i := range 300 {
		f := Flow{
			SrcPort: uint16(10000 + i), DstPort: uint16(i * 211), Proto: 17,
			Ifindex: uint32(i % 4), Direction: Direction(i % 2),
			First:   testT0.Add(-time.Duration(i) * 1013 * time.Millisecond),
			Last:    testT0.Add(-time.Duration(i) * 7 * time.Millisecond),
			Packets: uint64(i + 1), Bytes: uint64(i+1) * 1499, EndReason: IdleTimeout,
		}
		if i%3 == 0 {
			f.Src = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
			f.Dst = netip.MustParseAddr("2001:db8::ffff")
		} else {
			f.Src = netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})
			f.Dst = netip.MustParseAddr("10.0.0.1")
			f.Proto = 6
			f.TCPFlags = uint8(i)
		}
		bulk = append(bulk, f)
	}
	return known, bulk
}

func TestIPFIXInteropNfdump(t *testing.T) {
	nfcapd, err1 := exec.LookPath("nfcapd")
	nfdump, err2 := exec.LookPath("nfdump")
	if err1 != nil || err2 != nil {
		t.Skip("nfcapd/nfdump not installed (Debian: apt-get install nfdump); skipping the IPFIX collector interop test")
	}
	dir := t.TempDir()
	p := startNfcapd(t, nfcapd, dir)

	x, err := NewExporter(fmt.Sprintf("127.0.0.1:%d", p.port), ExporterOptions{
		ObservationDomain:       4242,
		MTU:                     512, // many messages
		TemplateRefreshMessages: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	known, bulk := interopFlows()
	all := append(append([]Flow(nil), known...), bulk...)
	for _, batch := range [][]Flow{known, bulk[:150], bulk[150:]} {
		if err := x.Export(batch); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // no burst beyond the socket buffer
	}
	st := x.Stats()
	if st.Records != uint64(len(all)) || st.SendErrors != 0 || st.Messages < 10 {
		t.Fatalf("exporter stats %+v", st)
	}
	out := p.stop(t)
	if !strings.Contains(out, fmt.Sprintf("Flows: %d,", len(all))) || !strings.Contains(out, "Sequence Errors: 0,") ||
		!strings.Contains(out, "Bad Packets: 0") {
		t.Errorf("nfcapd summary does not say %d flows without sequence errors or bad packets:\n%s", len(all), out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nfdump, "-R", dir, "-N", "-q", "-o", "json")
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("nfdump -R %s -N -q -o json: %v\n%s", dir, err, stderr.String())
	}
	recs, err := parseNfdumpJSON(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if len(recs) != len(all) {
		t.Errorf("nfdump read %d records, exported %d", len(recs), len(all))
	}
	got := map[string]nfdumpRecord{}
	for _, r := range recs {
		k := r.key()
		if _, dup := got[k]; dup {
			t.Errorf("duplicate record %s", k)
		}
		got[k] = r
	}
	for _, f := range all {
		k := interopKey(f)
		r, ok := got[k]
		if !ok {
			t.Errorf("record %s not stored by nfcapd", k)
			continue
		}
		if err := r.check(f); err != nil {
			t.Errorf("record %s: %v\n%s", k, err, r.raw)
		}
	}
}

// nfdumpRecord is one record of `nfdump -o json` (1.7.x names).
type nfdumpRecord struct {
	fields map[string]json.RawMessage
	raw    string
}

func parseNfdumpJSON(b []byte) ([]nfdumpRecord, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		// 1.7.1 prints the objects separated by commas, without brackets
		// when quiet.
		b = append(append([]byte{'['}, b...), ']')
	}
	var objs []json.RawMessage
	if err := json.Unmarshal(b, &objs); err != nil {
		return nil, fmt.Errorf("nfdump json: %w", err)
	}
	var recs []nfdumpRecord
	for _, o := range objs {
		r := nfdumpRecord{raw: string(o)}
		if err := json.Unmarshal(o, &r.fields); err != nil {
			return nil, err
		}
		if r.str("type") != "FLOW" {
			continue
		}
		recs = append(recs, r)
	}
	return recs, nil
}

func (r nfdumpRecord) has(k string) bool { _, ok := r.fields[k]; return ok }

func (r nfdumpRecord) str(k string) string {
	var s string
	if json.Unmarshal(r.fields[k], &s) != nil {
		return ""
	}
	return s
}

// num returns a numeric field exactly (uint64, no float rounding).
func (r nfdumpRecord) num(k string) (uint64, error) {
	v, ok := r.fields[k]
	if !ok {
		return 0, fmt.Errorf("no field %q", k)
	}
	return strconv.ParseUint(string(v), 10, 64)
}

func (r nfdumpRecord) addrs() (src, dst netip.Addr) {
	if r.has("src6_addr") {
		src, _ = netip.ParseAddr(r.str("src6_addr"))
		dst, _ = netip.ParseAddr(r.str("dst6_addr"))
	} else {
		src, _ = netip.ParseAddr(r.str("src4_addr"))
		dst, _ = netip.ParseAddr(r.str("dst4_addr"))
	}
	return src, dst
}

func (r nfdumpRecord) key() string {
	src, dst := r.addrs()
	proto, _ := r.num("proto")
	sport, _ := r.num("src_port")
	return fmt.Sprintf("%d %v:%d > %v", proto, src, sport, dst)
}

func interopKey(f Flow) string {
	return fmt.Sprintf("%d %v:%d > %v", f.Proto, f.Src, f.SrcPort, f.Dst)
}

// nfdumpTime parses nfdump's millisecond time stamps (TZ=UTC).
func nfdumpTime(s string) (time.Time, error) {
	return time.ParseInLocation("2006-01-02T15:04:05.000", s, time.UTC)
}

// nfdumpFlags decodes nfdump's flag string, e.g. "...AP.SF".
func nfdumpFlags(s string) (uint8, error) {
	const names = "CEUAPRSF"
	if len(s) != 8 {
		return 0, fmt.Errorf("flags %q", s)
	}
	var v uint8
	for i := range 8 {
		switch s[i] {
		case names[i]:
			v |= 0x80 >> i
		case '.':
		default:
			return 0, fmt.Errorf("flags %q", s)
		}
	}
	return v, nil
}

// check compares everything nfdump stores of a record with what was sent.
func (r nfdumpRecord) check(f Flow) error {
	var errs []string
	want := func(k string, w uint64) {
		g, err := r.num(k)
		if err != nil {
			errs = append(errs, err.Error())
		} else if g != w {
			errs = append(errs, fmt.Sprintf("%s = %d, want %d", k, g, w))
		}
	}
	if src, dst := r.addrs(); src != f.Src || dst != f.Dst {
		errs = append(errs, fmt.Sprintf("addresses %v -> %v", src, dst))
	}
	want("proto", uint64(f.Proto))
	want("in_packets", f.Packets)
	want("in_bytes", f.Bytes)
	want("src_tos", uint64(f.TOS))
	want("direction", uint64(f.Direction))
	in, out := uint64(f.Ifindex), uint64(0)
	if f.Direction == Egress {
		in, out = 0, in
	}
	want("input_snmp", in)
	want("output_snmp", out)
	if f.Proto == 1 || f.Proto == 58 {
		want("icmp_type", uint64(f.DstPort>>8))
		want("icmp_code", uint64(f.DstPort&0xff))
	} else {
		want("src_port", uint64(f.SrcPort))
		want("dst_port", uint64(f.DstPort))
	}
	if f.Proto == 6 {
		if flags, err := nfdumpFlags(r.str("tcp_flags")); err != nil || flags != f.TCPFlags {
			errs = append(errs, fmt.Sprintf("tcp_flags %q, want %#x (%v)", r.str("tcp_flags"), f.TCPFlags, err))
		}
	}
	for k, w := range map[string]time.Time{"first": f.First, "last": f.Last} {
		g, err := nfdumpTime(r.str(k))
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", k, err))
		} else if !g.Equal(w.Truncate(time.Millisecond)) {
			errs = append(errs, fmt.Sprintf("%s = %v, want %v", k, g, w.UTC()))
		}
	}
	if errs != nil {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
