package hoststat

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Host is one destination's cumulative counters, summed over the CPUs.
type Host = hoststatHostStats

// SourceKey is one (destination, source, protocol) pair.
type SourceKey struct {
	Dst, Src netip.Addr // IPv4 unmapped
	Proto    uint8
}

// Source is one pair's cumulative counters, summed over the CPUs; Dport
// and Sport are those of the pair's last packet (one CPU's).
type Source = hoststatSrcStats

func addr(b [16]uint8) netip.Addr { return netip.AddrFrom16(b).Unmap() }

// decodeSum decodes one value per CPU into T and adds the uint64 fields.
func decodeSum[T any](values [][]byte, add func(dst *T, v T)) (T, error) {
	var sum T
	for _, raw := range values {
		var v T
		if err := binary.Read(bytes.NewReader(raw), binary.LittleEndian, &v); err != nil {
			return sum, err
		}
		add(&sum, v)
	}
	return sum, nil
}

// DecodeHost decodes a hosts entry (key and per-CPU values).
func DecodeHost(key []byte, values [][]byte) (netip.Addr, Host, error) {
	if len(key) != 16 {
		return netip.Addr{}, Host{}, fmt.Errorf("hoststat: host key of %d bytes, want 16", len(key))
	}
	h, err := decodeSum(values, func(d *Host, v Host) {
		d.Packets += v.Packets
		d.Bytes += v.Bytes
		d.TcpPackets += v.TcpPackets
		d.TcpBytes += v.TcpBytes
		d.UdpPackets += v.UdpPackets
		d.UdpBytes += v.UdpBytes
		d.IcmpPackets += v.IcmpPackets
		d.IcmpBytes += v.IcmpBytes
		d.OtherPackets += v.OtherPackets
		d.TcpData += v.TcpData
		d.Syn += v.Syn
		d.Synack += v.Synack
		d.Rst += v.Rst
		d.Frags += v.Frags
		d.AmpDns += v.AmpDns
		d.AmpNtp += v.AmpNtp
		d.AmpSsdp += v.AmpSsdp
		d.AmpMemcached += v.AmpMemcached
		d.NewPairs += v.NewPairs
	})
	return addr([16]uint8(key)), h, err
}

// DecodeSource decodes a sources entry.
func DecodeSource(key []byte, values [][]byte) (SourceKey, Source, error) {
	if len(key) != 36 {
		return SourceKey{}, Source{}, fmt.Errorf("hoststat: source key of %d bytes, want 36", len(key))
	}
	k := SourceKey{Dst: addr([16]uint8(key[:16])), Src: addr([16]uint8(key[16:32])), Proto: key[32]}
	s, err := decodeSum(values, func(d *Source, v Source) {
		d.Packets += v.Packets
		d.Bytes += v.Bytes
		d.Syn += v.Syn
		d.Established += v.Established
		if v.Packets > 0 {
			d.Dport, d.Sport = v.Dport, v.Sport
		}
	})
	return k, s, err
}
