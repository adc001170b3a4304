package forest

import (
	"math"

	"github.com/rampart-shield/rampart/probes/cryptofeat"
)

// FeatureNames names the columns of FeaturesVector, in order:
//
//	method                  how the server side was decided (cryptofeat.Method: 0 none, 1 TCP handshake, 2 well-known port, 3 lower port)
//	server_packets          packets the server sent
//	client_packets          packets the client sent
//	server_bits             bits the server sent (IP length × 8)
//	client_bits             bits the client sent
//	duration_s              seconds from the first to the last packet
//	server_packets_per_s    server packets / duration
//	client_packets_per_s    client packets / duration
//	server_bits_per_s       server bits / duration
//	client_bits_per_s       client bits / duration
//	server_bits_per_packet  server bits / server packets
//	client_bits_per_packet  client bits / client packets
//	packet_ratio            server packets / client packets
//	bit_ratio               server bits / client bits
//	packet_asymmetry        |log2((server packets+1) / (client packets+1))|
//	bit_asymmetry           |log2((server bits+1) / (client bits+1))|
//
// The first fourteen are cryptofeat.Features as derived (a zero divisor
// gives 0). Trees split on thresholds, so any monotone rescaling of a
// column (log rates, say) would change nothing; the two asymmetry columns
// are not monotone in the ratios: they are 0 for a balanced session and
// grow whichever side dominates, so "the two sides talk about equally"
// (stratum's request/response cadence) is one split instead of two, and
// the +1 keeps one-sided sessions finite.
var FeatureNames = []string{
	"method",
	"server_packets",
	"client_packets",
	"server_bits",
	"client_bits",
	"duration_s",
	"server_packets_per_s",
	"client_packets_per_s",
	"server_bits_per_s",
	"client_bits_per_s",
	"server_bits_per_packet",
	"client_bits_per_packet",
	"packet_ratio",
	"bit_ratio",
	"packet_asymmetry",
	"bit_asymmetry",
}

// FeaturesVector maps a session's derived features to the vector
// FeatureNames describes.
func FeaturesVector(f cryptofeat.Features) []float64 {
	return []float64{
		float64(f.Method),
		float64(f.ServerPackets),
		float64(f.ClientPackets),
		float64(f.ServerBits),
		float64(f.ClientBits),
		f.Duration,
		f.ServerPacketsPerSec,
		f.ClientPacketsPerSec,
		f.ServerBitsPerSec,
		f.ClientBitsPerSec,
		f.ServerBitsPerPacket,
		f.ClientBitsPerPacket,
		f.PacketRatio,
		f.BitRatio,
		asymmetry(f.ServerPackets, f.ClientPackets),
		asymmetry(f.ServerBits, f.ClientBits),
	}
}

// asymmetry is |log2((a+1) / (b+1))|.
func asymmetry(a, b uint64) float64 {
	return math.Abs(math.Log2(float64(a)+1) - math.Log2(float64(b)+1))
}
