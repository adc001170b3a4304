// Package flow holds flow records as the agent exports them (JSON events,
// OpenMetrics summaries, IPFIX) and the exporters.
package flow

import (
	"net/netip"
	"time"
)

// Direction is where the flowmon program saw the packets.
type Direction uint8

const (
	Ingress Direction = 0
	Egress  Direction = 1
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// EndReason says why a record was exported (IPFIX flowEndReason values).
type EndReason uint8

const (
	IdleTimeout   EndReason = 1
	ActiveTimeout EndReason = 2
	EndOfFlow     EndReason = 3 // TCP FIN or RST seen
	ForcedEnd     EndReason = 4 // agent shutdown or probe unload
	LackOfRes     EndReason = 5 // evicted
)

// Flow is one unidirectional flow record. Packets and Bytes are deltas since
// the previous record of the same flow (IPFIX packetDeltaCount and
// octetDeltaCount); First and Last are wall-clock times of the first and
// last packet counted in this record.
type Flow struct {
	Src       netip.Addr `json:"src"` // both IPv4 or both IPv6 (never 4-in-6 mapped)
	Dst       netip.Addr `json:"dst"`
	SrcPort   uint16     `json:"src_port"` // 0 for protocols without ports
	DstPort   uint16     `json:"dst_port"` // ICMP: type<<8|code
	Proto     uint8      `json:"proto"`
	TOS       uint8      `json:"tos"`       // IPv4 TOS / IPv6 traffic class byte
	TCPFlags  uint8      `json:"tcp_flags"` // OR of the flags seen
	Ifindex   uint32     `json:"ifindex"`   // interface the probe is attached to
	Direction Direction  `json:"direction"`
	First     time.Time  `json:"first"`
	Last      time.Time  `json:"last"`
	Packets   uint64     `json:"packets"`
	Bytes     uint64     `json:"bytes"`
	EndReason EndReason  `json:"end_reason,omitempty"`
}

func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

var reasons = map[EndReason]string{IdleTimeout: "idle", ActiveTimeout: "active", EndOfFlow: "end", ForcedEnd: "forced", LackOfRes: "evicted"}

func (r EndReason) String() string { return reasons[r] }

func (r EndReason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }
