package traffic

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/rampart-shield/rampart/internal/detect/lucid"
	"github.com/rampart-shield/rampart/internal/probe"
)

// Set is one recording turned into sessions.
type Set struct {
	Recording Recording
	Sessions  []*lucid.Session
	Stats     lucid.DatasetStats
}

// Load replays each recording through ddosfeat (lucid.SessionsFromPcap,
// lossless) with opts; EgressFrom is the recording's EgressMAC (the
// server's) unless opts sets one.
func Load(ctx context.Context, m *probe.Manager, recs []Recording, opts lucid.DatasetOptions) ([]Set, error) {
	var sets []Set
	for _, r := range recs {
		f, err := os.Open(r.Path)
		if err != nil {
			return nil, err
		}
		o := opts
		if o.EgressFrom == nil && r.EgressMAC != "" {
			o.EgressFrom, _ = net.ParseMAC(r.EgressMAC)
		}
		var st lucid.DatasetStats
		o.Stats = &st
		ss, err := lucid.SessionsFromPcap(ctx, m, f, o)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(r.Path), err)
		}
		sets = append(sets, Set{Recording: r, Sessions: ss, Stats: st})
	}
	return sets, nil
}

// Samples labels the sessions of sets by their recording's class, as
// samples of n packets.
func Samples(sets []Set, n int) []lucid.Sample {
	var out []lucid.Sample
	for _, s := range sets {
		out = append(out, lucid.SamplesFrom(s.Sessions, s.Recording.Class.Label(), n)...)
	}
	return out
}
