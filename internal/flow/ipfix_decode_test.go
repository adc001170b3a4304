package flow

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// A strict IPFIX decoder for the tests: it checks the framing rules of
// RFC 7011 and keeps templates across messages as a collector does.

type decodedSet struct {
	id, length uint16
	padding    int // octets after the last record
}

type decodedRecord struct {
	template uint16
	fields   map[uint16][]byte
}

type decodedMsg struct {
	version, length         uint16
	exportTime, seq, domain uint32
	sets                    []decodedSet
	templates               []uint16 // template ids defined in this message
	records                 []decodedRecord
}

type testDecoder struct {
	templates map[uint16][]ipfixField
}

func newTestDecoder() *testDecoder {
	return &testDecoder{templates: map[uint16][]ipfixField{}}
}

// decodeForTest decodes one message with a fresh decoder.
func decodeForTest(msg []byte) (*decodedMsg, error) { return newTestDecoder().decode(msg) }

func (d *testDecoder) decode(msg []byte) (*decodedMsg, error) {
	be := binary.BigEndian
	if len(msg) < ipfixHeaderLen {
		return nil, fmt.Errorf("short message: %d bytes", len(msg))
	}
	m := &decodedMsg{
		version:    be.Uint16(msg[0:]),
		length:     be.Uint16(msg[2:]),
		exportTime: be.Uint32(msg[4:]),
		seq:        be.Uint32(msg[8:]),
		domain:     be.Uint32(msg[12:]),
	}
	if m.version != 10 {
		return nil, fmt.Errorf("version %d", m.version)
	}
	if int(m.length) != len(msg) {
		return nil, fmt.Errorf("header length %d, message %d bytes", m.length, len(msg))
	}
	rest := msg[ipfixHeaderLen:]
	if len(rest) == 0 {
		return nil, fmt.Errorf("message without sets")
	}
	for len(rest) > 0 {
		if len(rest) < ipfixSetHeaderLen {
			return nil, fmt.Errorf("%d trailing bytes", len(rest))
		}
		id, l := be.Uint16(rest[0:]), be.Uint16(rest[2:])
		if int(l) < ipfixSetHeaderLen || int(l) > len(rest) {
			return nil, fmt.Errorf("set %d: length %d, %d bytes left", id, l, len(rest))
		}
		body := rest[ipfixSetHeaderLen:l]
		rest = rest[l:]
		set := decodedSet{id: id, length: l}
		switch {
		case id == ipfixTemplateSetID:
			for len(body) >= 4 {
				tid, n := be.Uint16(body[0:]), int(be.Uint16(body[2:]))
				if tid < 256 {
					return nil, fmt.Errorf("template id %d", tid)
				}
				if n == 0 {
					return nil, fmt.Errorf("template withdrawal %d", tid)
				}
				if len(body) < 4+4*n {
					return nil, fmt.Errorf("template %d: %d fields, %d bytes", tid, n, len(body))
				}
				var fs []ipfixField
				for i := range n {
					fid, fl := be.Uint16(body[4+4*i:]), be.Uint16(body[6+4*i:])
					if fid&0x8000 != 0 {
						return nil, fmt.Errorf("template %d: enterprise element", tid)
					}
					if fl == 0xffff || fl == 0 {
						return nil, fmt.Errorf("template %d: field %d length %d", tid, fid, fl)
					}
					fs = append(fs, ipfixField{fid, fl})
				}
				d.templates[tid] = fs
				m.templates = append(m.templates, tid)
				body = body[4+4*n:]
			}
			set.padding = len(body)
		case id >= 256:
			fs, ok := d.templates[id]
			if !ok {
				return nil, fmt.Errorf("data set %d without template", id)
			}
			rl := fieldsLen(fs)
			for len(body) >= rl {
				r := decodedRecord{template: id, fields: map[uint16][]byte{}}
				off := 0
				for _, f := range fs {
					r.fields[f.id] = body[off : off+int(f.length)]
					off += int(f.length)
				}
				m.records = append(m.records, r)
				body = body[rl:]
			}
			set.padding = len(body)
		default:
			return nil, fmt.Errorf("unexpected set id %d", id)
		}
		for _, c := range msg[len(msg)-len(rest)-set.padding : len(msg)-len(rest)] {
			if c != 0 {
				return nil, fmt.Errorf("set %d: non-zero padding", id)
			}
		}
		m.sets = append(m.sets, set)
	}
	return m, nil
}

func (r decodedRecord) uint(id uint16) uint64 {
	var v uint64
	for _, c := range r.fields[id] {
		v = v<<8 | uint64(c)
	}
	return v
}

func (r decodedRecord) addr(id uint16) netip.Addr {
	a, _ := netip.AddrFromSlice(r.fields[id])
	return a
}

// flow converts a decoded record back to a Flow, checking that the
// interface not matching the direction is 0.
func (r decodedRecord) flow() (Flow, error) {
	f := Flow{
		SrcPort:   uint16(r.uint(ieSourceTransportPort)),
		DstPort:   uint16(r.uint(ieDestinationTransportPort)),
		Proto:     uint8(r.uint(ieProtocolIdentifier)),
		TOS:       uint8(r.uint(ieIPClassOfService)),
		TCPFlags:  uint8(r.uint(ieTCPControlBits)),
		Direction: Direction(r.uint(ieFlowDirection)),
		Packets:   r.uint(iePacketDeltaCount),
		Bytes:     r.uint(ieOctetDeltaCount),
		EndReason: EndReason(r.uint(ieFlowEndReason)),
	}
	if ms := r.uint(ieFlowStartMilliseconds); ms != 0 {
		f.First = time.UnixMilli(int64(ms))
	}
	if ms := r.uint(ieFlowEndMilliseconds); ms != 0 {
		f.Last = time.UnixMilli(int64(ms))
	}
	switch r.template {
	case TemplateIPv4:
		f.Src, f.Dst = r.addr(ieSourceIPv4Address), r.addr(ieDestinationIPv4Address)
	case TemplateIPv6:
		f.Src, f.Dst = r.addr(ieSourceIPv6Address), r.addr(ieDestinationIPv6Address)
	}
	in, out := uint32(r.uint(ieIngressInterface)), uint32(r.uint(ieEgressInterface))
	if f.Direction == Egress {
		f.Ifindex = out
		if in != 0 {
			return f, fmt.Errorf("egress record with ingressInterface %d", in)
		}
	} else {
		f.Ifindex = in
		if out != 0 {
			return f, fmt.Errorf("ingress record with egressInterface %d", out)
		}
	}
	if flags := r.uint(ieTCPControlBits); flags > 0xff {
		return f, fmt.Errorf("tcpControlBits %#x", flags)
	}
	return f, nil
}
