package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-shield/rampart/internal/btfjson"
)

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	Logger *slog.Logger
	// Builtin looks up a built-in probe bundle by name (manifest and object).
	Builtin func(name string) (*Manifest, []byte, bool)
	// PinRoot is the bpffs folder under which probes that pin state keep
	// it, one folder per probe (default /sys/fs/bpf/rampart).
	PinRoot string
}

// DefaultPinRoot is where pinned probe state lives unless configured.
const DefaultPinRoot = "/sys/fs/bpf/rampart"

// Manager is the only code that loads, attaches, swaps and reads BPF objects.
type Manager struct {
	opts ManagerOptions
	log  *slog.Logger

	loadMu sync.Mutex // one load or unload at a time
	mu     sync.RWMutex
	probes map[string]*loaded
	stats  managerStats
}

// NewManager returns an empty manager.
func NewManager(opts ManagerOptions) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PinRoot == "" {
		opts.PinRoot = DefaultPinRoot
	}
	return &Manager{opts: opts, log: opts.Logger, probes: map[string]*loaded{}, stats: newManagerStats()}, nil
}

// Close unloads every probe.
func (m *Manager) Close() error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, p := range m.probes {
		p.unpinAll()
		p.close()
		delete(m.probes, name)
	}
	return nil
}

func (m *Manager) get(name string) (*loaded, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p := m.probes[name]
	if p == nil {
		return nil, errorf(KindNotFound, "probe %q is not loaded", name)
	}
	return p, nil
}

// Load verifies, attaches and starts serving a probe. If a probe of the same
// name runs, the new one replaces it only once it is verified and attached;
// on any error the old one keeps running untouched.
func (m *Manager) Load(ctx context.Context, req LoadRequest) (ProbeInfo, error) {
	start := time.Now()
	info, err := m.load(ctx, req, start)
	result := "ok"
	if err != nil {
		result = "error"
		m.log.Warn("probe load failed", "probe", req.Name, "error", err)
	} else {
		m.log.Info("probe loaded", "probe", info.Name, "programs", len(info.Programs), "metrics", len(info.Metrics), "swapping", info.Swapping, "took", time.Since(start).Round(time.Microsecond))
	}
	m.stats.loads.WithLabelValues(result).Inc()
	return info, err
}

func (m *Manager) load(ctx context.Context, req LoadRequest, start time.Time) (ProbeInfo, error) {
	if req.Origin == "" {
		req.Origin = "user"
	}
	if req.Manifest == nil && req.Object == nil && req.Source == nil {
		if m.opts.Builtin == nil {
			return ProbeInfo{}, errorf(KindInvalid, "no manifest given and no built-in probes available")
		}
		man, obj, ok := m.opts.Builtin(req.Name)
		if !ok {
			return ProbeInfo{}, errorf(KindNotFound, "%q is not a built-in probe: give a manifest and an object or source", req.Name)
		}
		cp := *man
		req.Manifest, req.Object, req.Origin = &cp, obj, "builtin"
	}
	if req.Manifest == nil {
		return ProbeInfo{}, errorf(KindInvalid, "no manifest: a probe needs one to say which programs attach where and which maps to export")
	}
	man := *req.Manifest
	man.Metrics = append([]Metric(nil), man.Metrics...)
	if err := man.Validate(); err != nil {
		return ProbeInfo{}, &Error{Kind: KindInvalid, Msg: err.Error(), Err: err}
	}
	if req.Name == "" {
		req.Name = man.Name
	}
	if !ProbeNameRE.MatchString(req.Name) {
		return ProbeInfo{}, errorf(KindInvalid, "probe name %q: use lower-case letters, digits, '_', '.', '-' (at most 63), starting with a letter or digit", req.Name)
	}
	if (req.Object == nil) == (req.Source == nil) {
		return ProbeInfo{}, errorf(KindInvalid, "give exactly one of a compiled object or C source")
	}
	hooks, err := resolveHooks(&man, req.Attach, req.Iface, req.Detached)
	if err != nil {
		return ProbeInfo{}, err
	}
	obj := req.Object
	if req.Source != nil {
		if obj, err = compileSource(ctx, req.Source); err != nil {
			return ProbeInfo{}, err
		}
	}
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		return ProbeInfo{}, errorf(KindInvalid, "not a usable eBPF object: %v", err)
	}
	params, err := applyParams(spec, man.Parameters, req.Params)
	if err != nil {
		return ProbeInfo{}, err
	}
	if err := applyMapSizes(spec, req.MapSizes); err != nil {
		return ProbeInfo{}, err
	}
	if err := prepareSpec(spec, &man, hooks); err != nil {
		return ProbeInfo{}, err
	}

	pinDir := ""
	if man.Pin != nil && !req.Detached {
		if pinDir, err = m.preparePinDir(req.Name, spec, man.Pin); err != nil {
			return ProbeInfo{}, err
		}
	}

	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	p, err := instantiate(req.Name, spec, &man, hooks, pinDir)
	if err != nil {
		return ProbeInfo{}, err
	}
	p.origin, p.params = req.Origin, params
	m.mu.RLock()
	old := m.probes[req.Name]
	m.mu.RUnlock()
	p.detached = req.Detached
	if !req.Detached {
		if err := p.attachAll(old); err != nil {
			p.close()
			return ProbeInfo{}, err
		}
	} else if p.swapping() {
		for i, pr := range man.Programs {
			pv, err := newPivot(pr.Name, spec.Programs[pr.Name])
			if err == nil {
				p.pivots = append(p.pivots, pv)
				err = pv.point(p.inst[0].Programs[pr.Name])
			}
			if err != nil {
				p.close()
				return ProbeInfo{}, errorf(KindRejected, "pivot for %s: %v", man.Programs[i].Name, err)
			}
		}
	}
	p.loadedAt = time.Now()
	p.loadDur = time.Since(start)
	p.commit()
	m.mu.Lock()
	m.probes[req.Name] = p
	m.mu.Unlock()
	if old != nil {
		old.mu.Lock()
		// Links old pinned on hooks the new probe does not use go away;
		// the ones it uses were taken over. Pinned maps are shared.
		old.unpinLinks()
		old.close()
		old.mu.Unlock()
	}
	return p.info(), nil
}

// resolveHooks applies the request's attach overrides and interface to the
// manifest's hooks and checks that every target exists.
func resolveHooks(man *Manifest, attach []string, iface string, detached bool) ([]Hook, error) {
	byProg := map[string]string{}
	for _, a := range attach {
		prog, hook, ok := strings.Cut(a, "=")
		if !ok {
			if len(man.Programs) != 1 {
				return nil, errorf(KindInvalid, "--attach %q names no program, but the probe has %d: use PROGRAM=HOOK", a, len(man.Programs))
			}
			prog, hook = man.Programs[0].Name, a
		}
		found := false
		for _, p := range man.Programs {
			found = found || p.Name == prog
		}
		if !found {
			return nil, errorf(KindInvalid, "--attach %q: the manifest has no program %q", a, prog)
		}
		byProg[prog] = hook
	}
	hooks := make([]Hook, len(man.Programs))
	for i, p := range man.Programs {
		s := p.Hook
		if o, ok := byProg[p.Name]; ok {
			s = o
		}
		h, err := ParseHook(s)
		if err != nil {
			return nil, &Error{Kind: KindInvalid, Msg: fmt.Sprintf("program %s: %v", p.Name, err), Err: err}
		}
		if h.Network() && h.Target == "" {
			h.Target = iface
		}
		if detached {
			hooks[i] = h
			continue
		}
		if err := checkHookTarget(h); err != nil {
			return nil, err
		}
		hooks[i] = h
	}
	return hooks, nil
}

// applyMapSizes overrides maps' max_entries (hash and LRU tables, arrays;
// ring buffers take a power-of-two multiple of the page size).
func applyMapSizes(spec *ebpf.CollectionSpec, sizes map[string]uint32) error {
	for name, n := range sizes {
		ms, ok := spec.Maps[name]
		if !ok {
			return errorf(KindInvalid, "map size for %q: the object has no such map (it has: %s)", name, names(spec.Maps))
		}
		if n == 0 || n > 1<<26 {
			return errorf(KindInvalid, "map size for %q: %d entries, want 1 to %d", name, n, 1<<26)
		}
		if ms.Type == ebpf.RingBuf && (n < 4096 || n&(n-1) != 0) {
			return errorf(KindInvalid, "map size for ring buffer %q: %d bytes, want a power of two of at least 4096", name, n)
		}
		ms.MaxEntries = n
	}
	return nil
}

// applyParams sets load-time constants: the manifest's defaults, then the
// request's overrides. Only constants (volatile const globals) may be set.
func applyParams(spec *ebpf.CollectionSpec, defaults map[string]interface{}, overrides map[string]string) (map[string]string, error) {
	vals := map[string]string{}
	for k, v := range defaults {
		vals[k] = fmt.Sprint(v)
	}
	for k, v := range overrides {
		if _, ok := defaults[k]; !ok {
			if _, ok := spec.Variables[k]; !ok {
				return nil, errorf(KindInvalid, "parameter %q: the object has no constant of that name (constants: %s)", k, constNames(spec))
			}
		}
		vals[k] = v
	}
	for k, v := range vals {
		vs, ok := spec.Variables[k]
		if !ok || !vs.Constant() {
			return nil, errorf(KindInvalid, "parameter %q: the object has no constant of that name; declare it as `volatile const` (constants: %s)", k, constNames(spec))
		}
		if err := setParam(vs, v); err != nil {
			return nil, errorf(KindInvalid, "parameter %s=%q: %v", k, v, err)
		}
	}
	return vals, nil
}

func constNames(spec *ebpf.CollectionSpec) string {
	var names []string
	for n, v := range spec.Variables {
		if v.Constant() {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func setParam(vs *ebpf.VariableSpec, s string) error {
	t := btf.UnderlyingType(vs.Type.Type)
	size := vs.Size()
	if b, err := strconv.ParseBool(s); err == nil && !strings.ContainsAny(s, "0123456789") {
		if b {
			s = "1"
		} else {
			s = "0"
		}
	}
	signed := false
	if it, ok := t.(*btf.Int); ok {
		signed = it.Encoding&btf.Signed != 0
	} else if _, ok := t.(*btf.Enum); !ok {
		return fmt.Errorf("only integer, enum and bool constants can be set (this one is %s)", t)
	}
	var u uint64
	if signed {
		n, err := strconv.ParseInt(s, 0, int(size)*8)
		if err != nil {
			return fmt.Errorf("want a %d-bit signed integer", size*8)
		}
		u = uint64(n)
	} else {
		n, err := strconv.ParseUint(s, 0, int(size)*8)
		if err != nil {
			return fmt.Errorf("want a %d-bit unsigned integer", size*8)
		}
		u = n
	}
	switch size {
	case 1:
		return vs.Set(uint8(u))
	case 2:
		return vs.Set(uint16(u))
	case 4:
		return vs.Set(uint32(u))
	case 8:
		return vs.Set(u)
	}
	return fmt.Errorf("unsupported size %d", size)
}

// prepareSpec checks the manifest against the object and keeps only the
// programs the manifest attaches.
func prepareSpec(spec *ebpf.CollectionSpec, man *Manifest, hooks []Hook) error {
	keep := map[string]*ebpf.ProgramSpec{}
	for i, pr := range man.Programs {
		ps, ok := spec.Programs[pr.Name]
		if !ok {
			return errorf(KindInvalid, "program %q is not in the object (it has: %s)", pr.Name, names(spec.Programs))
		}
		h := hooks[i]
		if want := wantType[h.Kind]; ps.Type != want {
			return errorf(KindInvalid, "program %s is of type %s but hook %s needs %s: put it in %s", pr.Name, ps.Type, h, want, sectionHint[h.Kind])
		}
		if h.Kind == HookTPBTF {
			ps.AttachTo = h.Target
			ps.AttachType = ebpf.AttachTraceRawTp
		}
		keep[pr.Name] = ps
	}
	spec.Programs = keep
	for _, mt := range man.Metrics {
		if _, ok := spec.Maps[mt.Map]; !ok {
			return errorf(KindInvalid, "metric %s: map %q is not in the object (it has: %s)", mt.Name, mt.Map, names(spec.Maps))
		}
	}
	for _, ev := range man.Events {
		ms, ok := spec.Maps[ev.Map]
		if !ok {
			return errorf(KindInvalid, "event stream %s: map %q is not in the object (it has: %s)", ev.Name, ev.Map, names(spec.Maps))
		}
		if ms.Type != ebpf.RingBuf {
			return errorf(KindInvalid, "event stream %s: map %s is a %s; event streams read ring buffers", ev.Name, ev.Map, ms.Type)
		}
	}
	return nil
}

func names[V any](m map[string]V) string {
	var out []string
	for k := range m {
		if !strings.HasPrefix(k, ".") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// instantiate loads the collection (the verifier runs here), a second
// instance when metrics swap, and builds the map decoders.
func instantiate(name string, spec *ebpf.CollectionSpec, man *Manifest, hooks []Hook, pinDir string) (*loaded, error) {
	p := &loaded{name: name, manifest: man, spec: spec, hooks: hooks, metrics: map[string]*metricState{}, pinDir: pinDir}
	for _, h := range hooks {
		p.needRCU = p.needRCU || h.preemptible()
	}
	existed := existingPins(pinDir, man.Pin)
	a, err := newCollection(spec, nil, pinDir)
	if err != nil {
		return nil, err
	}
	p.inst[0] = a
	if pinDir != "" {
		for _, mn := range man.Pin.Maps {
			p.pinnedMaps = append(p.pinnedMaps, a.Maps[mn])
			if !existed[mn] {
				p.newPins = append(p.newPins, a.Maps[mn])
			}
		}
	}
	// Group metrics per map, in manifest order.
	var mapOrder []string
	perMap := map[string][]Metric{}
	for _, mt := range man.Metrics {
		if perMap[mt.Map] == nil {
			mapOrder = append(mapOrder, mt.Map)
		}
		perMap[mt.Map] = append(perMap[mt.Map], mt)
		p.order = append(p.order, mt.Name)
	}
	swapMaps := map[string]bool{}
	for _, mn := range mapOrder {
		em, err := newExportedMap(mn, spec.Maps[mn], a.Maps[mn], perMap[mn])
		if err != nil {
			p.close()
			return nil, err
		}
		p.maps = append(p.maps, em)
		for _, ms := range em.metrics {
			p.metrics[ms.cfg.Name] = ms
		}
		if em.swapped {
			swapMaps[mn] = true
		}
	}
	if len(swapMaps) > 0 {
		// The second instance shares every map but the swapped ones.
		repl := map[string]*ebpf.Map{}
		for mn, mp := range a.Maps {
			if !swapMaps[mn] {
				repl[mn] = mp
			}
		}
		b, err := newCollection(spec, repl, "")
		if err != nil {
			p.close()
			return nil, err
		}
		p.inst[1] = b
		for _, em := range p.maps {
			if em.swapped {
				em.maps[1] = b.Maps[em.name]
			}
		}
	}
	for _, ev := range man.Events {
		t, err := findType(spec, ev.Type)
		if err != nil {
			p.close()
			return nil, errorf(KindInvalid, "event stream %s: %v", ev.Name, err)
		}
		dec, err := btfjson.New(t, btfjson.Options{Formats: ev.Formats})
		if err != nil {
			p.close()
			return nil, errorf(KindInvalid, "event stream %s: %v", ev.Name, err)
		}
		s, err := newStream(name, ev, dec, a.Maps[ev.Map])
		if err != nil {
			p.close()
			return nil, errorf(KindInternal, "event stream %s: %v", ev.Name, err)
		}
		p.streams = append(p.streams, s)
	}
	return p, nil
}

func findType(spec *ebpf.CollectionSpec, name string) (btf.Type, error) {
	if spec.Types == nil {
		return nil, fmt.Errorf("the object has no BTF: compile with -g")
	}
	n := strings.TrimSpace(name)
	var want btf.Type
	switch {
	case strings.HasPrefix(n, "struct "):
		var s *btf.Struct
		if err := spec.Types.TypeByName(strings.TrimSpace(n[len("struct "):]), &s); err != nil {
			return nil, fmt.Errorf("type %q not found in the object's BTF (is it used by the program, or kept with a global?)", name)
		}
		want = s
	case strings.HasPrefix(n, "union "):
		var u *btf.Union
		if err := spec.Types.TypeByName(strings.TrimSpace(n[len("union "):]), &u); err != nil {
			return nil, fmt.Errorf("type %q not found in the object's BTF", name)
		}
		want = u
	default:
		t, err := spec.Types.AnyTypeByName(n)
		if err != nil {
			return nil, fmt.Errorf("type %q not found in the object's BTF", name)
		}
		want = t
	}
	return want, nil
}

// kernelTypes is the running kernel's BTF, parsed once: CO-RE relocations
// need it and parsing it costs about 30 ms, far more than loading a probe.
var kernelTypes = sync.OnceValues(btf.LoadKernelSpec)

// newCollection loads a collection, turning verifier rejections into errors
// that carry the relevant tail of the verifier log.
func newCollection(spec *ebpf.CollectionSpec, repl map[string]*ebpf.Map, pinDir string) (*ebpf.Collection, error) {
	opts := ebpf.CollectionOptions{MapReplacements: repl}
	opts.Maps.PinPath = pinDir
	if kt, err := kernelTypes(); err == nil {
		opts.Programs.KernelTypes = kt
	}
	c, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err == nil {
		return c, nil
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		lines := ve.Log
		if len(lines) > 25 {
			lines = lines[len(lines)-25:]
		}
		return nil, &Error{Kind: KindRejected, Msg: "the kernel verifier rejected the program", Detail: strings.Join(lines, "\n"), Err: err}
	}
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return nil, &Error{Kind: KindRejected, Msg: "a pinned map of an earlier load does not fit this object (its type, sizes or flags changed): unload the probe to remove its pins (" + pinDir + "), then load again", Detail: err.Error(), Err: err}
	}
	return nil, &Error{Kind: KindRejected, Msg: "the kernel refused the object", Detail: err.Error(), Err: err}
}

// attachAll attaches every program (through a pivot when swapping). When it
// replaces old, an XDP hook that old holds is taken over with an atomic link
// update; every other hook is attached anew before old is detached. On
// error everything is rolled back and old keeps running.
func (p *loaded) attachAll(old *loaded) error {
	type takeover struct {
		a    *attachment
		prev *ebpf.Program
	}
	var taken []takeover
	type pending struct {
		prog   string
		hook   Hook
		target *ebpf.Program
	}
	var fresh []pending
	rollback := func() {
		for _, t := range taken {
			t.a.update(t.prev)
			if t.a.adopted {
				// A pinned link of an earlier agent: it goes back to the
				// program it ran, and stays pinned.
				t.a.lnk.Close()
				t.prev.Close()
			}
		}
		var own []*attachment
		for _, a := range p.attached {
			if !a.taken {
				own = append(own, a)
			}
		}
		for _, a := range own {
			a.unpin()
		}
		closeAll(own)
		p.attached = nil
	}
	for i, pr := range p.manifest.Programs {
		h := p.hooks[i]
		prog := p.inst[0].Programs[pr.Name]
		target := prog
		if p.swapping() {
			pv, err := newPivot(pr.Name, p.spec.Programs[pr.Name])
			if err != nil {
				rollback()
				return errorf(KindRejected, "%v", err)
			}
			p.pivots = append(p.pivots, pv)
			if err := pv.point(prog); err != nil {
				rollback()
				return errorf(KindRejected, "pivot for %s: %v", pr.Name, err)
			}
			target = pv.prog
		}
		if lp := p.linkPin(pr.Name); lp != "" && (old == nil || old.attachmentAt(h) == nil) {
			// A link pinned by an earlier agent (or an earlier load that
			// was released): take it over without a gap.
			a, prev, err := adoptPinnedLink(lp, pr.Name, h)
			if err != nil {
				rollback()
				return err
			}
			if a != nil {
				if err := a.update(target); err != nil {
					a.lnk.Close()
					prev.Close()
					rollback()
					return &Error{Kind: KindRejected, Msg: fmt.Sprintf("take over the pinned link %s", lp), Detail: err.Error(), Err: err}
				}
				taken = append(taken, takeover{a, prev})
				a.taken = true
				p.attached = append(p.attached, a)
				continue
			}
		}
		if old != nil {
			if oa := old.attachmentAt(h); oa != nil && oa.canUpdate() {
				prev := oa.bound
				if err := oa.update(target); err != nil {
					rollback()
					return &Error{Kind: KindRejected, Msg: fmt.Sprintf("replace program on %s", h), Detail: err.Error(), Err: err}
				}
				taken = append(taken, takeover{oa, prev})
				oa.taken = true
				oa.prog = pr.Name
				p.attached = append(p.attached, oa)
				continue
			}
		}
		fresh = append(fresh, pending{pr.Name, h, target})
	}
	// Fresh attachments run concurrently: attaching to TCX (and detaching)
	// waits for an RCU grace period in the kernel, about 8 ms each; in
	// parallel the waits overlap.
	results := make([]*attachment, len(fresh))
	errs := make([]error, len(fresh))
	var wg sync.WaitGroup
	for i, f := range fresh {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = attach(f.prog, f.hook, f.target)
			if errs[i] == nil {
				errs[i] = results[i].pin(p.linkPin(f.prog))
			}
		}()
	}
	wg.Wait()
	for _, a := range results {
		if a != nil {
			p.attached = append(p.attached, a)
		}
	}
	for _, err := range errs {
		if err != nil {
			rollback()
			return err
		}
	}
	if old != nil {
		// The taken-over links now belong to p.
		var keep []*attachment
		for _, a := range old.attached {
			if !a.taken {
				keep = append(keep, a)
			}
		}
		old.attached = keep
	}
	for _, a := range p.attached {
		a.taken = false
	}
	for _, t := range taken {
		if t.a.adopted {
			t.prev.Close()
		}
	}
	return nil
}

func (p *loaded) attachmentAt(h Hook) *attachment {
	for _, a := range p.attached {
		if a.hook == h && !a.taken {
			return a
		}
	}
	return nil
}

// Unload detaches a probe and frees its objects.
func (m *Manager) Unload(name string) error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	m.mu.Lock()
	p := m.probes[name]
	delete(m.probes, name)
	m.mu.Unlock()
	if p == nil {
		return errorf(KindNotFound, "probe %q is not loaded", name)
	}
	p.mu.Lock()
	p.unpinAll()
	p.close()
	p.mu.Unlock()
	m.log.Info("probe unloaded", "probe", name)
	return nil
}

// Release stops serving a probe but leaves what it pinned: its pinned
// links keep its programs attached and its pinned maps keep their contents,
// for the next load of the same probe (by this agent or the next one) to
// take over. A probe that pins nothing is simply unloaded.
func (m *Manager) Release(name string) error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	m.mu.Lock()
	p := m.probes[name]
	delete(m.probes, name)
	m.mu.Unlock()
	if p == nil {
		return errorf(KindNotFound, "probe %q is not loaded", name)
	}
	p.mu.Lock()
	p.close()
	p.mu.Unlock()
	m.log.Info("probe released, pins kept", "probe", name, "pins", p.pinDir)
	return nil
}

// List describes every loaded probe, sorted by name.
func (m *Manager) List() []ProbeInfo {
	m.mu.RLock()
	ps := make([]*loaded, 0, len(m.probes))
	for _, p := range m.probes {
		ps = append(ps, p)
	}
	m.mu.RUnlock()
	sort.Slice(ps, func(i, j int) bool { return ps[i].name < ps[j].name })
	out := make([]ProbeInfo, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.info())
	}
	return out
}

// Get describes one probe.
func (m *Manager) Get(name string) (ProbeInfo, error) {
	p, err := m.get(name)
	if err != nil {
		return ProbeInfo{}, err
	}
	return p.info(), nil
}

// ReadMetrics reads every metric of a probe, in manifest order.
func (m *Manager) ReadMetrics(name string, opts ReadOptions) ([]MetricValue, error) {
	p, err := m.get(name)
	if err != nil {
		return nil, err
	}
	out := make([]MetricValue, 0, len(p.order))
	for _, mn := range p.order {
		v, err := p.readMetric(p.metrics[mn], opts)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// ReadMetric reads one metric.
func (m *Manager) ReadMetric(name, metric string, opts ReadOptions) (MetricValue, error) {
	p, err := m.get(name)
	if err != nil {
		return MetricValue{}, err
	}
	ms := p.metrics[metric]
	if ms == nil {
		return MetricValue{}, errorf(KindNotFound, "probe %s has no metric %q (it has: %s)", name, metric, strings.Join(p.order, ", "))
	}
	return p.readMetric(ms, opts)
}

// Subscribe streams decoded events of one probe's stream ("" = every stream
// of that probe; probe "" = every probe). Call cancel when done.
func (m *Manager) Subscribe(probe, streamName string) (<-chan Event, func(), error) {
	return m.subscribe(probe, streamName, false)
}

// SubscribeRaw is Subscribe for typed consumers: events carry Raw only (no
// JSON), which saves decoding every record.
func (m *Manager) SubscribeRaw(probe, streamName string) (<-chan Event, func(), error) {
	return m.subscribe(probe, streamName, true)
}

// SubscribeBatch is SubscribeRaw for consumers of high-rate streams: the
// records read from the ring together arrive as one slice (up to 512), so
// a burst costs one hand-over instead of one per record. It follows one
// stream of one probe; the first batch replays its recent events, as
// Subscribe does. The channel closes when the caller cancels or the stream
// ends.
func (m *Manager) SubscribeBatch(probe, streamName string) (<-chan []Event, func(), error) {
	if probe == "" || streamName == "" {
		return nil, func() {}, errorf(KindInvalid, "a batch subscription follows one stream of one probe: name both")
	}
	targets, err := m.streams(probe, streamName)
	if err != nil {
		return nil, func() {}, err
	}
	target := targets[0]
	ch := make(chan []Event, 256)
	unsub := target.subscribeBatch(ch)
	stop := make(chan struct{})
	var once sync.Once
	cancel := func() { once.Do(func() { close(stop) }) }
	go func() {
		select {
		case <-stop:
		case <-target.done:
		}
		unsub()
		close(ch)
	}()
	return ch, cancel, nil
}

// streams finds the streams a subscription follows ("" = every stream, or
// every probe); naming a probe that is not loaded, or a stream it does not
// have, is an error.
func (m *Manager) streams(probe, streamName string) ([]*stream, error) {
	m.mu.RLock()
	var targets []*stream
	for pn, p := range m.probes {
		if probe != "" && pn != probe {
			continue
		}
		for _, s := range p.streams {
			if streamName == "" || s.cfg.Name == streamName {
				targets = append(targets, s)
			}
		}
	}
	_, known := m.probes[probe]
	m.mu.RUnlock()
	if probe != "" && !known {
		return nil, errorf(KindNotFound, "probe %q is not loaded", probe)
	}
	if probe != "" && streamName != "" && len(targets) == 0 {
		return nil, errorf(KindNotFound, "probe %s has no event stream %q", probe, streamName)
	}
	return targets, nil
}

func (m *Manager) subscribe(probe, streamName string, raw bool) (<-chan Event, func(), error) {
	targets, err := m.streams(probe, streamName)
	if err != nil {
		return nil, func() {}, err
	}
	ch := make(chan Event, 4096)
	var cancels []func()
	for _, s := range targets {
		cancels = append(cancels, s.subscribe(ch, raw))
	}
	// The channel closes when the caller cancels or when every stream it
	// follows has ended (its probe was unloaded or replaced). Publishers
	// are unsubscribed first, so nothing sends on a closed channel.
	stop := make(chan struct{})
	var once sync.Once
	cancel := func() { once.Do(func() { close(stop) }) }
	go func() {
		if len(targets) > 0 {
			ended := make(chan struct{})
			go func() {
				for _, s := range targets {
					<-s.done
				}
				close(ended)
			}()
			select {
			case <-stop:
			case <-ended:
			}
		} else {
			<-stop
		}
		for _, c := range cancels {
			c()
		}
		close(ch)
	}()
	return ch, cancel, nil
}

func decoderName(d *btfjson.Decoder) string {
	if d == nil {
		return ""
	}
	return d.TypeName()
}

var _ prometheus.Collector = (*probeCollector)(nil)

// TestRun runs one of a probe's programs once on data with
// BPF_PROG_TEST_RUN, through the same entry point live traffic takes (the
// pivot when the probe swaps), and returns the program's return value. It
// lets tests, benchmarks and replays drive the exact kernel code that runs
// on the hook.
func (m *Manager) TestRun(name, program string, data []byte, repeat uint32) (uint32, error) {
	p, err := m.get(name)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, pr := range p.manifest.Programs {
		if pr.Name != program {
			continue
		}
		prog := p.inst[0].Programs[pr.Name]
		if p.swapping() {
			prog = p.pivots[i].prog
		}
		ret, err := prog.Run(&ebpf.RunOptions{Data: data, Repeat: repeat})
		if err != nil {
			return 0, errorf(KindRejected, "test run of %s/%s: %v", name, program, err)
		}
		return ret, nil
	}
	return 0, errorf(KindNotFound, "probe %s has no program %q", name, program)
}

// RawEntry is a map entry as raw bytes, for collectors that decode a
// built-in probe's records into typed Go values. Values holds one slice per
// possible CPU for per-CPU maps, else one.
type RawEntry struct {
	Key    []byte
	Values [][]byte
}

// rawMap finds a map of a probe for raw access. Maps that swap are
// refused: their contents move between instances.
func (p *loaded) rawMap(name string) (*ebpf.Map, *mapReader, error) {
	for _, em := range p.maps {
		if em.name == name && em.swapped {
			return nil, nil, errorf(KindInvalid, "map %s of probe %s is read with swap-on-read; raw access would race the swap", name, p.name)
		}
	}
	m := p.inst[0].Maps[name]
	if m == nil {
		return nil, nil, errorf(KindNotFound, "probe %s has no map %q", p.name, name)
	}
	if p.raw == nil {
		p.raw = map[string]*mapReader{}
	}
	r := p.raw[name]
	if r == nil {
		var err error
		if r, err = newMapReader(name, m); err != nil {
			return nil, nil, errorf(KindInvalid, "%v", err)
		}
		p.raw[name] = r
	}
	return m, r, nil
}

// ReadRaw returns every entry of one of a probe's maps as raw bytes.
func (m *Manager) ReadRaw(name, mapName string) ([]RawEntry, error) {
	p, err := m.get(name)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	mp, r, err := p.rawMap(mapName)
	if err != nil {
		return nil, err
	}
	entries, err := r.read(mp, false)
	if err != nil {
		return nil, errorf(KindInternal, "%v", err)
	}
	out := make([]RawEntry, len(entries))
	for i, e := range entries {
		out[i] = RawEntry{Key: e.key, Values: e.vals}
	}
	return out, nil
}

// TakeRaw removes one entry with lookup-and-delete (atomic for that entry)
// and returns its last value; ok is false when the key was gone.
func (m *Manager) TakeRaw(name, mapName string, key []byte) (values [][]byte, ok bool, err error) {
	p, err := m.get(name)
	if err != nil {
		return nil, false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	mp, r, err := p.rawMap(mapName)
	if err != nil {
		return nil, false, err
	}
	out, take := r.newValue()
	if err := mp.LookupAndDelete(key, out); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, false, nil
		}
		return nil, false, errorf(KindInternal, "map %s: lookup and delete: %v", mapName, err)
	}
	return take(), true, nil
}

// ReplayClock is the global a probe reads its time from (bpf/include/rp_clock.h).
const ReplayClock = "rampart_replay_ns"

// Replay runs a probe's program on one captured packet at its capture time:
// probes that read the clock through rp_now() see ts instead of the live
// clock. Probes without the replay clock run as with TestRun.
func (m *Manager) Replay(name, program string, data []byte, ts uint64) (uint32, error) {
	p, err := m.get(name)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	v := p.inst[0].Variables[ReplayClock]
	p.mu.Unlock()
	if v != nil {
		if err := v.Set(ts); err != nil {
			return 0, errorf(KindInternal, "setting the replay clock of %s: %v", name, err)
		}
	}
	return m.TestRun(name, program, data, 1)
}

// WithMaps lends the maps of a running probe to fn, with the probe's lock
// held so no read, swap or unload runs meanwhile. It is how the one writer
// of a probe's state (the firewall's rule compiler) updates it; the maps
// are valid only inside fn. Maps read with swap-on-read are left out.
func (m *Manager) WithMaps(name string, fn func(maps map[string]*ebpf.Map) error) error {
	p, err := m.get(name)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	maps := make(map[string]*ebpf.Map, len(p.inst[0].Maps))
	for mn, mp := range p.inst[0].Maps {
		maps[mn] = mp
	}
	for _, em := range p.maps {
		if em.swapped {
			delete(maps, em.name)
		}
	}
	return fn(maps)
}
