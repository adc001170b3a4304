package flow

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// IPFIX (RFC 7011) encoding of flow records with standard information
// elements from the IANA registry.

const (
	ipfixVersion       = 10
	ipfixHeaderLen     = 16
	ipfixSetHeaderLen  = 4
	ipfixTemplateSetID = 2

	// TemplateIPv4 and TemplateIPv6 are the template ids of the two record
	// layouts the encoder sends.
	TemplateIPv4 uint16 = 256
	TemplateIPv6 uint16 = 257

	// DefaultMTU is the default maximum size of one IPFIX message (the UDP
	// payload) in bytes.
	DefaultMTU = 1400
	// DefaultTemplateRefreshMessages and DefaultTemplateRefreshInterval say
	// how often templates are re-sent by default (RFC 7011 section 8.4:
	// over UDP they must be re-sent periodically).
	DefaultTemplateRefreshMessages = 20
	DefaultTemplateRefreshInterval = 60 * time.Second

	maxIPFIXMessage = 65535 // the header's length field is 16 bits
)

// IANA information element ids used in the templates.
const (
	ieOctetDeltaCount          = 1
	iePacketDeltaCount         = 2
	ieProtocolIdentifier       = 4
	ieIPClassOfService         = 5
	ieTCPControlBits           = 6
	ieSourceTransportPort      = 7
	ieSourceIPv4Address        = 8
	ieIngressInterface         = 10
	ieDestinationTransportPort = 11
	ieDestinationIPv4Address   = 12
	ieEgressInterface          = 14
	ieSourceIPv6Address        = 27
	ieDestinationIPv6Address   = 28
	ieICMPTypeCodeIPv4         = 32
	ieFlowDirection            = 61
	ieICMPTypeCodeIPv6         = 139
	ieFlowEndReason            = 136
	ieFlowStartMilliseconds    = 152
	ieFlowEndMilliseconds      = 153
)

const (
	protoICMP   = 1
	protoICMPv6 = 58
)

// ipfixField is one field specifier of a template: element id and length.
type ipfixField struct {
	id, length uint16
}

// The record layouts. Fields are ordered by size so that every field of a
// record lies on its natural alignment; writeRecord must follow this order.
var (
	ipfixFieldsV4 = []ipfixField{
		{ieOctetDeltaCount, 8},
		{iePacketDeltaCount, 8},
		{ieFlowStartMilliseconds, 8},
		{ieFlowEndMilliseconds, 8},
		{ieSourceIPv4Address, 4},
		{ieDestinationIPv4Address, 4},
		{ieIngressInterface, 4},
		{ieEgressInterface, 4},
		{ieSourceTransportPort, 2},
		{ieDestinationTransportPort, 2},
		{ieTCPControlBits, 2}, // RFC 7125: two octets
		{ieICMPTypeCodeIPv4, 2},
		{ieProtocolIdentifier, 1},
		{ieIPClassOfService, 1},
		{ieFlowDirection, 1},
		{ieFlowEndReason, 1},
	}
	ipfixFieldsV6 = []ipfixField{
		{ieOctetDeltaCount, 8},
		{iePacketDeltaCount, 8},
		{ieFlowStartMilliseconds, 8},
		{ieFlowEndMilliseconds, 8},
		{ieSourceIPv6Address, 16},
		{ieDestinationIPv6Address, 16},
		{ieIngressInterface, 4},
		{ieEgressInterface, 4},
		{ieSourceTransportPort, 2},
		{ieDestinationTransportPort, 2},
		{ieTCPControlBits, 2},
		{ieICMPTypeCodeIPv6, 2},
		{ieProtocolIdentifier, 1},
		{ieIPClassOfService, 1},
		{ieFlowDirection, 1},
		{ieFlowEndReason, 1},
	}

	ipfixRecordLenV4 = fieldsLen(ipfixFieldsV4) // 60
	ipfixRecordLenV6 = fieldsLen(ipfixFieldsV6) // 84

	// ipfixTemplateSet is the Template Set announcing both templates; it is
	// the same in every message that carries templates.
	ipfixTemplateSet = buildTemplateSet()
)

func fieldsLen(fs []ipfixField) int {
	n := 0
	for _, f := range fs {
		n += int(f.length)
	}
	return n
}

func buildTemplateSet() []byte {
	b := make([]byte, ipfixSetHeaderLen, 256)
	for _, t := range []struct {
		id     uint16
		fields []ipfixField
	}{{TemplateIPv4, ipfixFieldsV4}, {TemplateIPv6, ipfixFieldsV6}} {
		b = binary.BigEndian.AppendUint16(b, t.id)
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.fields)))
		for _, f := range t.fields {
			// Enterprise bit clear: IANA elements only.
			b = binary.BigEndian.AppendUint16(b, f.id)
			b = binary.BigEndian.AppendUint16(b, f.length)
		}
	}
	b = append(b, make([]byte, ipfixPad(len(b)))...)
	binary.BigEndian.PutUint16(b[0:], ipfixTemplateSetID)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// ipfixPad is the number of zero octets appended to a set of n octets so
// that the next set starts on a 4-octet boundary (RFC 7011 section 3.3.1).
// Padding is always shorter than 4 octets and so shorter than any record.
func ipfixPad(n int) int { return (4 - n%4) % 4 }

// ipfixSetLen is the length on the wire (header, records and padding) of a
// data set holding n records of recLen octets; 0 when n is 0 (no set).
func ipfixSetLen(n, recLen int) int {
	if n == 0 {
		return 0
	}
	l := ipfixSetHeaderLen + n*recLen
	return l + ipfixPad(l)
}

// ErrInvalidFlow is wrapped by the error Encode returns for records it
// skipped.
var ErrInvalidFlow = errors.New("invalid flow record")

// Encoder turns flow records into IPFIX messages for one observation domain.
// It keeps the per-domain state a collector relies on: the sequence number
// (data records sent so far) and when templates were last sent.
//
// Set the exported fields before the first Encode. An Encoder is not safe
// for concurrent use.
type Encoder struct {
	// MTU is the largest message in bytes (the UDP payload, not counting
	// IP and UDP headers). 0 means DefaultMTU. It must leave room for the
	// header, the templates and one IPv6 record (244 bytes) and be at most
	// 65535.
	MTU int
	// TemplateRefreshMessages: templates are re-sent in every Nth message.
	// 0 means DefaultTemplateRefreshMessages, negative never.
	TemplateRefreshMessages int
	// TemplateRefreshInterval: templates are re-sent in the first message
	// encoded this long after they were last sent. 0 means
	// DefaultTemplateRefreshInterval, negative never.
	TemplateRefreshInterval time.Duration

	domain           uint32
	seq              uint32    // data records encoded so far, mod 2^32
	templatesSent    bool      // templates have been sent at least once
	msgsSinceTmpl    int       // messages since the last one with templates, counting it
	lastTemplateTime time.Time // export time of the last message with templates
}

// NewEncoder returns an encoder for the given observation domain id with the
// default MTU and template refresh.
func NewEncoder(observationDomain uint32) *Encoder {
	return &Encoder{domain: observationDomain}
}

// ObservationDomain returns the observation domain id of the messages.
func (e *Encoder) ObservationDomain() uint32 { return e.domain }

// Sequence returns the sequence number the next message will carry: the
// number of data records encoded so far (mod 2^32).
func (e *Encoder) Sequence() uint32 { return e.seq }

// ResendTemplates makes the next message carry the templates, e.g. after a
// message could not be sent.
func (e *Encoder) ResendTemplates() { e.templatesSent = false }

func (e *Encoder) mtu() int {
	if e.MTU == 0 {
		return DefaultMTU
	}
	return e.MTU
}

// minMTU is the smallest message size that can carry the templates and one
// record of either family.
func minMTU() int {
	return ipfixHeaderLen + len(ipfixTemplateSet) + max(ipfixSetLen(1, ipfixRecordLenV4), ipfixSetLen(1, ipfixRecordLenV6))
}

func (e *Encoder) templatesDue(now time.Time) bool {
	if !e.templatesSent {
		return true
	}
	n := e.TemplateRefreshMessages
	if n == 0 {
		n = DefaultTemplateRefreshMessages
	}
	if n > 0 && e.msgsSinceTmpl >= n {
		return true
	}
	d := e.TemplateRefreshInterval
	if d == 0 {
		d = DefaultTemplateRefreshInterval
	}
	return d > 0 && now.Sub(e.lastTemplateTime) >= d
}

// ipfixMessage is one encoded message and the number of data records in it.
type ipfixMessage struct {
	data    []byte
	records int
}

// Encode encodes flows as IPFIX messages of at most MTU bytes each, with the
// export time now. Templates are included in the first message ever encoded
// and again whenever the refresh count or interval is reached. Records of
// both families can share a message (one data set each).
//
// A record whose addresses are not both IPv4 or both IPv6 is skipped; the
// other records are still encoded and returned together with an error
// wrapping ErrInvalidFlow. Any other error means nothing was encoded.
func (e *Encoder) Encode(now time.Time, flows []Flow) ([][]byte, error) {
	msgs, err := e.encode(now, flows)
	if len(msgs) == 0 {
		return nil, err
	}
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = m.data
	}
	return out, err
}

func (e *Encoder) encode(now time.Time, flows []Flow) ([]ipfixMessage, error) {
	mtu := e.mtu()
	if mtu < minMTU() || mtu > maxIPFIXMessage {
		return nil, fmt.Errorf("ipfix: MTU %d out of range [%d, %d]", mtu, minMTU(), maxIPFIXMessage)
	}
	var (
		msgs     []ipfixMessage
		v4, v6   []*Flow // records of the message being filled
		tmpl     = e.templatesDue(now)
		invalid  int
		firstBad error
	)
	size := func(n4, n6 int) int {
		s := ipfixHeaderLen + ipfixSetLen(n4, ipfixRecordLenV4) + ipfixSetLen(n6, ipfixRecordLenV6)
		if tmpl {
			s += len(ipfixTemplateSet)
		}
		return s
	}
	flush := func() {
		msgs = append(msgs, e.message(now, tmpl, v4, v6, size(len(v4), len(v6))))
		v4, v6 = v4[:0], v6[:0]
		tmpl = e.templatesDue(now)
	}
	for i := range flows {
		f := &flows[i]
		src, dst := f.Src.Unmap(), f.Dst.Unmap()
		is4 := src.Is4() && dst.Is4()
		if !is4 && !(src.Is6() && dst.Is6()) {
			invalid++
			if firstBad == nil {
				firstBad = fmt.Errorf("%w: record %d: addresses %v -> %v", ErrInvalidFlow, i, f.Src, f.Dst)
			}
			continue
		}
		n4, n6 := len(v4), len(v6)
		if is4 {
			n4++
		} else {
			n6++
		}
		if size(n4, n6) > mtu {
			flush()
		}
		if is4 {
			v4 = append(v4, f)
		} else {
			v6 = append(v6, f)
		}
	}
	if len(v4)+len(v6) > 0 {
		flush()
	}
	if invalid > 0 {
		return msgs, fmt.Errorf("ipfix: skipped %d record(s): %w", invalid, firstBad)
	}
	return msgs, nil
}

// message builds one message and advances the domain state.
func (e *Encoder) message(now time.Time, tmpl bool, v4, v6 []*Flow, length int) ipfixMessage {
	b := make([]byte, ipfixHeaderLen, length)
	binary.BigEndian.PutUint16(b[0:], ipfixVersion)
	binary.BigEndian.PutUint16(b[2:], uint16(length))
	binary.BigEndian.PutUint32(b[4:], exportSeconds(now))
	binary.BigEndian.PutUint32(b[8:], e.seq)
	binary.BigEndian.PutUint32(b[12:], e.domain)
	if tmpl {
		b = append(b, ipfixTemplateSet...)
	}
	b = appendDataSet(b, TemplateIPv4, ipfixRecordLenV4, v4)
	b = appendDataSet(b, TemplateIPv6, ipfixRecordLenV6, v6)
	if len(b) != length {
		panic(fmt.Sprintf("ipfix: built %d bytes, computed %d", len(b), length))
	}

	n := len(v4) + len(v6)
	e.seq += uint32(n)
	if tmpl {
		e.templatesSent = true
		e.msgsSinceTmpl = 1
		e.lastTemplateTime = now
	} else {
		e.msgsSinceTmpl++
	}
	return ipfixMessage{data: b, records: n}
}

// exportSeconds is the header's export time: seconds since the Unix epoch,
// clamped to the 32-bit field.
func exportSeconds(t time.Time) uint32 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	if s > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(s)
}

// unixMillis is a dateTimeMilliseconds value; the zero time (unknown) and
// times before the epoch are encoded as 0.
func unixMillis(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms)
}

func appendDataSet(b []byte, id uint16, recLen int, flows []*Flow) []byte {
	if len(flows) == 0 {
		return b
	}
	l := ipfixSetLen(len(flows), recLen)
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, uint16(l))
	for _, f := range flows {
		b = appendRecord(b, f)
	}
	return append(b, make([]byte, ipfixPad(ipfixSetHeaderLen+len(flows)*recLen))...)
}

// appendRecord appends f in the layout of ipfixFieldsV4 or ipfixFieldsV6
// (by the family of its addresses, which encode has checked).
func appendRecord(b []byte, f *Flow) []byte {
	be := binary.BigEndian
	src, dst := f.Src.Unmap(), f.Dst.Unmap()
	v4 := src.Is4()

	b = be.AppendUint64(b, f.Bytes)
	b = be.AppendUint64(b, f.Packets)
	b = be.AppendUint64(b, unixMillis(f.First))
	b = be.AppendUint64(b, unixMillis(f.Last))
	b = append(b, src.AsSlice()...)
	b = append(b, dst.AsSlice()...)
	var in, out uint32
	if f.Direction == Egress {
		out = f.Ifindex
	} else {
		in = f.Ifindex
	}
	b = be.AppendUint32(b, in)
	b = be.AppendUint32(b, out)
	b = be.AppendUint16(b, f.SrcPort)
	b = be.AppendUint16(b, f.DstPort)
	b = be.AppendUint16(b, uint16(f.TCPFlags))
	var icmp uint16
	if (v4 && f.Proto == protoICMP) || (!v4 && f.Proto == protoICMPv6) {
		icmp = f.DstPort
	}
	b = be.AppendUint16(b, icmp)
	b = append(b, f.Proto, f.TOS)
	dir := uint8(0)
	if f.Direction == Egress {
		dir = 1
	}
	b = append(b, dir, uint8(f.EndReason))
	return b
}
