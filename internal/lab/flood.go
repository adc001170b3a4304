package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Flood is a packet flood a host sends through a packet socket: every
// frame is built here, so sources may be spoofed and IPv6 works (hping3
// has no IPv6). Checksums are right: the server's stack treats the packets
// as real.
type Flood struct {
	Iface          string // the sending host's interface
	SrcMAC, DstMAC net.HardwareAddr
	Dst            netip.Addr
	// Src: each packet's source is drawn at random from it (a full-length
	// prefix is one source).
	Src netip.Prefix
	// Kind is syn (TCP SYN to Port), udp (to Port, Size bytes of data) or
	// icmp (echo requests).
	Kind string
	Port uint16
	Size int
	// Rate in packets/s; 0 sends as fast as the socket takes them.
	Rate int
	Seed uint64
}

// Flood sends f from h until ctx ends and returns how many frames went out.
func (h *Host) Flood(ctx context.Context, f Flood) (uint64, error) {
	if !f.Src.IsValid() || !f.Dst.IsValid() || f.Src.Addr().Is4() != f.Dst.Is4() {
		return 0, errors.New("lab: flood: source prefix and destination of one family")
	}
	var sent uint64
	err := h.Do(func() error {
		ifc, err := net.InterfaceByName(f.Iface)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return fmt.Errorf("lab: flood: packet socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifc.Index}); err != nil {
			return fmt.Errorf("lab: flood: bind: %w", err)
		}
		rng := rand.New(rand.NewPCG(f.Seed, 0x7a6d))
		var gap time.Duration
		if f.Rate > 0 {
			gap = time.Second / time.Duration(f.Rate)
		}
		next := time.Now()
		for i := 0; ; i++ {
			if i%256 == 0 && ctx.Err() != nil {
				return nil
			}
			frame := f.frame(rng)
			if _, err := unix.Write(fd, frame); err != nil && !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.EAGAIN) {
				return fmt.Errorf("lab: flood: send: %w", err)
			} else if err == nil {
				sent++
			}
			if gap > 0 {
				next = next.Add(gap)
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
			}
		}
	})
	return sent, err
}

// randomIn draws an address from p.
func randomIn(p netip.Prefix, rng *rand.Rand) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if rng.IntN(2) == 1 {
			b[i/8] |= 0x80 >> (i % 8)
		} else {
			b[i/8] &^= 0x80 >> (i % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func csumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// frame builds one frame of the flood.
func (f Flood) frame(rng *rand.Rand) []byte {
	src := randomIn(f.Src, rng)
	var l4 []byte
	var proto uint8
	switch f.Kind {
	case "syn":
		proto = 6
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], uint16(1024+rng.IntN(64000)))
		binary.BigEndian.PutUint16(l4[2:], f.Port)
		binary.BigEndian.PutUint32(l4[4:], rng.Uint32())
		l4[12] = 5 << 4
		l4[13] = 0x02
		binary.BigEndian.PutUint16(l4[14:], 64240)
	case "udp":
		proto = 17
		l4 = make([]byte, 8+f.Size)
		binary.BigEndian.PutUint16(l4[0:], uint16(1024+rng.IntN(64000)))
		binary.BigEndian.PutUint16(l4[2:], f.Port)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	default: // icmp echo
		proto, l4 = 1, make([]byte, 8+f.Size)
		l4[0] = 8
		if src.Is6() {
			proto, l4[0] = 58, 128
		}
		binary.BigEndian.PutUint16(l4[4:], uint16(rng.Uint32()))
	}
	// The L4 checksum: IPv4 ICMP has no pseudo-header.
	var sum uint32
	if !(proto == 1) {
		sum = csumAdd(sum, src.AsSlice())
		sum = csumAdd(sum, f.Dst.AsSlice())
		sum += uint32(proto) + uint32(len(l4))
	}
	sum = csumAdd(sum, l4)
	ck := csumFold(sum)
	switch proto {
	case 6:
		binary.BigEndian.PutUint16(l4[16:], ck)
	case 17:
		if ck == 0 {
			ck = 0xffff
		}
		binary.BigEndian.PutUint16(l4[6:], ck)
	default:
		binary.BigEndian.PutUint16(l4[2:], ck)
	}
	eth := make([]byte, 14, 14+40+len(l4))
	copy(eth[0:], f.DstMAC)
	copy(eth[6:], f.SrcMAC)
	if src.Is4() {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		binary.BigEndian.PutUint16(ip[4:], uint16(rng.Uint32()))
		ip[8], ip[9] = 64, proto
		s4, d4 := src.As4(), f.Dst.As4()
		copy(ip[12:], s4[:])
		copy(ip[16:], d4[:])
		binary.BigEndian.PutUint16(ip[10:], csumFold(csumAdd(0, ip)))
		return append(append(eth, ip...), l4...)
	}
	binary.BigEndian.PutUint16(eth[12:], 0x86DD)
	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
	ip[6], ip[7] = proto, 64
	s16, d16 := src.As16(), f.Dst.As16()
	copy(ip[8:], s16[:])
	copy(ip[24:], d16[:])
	return append(append(eth, ip...), l4...)
}
