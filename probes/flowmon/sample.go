package flowmon

import "github.com/rampart-shield/rampart/internal/flow"

// Sample decodes a raw entry of the flows map (one value per CPU) into the
// flow collector's sample: CPUs merged, IPv4 unmapped.
func Sample(key []byte, values [][]byte) (flow.Sample, error) {
	k, err := DecodeKey(key)
	if err != nil {
		return flow.Sample{}, err
	}
	cpus := make([]Stats, 0, len(values))
	for _, v := range values {
		s, err := DecodeStats(v)
		if err != nil {
			return flow.Sample{}, err
		}
		cpus = append(cpus, s)
	}
	st := SumStats(cpus)
	src, dst := k.Addrs()
	return flow.Sample{
		Src: src, Dst: dst, SrcPort: k.Sport, DstPort: k.Dport, Proto: k.Proto,
		Direction: flow.Direction(k.Dir), Ifindex: k.Ifindex,
		FirstNs: st.FirstNs, LastNs: st.LastNs, Packets: st.Packets, Bytes: st.Bytes,
		TCPFlags: st.TCPFlags, TOS: st.TOS,
	}, nil
}
