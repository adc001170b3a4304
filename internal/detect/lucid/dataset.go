package lucid

import (
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"

	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/internal/replay"
	"github.com/rampart-shield/rampart/probes/ddosfeat"
)

// Dataset defaults: the live detector's sampling (ddosfeat's n_packets
// and window_ns) and its assembler's idle time.
const (
	DefaultWindowNs = 10_000_000_000
	DefaultIdleNs   = 1_000_000_000
)

// DatasetOptions tune SessionsFromPcap.
type DatasetOptions struct {
	// N is ddosfeat's n_packets and the assembler's session size
	// (default DefaultN).
	N int
	// WindowNs is ddosfeat's window_ns (default DefaultWindowNs).
	WindowNs uint64
	// IdleNs completes a session that got no record for this long, in
	// capture time (default DefaultIdleNs, as the live detector).
	IdleNs uint64
	// EgressFrom: frames from this MAC run through ddosfeat's egress
	// program, the others through its ingress program (replay.Options).
	EgressFrom net.HardwareAddr
	// Progress, when not nil, is called every 1024 packets replayed.
	Progress func(packets int)
	// Stats, when not nil, receives what the replay did.
	Stats *DatasetStats
}

func (o DatasetOptions) withDefaults() DatasetOptions {
	if o.N <= 0 {
		o.N = DefaultN
	}
	if o.WindowNs == 0 {
		o.WindowNs = DefaultWindowNs
	}
	if o.IdleNs == 0 {
		o.IdleNs = DefaultIdleNs
	}
	return o
}

// DatasetStats says what SessionsFromPcap did.
type DatasetStats struct {
	// Packets were replayed through the probe; Padded of them had been
	// cut by the capture's snap length and were zero-padded back to their
	// length on the wire (ddosfeat reads headers only, so their features
	// are those of the original frames). Aggregates were larger than a
	// test run accepts (GSO/GRO/TSO aggregates as captured on a host with
	// offloads on, jumbo frames): they were replayed cut to maxReplayed
	// bytes with their IP length rewritten to match, and their records got
	// the real IP and TCP payload lengths back. Skipped frames could not
	// be replayed at all (cut, and not IPv4 or IPv6).
	Packets, Padded, Aggregates, Skipped int
	// Records is the number of ddosfeat records, all of them received.
	Records uint64
	// Probe counters (ddosfeat.Stats): packets over a session's n_packets
	// in its window, and frames that were not IP or were malformed.
	Capped, NonIP, Malformed, NoSession uint64
	Sessions                            int
	// FirstNs and LastNs are the capture times of the first and last
	// replayed packets.
	FirstNs, LastNs uint64
}

// paceEvery is how many packets replay.Run sends between its progress
// calls, where SessionsFromPcap waits for the stream to catch up: at most
// that many records (about 80 KiB) are ever in the 1 MiB ring buffer, and
// fewer than the subscriber channel holds.
const paceEvery = 1024

// catchUpTimeout bounds one wait for the event stream.
const catchUpTimeout = 30 * time.Second

// maxReplayed is the largest frame replayed as it was: a cut frame is
// padded back to its length on the wire up to this; a larger one (a
// GSO/GRO aggregate, up to 64 KiB) is replayed as this many bytes with
// its IP length rewritten, and its record gets the real lengths back. A
// BPF_PROG_TEST_RUN of a TC program takes at most a page minus the skb's
// head- and tailroom (3712 bytes with 4 KiB pages on x86-64).
const maxReplayed = 3072

// SessionsFromPcap replays a classic pcap through a private, detached
// ddosfeat probe loaded in m (under a unique name, unloaded on return),
// decodes every record and groups them with an Assembler into sessions of
// up to N packets, as live detection does: a session completes with N
// records or after IdleNs of capture time without one.
//
// The replay is lossless or fails: it waits every 1024 packets until
// every record submitted so far has been received, and returns an error
// if the ring buffer was ever full, the stream lost an event or a record
// did not decode. Sessions come in the order they completed.
func SessionsFromPcap(ctx context.Context, m *probe.Manager, r io.Reader, opts DatasetOptions) ([]*Session, error) {
	opts = opts.withDefaults()
	man, err := probe.ParseManifest(ddosfeat.Manifest())
	if err != nil {
		return nil, fmt.Errorf("lucid: ddosfeat manifest: %w", err)
	}
	var id [4]byte
	crand.Read(id[:])
	name := "ddosfeat-dataset-" + hex.EncodeToString(id[:])
	_, err = m.Load(ctx, probe.LoadRequest{
		Name: name, Manifest: man, Object: bytes.Clone(ddosfeat.Object()), Detached: true,
		Params: map[string]string{
			"n_packets": strconv.Itoa(opts.N),
			"window_ns": strconv.FormatUint(opts.WindowNs, 10),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("lucid: loading ddosfeat for the replay: %w", err)
	}
	defer m.Unload(name)
	stream := ""
	if len(man.Events) > 0 {
		stream = man.Events[0].Name
	}
	events, cancel, err := m.Subscribe(name, stream)
	if err != nil {
		return nil, fmt.Errorf("lucid: subscribing to ddosfeat: %w", err)
	}
	defer cancel()

	// The consumer decodes and assembles in stream order, giving the
	// records of aggregates replayed cut their real lengths back.
	col := newCollector(opts.N, opts.IdleNs)
	var big aggregates
	var consumed atomic.Uint64
	var decodeErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range events {
			p, err := ddosfeat.DecodePacketFeatures(ev.Raw)
			if err != nil {
				if decodeErr == nil {
					decodeErr = err
				}
			} else {
				big.restore(&p)
				col.add(p)
			}
			consumed.Add(1)
		}
	}()

	stats := func() (ddosfeat.Stats, error) {
		var st ddosfeat.Stats
		err := m.WithMaps(name, func(maps map[string]*ebpf.Map) error {
			mp := maps["ddos_stats"]
			if mp == nil {
				return errors.New("ddosfeat has no ddos_stats map")
			}
			var err error
			st, err = ddosfeat.ReadStats(mp)
			return err
		})
		return st, err
	}
	var paceErr error
	catchUp := func() {
		if paceErr != nil {
			return
		}
		deadline := time.Now().Add(catchUpTimeout)
		for {
			st, err := stats()
			if err != nil {
				paceErr = fmt.Errorf("lucid: reading ddos_stats: %w", err)
				return
			}
			if st.RingBufFull > 0 {
				paceErr = fmt.Errorf("lucid: the ddosfeat ring buffer was full: %d records lost", st.RingBufFull)
				return
			}
			if consumed.Load() >= st.Submitted {
				return
			}
			if lost := streamLost(m, name); lost != nil {
				paceErr = lost
				return
			}
			if ctx.Err() != nil {
				paceErr = ctx.Err()
				return
			}
			if time.Now().After(deadline) {
				paceErr = fmt.Errorf("lucid: the ddosfeat stream did not deliver %d of %d records within %v", st.Submitted-consumed.Load(), st.Submitted, catchUpTimeout)
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}

	pr, pw := io.Pipe()
	var pad padStats
	var padWG sync.WaitGroup
	padWG.Add(1)
	go func() {
		defer padWG.Done()
		pw.CloseWithError(padPcap(ctx, r, pw, &pad, &big))
	}()
	rst, err := replay.Run(m, name, pr, replay.Options{EgressFrom: opts.EgressFrom, Progress: func(n int) {
		catchUp()
		if paceErr != nil {
			pr.CloseWithError(paceErr) // ends the replay at its next read
		}
		if opts.Progress != nil {
			opts.Progress(n)
		}
	}})
	pr.Close()
	padWG.Wait()
	if paceErr != nil {
		return nil, paceErr
	}
	if err != nil {
		return nil, fmt.Errorf("lucid: replay: %w", err)
	}
	catchUp()
	if paceErr != nil {
		return nil, paceErr
	}
	st, err := stats()
	if err != nil {
		return nil, fmt.Errorf("lucid: reading ddos_stats: %w", err)
	}
	info, err := m.Get(name)
	if err != nil {
		return nil, err
	}
	cancel()
	<-done
	if decodeErr != nil {
		return nil, fmt.Errorf("lucid: decoding a ddosfeat record: %w", decodeErr)
	}
	if err := lostIn(info); err != nil {
		return nil, err
	}
	if got := consumed.Load(); got != st.Submitted || st.RingBufFull > 0 {
		return nil, fmt.Errorf("lucid: received %d ddosfeat records of %d submitted (%d lost to a full ring buffer)", got, st.Submitted, st.RingBufFull)
	}
	sessions := col.finish()
	if opts.Stats != nil {
		*opts.Stats = DatasetStats{
			Packets: rst.Packets, Padded: pad.padded, Aggregates: pad.cut, Skipped: rst.Skipped,
			Records: st.Submitted, Capped: st.Capped, NonIP: st.NonIP, Malformed: st.Malformed, NoSession: st.NoSession,
			Sessions: len(sessions), FirstNs: rst.FirstNs, LastNs: rst.LastNs,
		}
	}
	return sessions, nil
}

// streamLost reports events the probe's stream lost (a subscriber too
// slow, or a record that did not decode).
func streamLost(m *probe.Manager, name string) error {
	info, err := m.Get(name)
	if err != nil {
		return err
	}
	return lostIn(info)
}

func lostIn(info probe.ProbeInfo) error {
	for _, e := range info.Events {
		if e.Lost > 0 {
			return fmt.Errorf("lucid: the ddosfeat stream %s lost %d events", e.Name, e.Lost)
		}
	}
	return nil
}

// collector feeds an Assembler in capture time: a record whose session
// has been idle for IdleNs completes that session first (a new one
// starts), and every IdleNs of capture time the idle ones are completed,
// as the live detector's periodic flush does.
type collector struct {
	a         *Assembler
	idle      uint64
	lastFlush uint64
	out       []*Session
}

func newCollector(n int, idle uint64) *collector {
	return &collector{a: NewAssembler(n, idle, 0), idle: idle}
}

func (c *collector) add(p ddosfeat.PacketFeatures) {
	now := p.TimestampNs
	if now >= c.lastFlush+c.idle {
		c.out = append(c.out, c.a.Flush(now)...)
		c.lastFlush = now
	}
	if s := c.a.open[p.Session]; s != nil && now >= s.LastNs+c.idle {
		// Its stale queue entry is skipped by Flush and compact.
		delete(c.a.open, p.Session)
		c.out = append(c.out, s)
	}
	c.out = append(c.out, c.a.Add(p)...)
}

func (c *collector) finish() []*Session {
	return append(c.out, c.a.Flush(0)...)
}

type padStats struct{ padded, cut int }

// padPcap copies a pcap stream to w as a nanosecond pcap, zero-padding
// frames cut by the snap length back to their length on the wire (up to
// maxReplayed bytes) and cutting larger IP frames to maxReplayed bytes
// (listed in big, which gives their records the real lengths back).
func padPcap(ctx context.Context, r io.Reader, w io.Writer, st *padStats, big *aggregates) error {
	rd, err := replay.NewReader(r)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	var h [24]byte
	le := binary.LittleEndian
	le.PutUint32(h[0:], 0xa1b23c4d) // nanosecond resolution
	le.PutUint16(h[4:], 2)
	le.PutUint16(h[6:], 4)
	le.PutUint32(h[16:], 1<<18)
	le.PutUint32(h[20:], 1) // Ethernet
	bw.Write(h[:])
	var rec [16]byte
	for i := 0; ; i++ {
		if i%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		p, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return bw.Flush()
		}
		if err != nil {
			return err
		}
		data, orig := p.Data, p.OrigLen
		switch {
		case p.OrigLen > maxReplayed:
			if c, agg, ok := cutAggregate(p); ok {
				big.add(agg)
				data, orig = c, uint32(len(c))
				st.cut++
			}
		case uint32(len(data)) < p.OrigLen:
			data = append(data, make([]byte, int(p.OrigLen)-len(data))...)
			st.padded++
		}
		le.PutUint32(rec[0:], uint32(p.TimeNs/1e9))
		le.PutUint32(rec[4:], uint32(p.TimeNs%1e9))
		le.PutUint32(rec[8:], uint32(len(data)))
		le.PutUint32(rec[12:], orig)
		bw.Write(rec[:])
		if _, err := bw.Write(data); err != nil {
			return err
		}
	}
}

// aggregate is a frame replayed cut: its addresses and capture time, the
// IP length it was replayed with and its real one.
type aggregate struct {
	ts       uint64
	src, dst netip.Addr
	cutLen   uint32
	realLen  uint32
}

// aggregates lists the frames replayed cut until their records come
// back: a record with an aggregate's capture time, addresses and cut IP
// length is its record. Capture times are only nearly in order (tcpdump
// merges CPUs), so an aggregate whose frame gave no record (capped) is
// dropped once records are a second of capture time past it.
type aggregates struct {
	mu sync.Mutex
	q  []aggregate
}

const aggregateHorizonNs = 1_000_000_000

func (b *aggregates) add(a aggregate) {
	b.mu.Lock()
	b.q = append(b.q, a)
	b.mu.Unlock()
}

// restore gives p the real lengths of its frame when that frame was
// replayed cut.
func (b *aggregates) restore(p *ddosfeat.PacketFeatures) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.q) > 0 && b.q[0].ts+aggregateHorizonNs < p.TimestampNs {
		b.q = b.q[1:]
	}
	lo, hi := p.Session.LoAddr, p.Session.HiAddr
	for i, a := range b.q {
		if a.ts > p.TimestampNs+aggregateHorizonNs {
			return
		}
		if a.ts != p.TimestampNs || uint32(p.IPLen) != a.cutLen || !(a.src == lo && a.dst == hi || a.src == hi && a.dst == lo) {
			continue
		}
		b.q = append(b.q[:i], b.q[i+1:]...)
		delta := a.realLen - a.cutLen
		p.IPLen = sat16(a.realLen)
		if p.Proto == protoTCP {
			p.TCPPayloadLen = sat16(uint32(p.TCPPayloadLen) + delta)
		}
		return
	}
}

func sat16(v uint32) uint16 { return uint16(min(v, 0xffff)) }

// cutAggregate cuts an IPv4 or IPv6 frame longer than maxReplayed to
// maxReplayed bytes (zero-padded when the capture kept fewer) and
// rewrites its IP length to fit, as ddosfeat rejects an IP length longer
// than the frame. It returns false for other frames, or when the capture
// did not keep the IP header.
func cutAggregate(p replay.Packet) ([]byte, aggregate, bool) {
	d := p.Data
	be := binary.BigEndian
	off := 14
	if len(d) < off {
		return nil, aggregate{}, false
	}
	typ := be.Uint16(d[12:])
	for range 2 { // VLAN tags, as ddosfeat follows them
		if typ != 0x8100 && typ != 0x88a8 || len(d) < off+4 {
			break
		}
		typ = be.Uint16(d[off+2:])
		off += 4
	}
	a := aggregate{ts: p.TimeNs, cutLen: uint32(maxReplayed - off)}
	out := make([]byte, maxReplayed)
	copy(out, d)
	ip := out[off:]
	switch {
	case typ == 0x0800 && len(d) >= off+20 && d[off]>>4 == 4:
		a.realLen = uint32(be.Uint16(ip[2:]))
		if a.realLen == 0 { // IPv4 BIG TCP
			a.realLen = p.OrigLen - uint32(off)
		}
		be.PutUint16(ip[2:], uint16(a.cutLen))
		a.src, a.dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	case typ == 0x86dd && len(d) >= off+40 && d[off]>>4 == 6:
		a.realLen = 40 + uint32(be.Uint16(ip[4:]))
		if a.realLen == 40 { // a jumbogram or IPv6 BIG TCP
			a.realLen = p.OrigLen - uint32(off)
		}
		be.PutUint16(ip[4:], uint16(a.cutLen-40))
		a.src, a.dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	default:
		return nil, aggregate{}, false
	}
	if a.realLen <= a.cutLen {
		return nil, aggregate{}, false // a short IP packet in a long frame
	}
	return out, a, true
}

// Length saturation: SamplesFrom caps the IP, TCP payload and UDP
// lengths of its samples at one standard Ethernet MTU. Whether a host's
// stack hands the probe MTU-sized segments or GSO/GRO/TSO aggregates of
// up to 64 KiB (which depends on its NICs' offloads and on timing), or
// whether the link has jumbo frames, says nothing about an attack; a
// model trained on saturated lengths gets a normaliser bound of exactly
// these values, so that live, where FromPackets does not saturate, its
// normaliser clamps any longer packet to the same value.
const (
	SaturateIPLen  = 1500
	SaturateTCPLen = 1460
	SaturateUDPLen = 1480
)

// SamplesFrom turns sessions into samples of n packets (DefaultN when n
// <= 0) with one label, in the same order, with saturated lengths (see
// SaturateIPLen).
func SamplesFrom(sessions []*Session, label int, n int) []Sample {
	if n <= 0 {
		n = DefaultN
	}
	out := make([]Sample, 0, len(sessions))
	for _, s := range sessions {
		rows := FromPackets(s.Packets, n)
		for _, r := range rows {
			r[FeatIPLen] = min(r[FeatIPLen], SaturateIPLen)
			r[FeatTCPLen] = min(r[FeatTCPLen], SaturateTCPLen)
			r[FeatUDPLen] = min(r[FeatUDPLen], SaturateUDPLen)
		}
		out = append(out, Sample{
			Key:     s.Key.String() + " @" + strconv.FormatUint(s.FirstNs, 10),
			Packets: rows,
			Label:   label,
		})
	}
	return out
}

// Session files: recorded sessions as JSON lines, so that training and
// evaluation need neither root nor the captures. The first line is a
// header, then one session per line.
const (
	SessionsFormat        = "rampart-ddos-sessions"
	SessionsFormatVersion = 1
)

type sessionsHeader struct {
	Format        string `json:"format"`
	FormatVersion int    `json:"format_version"`
	N             int    `json:"n,omitempty"`
	WindowNs      uint64 `json:"window_ns,omitempty"`
	Source        string `json:"source,omitempty"`
}

type jsonSession struct {
	Lo      netip.Addr   `json:"lo"`
	Hi      netip.Addr   `json:"hi"`
	LoPort  uint16       `json:"lo_port"`
	HiPort  uint16       `json:"hi_port"`
	Proto   uint8        `json:"proto"`
	FirstNs uint64       `json:"first_ns"`
	LastNs  uint64       `json:"last_ns"`
	Packets []jsonPacket `json:"packets"`
}

// jsonPacket is one record; T is its time after the session's FirstNs.
type jsonPacket struct {
	T        uint64 `json:"t"`
	IPLen    uint16 `json:"ip_len"`
	Frag     uint16 `json:"frag,omitempty"`
	Proto    uint8  `json:"proto,omitempty"` // when not the session's
	TCPFlags uint8  `json:"tcp_flags,omitempty"`
	TCPLen   uint16 `json:"tcp_len,omitempty"`
	TCPAck   uint32 `json:"tcp_ack,omitempty"`
	TCPWin   uint16 `json:"tcp_win,omitempty"`
	UDPLen   uint16 `json:"udp_len,omitempty"`
	ICMPType uint8  `json:"icmp_type,omitempty"`
	Dir      uint8  `json:"dir,omitempty"`
	FromHi   bool   `json:"from_hi,omitempty"`
}

// SessionsMeta describes a session file.
type SessionsMeta struct {
	N        int
	WindowNs uint64
	Source   string // where the sessions came from (a capture's name)
}

// WriteSessions writes sessions as a session file.
func WriteSessions(w io.Writer, sessions []*Session, meta SessionsMeta) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(sessionsHeader{Format: SessionsFormat, FormatVersion: SessionsFormatVersion, N: meta.N, WindowNs: meta.WindowNs, Source: meta.Source}); err != nil {
		return err
	}
	for _, s := range sessions {
		js := jsonSession{Lo: s.Key.LoAddr, Hi: s.Key.HiAddr, LoPort: s.Key.LoPort, HiPort: s.Key.HiPort, Proto: s.Key.Proto,
			FirstNs: s.FirstNs, LastNs: s.LastNs, Packets: make([]jsonPacket, len(s.Packets))}
		for i, p := range s.Packets {
			jp := jsonPacket{IPLen: p.IPLen, Frag: p.IPFlagsFrag, TCPFlags: p.TCPFlags, TCPLen: p.TCPPayloadLen,
				TCPAck: p.TCPAck, TCPWin: p.TCPWindow, UDPLen: p.UDPLen, ICMPType: p.ICMPType, Dir: uint8(p.Dir), FromHi: p.FromHi}
			if p.TimestampNs > s.FirstNs {
				jp.T = p.TimestampNs - s.FirstNs
			}
			if p.Proto != s.Key.Proto {
				jp.Proto = p.Proto
			}
			js.Packets[i] = jp
		}
		if err := enc.Encode(js); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ReadSessions reads a session file written by WriteSessions.
func ReadSessions(r io.Reader) ([]*Session, SessionsMeta, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	dec := json.NewDecoder(br)
	var h sessionsHeader
	if err := dec.Decode(&h); err != nil {
		return nil, SessionsMeta{}, fmt.Errorf("lucid: session file header: %w", err)
	}
	if h.Format != SessionsFormat {
		return nil, SessionsMeta{}, fmt.Errorf("lucid: not a session file (format %q, want %q)", h.Format, SessionsFormat)
	}
	if h.FormatVersion != SessionsFormatVersion {
		return nil, SessionsMeta{}, fmt.Errorf("lucid: session file format version %d is not supported (this build reads %d)", h.FormatVersion, SessionsFormatVersion)
	}
	meta := SessionsMeta{N: h.N, WindowNs: h.WindowNs, Source: h.Source}
	var out []*Session
	for line := 2; ; line++ {
		var js jsonSession
		if err := dec.Decode(&js); err != nil {
			if errors.Is(err, io.EOF) {
				return out, meta, nil
			}
			return nil, meta, fmt.Errorf("lucid: session file line %d: %w", line, err)
		}
		if !js.Lo.IsValid() || !js.Hi.IsValid() {
			return nil, meta, fmt.Errorf("lucid: session file line %d: session without addresses", line)
		}
		s := &Session{Key: ddosfeat.SessionKey{LoAddr: js.Lo, HiAddr: js.Hi, LoPort: js.LoPort, HiPort: js.HiPort, Proto: js.Proto},
			FirstNs: js.FirstNs, LastNs: js.LastNs, Packets: make([]ddosfeat.PacketFeatures, len(js.Packets))}
		for i, jp := range js.Packets {
			proto := jp.Proto
			if proto == 0 {
				proto = js.Proto
			}
			s.Packets[i] = ddosfeat.PacketFeatures{Session: s.Key, TimestampNs: js.FirstNs + jp.T, IPLen: jp.IPLen, IPFlagsFrag: jp.Frag,
				Proto: proto, TCPFlags: jp.TCPFlags, TCPPayloadLen: jp.TCPLen, TCPAck: jp.TCPAck, TCPWindow: jp.TCPWin,
				UDPLen: jp.UDPLen, ICMPType: jp.ICMPType, Dir: ddosfeat.Direction(jp.Dir), FromHi: jp.FromHi}
		}
		out = append(out, s)
	}
}

// SplitHoldout moves a share frac of the samples of each label, drawn
// with a generator seeded by seed, to holdout; both parts keep the
// samples' order.
func SplitHoldout(samples []Sample, frac float64, seed uint64) (train, holdout []Sample) {
	if frac <= 0 {
		return samples, nil
	}
	rng := rand.New(rand.NewPCG(seed, 0x686f6c64))
	out := make([]bool, len(samples))
	for _, label := range []int{0, 1} {
		var idx []int
		for i, s := range samples {
			if s.Label == label {
				idx = append(idx, i)
			}
		}
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		for _, i := range idx[:int(math.Round(frac*float64(len(idx))))] {
			out[i] = true
		}
	}
	for i, s := range samples {
		if out[i] {
			holdout = append(holdout, s)
		} else {
			train = append(train, s)
		}
	}
	return train, holdout
}

// Subsample returns at most n of the samples (all of them when n <= 0),
// a seeded random choice kept in the original order.
func Subsample(samples []Sample, n int, seed uint64) []Sample {
	if n <= 0 || len(samples) <= n {
		return samples
	}
	rng := rand.New(rand.NewPCG(seed, 0x73756273))
	keep := rng.Perm(len(samples))[:n]
	slices.Sort(keep)
	out := make([]Sample, n)
	for i, j := range keep {
		out[i] = samples[j]
	}
	return out
}

// Balance returns samples plus seeded random repeats of the smaller
// class's samples, so that both classes have as many as the larger one.
func Balance(samples []Sample, seed uint64) []Sample {
	var by [2][]int
	for i, s := range samples {
		if s.Label == 0 || s.Label == 1 {
			by[s.Label] = append(by[s.Label], i)
		}
	}
	small, large := by[0], by[1]
	if len(small) > len(large) {
		small, large = large, small
	}
	if len(small) == 0 || len(small) == len(large) {
		return samples
	}
	rng := rand.New(rand.NewPCG(seed, 0x62616c61))
	out := slices.Clip(slices.Clone(samples))
	for range len(large) - len(small) {
		out = append(out, samples[small[rng.IntN(len(small))]])
	}
	return out
}
