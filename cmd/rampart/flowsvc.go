package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/rampart-shield/rampart/internal/flow"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/probes/flowmon"
)

// newFlowService wires the flow collector to the manager and the IPFIX
// exporters of the config and flags.
func newFlowService(m *probe.Manager, log *slog.Logger, cfg flowsConfig, ipfix []string) (*flow.Service, error) {
	parse := func(what, s string) (time.Duration, error) {
		if s == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return 0, usagef("flows.%s: %q is not a positive duration (e.g. 30s)", what, s)
		}
		return d, nil
	}
	active, err := parse("active", cfg.Active)
	if err != nil {
		return nil, err
	}
	idle, err := parse("idle", cfg.Idle)
	if err != nil {
		return nil, err
	}
	name := cfg.Probe
	if name == "" {
		name = "flowmon"
	}
	col := flow.NewCollector(m, flow.Config{Probe: name, Map: "flows", Decode: flowmon.Sample, Active: active, Idle: idle})
	var sinks []func([]flow.Flow) error
	for _, addr := range append(append([]string(nil), cfg.IPFIX...), ipfix...) {
		e, err := flow.NewExporter(addr, flow.ExporterOptions{})
		if err != nil {
			return nil, fmt.Errorf("IPFIX collector %s: %w", addr, err)
		}
		log.Info("exporting flows as IPFIX", "collector", addr)
		sinks = append(sinks, e.Export)
	}
	return flow.NewService(col, flow.ServiceOptions{Logger: log, Sinks: sinks}), nil
}
