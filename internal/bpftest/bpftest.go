// Package bpftest holds helpers for the example probes' tests: skipping when
// the machine cannot load BPF, and building packets by hand for
// BPF_PROG_TEST_RUN.
package bpftest

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

// Require skips the test unless it runs as root and BPF is usable.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: loading BPF programs needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("skipping: cannot lift the memlock limit for BPF maps: %v", err)
	}
}

// CheckLoad fails the test with the verifier log when err is a load error,
// and skips it when the kernel lacks BPF support or denies permission.
func CheckLoad(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, syscall.ENOSYS) {
		t.Skipf("skipping: the kernel does not support what this object needs: %v", err)
	}
	if errors.Is(err, syscall.EPERM) && !isVerifierError(err) {
		t.Skipf("skipping: BPF denied (EPERM; unprivileged container or lockdown?): %v", err)
	}
	// %+v prints the verifier log in full.
	t.Fatalf("loading the object: %+v", err)
}

func isVerifierError(err error) bool {
	var ve *ebpf.VerifierError
	return errors.As(err, &ve)
}

// Ethertypes and IP protocol numbers used by the tests.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeVLAN = 0x8100
	EtherTypeIPv6 = 0x86DD

	ProtoHopByHop = 0
	ProtoICMP     = 1
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoFragment = 44
	ProtoICMPv6   = 58
)

var (
	// SrcMAC and DstMAC are locally administered addresses.
	SrcMAC = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	DstMAC = [6]byte{0x02, 0, 0, 0, 0, 0x02}
)

// Eth prepends an Ethernet header.
func Eth(etherType uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b[0:6], DstMAC[:])
	copy(b[6:12], SrcMAC[:])
	binary.BigEndian.PutUint16(b[12:], etherType)
	return append(b, payload...)
}

// EthVLAN prepends an Ethernet header with one 802.1Q tag.
func EthVLAN(vid uint16, etherType uint16, payload []byte) []byte {
	b := make([]byte, 18, 18+len(payload))
	copy(b[0:6], DstMAC[:])
	copy(b[6:12], SrcMAC[:])
	binary.BigEndian.PutUint16(b[12:], EtherTypeVLAN)
	binary.BigEndian.PutUint16(b[14:], vid&0x0fff)
	binary.BigEndian.PutUint16(b[16:], etherType)
	return append(b, payload...)
}

// IPv4 prepends a 20-byte IPv4 header (TTL 64, DF clear, checksum set).
func IPv4(proto uint8, src, dst netip.Addr, payload []byte) []byte {
	return IPv4Frag(proto, src, dst, 0, false, payload)
}

// IPv4Frag is IPv4 with a fragment offset (in bytes, a multiple of 8) and
// the more-fragments flag.
func IPv4Frag(proto uint8, src, dst netip.Addr, offset uint16, more bool, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(b[4:], 0x1234)
	frag := offset / 8
	if more {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = 64
	b[9] = proto
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	binary.BigEndian.PutUint16(b[10:], Checksum(b))
	return append(b, payload...)
}

// IPv6 prepends a 40-byte IPv6 header.
func IPv6(nextHeader uint8, src, dst netip.Addr, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6] = nextHeader
	b[7] = 64
	s, d := src.As16(), dst.As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	return append(b, payload...)
}

// HopByHop prepends an 8-byte IPv6 hop-by-hop options header (PadN only).
func HopByHop(nextHeader uint8, payload []byte) []byte {
	b := []byte{nextHeader, 0, 1, 4, 0, 0, 0, 0}
	return append(b, payload...)
}

// Fragment prepends an IPv6 fragment header.
func Fragment(nextHeader uint8, offset uint16, more bool, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0] = nextHeader
	fo := offset &^ 7
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(b[2:], fo)
	binary.BigEndian.PutUint32(b[4:], 0xabcd)
	return append(b, payload...)
}

// UDP prepends a UDP header (checksum 0).
func UDP(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

// TCP prepends a 20-byte TCP header with the SYN flag.
func TCP(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 1)
	b[12] = 5 << 4
	b[13] = 0x02
	binary.BigEndian.PutUint16(b[14:], 65535)
	return append(b, payload...)
}

// ICMPEcho is an ICMP (or ICMPv6, with typ 128) echo request.
func ICMPEcho(typ uint8, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], 1)
	binary.BigEndian.PutUint16(b[6:], 1)
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[2:], Checksum(b))
	return b
}

// Checksum is the Internet checksum of b.
func Checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
