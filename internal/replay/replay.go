package replay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/rampart-shield/rampart/internal/probe"
)

// Runner is what replays need of the probe manager.
type Runner interface {
	Get(name string) (probe.ProbeInfo, error)
	Replay(name, program string, data []byte, ts uint64) (uint32, error)
}

// Options tunes a replay.
type Options struct {
	// EgressFrom: frames whose source MAC is this one run through the
	// probe's egress program (tc-egress); all others through its ingress
	// program (tc-ingress or xdp). Nil: everything is ingress.
	EgressFrom net.HardwareAddr
	// Progress is called every 1024 packets with the count so far.
	Progress func(packets int)
}

// Stats says what a replay did.
type Stats struct {
	Packets, Ingress, Egress int
	// Skipped: frames the kernel refused to run (larger than a test run
	// accepts, or truncated by the capture's snap length).
	Skipped int
	// FirstNs, LastNs: capture times of the first and last packet.
	FirstNs, LastNs uint64
}

// Run replays every packet of a pcap stream through the probe NAME, which
// must be loaded (detached, usually) in m.
func Run(m Runner, name string, r io.Reader, opts Options) (Stats, error) {
	var st Stats
	info, err := m.Get(name)
	if err != nil {
		return st, err
	}
	var ingress, egress string
	for _, p := range info.Programs {
		h, err := probe.ParseHook(p.Hook)
		if err != nil {
			continue
		}
		switch h.Kind {
		case probe.HookTCIngress, probe.HookXDP:
			if ingress == "" {
				ingress = p.Name
			}
		case probe.HookTCEgress:
			if egress == "" {
				egress = p.Name
			}
		}
	}
	if ingress == "" && egress == "" {
		return st, fmt.Errorf("probe %s has no packet program (xdp, tc-ingress or tc-egress) to replay through", name)
	}
	rd, err := NewReader(r)
	if err != nil {
		return st, err
	}
	for {
		p, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return st, nil
		}
		if err != nil {
			return st, err
		}
		prog := ingress
		if len(p.Data) >= 12 && opts.EgressFrom != nil && bytes.Equal(p.Data[6:12], opts.EgressFrom) && egress != "" || ingress == "" {
			prog = egress
		}
		if uint32(len(p.Data)) < p.OrigLen {
			st.Skipped++ // a cut frame would be counted short
			continue
		}
		if _, err := m.Replay(name, prog, p.Data, p.TimeNs); err != nil {
			st.Skipped++
			continue
		}
		if st.Packets == 0 {
			st.FirstNs = p.TimeNs
		}
		st.LastNs = p.TimeNs
		st.Packets++
		if prog == ingress {
			st.Ingress++
		} else {
			st.Egress++
		}
		if opts.Progress != nil && st.Packets%1024 == 0 {
			opts.Progress(st.Packets)
		}
	}
}
