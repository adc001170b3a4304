package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/rampart-shield/rampart/internal/probe"
	fwprobe "github.com/rampart-shield/rampart/probes/firewall"
)

// ProbeName is the name the firewall probe runs under.
const ProbeName = "firewall"

// Options configures a Firewall.
type Options struct {
	Manager *probe.Manager
	// Iface is the interface the XDP (ingress) and TC (egress) programs
	// attach to.
	Iface  string
	Logger *slog.Logger
	// OnExpire is told about every rule the sweeper removed on expiry.
	OnExpire func(Rule)
	// SweepEvery is how often expired rules are removed (default 1 s).
	SweepEvery time.Duration
	// Detached loads the probe without attaching it or using pins: its
	// programs run only through the manager's TestRun (tests, benchmarks).
	Detached bool
}

// Op is one operation of a batch.
type Op struct {
	// Op is insert (at ID, shifting the rule there and those after it),
	// append, update (the rule at ID) or delete (the rule at ID or, with
	// no ID, the first rule matching the same packets with the same
	// action).
	Op   string `json:"op"`
	ID   int    `json:"id,omitempty"`
	Rule Rule   `json:"rule"`
}

// BatchError says which operation of a batch is invalid; nothing of the
// batch was applied.
type BatchError struct {
	Index int // 0-based
	Op    string
	Err   error
}

func (e *BatchError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("batch: %v; nothing was applied", e.Err)
	}
	return fmt.Sprintf("operation %d (%s): %v; nothing was applied", e.Index+1, e.Op, e.Err)
}

func (e *BatchError) Unwrap() error { return e.Err }

// ErrInvalid marks errors caused by the request (as opposed to the kernel).
var ErrInvalid = errors.New("invalid")

// Firewall owns the rules of the firewall probe.
type Firewall struct {
	opts Options
	m    *probe.Manager
	log  *slog.Logger

	mu    sync.Mutex
	rules []entry
	used  []bool // slots in use
	tries map[trieKey][]uint32
	allow map[netip.Prefix]bool

	stop chan struct{}
	done chan struct{}
}

// Start loads (or adopts) the firewall probe on the interface and reads
// back the rules its pinned maps hold, so a restarted agent continues
// where the previous one stopped.
func Start(ctx context.Context, opts Options) (*Firewall, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SweepEvery <= 0 {
		opts.SweepEvery = time.Second
	}
	f := &Firewall{opts: opts, m: opts.Manager, log: opts.Logger, used: make([]bool, fwprobe.MaxRules), tries: map[trieKey][]uint32{}, allow: map[netip.Prefix]bool{}}
	if _, err := f.m.Load(ctx, probe.LoadRequest{Name: ProbeName, Iface: opts.Iface, Detached: opts.Detached}); err != nil {
		return nil, fmt.Errorf("firewall: %w", err)
	}
	if err := f.adopt(); err != nil {
		return nil, fmt.Errorf("firewall: reading the pinned rules: %w", err)
	}
	if len(f.rules) > 0 || len(f.allow) > 0 {
		f.log.Info("firewall adopted pinned rules", "rules", len(f.rules), "allowlist", len(f.allow))
	}
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	go f.sweep()
	return f, nil
}

// Close stops the expiry sweeper. With keep, the probe is released: its
// pinned links and maps keep filtering until the next agent adopts them;
// without, it is unloaded and every rule is gone.
func (f *Firewall) Close(keep bool) error {
	close(f.stop)
	<-f.done
	if keep {
		return f.m.Release(ProbeName)
	}
	return f.m.Unload(ProbeName)
}

// adopt reads rules, tries and allowlist from the probe's maps.
func (f *Firewall) adopt() error {
	return f.m.WithMaps(ProbeName, func(maps map[string]*ebpf.Map) error {
		var (
			k  uint32
			kr fwprobe.KernelRule
		)
		type pos struct {
			p uint32
			e entry
		}
		var found []pos
		it := maps["fw_rules"].Iterate()
		for it.Next(&k, &kr) {
			if kr.InUse == 0 {
				continue
			}
			found = append(found, pos{kr.Position, entry{k, fromKernel(&kr)}})
			f.used[k] = true
		}
		if err := it.Err(); err != nil {
			return err
		}
		slices.SortStableFunc(found, func(a, b pos) int { return int(a.p) - int(b.p) })
		for _, p := range found {
			f.rules = append(f.rules, p.e)
		}
		var k4 fwprobe.Key4
		var k6 fwprobe.Key6
		var c fwprobe.Candidates
		var v uint32
		var p4 fwprobe.PKey4
		var p6 fwprobe.PKey6
		it = maps["fw_pfx_v4"].Iterate()
		for it.Next(&p4, &c) {
			f.tries[fromPKey4(p4)] = fromCandidates(c)
		}
		if err := it.Err(); err != nil {
			return err
		}
		it = maps["fw_pfx_v6"].Iterate()
		for it.Next(&p6, &c) {
			f.tries[fromPKey6(p6)] = fromCandidates(c)
		}
		if err := it.Err(); err != nil {
			return err
		}
		it = maps["fw_allow_v4"].Iterate()
		for it.Next(&k4, &v) {
			f.allow[fromKey4(k4).prefix] = true
		}
		it = maps["fw_allow_v6"].Iterate()
		for it.Next(&k6, &v) {
			f.allow[fromKey6(k6).prefix] = true
		}
		// A crash in the middle of a batch may have left the tries out of
		// step with the rules: bring them back in line.
		want, err := compile(f.rules)
		if err != nil {
			return err
		}
		return f.writeTries(maps, want)
	})
}

// Rules lists the rules in order, with their counters.
func (f *Firewall) Rules() ([]Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Rule, len(f.rules))
	err := f.m.WithMaps(ProbeName, func(maps map[string]*ebpf.Map) error {
		var per []fwprobe.Counter
		for i, e := range f.rules {
			r := e.n.rule()
			r.ID = i + 1
			if err := maps["fw_counters"].Lookup(e.slot, &per); err != nil {
				return err
			}
			for _, c := range per {
				r.Packets += c.Packets
				r.Bytes += c.Bytes
			}
			out[i] = r
		}
		return nil
	})
	return out, err
}

// Apply runs a batch: every operation is checked against the list as the
// operations before it left it; if one is invalid nothing changes and the
// error (a *BatchError) names it. Then the kernel maps are updated: new
// rules are written to free slots first, then the tries are switched to
// them, then the slots of removed rules are cleared.
func (f *Firewall) Apply(ops []Op) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.apply(ops)
}

// Extend moves the expiry of every rule that match accepts (given the rule
// as Rules lists it, counters aside) to expires, atomically with respect
// to other changes, and returns the rules it extended.
func (f *Firewall) Extend(match func(Rule) bool, expires time.Time) ([]Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ops []Op
	var out []Rule
	for i, e := range f.rules {
		r := e.n.rule()
		r.ID = i + 1
		if !match(r) {
			continue
		}
		r.Expires = expires
		ops = append(ops, Op{Op: "update", ID: i + 1, Rule: r})
		out = append(out, r)
	}
	if len(ops) == 0 {
		return nil, nil
	}
	return out, f.apply(ops)
}

func (f *Firewall) apply(ops []Op) error {
	now := time.Now()
	next := slices.Clone(f.rules)
	const fresh = ^uint32(0)
	for i, op := range ops {
		bad := func(format string, a ...any) error {
			return &BatchError{Index: i, Op: op.Op, Err: fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))}
		}
		switch strings.ToLower(op.Op) {
		case "insert", "append", "update":
			n, err := normalize(op.Rule, now)
			if err != nil {
				return bad("%v", err)
			}
			switch strings.ToLower(op.Op) {
			case "append":
				next = append(next, entry{fresh, n})
			case "insert":
				if op.ID < 1 || op.ID > len(next)+1 {
					return bad("id %d: insert takes an id from 1 to %d (the end)", op.ID, len(next)+1)
				}
				next = slices.Insert(next, op.ID-1, entry{fresh, n})
			case "update":
				if op.ID < 1 || op.ID > len(next) {
					return bad("id %d: there are %d rules", op.ID, len(next))
				}
				if op.Rule.Created.IsZero() {
					n.created = next[op.ID-1].n.created
				}
				next[op.ID-1].n = n // keeps the slot: counters continue
			}
		case "delete":
			if op.ID != 0 {
				if op.ID < 1 || op.ID > len(next) {
					return bad("id %d: there are %d rules", op.ID, len(next))
				}
				next = slices.Delete(next, op.ID-1, op.ID)
				continue
			}
			n, err := normalize(op.Rule, now)
			if err != nil {
				return bad("delete by match: %v", err)
			}
			j := slices.IndexFunc(next, func(e entry) bool { return e.n.sameMatch(n) })
			if j < 0 {
				return bad("no rule matches %s", describe(n.rule()))
			}
			next = slices.Delete(next, j, j+1)
		default:
			return bad("unknown operation %q: want insert, append, update or delete", op.Op)
		}
	}
	// Slots: keep those of surviving rules, give new rules free ones.
	keep := make([]bool, len(f.used))
	for _, e := range next {
		if e.slot != fresh {
			keep[e.slot] = true
		}
	}
	var added []uint32
	slot := uint32(0)
	for i := range next {
		if next[i].slot != fresh {
			continue
		}
		for slot < uint32(len(f.used)) && (f.used[slot] || keep[slot]) {
			slot++
		}
		if slot >= uint32(len(f.used)) {
			return &BatchError{Index: -1, Op: "batch", Err: fmt.Errorf("%w: more than %d rules", ErrInvalid, len(f.used))}
		}
		next[i].slot = slot
		added = append(added, slot)
		slot++
	}
	want, err := compile(next)
	if err != nil {
		return &BatchError{Index: -1, Op: "batch", Err: fmt.Errorf("%w: %v", ErrInvalid, err)}
	}
	var removed []uint32
	for s, u := range f.used {
		if u && !keep[s] {
			removed = append(removed, uint32(s))
		}
	}
	err = f.m.WithMaps(ProbeName, func(maps map[string]*ebpf.Map) error {
		if err := writeRules(maps, next, added); err != nil {
			return err
		}
		if err := f.writeTries(maps, want); err != nil {
			return err
		}
		return clearSlots(maps, removed)
	})
	if err != nil {
		// Put the kernel back as the old list says (best effort).
		f.m.WithMaps(ProbeName, func(maps map[string]*ebpf.Map) error {
			if old, cerr := compile(f.rules); cerr == nil {
				f.writeTries(maps, old)
			}
			return nil
		})
		return fmt.Errorf("firewall: updating the kernel maps: %w", err)
	}
	for _, s := range removed {
		f.used[s] = false
	}
	for _, e := range next {
		f.used[e.slot] = true
	}
	f.rules = next
	return nil
}

// Flush removes every rule (the allowlist stays).
func (f *Firewall) Flush() (int, error) {
	f.mu.Lock()
	n := len(f.rules)
	f.mu.Unlock()
	ops := make([]Op, n)
	for i := range ops {
		ops[i] = Op{Op: "delete", ID: 1}
	}
	return n, f.Apply(ops)
}

// writeRules writes every rule's slot (positions may have moved) and zeroes
// the counters of newly used slots.
func writeRules(maps map[string]*ebpf.Map, rules []entry, added []uint32) error {
	keys := make([]uint32, len(rules))
	vals := make([]fwprobe.KernelRule, len(rules))
	mono := monoOffset()
	for i, e := range rules {
		keys[i] = e.slot
		vals[i] = toKernel(e.n, uint32(i+1), mono)
	}
	if err := batchPut(maps["fw_rules"], keys, vals); err != nil {
		return fmt.Errorf("fw_rules: %w", err)
	}
	zero := make([]fwprobe.Counter, ebpf.MustPossibleCPU())
	for _, s := range added {
		if err := maps["fw_counters"].Put(s, zero); err != nil {
			return fmt.Errorf("fw_counters: %w", err)
		}
	}
	return nil
}

func clearSlots(maps map[string]*ebpf.Map, slots []uint32) error {
	if len(slots) == 0 {
		return nil
	}
	vals := make([]fwprobe.KernelRule, len(slots))
	return batchPut(maps["fw_rules"], slots, vals)
}

// batchPut updates an array map in one call where the kernel can.
func batchPut[V any](m *ebpf.Map, keys []uint32, vals []V) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := m.BatchUpdate(keys, vals, nil); err == nil {
		return nil
	} else if !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	for i := range keys {
		if err := m.Put(keys[i], vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// writeTries makes the rule prefix maps hold want: changed and new
// prefixes are written, then the lengths the data plane tries, then the
// prefixes no longer used are deleted. A packet meanwhile sees the old
// rules or the new ones for its prefix, never none.
func (f *Firewall) writeTries(maps map[string]*ebpf.Map, want map[trieKey][]uint32) error {
	for k, slots := range want {
		if cur, ok := f.tries[k]; ok && slices.Equal(cur, slots) {
			continue
		}
		var err error
		if k.prefix.Addr().Is4() {
			err = maps["fw_pfx_v4"].Put(pkey4(k), candidates(slots))
		} else {
			err = maps["fw_pfx_v6"].Put(pkey6(k), candidates(slots))
		}
		if err != nil {
			return fmt.Errorf("rule prefixes, %s: %w", k.prefix, err)
		}
		f.tries[k] = slots
	}
	if err := f.writeLens(maps, lensInUse(want)); err != nil {
		return err
	}
	for k := range f.tries {
		if _, ok := want[k]; ok {
			continue
		}
		var err error
		if k.prefix.Addr().Is4() {
			err = maps["fw_pfx_v4"].Delete(pkey4(k))
		} else {
			err = maps["fw_pfx_v6"].Delete(pkey6(k))
		}
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("rule prefixes, %s: %w", k.prefix, err)
		}
		delete(f.tries, k)
	}
	return nil
}

// writeLens writes the prefix lengths the data plane tries, and how many
// allowlist prefixes each family has (none: it skips the allowlist).
func (f *Firewall) writeLens(maps map[string]*ebpf.Map, lens map[lenKey][]int) error {
	allow := map[bool]uint32{}
	for p := range f.allow {
		allow[p.Addr().Is6()]++
	}
	for _, lk := range []lenKey{{0, false}, {0, true}, {1, false}, {1, true}} {
		l := lenset(lens[lk])
		l.Allow = allow[lk.v6]
		if err := maps["fw_lens"].Put(lk.index(), l); err != nil {
			return fmt.Errorf("prefix lengths: %w", err)
		}
	}
	return nil
}

// Allowlist returns the allowlisted prefixes, sorted.
func (f *Firewall) Allowlist() []netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]netip.Prefix, 0, len(f.allow))
	for p := range f.allow {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

// Allowed reports whether addr is inside an allowlisted prefix.
func (f *Firewall) Allowed(addr netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	addr = addr.Unmap()
	for p := range f.allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Allow adds prefixes (or addresses) to the allowlist.
func (f *Firewall) Allow(prefixes ...string) error { return f.changeAllow(prefixes, true) }

// Disallow removes prefixes from the allowlist.
func (f *Firewall) Disallow(prefixes ...string) error { return f.changeAllow(prefixes, false) }

func (f *Firewall) changeAllow(prefixes []string, add bool) error {
	ps := make([]netip.Prefix, 0, len(prefixes))
	for _, s := range prefixes {
		p, err := parsePrefix(s)
		if err != nil || !p.IsValid() {
			if err == nil {
				err = fmt.Errorf("%q names no prefix", s)
			}
			return fmt.Errorf("%w: allowlist: %v", ErrInvalid, err)
		}
		ps = append(ps, p)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m.WithMaps(ProbeName, func(maps map[string]*ebpf.Map) error {
		one := uint32(1)
		for _, p := range ps {
			k := trieKey{0, p}
			var err error
			switch {
			case add && p.Addr().Is4():
				err = maps["fw_allow_v4"].Put(key4(k), one)
			case add:
				err = maps["fw_allow_v6"].Put(key6(k), one)
			case p.Addr().Is4():
				err = maps["fw_allow_v4"].Delete(key4(k))
			default:
				err = maps["fw_allow_v6"].Delete(key6(k))
			}
			if err != nil && !(errors.Is(err, ebpf.ErrKeyNotExist) && !add) {
				return fmt.Errorf("allowlist %s: %w", p, err)
			}
			if add {
				f.allow[p] = true
			} else {
				delete(f.allow, p)
			}
		}
		return f.writeLens(maps, lensInUse(f.tries))
	})
}

// Stats returns the firewall's packet counters by name.
func (f *Firewall) Stats() (map[string]uint64, error) {
	names := []string{"packets", "passed", "dropped", "allowlisted", "ratelimited", "not_ip", "malformed", "expired_skipped"}
	out := map[string]uint64{}
	err := f.m.WithMaps(ProbeName, func(maps map[string]*ebpf.Map) error {
		var per []uint64
		for i, n := range names {
			if err := maps["fw_stats"].Lookup(uint32(i), &per); err != nil {
				return err
			}
			var s uint64
			for _, v := range per {
				s += v
			}
			out[n] = s
		}
		// The data plane counts each packet once, as passed or dropped.
		out["packets"] = out["passed"] + out["dropped"]
		return nil
	})
	return out, err
}

// sweep removes expired rules.
func (f *Firewall) sweep() {
	defer close(f.done)
	t := time.NewTicker(f.opts.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		f.expire(time.Now())
	}
}

// expire removes the rules that expired by now.
func (f *Firewall) expire(now time.Time) {
	f.mu.Lock()
	var ops []Op
	var gone []Rule
	// Delete from the end so earlier ids stay valid.
	for i := len(f.rules) - 1; i >= 0; i-- {
		if e := f.rules[i].n.expires; !e.IsZero() && !now.Before(e) {
			ops = append(ops, Op{Op: "delete", ID: i + 1})
			r := f.rules[i].n.rule()
			r.ID = i + 1
			gone = append(gone, r)
		}
	}
	var err error
	if len(ops) > 0 {
		// Under the same lock as the listing, so the ids are still right.
		err = f.apply(ops)
	}
	f.mu.Unlock()
	if len(ops) == 0 {
		return
	}
	if err != nil {
		f.log.Warn("firewall: removing expired rules", "error", err)
		return
	}
	for _, r := range gone {
		f.log.Info("firewall rule expired", "rule", describe(r))
		if f.opts.OnExpire != nil {
			f.opts.OnExpire(r)
		}
	}
}

// describe is a one-line summary of a rule, for logs and errors.
func describe(r Rule) string {
	var b strings.Builder
	b.WriteString(r.Action)
	if r.Direction == Egress {
		b.WriteString(" egress")
	}
	for _, f := range [][2]string{{"src", r.Src}, {"dst", r.Dst}, {"proto", r.Proto}, {"sport", r.Sport}, {"dport", r.Dport}, {"tcpflags", r.TCPFlags}} {
		if f[1] != "" {
			fmt.Fprintf(&b, " %s %s", f[0], f[1])
		}
	}
	if r.Action == ActionRateLimit {
		fmt.Fprintf(&b, " rate %d/s burst %d", r.Rate, r.Burst)
	}
	return b.String()
}

// monoOffset is CLOCK_MONOTONIC minus the wall clock, in ns: the data
// plane compares expiry times with bpf_ktime_get_ns.
func monoOffset() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() - time.Now().UnixNano()
}

func toKernel(n norm, position uint32, mono int64) fwprobe.KernelRule {
	k := fwprobe.KernelRule{
		InUse: 1, Position: position, Family: n.family, Dir: n.dir, Action: n.action, Match: n.match,
		Proto: n.proto, FlagsMask: n.flagsMask, FlagsValue: n.flagsValue,
		SportLo: n.sport[0], SportHi: n.sport[1], DportLo: n.dport[0], DportHi: n.dport[1],
		Remote: addrBytes(n.remote), Local: addrBytes(n.local), LocalMask: maskBytes(n.local),
		RatePps: n.rate, Burst: n.burst, CreatedUnixNs: uint64(n.created.UnixNano()),
	}
	if n.remote.IsValid() {
		k.RemotePlen = uint8(n.remote.Bits())
	}
	if n.local.IsValid() {
		k.LocalPlen = uint8(n.local.Bits())
	}
	if !n.expires.IsZero() {
		k.ExpiresUnixNs = uint64(n.expires.UnixNano())
		k.ExpiresMonoNs = uint64(n.expires.UnixNano() + mono)
	}
	for i := 0; i < len(n.description) && i < len(k.Description)-1; i++ {
		k.Description[i] = int8(n.description[i])
	}
	return k
}

func fromKernel(k *fwprobe.KernelRule) norm {
	n := norm{
		family: k.Family, dir: k.Dir, action: k.Action, match: k.Match, proto: k.Proto,
		flagsMask: k.FlagsMask, flagsValue: k.FlagsValue,
		sport: [2]uint16{k.SportLo, k.SportHi}, dport: [2]uint16{k.DportLo, k.DportHi},
		rate: k.RatePps, burst: k.Burst, created: time.Unix(0, int64(k.CreatedUnixNs)),
	}
	// A prefix of length 0 is "any": the rule is filed under the whole
	// family either way.
	if k.RemotePlen > 0 {
		n.remote = prefixFromBytes(k.Remote, int(k.RemotePlen), k.Family)
	}
	if k.Match&mLocal != 0 {
		n.local = prefixFromBytes(k.Local, int(k.LocalPlen), k.Family)
	}
	if k.ExpiresUnixNs != 0 {
		n.expires = time.Unix(0, int64(k.ExpiresUnixNs))
	}
	var d []byte
	for _, c := range k.Description {
		if c == 0 {
			break
		}
		d = append(d, byte(c))
	}
	n.description = string(d)
	return n
}
