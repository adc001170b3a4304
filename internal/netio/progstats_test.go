package netio_test

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// progStats enables the kernel's BPF run-time statistics and returns a
// function that reads, per netio program, the runs and the mean ns per run
// since the call.
//
// RAMPART_NO_BPF_STATS=1 leaves them off: with them on, every BPF program
// run reads the clock twice, which on a VM adds to what is measured.
func progStats(tb testing.TB) (read func() map[string][2]float64, stop func()) {
	if os.Getenv("RAMPART_NO_BPF_STATS") != "" {
		return func() map[string][2]float64 { return nil }, func() {}
	}
	st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		tb.Logf("no BPF run-time statistics: %v", err)
		return func() map[string][2]float64 { return nil }, func() {}
	}
	snap := func() map[string][2]uint64 {
		out := map[string][2]uint64{}
		var id ebpf.ProgramID
		for {
			next, err := ebpf.ProgramGetNextID(id)
			if errors.Is(err, io.EOF) || err != nil {
				return out
			}
			id = next
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				continue
			}
			info, err := p.Info()
			var ps *ebpf.ProgramStats
			if err == nil {
				ps, err = p.Stats()
			}
			p.Close()
			if err != nil || !strings.HasPrefix(info.Name, "netio_") {
				continue
			}
			o := out[info.Name]
			out[info.Name] = [2]uint64{o[0] + ps.RunCount, o[1] + uint64(ps.Runtime)}
		}
	}
	before := snap()
	return func() map[string][2]float64 {
		res := map[string][2]float64{}
		for n, v := range snap() {
			runs := v[0] - before[n][0]
			if runs > 0 {
				res[n] = [2]float64{float64(runs), float64(v[1]-before[n][1]) / float64(runs)}
			}
		}
		return res
	}, func() { st.Close() }
}
