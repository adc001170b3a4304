package probe

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/rampart-shield/rampart/internal/probe/tcnetlink"
)

// wantType is the program type each hook kind needs.
var wantType = map[string]ebpf.ProgramType{
	HookXDP:        ebpf.XDP,
	HookTCIngress:  ebpf.SchedCLS,
	HookTCEgress:   ebpf.SchedCLS,
	HookTracepoint: ebpf.TracePoint,
	HookRawTP:      ebpf.RawTracepoint,
	HookTPBTF:      ebpf.Tracing,
	HookUprobe:     ebpf.Kprobe,
	HookUretprobe:  ebpf.Kprobe,
}

// sectionHint tells users which ELF section gives a program the right type.
var sectionHint = map[string]string{
	HookXDP:        `SEC("xdp")`,
	HookTCIngress:  `SEC("tc") or SEC("tcx/ingress")`,
	HookTCEgress:   `SEC("tc") or SEC("tcx/egress")`,
	HookTracepoint: `SEC("tracepoint/CATEGORY/NAME")`,
	HookRawTP:      `SEC("raw_tp/NAME")`,
	HookTPBTF:      `SEC("tp_btf/NAME")`,
	HookUprobe:     `SEC("uprobe")`,
	HookUretprobe:  `SEC("uretprobe")`,
}

// preemptible reports whether programs on this hook can be preempted while
// running (so CPU quiescence is not enough to know they finished).
func (h Hook) preemptible() bool { return h.Kind == HookUprobe || h.Kind == HookUretprobe }

// checkHookTarget verifies that what the hook names exists, so a bad hook
// fails before anything is loaded.
func checkHookTarget(h Hook) error {
	switch {
	case h.Network():
		if h.Target == "" {
			return errorf(KindInvalid, "hook %s names no interface: add one (%s:eth0) or pass --iface", h, h.Kind)
		}
		if _, err := net.InterfaceByName(h.Target); err != nil {
			return errorf(KindInvalid, "hook %s: interface %q not found", h, h.Target)
		}
	case h.Kind == HookTracepoint:
		cat, name, _ := strings.Cut(h.Target, "/")
		found := false
		for _, root := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
			if _, err := os.Stat(filepath.Join(root, "events", cat, name)); err == nil {
				found = true
				break
			}
		}
		if !found {
			return errorf(KindInvalid, "hook %s: tracepoint %s not found under /sys/kernel/tracing/events (is tracefs mounted?)", h, h.Target)
		}
	case h.Kind == HookUprobe || h.Kind == HookUretprobe:
		if _, err := os.Stat(h.Target); err != nil {
			return errorf(KindInvalid, "hook %s: binary %q: %v", h, h.Target, err)
		}
	}
	return nil
}

// attachment is one program attached to one hook.
type attachment struct {
	prog  string
	hook  Hook
	mode  string
	lnk   link.Link
	tc    *tcnetlink.Filter
	bound *ebpf.Program // what is attached now
	// taken marks a link being handed over to a replacing probe.
	taken bool
	// pinPath is where the link is pinned in bpffs ("" when it is not);
	// adopted marks a pinned link taken over from an earlier agent.
	pinPath string
	adopted bool
}

// pin pins the attachment's link at path (nothing when path is empty).
// Classic netlink TC filters have no link to pin: they are refused, since
// the probe asked for its attachments to outlive the agent.
func (a *attachment) pin(path string) error {
	if path == "" {
		return nil
	}
	if a.lnk == nil {
		return errorf(KindRejected, "hook %s: attached with %s, which has no link to pin: pinned attachments need TCX (Linux 6.6) or XDP links", a.hook, a.mode)
	}
	if err := a.lnk.Pin(path); err != nil {
		return &Error{Kind: KindRejected, Msg: fmt.Sprintf("pin the link of %s on %s", a.prog, a.hook), Detail: err.Error(), Err: err}
	}
	a.pinPath = path
	return nil
}

// unpin removes the link's pin, so closing it detaches the program.
func (a *attachment) unpin() {
	if a.pinPath != "" && a.lnk != nil {
		a.lnk.Unpin()
		a.pinPath = ""
	}
}

// adoptPinnedLink opens the link pinned at path, if there is one, with the
// program it runs now (to roll back to). It returns nil when nothing is
// pinned there.
func adoptPinnedLink(path, progName string, h Hook) (*attachment, *ebpf.Program, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, nil, nil
	}
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return nil, nil, &Error{Kind: KindRejected, Msg: fmt.Sprintf("open the pinned link %s (remove it to attach anew)", path), Detail: err.Error(), Err: err}
	}
	info, err := l.Info()
	var prev *ebpf.Program
	if err == nil {
		prev, err = ebpf.NewProgramFromID(info.Program)
	}
	if err != nil {
		l.Close()
		return nil, nil, &Error{Kind: KindRejected, Msg: fmt.Sprintf("inspect the pinned link %s", path), Detail: err.Error(), Err: err}
	}
	return &attachment{prog: progName, hook: h, mode: "adopted pinned link", lnk: l, bound: prev, pinPath: path, adopted: true}, prev, nil
}

func (a *attachment) Close() error {
	if a.lnk != nil {
		return a.lnk.Close()
	}
	if a.tc != nil {
		return a.tc.Close()
	}
	return nil
}

// canUpdate reports whether the attachment can atomically switch programs.
// XDP allows a single program per interface, so replacing a probe on the
// same XDP hook must go through an update of the existing link.
func (a *attachment) canUpdate() bool {
	return (a.hook.Kind == HookXDP || a.pinPath != "") && a.lnk != nil
}

func (a *attachment) update(p *ebpf.Program) error {
	if err := a.lnk.Update(p); err != nil {
		return err
	}
	a.bound = p
	return nil
}

// attach attaches prog to hook.
func attach(progName string, h Hook, prog *ebpf.Program) (*attachment, error) {
	a := &attachment{prog: progName, hook: h, bound: prog}
	var err error
	switch h.Kind {
	case HookXDP:
		ifc, ierr := net.InterfaceByName(h.Target)
		if ierr != nil {
			return nil, errorf(KindInvalid, "hook %s: interface %q not found", h, h.Target)
		}
		a.lnk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
		a.mode = "xdp-driver"
		if err != nil {
			var gerr error
			a.lnk, gerr = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPGenericMode})
			a.mode = "xdp-generic"
			if gerr == nil {
				err = nil
			} else {
				err = fmt.Errorf("driver mode: %v; generic mode: %w", err, gerr)
			}
		}
	case HookTCIngress, HookTCEgress:
		ifc, ierr := net.InterfaceByName(h.Target)
		if ierr != nil {
			return nil, errorf(KindInvalid, "hook %s: interface %q not found", h, h.Target)
		}
		at, dir := ebpf.AttachTCXIngress, tcnetlink.Ingress
		if h.Kind == HookTCEgress {
			at, dir = ebpf.AttachTCXEgress, tcnetlink.Egress
		}
		a.lnk, err = link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: prog, Attach: at})
		a.mode = "tcx"
		if err != nil && (errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, os.ErrInvalid)) {
			a.lnk = nil
			a.tc, err = tcnetlink.Attach(ifc.Index, dir, prog, "rampart_"+progName, 1)
			a.mode = "tc-netlink"
		}
	case HookTracepoint:
		cat, name, _ := strings.Cut(h.Target, "/")
		a.lnk, err = link.Tracepoint(cat, name, prog, nil)
		a.mode = "perf-event"
	case HookRawTP:
		a.lnk, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: h.Target, Program: prog})
		a.mode = "raw-tracepoint"
	case HookTPBTF:
		a.lnk, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
		a.mode = "tp-btf"
	case HookUprobe, HookUretprobe:
		ex, oerr := link.OpenExecutable(h.Target)
		if oerr != nil {
			return nil, errorf(KindInvalid, "hook %s: %v", h, oerr)
		}
		if h.Kind == HookUprobe {
			a.lnk, err = ex.Uprobe(h.Symbol, prog, nil)
		} else {
			a.lnk, err = ex.Uretprobe(h.Symbol, prog, nil)
		}
		a.mode = "uprobe"
	default:
		return nil, errorf(KindInvalid, "unknown hook %s", h)
	}
	if err != nil {
		return nil, &Error{Kind: KindRejected, Msg: fmt.Sprintf("attach %s to %s", progName, h), Detail: err.Error(), Err: err}
	}
	return a, nil
}

// pivot is the dispatcher attached in place of a program when the probe
// keeps two instances: it tail-calls slot 0 of its program array, which
// points at the active instance. Switching instances is one array update
// (about 2 µs) instead of re-attaching (16 ms for XDP on a veth).
type pivot struct {
	prog  *ebpf.Program
	slots *ebpf.Map
}

func (p *pivot) Close() {
	p.prog.Close()
	p.slots.Close()
}

func (p *pivot) point(target *ebpf.Program) error {
	return p.slots.Put(uint32(0), target)
}

// defaultReturn is what the pivot returns if the tail call ever fails: let
// the packet or event through unchanged.
func defaultReturn(t ebpf.ProgramType) int32 {
	switch t {
	case ebpf.XDP:
		return 2 // XDP_PASS
	case ebpf.SchedCLS, ebpf.SchedACT:
		return -1 // TC_ACT_UNSPEC: continue with the next program
	}
	return 0
}

func newPivot(name string, ps *ebpf.ProgramSpec) (*pivot, error) {
	slots, err := ebpf.NewMap(&ebpf.MapSpec{Name: "rp_slots", Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("pivot program array: %w", err)
	}
	spec := &ebpf.ProgramSpec{
		Name:       "rp_pivot",
		Type:       ps.Type,
		AttachType: ps.AttachType,
		AttachTo:   ps.AttachTo,
		Flags:      ps.Flags,
		License:    "Dual BSD/GPL",
		Instructions: asm.Instructions{
			asm.LoadMapPtr(asm.R2, slots.FD()),
			asm.Mov.Imm(asm.R3, 0),
			asm.FnTailCall.Call(),
			asm.Mov.Imm(asm.R0, defaultReturn(ps.Type)),
			asm.Return(),
		},
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		slots.Close()
		return nil, fmt.Errorf("pivot for %s: %w", name, err)
	}
	return &pivot{prog: prog, slots: slots}, nil
}
