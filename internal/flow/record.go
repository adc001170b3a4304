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
	Src, Dst         netip.Addr // both IPv4 or both IPv6 (never 4-in-6 mapped)
	SrcPort, DstPort uint16     // 0 for protocols without ports; ICMP: type<<8|code in DstPort
	Proto            uint8
	TOS              uint8  // IPv4 TOS / IPv6 traffic class byte
	TCPFlags         uint8  // OR of the flags seen
	Ifindex          uint32 // interface the probe is attached to
	Direction        Direction
	First, Last      time.Time
	Packets, Bytes   uint64
	EndReason        EndReason
}
