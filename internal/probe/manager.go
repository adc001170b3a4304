package probe

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	Logger *slog.Logger
	// Builtin looks up a built-in probe bundle by name (manifest and object).
	Builtin func(name string) (*Manifest, []byte, bool)
}

// Manager is the only code that loads, attaches, swaps and reads BPF objects.
type Manager struct{ opts ManagerOptions }

func NewManager(opts ManagerOptions) (*Manager, error) { return &Manager{opts: opts}, nil }

func (m *Manager) Close() error { return nil }

func (m *Manager) Load(ctx context.Context, req LoadRequest) (ProbeInfo, error) {
	return ProbeInfo{}, errorf(KindInternal, "not implemented")
}
func (m *Manager) Unload(name string) error { return errorf(KindNotFound, "probe %q is not loaded", name) }
func (m *Manager) List() []ProbeInfo        { return nil }
func (m *Manager) Get(name string) (ProbeInfo, error) {
	return ProbeInfo{}, errorf(KindNotFound, "probe %q is not loaded", name)
}
func (m *Manager) ReadMetrics(name string, opts ReadOptions) ([]MetricValue, error) {
	return nil, errorf(KindNotFound, "probe %q is not loaded", name)
}
func (m *Manager) ReadMetric(name, metric string, opts ReadOptions) (MetricValue, error) {
	return MetricValue{}, errorf(KindNotFound, "probe %q is not loaded", name)
}

// Collector exports every probe's metrics plus the manager's own.
func (m *Manager) Collector() prometheus.Collector { return nil }

// ProbeCollector exports one probe's metrics.
func (m *Manager) ProbeCollector(name string) (prometheus.Collector, error) {
	return nil, errorf(KindNotFound, "probe %q is not loaded", name)
}

// Subscribe streams decoded events of one probe's stream ("" = every stream
// of that probe; probe "" = every probe). Call cancel when done.
func (m *Manager) Subscribe(probe, stream string) (<-chan Event, func(), error) {
	return nil, func() {}, errorf(KindNotFound, "no such stream")
}
