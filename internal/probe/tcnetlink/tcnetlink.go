// Package tcnetlink attaches SchedCLS eBPF programs with classic netlink TC:
// a clsact qdisc plus a direct-action "bpf" filter. It is the fallback for
// kernels without TCX (before 6.6) and speaks rtnetlink directly through
// golang.org/x/sys/unix.
//
// Network namespaces: Attach talks to the network namespace of the calling
// OS thread (normally the agent's own). The returned Filter keeps its
// rtnetlink socket, so Replace and Close act on that same namespace whatever
// thread calls them. The open socket holds a reference on that namespace
// until Close.
//
// Qdisc ownership: Attach creates the clsact qdisc when the interface has
// none and reuses an existing one; it never deletes a qdisc, since other
// tools may have filters on it. An empty clsact qdisc costs next to nothing.
package tcnetlink

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Direction selects the clsact hook.
type Direction int

const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	default:
		return fmt.Sprintf("direction(%d)", int(d))
	}
}

func (d Direction) parent() uint32 {
	if d == Egress {
		return tcHMake(tcHClsact, tcHMinEgress)
	}
	return tcHMake(tcHClsact, tcHMinIngress)
}

// ErrClosed is returned by Replace after Close.
var ErrClosed = errors.New("tcnetlink: filter is closed")

// maxHandleRetries bounds how often Attach retries when another writer
// takes the handle it picked between the dump and the add.
const maxHandleRetries = 4

// Filter is one bpf filter attached by Attach.
type Filter struct {
	mu      sync.Mutex
	conn    *conn
	ifindex int
	ifname  string
	dir     Direction
	prio    uint16
	handle  uint32
	name    string
	progID  uint32 // kernel id of the attached program; 0 if unknown
	created bool   // whether Attach created the clsact qdisc
	closed  bool
}

// Attach ensures a clsact qdisc on ifindex and adds a direct-action bpf
// filter (protocol ETH_P_ALL, chain 0) running prog on dir. priority 0 lets
// the kernel choose one. The handle is 1, or the lowest free handle when
// another bpf filter already uses 1 at that priority. The kernel takes its
// own reference on prog, so the caller may close prog afterwards.
func Attach(ifindex int, dir Direction, prog *ebpf.Program, name string, priority uint16) (*Filter, error) {
	if dir != Ingress && dir != Egress {
		return nil, fmt.Errorf("tcnetlink: attach: invalid direction %d", int(dir))
	}
	if ifindex <= 0 {
		return nil, fmt.Errorf("tcnetlink: attach %s filter: invalid ifindex %d", dir, ifindex)
	}
	if err := checkProg(prog); err != nil {
		return nil, fmt.Errorf("tcnetlink: attach %s filter on ifindex %d: %w", dir, ifindex, err)
	}

	c, err := dial()
	if err != nil {
		return nil, fmt.Errorf("tcnetlink: attach %s filter on ifindex %d: %w", dir, ifindex, err)
	}
	f := &Filter{conn: c, ifindex: ifindex, dir: dir, prio: priority, name: name}
	ok := false
	defer func() {
		if !ok {
			c.close()
		}
	}()

	f.ifname, err = c.linkName(ifindex)
	if err != nil {
		if errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("tcnetlink: attach %s filter: no interface with ifindex %d in this network namespace: %w", dir, ifindex, err)
		}
		return nil, fmt.Errorf("tcnetlink: attach %s filter: look up ifindex %d: %w", dir, ifindex, err)
	}

	if f.created, err = f.ensureClsact(); err != nil {
		return nil, err
	}

	for attempt := 1; ; attempt++ {
		if f.prio == 0 {
			f.handle = 1 // the kernel allocates a fresh priority
		} else if f.handle, err = f.freeHandle(); err != nil {
			return nil, err
		}
		var echo *tcObject
		echo, err = f.send(prog, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
		if err == nil && echo != nil {
			f.prio = uint16(echo.Msg.Info >> 16)
			f.handle = echo.Msg.Handle
		}
		if errors.Is(err, unix.EEXIST) && priority != 0 && attempt < maxHandleRetries {
			continue // lost a race for the handle; pick again
		}
		if err != nil {
			return nil, fmt.Errorf("tcnetlink: add bpf filter on %s prio %d handle %d: %w", f.where(), priority, f.handle, err)
		}
		break
	}
	if f.prio == 0 {
		// The kernel chose the priority but its echo did not reach us, so
		// the filter could not be found again: refuse it rather than leak
		// an unmanageable filter. (Every kernel with clsact echoes.)
		return nil, fmt.Errorf("tcnetlink: add bpf filter on %s: kernel did not report the priority it chose; pass a non-zero priority", f.where())
	}
	ok = true
	return f, nil
}

func checkProg(prog *ebpf.Program) error {
	if prog == nil {
		return errors.New("nil program")
	}
	if prog.FD() < 0 {
		return errors.New("program is closed")
	}
	if t := prog.Type(); t != ebpf.SchedCLS {
		return fmt.Errorf("program type is %v, a bpf filter needs %v", t, ebpf.SchedCLS)
	}
	return nil
}

// where describes the hook for error messages.
func (f *Filter) where() string {
	if f.ifname != "" {
		return fmt.Sprintf("interface %q (ifindex %d) %s", f.ifname, f.ifindex, f.dir)
	}
	return fmt.Sprintf("ifindex %d %s", f.ifindex, f.dir)
}

func (f *Filter) info() uint32 {
	return uint32(f.prio)<<16 | uint32(htons(unix.ETH_P_ALL))
}

// ensureClsact creates the clsact qdisc, or checks that the existing qdisc
// at the ingress/clsact slot can host this filter. It reports whether it
// created the qdisc.
func (f *Filter) ensureClsact() (bool, error) {
	tm := tcMsg{Family: unix.AF_UNSPEC, Ifindex: int32(f.ifindex), Handle: tcHMajMask, Parent: tcHClsact}
	_, err := f.conn.tcRequest(unix.RTM_NEWQDISC, unix.NLM_F_CREATE|unix.NLM_F_EXCL, tm, []attr{attrString(unix.TCA_KIND, "clsact")})
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, unix.EEXIST) {
		return false, fmt.Errorf("tcnetlink: create clsact qdisc on %s: %w", f.where(), err)
	}
	// A qdisc get answers only with NLM_F_ECHO (else it just multicasts).
	objs, gerr := f.conn.tcRequest(unix.RTM_GETQDISC, unix.NLM_F_ECHO, tcMsg{Family: unix.AF_UNSPEC, Ifindex: int32(f.ifindex), Parent: tcHClsact}, nil)
	if gerr != nil {
		return false, fmt.Errorf("tcnetlink: inspect existing qdisc at ffff:fff1 on %s: %w", f.where(), gerr)
	}
	for _, o := range objs {
		switch {
		case o.Kind == "clsact":
			return false, nil
		case o.Kind == "ingress" && f.dir == Ingress:
			// The legacy ingress qdisc hosts ingress filters just as well.
			return false, nil
		case o.Kind != "":
			return false, fmt.Errorf("tcnetlink: %s already has a %q qdisc in the clsact slot; %s bpf filters need clsact (remove it with \"tc qdisc del dev %s %s\")",
				f.where(), o.Kind, f.dir, f.ifname, o.Kind)
		}
	}
	return false, fmt.Errorf("tcnetlink: create clsact qdisc on %s: %w (and the existing qdisc could not be identified)", f.where(), err)
}

// listFilters dumps the filters of chain 0 at the filter's priority.
func (f *Filter) listFilters() ([]tcObject, error) {
	tm := tcMsg{Family: unix.AF_UNSPEC, Ifindex: int32(f.ifindex), Parent: f.dir.parent(), Info: uint32(f.prio) << 16}
	objs, err := f.conn.tcRequest(unix.RTM_GETTFILTER, unix.NLM_F_DUMP, tm, nil)
	if err != nil {
		return nil, err
	}
	out := objs[:0]
	for _, o := range objs {
		if o.Chain == 0 && o.Msg.Ifindex == int32(f.ifindex) && o.Msg.Info>>16 == uint32(f.prio) {
			out = append(out, o)
		}
	}
	return out, nil
}

// freeHandle picks handle 1 or the lowest handle not used at the priority,
// and fails clearly when the priority holds filters of another kind or
// protocol (the kernel would reject the add with a terse EINVAL).
func (f *Filter) freeHandle() (uint32, error) {
	objs, err := f.listFilters()
	if err != nil {
		return 0, fmt.Errorf("tcnetlink: list filters on %s prio %d: %w", f.where(), f.prio, err)
	}
	used := make(map[uint32]bool)
	for _, o := range objs {
		if o.Kind != "bpf" || o.Msg.Info&tcHMinMask != uint32(htons(unix.ETH_P_ALL)) {
			return 0, fmt.Errorf("tcnetlink: %s prio %d is taken by a %q filter with protocol 0x%04x; choose another priority",
				f.where(), f.prio, o.Kind, htons(uint16(o.Msg.Info&tcHMinMask)))
		}
		if o.Msg.Handle != 0 {
			used[o.Msg.Handle] = true
		}
	}
	h := uint32(1)
	for used[h] {
		h++
	}
	return h, nil
}

// send issues RTM_NEWTFILTER for this filter's hook, priority and handle
// with prog, records the program id and returns the kernel's echo of the
// filter (nil if none arrived).
func (f *Filter) send(prog *ebpf.Program, flags uint16) (*tcObject, error) {
	opts := []attr{attrU32(tcaBPFFD, uint32(prog.FD()))}
	if f.name != "" {
		opts = append(opts, attrString(tcaBPFName, f.name))
	}
	opts = append(opts, attrU32(tcaBPFFlags, tcaBPFFlagActDirect))
	attrs := []attr{attrString(unix.TCA_KIND, "bpf"), {Type: unix.TCA_OPTIONS, Nested: opts}}
	tm := tcMsg{Family: unix.AF_UNSPEC, Ifindex: int32(f.ifindex), Handle: f.handle, Parent: f.dir.parent(), Info: f.info()}

	objs, err := f.conn.tcRequest(unix.RTM_NEWTFILTER, flags|unix.NLM_F_ECHO, tm, attrs)
	runtime.KeepAlive(prog)
	if err != nil {
		return nil, err
	}
	var echo *tcObject
	f.progID = 0
	for i, o := range objs {
		if o.Kind != "bpf" || o.Msg.Handle == 0 {
			continue
		}
		echo = &objs[i]
		if id := o.Options[tcaBPFID]; len(id) >= 4 {
			f.progID = nativeU32(id)
		}
		break
	}
	if f.progID == 0 {
		if pi, err := prog.Info(); err == nil {
			if id, ok := pi.ID(); ok {
				f.progID = uint32(id)
			}
		}
	}
	return echo, nil
}

// Replace atomically swaps the filter's program in place (same hook,
// priority and handle); packets never see the hook empty. It fails if the
// filter no longer exists.
func (f *Filter) Replace(prog *ebpf.Program) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return ErrClosed
	}
	if err := checkProg(prog); err != nil {
		return fmt.Errorf("tcnetlink: replace program of %s: %w", f, err)
	}
	if _, err := f.send(prog, unix.NLM_F_REPLACE); err != nil {
		return fmt.Errorf("tcnetlink: replace program of %s (%s): %w", f, f.where(), err)
	}
	return nil
}

// Close deletes exactly this filter (direction, priority, handle). It is
// idempotent; a filter that is already gone (deleted by someone else, or
// its interface removed) counts as closed. If the slot now holds a
// different program than the one this Filter last attached, somebody else
// replaced it and Close leaves it alone.
func (f *Filter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}

	gone, foreign := true, false
	if objs, err := f.listFilters(); err == nil {
		for _, o := range objs {
			if o.Msg.Handle != f.handle || o.Kind != "bpf" {
				continue
			}
			gone = false
			if id := o.Options[tcaBPFID]; len(id) >= 4 && f.progID != 0 && nativeU32(id) != f.progID {
				foreign = true
			}
		}
	} else {
		gone = false // cannot tell; let the delete decide
	}

	if !gone && !foreign {
		tm := tcMsg{Family: unix.AF_UNSPEC, Ifindex: int32(f.ifindex), Handle: f.handle, Parent: f.dir.parent(), Info: f.info()}
		_, err := f.conn.tcRequest(unix.RTM_DELTFILTER, 0, tm, []attr{attrString(unix.TCA_KIND, "bpf")})
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("tcnetlink: delete %s (%s): %w", f, f.where(), err)
		}
	}
	f.closed = true
	return f.conn.close()
}

// Info describes the attachment, e.g.
// "tc-netlink ifindex 7 ingress prio 1 handle 1".
func (f *Filter) Info() string { return f.String() }

func (f *Filter) String() string {
	return fmt.Sprintf("tc-netlink ifindex %d %s prio %d handle %d", f.ifindex, f.dir, f.prio, f.handle)
}

// Ifindex returns the interface index the filter is attached to.
func (f *Filter) Ifindex() int { return f.ifindex }

// Direction returns the hook direction.
func (f *Filter) Direction() Direction { return f.dir }

// Priority returns the filter priority (the kernel's choice when Attach was
// given 0).
func (f *Filter) Priority() uint16 { return f.prio }

// Handle returns the filter handle.
func (f *Filter) Handle() uint32 { return f.handle }

// ProgramID returns the kernel id of the program the filter runs, as last
// set by Attach or Replace (0 if unknown).
func (f *Filter) ProgramID() uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.progID
}

// CreatedQdisc reports whether Attach created the clsact qdisc (it is never
// deleted either way).
func (f *Filter) CreatedQdisc() bool { return f.created }
