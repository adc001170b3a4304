package flowmon

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// benchRepeat is how often BPF_PROG_TEST_RUN runs a frame per syscall; the
// kernel reports the mean duration of one run.
const benchRepeat = 1_000_000

// benchRun reports the kernel's mean run time of prog on frame as
// ns/packet (and Mpps), averaged over b.N syscalls of benchRepeat runs.
func benchRun(b *testing.B, prog *ebpf.Program, frame []byte) {
	var total time.Duration
	n := 0
	for b.Loop() {
		ret, per, err := prog.Benchmark(frame, benchRepeat, nil)
		if err != nil {
			b.Fatal(err)
		}
		if ret != tcActUnspec {
			b.Fatalf("returned %d, want TC_ACT_UNSPEC", int32(ret))
		}
		total += per
		n++
	}
	ns := float64(total.Nanoseconds()) / float64(n)
	b.ReportMetric(ns, "ns/op") // per program run, not per syscall
	b.ReportMetric(ns, "ns/packet")
	b.ReportMetric(1e3/ns, "Mpps")
}

// BenchmarkFlowmonPerPacket measures flow_ingress per packet. The flow
// exists after the first run, so this is the steady state: parse, a stats
// increment, bpf_ktime_get_ns, one flows lookup and an update of this CPU's
// value. The figures include BPF_PROG_TEST_RUN's own per-run cost; see
// BenchmarkTestRunFloor for it and for the helpers' costs on this machine.
func BenchmarkFlowmonPerPacket(b *testing.B) {
	direct := load(b)
	helper := loadPath(b, true)
	payload := make([]byte, 1400)
	ext, extPayload := chain6([]uint8{protoHopByHop, protoDestOpts, protoRouting}, protoTCP, tcp(50000, 22, TCPAck, payload))
	tcp4 := eth(etherIPv4, ipv4(ip4{proto: protoTCP, src: v4a, dst: v4b}, tcp(40000, 443, TCPAck, payload)))
	for _, c := range []struct {
		name  string
		prog  *ebpf.Program
		frame []byte
	}{
		{"ipv4_tcp", direct.FlowIngress, tcp4},
		{"ipv6_tcp", direct.FlowIngress, eth(etherIPv6, ipv6(protoTCP, 0, v6a, v6b, tcp(40000, 443, TCPAck, payload)))},
		{"ipv6_3ext_tcp", direct.FlowIngress, eth(etherIPv6, ipv6(ext, 0, v6a, v6b, extPayload))},
		{"vlan_ipv4_udp", direct.FlowIngress, ethTagged([]uint16{etherVLAN}, etherIPv4, ipv4(ip4{proto: protoUDP, src: v4a, dst: v4b}, udp(5353, 53, payload)))},
		{"arp_stats_only", direct.FlowIngress, eth(etherARP, arp(v4a, v4b))},
		// Every header through bpf_skb_load_bytes, as for a paged buffer.
		{"ipv4_tcp_helper_path", helper.FlowIngress, tcp4},
	} {
		b.Run(c.name, func(b *testing.B) { benchRun(b, c.prog, c.frame) })
	}
}

// BenchmarkTestRunFloor measures what flowmon cannot avoid, with tiny
// hand-written programs run like the benchmark above: an empty program (the
// test-run loop itself), one bpf_ktime_get_ns, one bpf_skb_load_bytes and
// one lookup of an existing 44-byte key in an LRU per-CPU hash map like
// flows. Subtract "empty" from the others for the helper's own cost.
func BenchmarkTestRunFloor(b *testing.B) {
	requireBPF(b)
	lru, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LRUCPUHash, KeySize: uint32(KeySize), ValueSize: uint32(StatsSize), MaxEntries: MaxFlows})
	if err != nil {
		b.Skipf("skipping: %v", err)
	}
	defer lru.Close()
	vals := make([][StatsSize]byte, ebpf.MustPossibleCPU())
	if err := lru.Put(make([]byte, KeySize), vals); err != nil {
		b.Fatal(err)
	}
	ret := asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}
	zeroKey := asm.Instructions{asm.Mov.Imm(asm.R1, 0)}
	for off := int16(-48); off < 0; off += 8 { // a 48-byte zeroed key buffer
		zeroKey = append(zeroKey, asm.StoreMem(asm.RFP, off, asm.R1, asm.DWord))
	}
	progs := []struct {
		name  string
		insns asm.Instructions
	}{
		{"empty", ret},
		{"ktime_get_ns", append(asm.Instructions{asm.FnKtimeGetNs.Call()}, ret...)},
		{"skb_load_bytes_20", append(asm.Instructions{
			asm.Mov.Imm(asm.R2, 14), asm.Mov.Reg(asm.R3, asm.RFP), asm.Add.Imm(asm.R3, -24), asm.Mov.Imm(asm.R4, 20),
			asm.FnSkbLoadBytes.Call(),
		}, ret...)},
		{"lru_percpu_lookup_44B", append(append(zeroKey,
			asm.LoadMapPtr(asm.R1, lru.FD()), asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, -48),
			asm.FnMapLookupElem.Call(),
		), ret...)},
	}
	frame := eth(etherIPv4, ipv4(ip4{proto: protoTCP, src: v4a, dst: v4b}, tcp(40000, 443, TCPAck, make([]byte, 1400))))
	for _, p := range progs {
		b.Run(p.name, func(b *testing.B) {
			prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, Instructions: p.insns, License: "GPL"})
			if err != nil {
				b.Fatalf("%+v", err)
			}
			defer prog.Close()
			benchRun(b, prog, frame)
		})
	}
}
