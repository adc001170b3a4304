package cryptofeat

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// This file holds the test helpers: skipping without root, loading, and
// hand-built frames for BPF_PROG_TEST_RUN.

// tcActUnspec is TC_ACT_UNSPEC (-1) as BPF_PROG_TEST_RUN reports it.
const tcActUnspec = ^uint32(0)

func requireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: loading BPF programs needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("skipping: cannot lift the memlock limit for BPF maps: %v", err)
	}
}

func checkLoad(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var ve *ebpf.VerifierError
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, syscall.ENOSYS) {
		t.Skipf("skipping: the kernel does not support what this object needs: %v", err)
	}
	if errors.Is(err, syscall.EPERM) && !errors.As(err, &ve) {
		t.Skipf("skipping: BPF denied (EPERM; unprivileged container or lockdown?): %v", err)
	}
	t.Fatalf("loading the object: %+v", err) // %+v: the whole verifier log
}

// load loads the object with the given load-time constants, after tweak
// (which may change map sizes) ran on the spec.
func load(t testing.TB, params map[string]any, tweak func(*ebpf.CollectionSpec)) *cryptoFeatObjects {
	t.Helper()
	requireBPF(t)
	spec, err := loadCryptoFeat()
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range params {
		vs, ok := spec.Variables[name]
		if !ok {
			t.Fatalf("the object has no variable %q", name)
		}
		if err := vs.Set(v); err != nil {
			t.Fatalf("setting %s: %v", name, err)
		}
	}
	if tweak != nil {
		tweak(spec)
	}
	var objs cryptoFeatObjects
	checkLoad(t, spec.LoadAndAssign(&objs, nil))
	t.Cleanup(func() { objs.Close() })
	return &objs
}

const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806
	etherVLAN = 0x8100
	etherQinQ = 0x88A8
	etherIPv6 = 0x86DD

	protoHop     = 0
	protoICMP    = 1
	protoTCP     = 6
	protoUDP     = 17
	protoRouting = 43
	protoFrag    = 44
	protoGRE     = 47
	protoAH      = 51
	protoICMPv6  = 58
	protoDest    = 60
)

func eth(etherType uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b[0:6], []byte{0x02, 0, 0, 0, 0, 0x02})
	copy(b[6:12], []byte{0x02, 0, 0, 0, 0, 0x01})
	binary.BigEndian.PutUint16(b[12:], etherType)
	return append(b, payload...)
}

// vlan prepends one VLAN tag (TCI 100) to payload whose ethertype is inner;
// the result's ethertype is outer.
func vlanTags(etherType uint16, n int, payload []byte) []byte {
	b := payload
	for range n {
		tag := []byte{0, 100, byte(etherType >> 8), byte(etherType)}
		b = append(tag, b...)
		etherType = etherVLAN
	}
	return eth(etherType, b)
}

// v4 describes an IPv4 header.
type v4 struct {
	proto    uint8
	src, dst netip.Addr
	df, mf   bool
	fragOff  uint16 // bytes, a multiple of 8
	options  []byte // a multiple of 4 bytes
}

func (h v4) packet(payload []byte) []byte {
	hl := 20 + len(h.options)
	b := make([]byte, hl, hl+len(payload))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(payload)))
	binary.BigEndian.PutUint16(b[4:], 0x4242)
	ff := h.fragOff / 8
	if h.df {
		ff |= 0x4000
	}
	if h.mf {
		ff |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], ff)
	b[8] = 64
	b[9] = h.proto
	s, d := h.src.As4(), h.dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], h.options)
	return append(b, payload...)
}

func ipv4(proto uint8, src, dst netip.Addr, payload []byte) []byte {
	return v4{proto: proto, src: src, dst: dst}.packet(payload)
}

func ipv6(nextHeader uint8, src, dst netip.Addr, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = nextHeader
	b[7] = 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(b, payload...)
}

// hopByHop is an 8-byte IPv6 hop-by-hop options header (PadN); the
// destination options and (type 0, no addresses) routing headers have
// the same shape.
func hopByHop(nextHeader uint8, payload []byte) []byte {
	return append([]byte{nextHeader, 0, 1, 4, 0, 0, 0, 0}, payload...)
}

// ah is an IPv6 authentication header with a 12-byte ICV (24 bytes).
func ah(nextHeader uint8, payload []byte) []byte {
	b := make([]byte, 24, 24+len(payload))
	b[0] = nextHeader
	b[1] = 24/4 - 2
	binary.BigEndian.PutUint32(b[4:], 0x100) // SPI
	binary.BigEndian.PutUint32(b[8:], 1)     // sequence number
	return append(b, payload...)
}

// frag6 is an IPv6 fragment header; offset in bytes.
func frag6(nextHeader uint8, offset uint16, more bool, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0] = nextHeader
	fo := offset &^ 7
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(b[2:], fo)
	binary.BigEndian.PutUint32(b[4:], 0x1234)
	return append(b, payload...)
}

// seg describes a TCP segment.
type seg struct {
	sport, dport uint16
	flags        uint8
	seq, ack     uint32
	window       uint16
	payload      int
	optWords     int // 32-bit words of options (NOPs)
}

const (
	fin = 0x01
	syn = 0x02
	rst = 0x04
	psh = 0x08
	ack = 0x10
)

func (s seg) bytes() []byte {
	hl := 20 + 4*s.optWords
	b := make([]byte, hl+s.payload)
	binary.BigEndian.PutUint16(b[0:], s.sport)
	binary.BigEndian.PutUint16(b[2:], s.dport)
	binary.BigEndian.PutUint32(b[4:], s.seq)
	binary.BigEndian.PutUint32(b[8:], s.ack)
	b[12] = byte(hl/4) << 4
	b[13] = s.flags
	binary.BigEndian.PutUint16(b[14:], s.window)
	for i := 20; i < hl; i++ {
		b[i] = 1 // NOP
	}
	for i := hl; i < len(b); i++ {
		b[i] = byte(i)
	}
	return b
}

func udp(sport, dport uint16, payload int) []byte {
	b := make([]byte, 8+payload)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+payload))
	return b
}

func icmp(typ uint8, payload int) []byte {
	b := make([]byte, 8+payload)
	b[0] = typ
	return b
}
