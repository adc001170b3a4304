package main

import (
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/detect/lucid"
	"github.com/rampart-shield/rampart/probes/ddosfeat"
)

// sessionFiles writes a benign and an attack session file: HTTP-like
// exchanges, and single SYNs from many sources.
func sessionFiles(t *testing.T, dir string) (benign, attack string) {
	t.Helper()
	srv := netip.MustParseAddr("198.18.0.2")
	var bs, as []*lucid.Session
	t0 := uint64(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	for i := range 300 {
		c := netip.AddrFrom4([4]byte{198, 18, 1, byte(i)})
		key := ddosfeat.SessionKey{LoAddr: srv, HiAddr: c, LoPort: 80, HiPort: uint16(30000 + i), Proto: 6}
		s := &lucid.Session{Key: key, FirstNs: t0 + uint64(i)*1e6}
		for j, p := range []struct {
			fromClient bool
			flags      uint8
			payload    uint16
		}{{true, 0x02, 0}, {false, 0x12, 0}, {true, 0x10, 0}, {true, 0x18, uint16(80 + i%40)}, {false, 0x18, 600}, {true, 0x10, 0}, {true, 0x11, 0}, {false, 0x11, 0}, {true, 0x10, 0}} {
			s.Packets = append(s.Packets, ddosfeat.PacketFeatures{Session: key, TimestampNs: s.FirstNs + uint64(j)*50000,
				IPLen: 52 + p.payload, IPFlagsFrag: ddosfeat.FlagDF, Proto: 6, TCPFlags: p.flags, TCPPayloadLen: p.payload,
				TCPAck: uint32(j), TCPWindow: 502, FromHi: p.fromClient})
		}
		s.LastNs = s.Packets[len(s.Packets)-1].TimestampNs
		bs = append(bs, s)

		src := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 7})
		akey := ddosfeat.SessionKey{LoAddr: src, HiAddr: srv, LoPort: uint16(2000 + i), HiPort: 80, Proto: 6}
		as = append(as, &lucid.Session{Key: akey, FirstNs: t0 + uint64(i)*1000, LastNs: t0 + uint64(i)*1000, Packets: []ddosfeat.PacketFeatures{
			{Session: akey, TimestampNs: t0 + uint64(i)*1000, IPLen: 40, Proto: 6, TCPFlags: 0x02, TCPWindow: 512}}})
	}
	write := func(name string, ss []*lucid.Session) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := lucid.WriteSessions(f, ss, lucid.SessionsMeta{N: lucid.DefaultN, Source: name}); err != nil {
			t.Fatal(err)
		}
		f.Close()
		return p
	}
	return write("benign.jsonl", bs), write("attack.jsonl", as)
}

func TestModelTrainEvalShow(t *testing.T) {
	dir := t.TempDir()
	benign, attack := sessionFiles(t, dir)
	model := filepath.Join(dir, "m.json")
	r := rampart(t, nil, "model", "train", "ddos", "--benign", benign, "--attack", attack, "--out", model, "--epochs", "8", "--seed", "3", "--version", "test-1")
	if r.code != 0 {
		t.Fatalf("train: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"held-out validation", "accuracy", "precision", "recall", "f1", "fpr", "tp ", "wrote " + model} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("train output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "epoch   1/8 [") {
		t.Errorf("no progress bar on stderr:\n%s", r.stderr)
	}
	m, err := lucid.LoadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "ddos-lucid" || m.Version != "test-1" || m.N != lucid.DefaultN || m.Meta.Seed != 3 || m.Meta.Val == nil || m.Meta.Val.F1 < 0.99 {
		t.Fatalf("model %s %s n=%d seed %d val %+v", m.Name, m.Version, m.N, m.Meta.Seed, m.Meta.Val)
	}
	// 20% of each file held out, the rest balanced.
	if m.Meta.ValSamples != 120 || m.Meta.ValAttacks != 60 || m.Meta.TrainSamples != 480 {
		t.Errorf("split: %d validation (%d attacks), %d training", m.Meta.ValSamples, m.Meta.ValAttacks, m.Meta.TrainSamples)
	}

	// The same seed gives the same weights.
	model2 := filepath.Join(dir, "m2.json")
	if r := rampart(t, nil, "model", "train", "ddos", "--benign", benign, "--attack", attack, "--out", model2, "--epochs", "8", "--seed", "3"); r.code != 0 {
		t.Fatalf("train again: %d %s", r.code, r.stderr)
	}
	m2, err := lucid.LoadFile(model2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Conv, m2.Conv) || !slices.Equal(m.Dense, m2.Dense) || m.DenseBias != m2.DenseBias {
		t.Error("the same data and seed gave other weights")
	}

	r = rampart(t, nil, "model", "eval", "ddos", "--model", model, "--benign", benign, "--attack", attack, "--store")
	if r.code != 0 {
		t.Fatalf("eval: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"benign.jsonl", "attack.jsonl", "CALLED ATTACK", "accuracy", "f1", "fpr", "tn 300", "stored"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("eval output lacks %q:\n%s", want, r.stdout)
		}
	}
	r = rampart(t, nil, "model", "eval", "ddos", "--model", model, "--benign", benign, "--attack", attack, "--json")
	var ev struct {
		Files   []map[string]any `json:"files"`
		Metrics lucid.Metrics    `json:"metrics"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ev); err != nil || len(ev.Files) != 2 || ev.Metrics.TP+ev.Metrics.FN != 300 || ev.Metrics.F1 < 0.99 {
		t.Errorf("eval --json: %v %+v\n%s", err, ev, r.stdout)
	}

	r = rampart(t, nil, "model", "show", model)
	for _, want := range []string{"ddos-lucid", "test-1", "n=10 packets", "parameters", "seed 3", "validation", "test (other recordings)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, r.stdout)
		}
	}
	r = rampart(t, nil, "model", "show", model, "--json")
	var shown map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil || shown["name"] != "ddos-lucid" {
		t.Errorf("show --json: %v\n%s", err, r.stdout)
	}
}

func TestModelShowDefault(t *testing.T) {
	r := rampart(t, nil, "model", "show")
	if r.code != 0 {
		t.Fatalf("%d %s", r.code, r.stderr)
	}
	for _, want := range []string{"built-in ddos-lucid.json", "name      ddos-lucid", "n=10 packets, f=21 features, k=64 kernels of h=3 packets: 4161 parameters", "trained", "validation"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestModelUsage(t *testing.T) {
	dir := t.TempDir()
	benign, attack := sessionFiles(t, dir)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"model", "train", "ddos", "--benign", benign, "--out", "x.json"}, exitUsage, "give both --benign and --attack"},
		{[]string{"model", "train", "crypto", "--benign", benign, "--attack", attack, "--out", "x.json"}, exitUsage, "only ddos"},
		{[]string{"model", "train", "ddos", "--benign", benign, "--attack", attack}, exitUsage, "--out"},
		{[]string{"model", "train", "ddos", "--benign", benign, "--attack", attack, "--out", "x.json", "--holdout", "1.5"}, exitUsage, "--holdout"},
		{[]string{"model", "eval", "ddos", "--benign", benign, "--attack", attack, "--threshold", "0"}, exitUsage, "--threshold"},
		{[]string{"model", "eval", "ddos", "--benign", benign, "--attack", attack, "--store"}, exitUsage, "--store needs --model"},
		{[]string{"model", "extract", "ddos"}, exitUsage, "one capture"},
		{[]string{"model", "show", "a", "b"}, exitUsage, "at most one"},
		{[]string{"model", "eval", "ddos", "--benign", filepath.Join(dir, "none.pcap"), "--attack", attack}, exitError, "none.pcap"},
		{[]string{"model", "show", benign}, exitError, "not valid JSON"},
		{[]string{"model", "nope"}, exitUsage, "unknown command"},
	} {
		r := rampart(t, nil, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.args, r.code, c.code, r.stderr, c.want)
		}
	}
}

// tinyPcap writes a pcap of a TCP handshake and a UDP exchange.
func tinyPcap(t *testing.T, path string) {
	t.Helper()
	c, s := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	var buf []byte
	le := binary.LittleEndian
	hdr := make([]byte, 24)
	le.PutUint32(hdr[0:], 0xa1b2c3d4)
	le.PutUint16(hdr[4:], 2)
	le.PutUint16(hdr[6:], 4)
	le.PutUint32(hdr[16:], 65535)
	le.PutUint32(hdr[20:], 1)
	buf = append(buf, hdr...)
	frame := func(src, dst netip.Addr, proto uint8, sport, dport uint16, flags uint8) []byte {
		l4 := make([]byte, 20)
		if proto == 17 {
			l4 = make([]byte, 8+32)
			binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		} else {
			l4[12], l4[13] = 5<<4, flags
		}
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		f := make([]byte, 14+20)
		binary.BigEndian.PutUint16(f[12:], 0x0800)
		ip := f[14:]
		ip[0], ip[8], ip[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		s4, d4 := src.As4(), dst.As4()
		copy(ip[12:], s4[:])
		copy(ip[16:], d4[:])
		return append(f, l4...)
	}
	frames := [][]byte{frame(c, s, 6, 4000, 80, 0x02), frame(s, c, 6, 80, 4000, 0x12), frame(c, s, 6, 4000, 80, 0x10),
		frame(c, s, 17, 5000, 53, 0), frame(s, c, 17, 53, 5000, 0)}
	for i, f := range frames {
		rec := make([]byte, 16)
		le.PutUint32(rec[0:], 1_700_000_000)
		le.PutUint32(rec[4:], uint32(i*100))
		le.PutUint32(rec[8:], uint32(len(f)))
		le.PutUint32(rec[12:], uint32(len(f)))
		buf = append(append(buf, rec...), f...)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestModelExtract(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "tiny.pcap")
	tinyPcap(t, pcap)
	out := filepath.Join(dir, "tiny.jsonl")
	r := rampart(t, nil, "model", "extract", "ddos", pcap, "--out", out)
	if os.Geteuid() != 0 {
		if r.code != exitError || !strings.Contains(r.stderr, "needs root") {
			t.Fatalf("as a user: exit %d, %q", r.code, r.stderr)
		}
		t.Skip("the replay needs root")
	}
	if r.code != 0 || !strings.Contains(r.stdout, "wrote 2 sessions") {
		t.Fatalf("extract: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ss, meta, err := lucid.ReadSessions(f)
	if err != nil || len(ss) != 2 || meta.Source != "tiny.pcap" || len(ss[0].Packets) != 3 || len(ss[1].Packets) != 2 {
		t.Fatalf("%v %+v %d sessions", err, meta, len(ss))
	}
}
