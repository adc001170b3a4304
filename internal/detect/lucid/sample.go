package lucid

import (
	"slices"

	"github.com/rampart-shield/rampart/probes/ddosfeat"
)

// Sample is one labelled session: Packets holds the n x F feature matrix
// of its first n packets (FromPackets), Label is 1 for an attack and 0
// for benign traffic.
type Sample struct {
	Key     string
	Packets [][]float32
	Label   int
}

// Feature indices of a packet row, in the order of FeatureNames.
const (
	FeatTimestamp     = iota // seconds since the session's first packet
	FeatIPLen                // IPv4 total length, or 40 + the IPv6 payload length
	FeatIPDF                 // IP "don't fragment" flag (0/1)
	FeatIPMF                 // IP "more fragments" flag (0/1)
	FeatFragOffset           // fragment offset in bytes
	FeatProtoTCP             // protocol is TCP (0/1)
	FeatProtoUDP             // protocol is UDP (0/1)
	FeatProtoICMP            // protocol is ICMP or ICMPv6 (0/1)
	FeatProtoOther           // any other protocol (0/1)
	FeatTCPLen               // TCP payload length
	FeatTCPAckNonzero        // TCP acknowledgement field is nonzero (0/1)
	FeatTCPSYN               // TCP SYN flag (0/1)
	FeatTCPACK               // TCP ACK flag (0/1)
	FeatTCPFIN               // TCP FIN flag (0/1)
	FeatTCPRST               // TCP RST flag (0/1)
	FeatTCPPSH               // TCP PSH flag (0/1)
	FeatTCPURG               // TCP URG flag (0/1)
	FeatTCPWindow            // TCP window field
	FeatUDPLen               // UDP length field (header and data)
	FeatICMPType             // ICMP / ICMPv6 type
	FeatReverse              // sent by the side that did not send the first packet (0/1)

	// NumFeatures is F, the number of features per packet.
	NumFeatures
)

// FeatureNames names the columns of a packet row (index FeatTimestamp ...
// FeatReverse). Models trained on FromPackets rows use these names.
var FeatureNames = []string{
	"timestamp",
	"ip_len",
	"ip_df",
	"ip_mf",
	"ip_frag_offset",
	"proto_tcp",
	"proto_udp",
	"proto_icmp",
	"proto_other",
	"tcp_len",
	"tcp_ack_nonzero",
	"tcp_syn",
	"tcp_ack",
	"tcp_fin",
	"tcp_rst",
	"tcp_psh",
	"tcp_urg",
	"tcp_window",
	"udp_len",
	"icmp_type",
	"reverse",
}

// TCP flag bits of PacketFeatures.TCPFlags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpURG = 0x20
)

// IP protocol numbers.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// FromPackets turns the first n packets of one session, ordered by
// TimestampNs, into an n x NumFeatures matrix of raw (unnormalised)
// features; rows past the session's last packet are zero. pkts need not
// be sorted (a sorted copy is made when they are not); it is not
// modified. The timestamp feature is relative to the session's first
// packet, and the direction feature compares each packet's FromHi with
// the first packet's.
func FromPackets(pkts []ddosfeat.PacketFeatures, n int) [][]float32 {
	if n < 0 {
		n = 0
	}
	if !slices.IsSortedFunc(pkts, byTime) {
		pkts = slices.Clone(pkts)
		slices.SortStableFunc(pkts, byTime)
	}
	flat := make([]float32, n*NumFeatures)
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = flat[i*NumFeatures : (i+1)*NumFeatures : (i+1)*NumFeatures]
	}
	for i := 0; i < n && i < len(pkts); i++ {
		packetRow(rows[i], &pkts[i], &pkts[0])
	}
	return rows
}

func byTime(a, b ddosfeat.PacketFeatures) int {
	switch {
	case a.TimestampNs < b.TimestampNs:
		return -1
	case a.TimestampNs > b.TimestampNs:
		return 1
	}
	return 0
}

// packetRow fills row (len NumFeatures, zeroed) with p's features; first
// is the session's first packet.
func packetRow(row []float32, p, first *ddosfeat.PacketFeatures) {
	row[FeatTimestamp] = float32(float64(p.TimestampNs-first.TimestampNs) / 1e9)
	row[FeatIPLen] = float32(p.IPLen)
	row[FeatIPDF] = bit(p.IPFlagsFrag&ddosfeat.FlagDF != 0)
	row[FeatIPMF] = bit(p.IPFlagsFrag&ddosfeat.FlagMF != 0)
	row[FeatFragOffset] = float32(p.FragOffset())
	switch p.Proto {
	case protoTCP:
		row[FeatProtoTCP] = 1
		row[FeatTCPLen] = float32(p.TCPPayloadLen)
		row[FeatTCPAckNonzero] = bit(p.TCPAck != 0)
		row[FeatTCPSYN] = bit(p.TCPFlags&tcpSYN != 0)
		row[FeatTCPACK] = bit(p.TCPFlags&tcpACK != 0)
		row[FeatTCPFIN] = bit(p.TCPFlags&tcpFIN != 0)
		row[FeatTCPRST] = bit(p.TCPFlags&tcpRST != 0)
		row[FeatTCPPSH] = bit(p.TCPFlags&tcpPSH != 0)
		row[FeatTCPURG] = bit(p.TCPFlags&tcpURG != 0)
		row[FeatTCPWindow] = float32(p.TCPWindow)
	case protoUDP:
		row[FeatProtoUDP] = 1
		row[FeatUDPLen] = float32(p.UDPLen)
	case protoICMP, protoICMPv6:
		row[FeatProtoICMP] = 1
		row[FeatICMPType] = float32(p.ICMPType)
	default:
		row[FeatProtoOther] = 1
	}
	row[FeatReverse] = bit(p.FromHi != first.FromHi)
}

func bit(b bool) float32 {
	if b {
		return 1
	}
	return 0
}
