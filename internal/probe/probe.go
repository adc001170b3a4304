package probe

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
)

// loaded is one running probe: one instance (collection), or two when some
// metric is read with swap-on-read, plus its attachments.
type loaded struct {
	name     string
	origin   string
	manifest *Manifest
	spec     *ebpf.CollectionSpec
	params   map[string]string
	hooks    []Hook // per manifest program
	loadedAt time.Time
	loadDur  time.Duration

	mu       sync.Mutex // serialises reads, drains and swaps
	inst     [2]*ebpf.Collection
	active   int
	pivots   []*pivot // per manifest program, when swapping
	attached []*attachment
	rcu      *rcuBarrier // for preemptible hooks
	needRCU  bool
	maps     []*exportedMap
	metrics  map[string]*metricState
	order    []string // metric names in manifest order
	streams  []*stream
	raw      map[string]*mapReader // readers for raw map access
	detached bool
	swaps    uint64
	reads    uint64
	lastSwap time.Duration // switch + wait + drain of the last swap

	pinDir     string      // bpffs folder of the probe's pins, "" if none
	pinnedMaps []*ebpf.Map // maps pinned in pinDir
	newPins    []*ebpf.Map // pins this load created (undone if it fails)
	committed  bool
}

func (p *loaded) swapping() bool { return p.inst[1] != nil }

// swap points every pivot at the other instance, waits until no program run
// can still be using the previous one, then drains all swapped maps of the
// now idle instance. Each event lands in exactly one instance and each
// instance is drained only while idle: nothing is lost or counted twice.
func (p *loaded) swap(reader *metricState) ([]rawEntry, error) {
	start := time.Now()
	next := 1 - p.active
	for i, pv := range p.pivots {
		prog := p.inst[next].Programs[p.manifest.Programs[i].Name]
		if err := pv.point(prog); err != nil {
			// Put back the ones already moved: the data plane stays on one instance.
			for j := 0; j < i; j++ {
				p.pivots[j].point(p.inst[p.active].Programs[p.manifest.Programs[j].Name])
			}
			return nil, fmt.Errorf("swap: %w", err)
		}
	}
	idle := p.active
	p.active = next
	if err := p.waitQuiescent(); err != nil {
		return nil, fmt.Errorf("swap: waiting for programs to finish: %w", err)
	}
	var fresh []rawEntry
	for _, em := range p.maps {
		if !em.swapped {
			continue
		}
		entries, err := em.reader.read(em.maps[idle], true)
		if err != nil {
			return nil, err
		}
		fresh = append(fresh, em.hand(entries, reader)...)
	}
	p.swaps++
	p.lastSwap = time.Since(start)
	return fresh, nil
}

func (p *loaded) waitQuiescent() error {
	if !p.needRCU {
		if err := quiesceCPUs(); err == nil {
			return nil
		}
	}
	if p.rcu == nil {
		b, err := newRCUBarrier()
		if err != nil {
			return err
		}
		p.rcu = b
	}
	return p.rcu.wait()
}

// drain empties one exported map (through the swap when it is swapped) and
// hands the entries to its metrics: the reader (may be nil) gets the fresh
// entries back; every other metric keeps them pending for its next read.
func (p *loaded) drain(em *exportedMap, reader *metricState) ([]rawEntry, error) {
	if em.swapped {
		return p.swap(reader)
	}
	entries, err := em.reader.read(em.maps[0], true)
	if err != nil {
		return nil, err
	}
	return em.hand(entries, reader), nil
}

// readMetric returns a metric's entries for the REST API: the map's content,
// or, for emptied maps, everything drained since the last REST read.
func (p *loaded) readMetric(ms *metricState, opts ReadOptions) (MetricValue, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads++
	now := time.Now()
	var entries []rawEntry
	em := ms.em
	if em.drain {
		fresh, err := p.drain(em, ms)
		if err != nil {
			return MetricValue{}, errorf(KindInternal, "read %s/%s: %v", p.name, ms.cfg.Name, err)
		}
		entries = ms.pending.takeWith(fresh, em)
	} else {
		var err error
		if entries, err = em.reader.read(em.maps[0], false); err != nil {
			return MetricValue{}, errorf(KindInternal, "read %s/%s: %v", p.name, ms.cfg.Name, err)
		}
	}
	vals, err := em.render(entries, opts.PerCPU)
	if err != nil {
		return MetricValue{}, errorf(KindInternal, "decode %s/%s: %v", p.name, ms.cfg.Name, err)
	}
	return MetricValue{Name: ms.cfg.Name, Type: ms.cfg.Type, Help: ms.cfg.Help, Timestamp: now.UnixNano(), Value: vals}, nil
}

func (p *loaded) info() ProbeInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	pi := ProbeInfo{
		Name: p.name, Description: p.manifest.Description, Origin: p.origin,
		LoadedAt: p.loadedAt, Params: p.params, Swapping: p.swapping(), Swaps: p.swaps,
		LoadDuration: p.loadDur, LastSwap: p.lastSwap, Detached: p.detached,
	}
	for i, pr := range p.manifest.Programs {
		prog := p.inst[0].Programs[pr.Name]
		pinfo := ProgramInfo{Name: pr.Name, Hook: p.hooks[i].String(), Type: prog.Type().String(), Pivot: p.swapping()}
		if info, err := prog.Info(); err == nil {
			if id, ok := info.ID(); ok {
				pinfo.ID = uint32(id)
			}
		}
		for _, a := range p.attached {
			if a.prog == pr.Name {
				pinfo.Mode = a.mode
			}
		}
		pi.Programs = append(pi.Programs, pinfo)
	}
	pi.Pinned = p.pinDir
	for _, name := range p.order {
		ms := p.metrics[name]
		pi.Metrics = append(pi.Metrics, MetricInfo{
			Name: name, Map: ms.em.name, MapType: ms.em.reader.typ.String(), Type: ms.cfg.Type, Help: ms.cfg.Help,
			KeyType: decoderName(ms.em.keyDec), ValueType: decoderName(ms.em.valDec),
			EmptyOnRead: ms.cfg.EmptyOnRead, SwapOnRead: ms.em.swapped,
		})
	}
	for _, s := range p.streams {
		pi.Events = append(pi.Events, s.info())
	}
	return pi
}

// close detaches and frees everything the probe still owns.
// closeAll detaches attachments concurrently (each TCX detach waits for an
// RCU grace period).
func closeAll(as []*attachment) {
	var wg sync.WaitGroup
	for _, a := range as {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.Close()
		}()
	}
	wg.Wait()
}

func (p *loaded) close() {
	if !p.committed {
		for _, mp := range p.newPins {
			mp.Unpin()
		}
		p.newPins = nil
	}
	for _, s := range p.streams {
		s.close()
	}
	closeAll(p.attached)
	for _, pv := range p.pivots {
		pv.Close()
	}
	for _, c := range p.inst {
		if c != nil {
			c.Close()
		}
	}
	if p.rcu != nil {
		p.rcu.Close()
	}
}

// linkPin is where the link of program prog is pinned, or "" when the
// probe does not pin links.
func (p *loaded) linkPin(prog string) string {
	if p.pinDir == "" || p.manifest.Pin == nil || !p.manifest.Pin.Links {
		return ""
	}
	return filepath.Join(p.pinDir, "link_"+prog)
}

// commit marks the probe as serving: from now on closing it keeps its pins
// (Unload removes them explicitly); before, closing undoes the map pins
// this load created, so a failed load leaves bpffs as it found it.
func (p *loaded) commit() {
	p.committed = true
	p.newPins = nil
}

// unpinLinks removes the pins of the links the probe still holds.
func (p *loaded) unpinLinks() {
	for _, a := range p.attached {
		a.unpin()
	}
}

// unpinAll removes every pin of the probe: its links (so closing detaches
// them), its maps and its folder.
func (p *loaded) unpinAll() {
	p.unpinLinks()
	for _, mp := range p.pinnedMaps {
		mp.Unpin()
	}
	if p.pinDir != "" {
		os.Remove(p.pinDir)
	}
}
