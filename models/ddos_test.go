package models

import (
	"net/netip"
	"testing"

	"github.com/rampart-shield/rampart/internal/detect/lucid"
	"github.com/rampart-shield/rampart/probes/ddosfeat"
)

// TestDDoS: the shipped DDoS model loads, has the shape live detection
// feeds it, and its training record holds held-out metrics that meet the
// acceptance bar (F1 >= 0.99, FPR <= 1%). TestDefaultModelOnFreshRecordings
// in internal/traffic measures it on fresh recordings.
func TestDDoS(t *testing.T) {
	m, err := DDoS()
	if err != nil {
		t.Fatal(err)
	}
	if m.N != lucid.DefaultN || m.F != lucid.NumFeatures || m.Norm == nil || m.Name != "ddos-lucid" || m.Version == "" {
		t.Fatalf("model %s %q: n=%d f=%d, normaliser %v", m.Name, m.Version, m.N, m.F, m.Norm != nil)
	}
	for name, mt := range map[string]*lucid.Metrics{"validation": m.Meta.Val, "test": m.Meta.Test} {
		if mt == nil {
			t.Errorf("no %s metrics in the training record", name)
			continue
		}
		if mt.F1 < 0.99 || mt.FPR > 0.01 || mt.TN+mt.FP < 1000 || mt.TP+mt.FN < 1000 {
			t.Errorf("%s metrics %+v", name, *mt)
		}
	}
	if m.Meta.Seed != 1 {
		t.Errorf("trained with seed %d, the script uses 1", m.Meta.Seed)
	}
	// A fresh copy each call.
	m2, _ := DDoS()
	m2.Conv[0]++
	if m.Conv[0] == m2.Conv[0] {
		t.Error("DDoS returns shared weights")
	}
}

// pkt is one ddosfeat record of a live-shaped session: who sent it
// (the client, or the server when srv), when (µs after the first), and
// its headers.
type pkt struct {
	srv    bool
	us     uint64
	ipLen  uint16
	df     bool
	flags  uint8
	tcpLen uint16
	win    uint16
	udpLen uint16
}

// session builds the records of one session between client c:cport and
// server s:sport (the client has the lower address, as in the lab).
func session(c, s string, cport, sport uint16, proto uint8, pkts ...pkt) []ddosfeat.PacketFeatures {
	key := ddosfeat.SessionKey{LoAddr: netip.MustParseAddr(c), HiAddr: netip.MustParseAddr(s), LoPort: cport, HiPort: sport, Proto: proto}
	const t0 = 5_000_000_000_000
	var out []ddosfeat.PacketFeatures
	for _, p := range pkts {
		f := ddosfeat.PacketFeatures{Session: key, TimestampNs: t0 + p.us*1000, IPLen: p.ipLen, Proto: proto, TCPFlags: p.flags,
			TCPPayloadLen: p.tcpLen, TCPWindow: p.win, UDPLen: p.udpLen, FromHi: p.srv, Dir: ddosfeat.Ingress}
		if p.df {
			f.IPFlagsFrag = ddosfeat.FlagDF
		}
		if p.srv {
			f.Dir = ddosfeat.Egress
		}
		if proto == 6 && p.flags&0x10 != 0 {
			f.TCPAck = 1234567
		}
		out = append(out, f)
	}
	return out
}

// TCP flags.
const (
	fin, syn, rst, psh, ack = 0x01, 0x02, 0x04, 0x08, 0x10
)

// TestDDoSLiveShapes scores sessions as the live probe reports them on a
// lab server's interface (GSO on): lab.HTTPLoad's one-shot HTTP/1.0
// clients, which read 64 bytes and reset (with the reset before or after
// the server's FIN), the lone SYN (or SYN and SYN-ACK) a reused client
// port gives once ddosfeat's window has no records left for the 5-tuple,
// a wrk keep-alive download with TSO aggregates and the next window of
// such a connection (starting mid-exchange, with the server's answer), a
// keep-alive connection reset when idle, a lone FIN after a think time;
// and the floods the live acceptance test sends. Each is the same whatever the recording, so the
// shipped model must get every one right.
func TestDDoSLiveShapes(t *testing.T) {
	m, err := DDoS()
	if err != nil {
		t.Fatal(err)
	}
	c4, s4 := "198.18.0.5", "198.18.0.6"
	c6, s6 := "fd00:72:70::1", "fd00:72:70::2"
	handshake4 := []pkt{{false, 0, 60, true, syn, 0, 64240, 0}, {true, 30, 60, true, syn | ack, 0, 65160, 0}, {false, 100, 52, true, ack, 0, 502, 0}}
	oneShot4 := append(append([]pkt(nil), handshake4...),
		pkt{false, 400, 70, true, psh | ack, 18, 502, 0}, pkt{true, 410, 52, true, ack, 0, 509, 0},
		pkt{true, 1200, 191, true, psh | ack, 139, 509, 0}, pkt{false, 1210, 52, true, ack, 0, 502, 0})
	withFIN := append(append([]pkt(nil), oneShot4...), pkt{true, 1220, 52, true, fin | ack, 0, 509, 0}, pkt{false, 1400, 52, true, rst | ack, 0, 502, 0})
	resetFirst := append(append([]pkt(nil), oneShot4...), pkt{false, 1400, 52, true, rst | ack, 0, 502, 0})
	oneShot6 := []pkt{{false, 0, 80, false, syn, 0, 64800, 0}, {true, 20, 80, false, syn | ack, 0, 64260, 0}, {false, 40, 72, false, ack, 0, 64, 0},
		{false, 100, 90, false, psh | ack, 18, 64, 0}, {true, 200, 72, false, ack, 0, 63, 0}, {true, 220, 211, false, psh | ack, 139, 63, 0},
		{false, 230, 72, false, ack, 0, 64, 0}, {false, 240, 72, false, rst | ack, 0, 64, 0}}
	wrk := append(append([]pkt(nil), handshake4...),
		pkt{false, 150, 101, true, psh | ack, 49, 502, 0}, pkt{true, 160, 52, true, ack, 0, 509, 0},
		pkt{true, 200, 4148, true, psh | ack, 4096, 509, 0}, pkt{false, 210, 52, true, ack, 0, 500, 0},
		pkt{true, 220, 8740, true, psh | ack, 8688, 509, 0}, pkt{true, 225, 7398, true, psh | ack, 7346, 509, 0})
	// A wrk connection's next window (10 s on) starts in the middle of
	// its exchange, here with one of the server's answers.
	var rollover []pkt
	for i := range uint64(3) {
		rollover = append(rollover, pkt{true, 100 * i, 2170, true, psh | ack, 2118, 64, 0},
			pkt{false, 100*i + 5, 52, true, ack, 0, 493, 0}, pkt{false, 100*i + 50, 100, true, psh | ack, 48, 493, 0})
	}
	rollover = append(rollover, pkt{true, 300, 2170, true, psh | ack, 2118, 64, 0})
	for _, tc := range []struct {
		name   string
		attack bool
		recs   []ddosfeat.PacketFeatures
	}{
		{"lab.HTTPLoad, server FIN then client reset", false, session(c4, s4, 40000, 8080, 6, withFIN...)},
		{"lab.HTTPLoad, client reset before the server's FIN", false, session(c4, s4, 40002, 8080, 6, resetFirst...)},
		{"lab.HTTPLoad over IPv6, reset first", false, session(c6, s6, 40004, 8080, 6, oneShot6...)},
		{"a reused client port: lone SYN", false, session(c4, s4, 40006, 8080, 6, handshake4[0])},
		{"a reused client port: SYN, SYN-ACK", false, session(c4, s4, 40008, 8080, 6, handshake4[:2]...)},
		{"a reused client port over IPv6: lone SYN", false, session(c6, s6, 40010, 8080, 6, oneShot6[0])},
		{"wrk keep-alive download with TSO aggregates", false, session(c4, s4, 40012, 8080, 6, wrk...)},
		{"wrk keep-alive connection, its next window", false, session(c4, s4, 40018, 8080, 6, rollover...)},
		{"keep-alive connection reset when idle", false, session(c4, s4, 40014, 8080, 6, pkt{false, 0, 52, true, rst | ack, 0, 502, 0})},
		{"lone FIN after a think time", false, session(c4, s4, 40016, 8080, 6,
			pkt{false, 0, 52, true, fin | ack, 0, 502, 0}, pkt{true, 40, 52, true, fin | ack, 0, 509, 0}, pkt{false, 60, 52, true, ack, 0, 502, 0})},
		{"hping3 -S --rand-source", true, session("203.0.113.7", s4, 2345, 8080, 6, pkt{false, 0, 40, false, syn, 0, 64, 0})},
		{"hping3 -S to the open port", true, session(c4, s4, 2346, 8080, 6,
			pkt{false, 0, 40, false, syn, 0, 64, 0}, pkt{true, 20, 44, true, syn | ack, 0, 64240, 0}, pkt{false, 40, 40, true, rst, 0, 0, 0})},
		{"hping3 --udp -d 64", true, session(c4, s4, 2347, 9, 17, pkt{false, 0, 92, false, 0, 0, 0, 72})},
	} {
		score := m.Predict(lucid.FromPackets(tc.recs, m.N))
		if (score >= 0.5) != tc.attack {
			t.Errorf("%s: score %.3f, want it called attack=%v", tc.name, score, tc.attack)
		} else {
			t.Logf("%s: score %.3f", tc.name, score)
		}
	}
	// Trained on saturated lengths: an aggregate of any size counts as a
	// full-size segment live (the normaliser clamps it).
	if m.Norm.Max[lucid.FeatIPLen] != lucid.SaturateIPLen || m.Norm.Max[lucid.FeatTCPLen] > lucid.SaturateTCPLen || m.Norm.Max[lucid.FeatUDPLen] > lucid.SaturateUDPLen {
		t.Errorf("normaliser bounds ip_len %g, tcp_len %g, udp_len %g: trained on unsaturated lengths", m.Norm.Max[lucid.FeatIPLen], m.Norm.Max[lucid.FeatTCPLen], m.Norm.Max[lucid.FeatUDPLen])
	}
}
