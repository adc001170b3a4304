package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/rampart-shield/rampart/internal/firewall"
	"github.com/rampart-shield/rampart/internal/lab"
	"github.com/rampart-shield/rampart/internal/probe"
)

// Flood source modes.
const (
	modeSingle = "single"
	modeRandom = "random"
)

var modes = []string{modeSingle, modeRandom}

// Flood configurations (part 3). sender and xdp-drop are references: the
// sender's own cost, and the cheapest possible XDP drop on this veth.
const (
	cfgSender   = "sender"
	cfgXDPDrop  = "xdp-drop"
	cfgFirewall = "firewall"
	cfgNft      = "nft"
)

// sinkName is the device in the attacker's namespace that the sender-only
// runs flood: an ifb device, which frees every packet that was not
// redirected to it by tc as soon as it is given one (this kernel has no
// dummy driver), counting it in its rx counters.
const sinkName = "fwbsink0"

// floodEnv is the lab and the tools every flood run uses.
type floodEnv struct {
	o        options
	l        *lab.Lab
	atk, cli *lab.Host
	alk, clk *lab.Link
	m        *probe.Manager
	tmp      string
	ops      []firewall.Op
	confs    map[string]string // mode -> trafgen packet config
	nftTable string
	nftFile  string
	leaked   atomic.Uint64 // flood packets that reached the guard socket
	port     int           // iperf3 server port
	fwMode   string        // how the firewall's XDP program attached
}

// setupLab makes the attacker (and, for part 4, the client) namespace.
func setupLab(ctx context.Context, o options, m *probe.Manager, tmp string) (*floodEnv, func(), error) {
	e := &floodEnv{o: o, m: m, tmp: tmp, confs: map[string]string{}}
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	fail := func(err error) (*floodEnv, func(), error) {
		cleanup()
		return nil, nil, err
	}
	l, err := lab.New()
	if err != nil {
		return fail(err)
	}
	e.l = l
	undo = append(undo, func() {
		if err := l.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "firewall bench: lab close:", err)
		}
	})
	if e.atk, err = l.AddHost("attacker"); err != nil {
		return fail(err)
	}
	// Quiet: no IPv6, static neighbours; the receiving end gets its
	// channels first (lab does it in that order).
	if e.alk, err = l.ConnectRoot(e.atk, lab.LinkOptions{Quiet: true, Channels: o.channels}); err != nil {
		return fail(err)
	}
	// The attacker must have no default route (lab never installs one):
	// spoofed packets can only go down the veth.
	for _, fam := range []string{"-4", "-6"} {
		out, err := e.atk.Run(ctx, 10*time.Second, "ip", fam, "route", "show", "default")
		if err != nil {
			return fail(err)
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			return fail(fmt.Errorf("the attacker namespace has a default route (%s): refusing to flood", s))
		}
	}
	// Strict reverse-path filtering on the root end (only this lab
	// interface): should a flood packet ever get past the filter, the
	// stack drops it instead of answering its spoofed source.
	rp := "/proc/sys/net/ipv4/conf/" + e.alk.BIface + "/rp_filter"
	if err := os.WriteFile(rp, []byte("1"), 0o644); err != nil {
		return fail(fmt.Errorf("rp_filter: %w", err))
	}
	// And a socket on the flood's destination port that swallows whatever
	// arrives (no ICMP port unreachable) and counts it.
	guard, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(e.alk.BAddr, floodDport)))
	if err != nil {
		return fail(fmt.Errorf("guard socket: %w", err))
	}
	undo = append(undo, func() { guard.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := guard.ReadFrom(buf); err != nil {
				return
			}
			e.leaked.Add(1)
		}
	}()
	// Transmit steering on the attacker's end: CPU i sends on queue i,
	// which is receive queue i of the root end, so each CPU feeds its own
	// queue and NAPI (one queue caps native XDP on a veth near 1.2 Mpps).
	// Without it the kernel picks the queue; both were busy either way in
	// our runs, but this does not depend on how it picks.
	if o.xps {
		for q := 0; q < max(o.channels, 1); q++ {
			mask := strconv.FormatUint(1<<(q%runtime.NumCPU()), 16)
			p := fmt.Sprintf("/sys/class/net/%s/queues/tx-%d/xps_cpus", e.alk.AIface, q)
			if _, err := e.atk.Run(ctx, 10*time.Second, "sh", "-c", "echo "+mask+" > "+p); err != nil {
				return fail(fmt.Errorf("xps: %w", err))
			}
		}
	}
	// The sink device for the sender-only runs.
	if _, err := e.atk.Run(ctx, 10*time.Second, "ip", "link", "add", sinkName, "numtxqueues", strconv.Itoa(max(o.channels, 1)), "type", "ifb"); err != nil {
		return fail(err)
	}
	if _, err := e.atk.Run(ctx, 10*time.Second, "ip", "link", "set", sinkName, "up"); err != nil {
		return fail(err)
	}

	rootIf, err := net.InterfaceByName(e.alk.BIface)
	if err != nil {
		return fail(err)
	}
	var atkMAC net.HardwareAddr
	if err := e.atk.Do(func() error {
		ifc, err := net.InterfaceByName(e.alk.AIface)
		if err == nil {
			atkMAC = ifc.HardwareAddr
		}
		return err
	}); err != nil {
		return fail(err)
	}
	for _, mode := range modes {
		// The same frames go to the sink device in sender-only runs.
		e.confs[mode] = filepath.Join(tmp, "trafgen-"+mode+".cfg")
		conf := trafgenConf(rootIf.HardwareAddr, atkMAC, e.alk.BAddr, mode == modeRandom, o.prefixes)
		if err := os.WriteFile(e.confs[mode], []byte(conf), 0o600); err != nil {
			return fail(err)
		}
	}

	e.ops = blockOps(o.prefixes)
	e.nftTable = nftTableName("flood")
	e.nftFile = filepath.Join(tmp, "nft-flood.nft")
	if err := os.WriteFile(e.nftFile, []byte(nftRuleset(e.nftTable, o.prefixes, e.alk.BIface)), 0o600); err != nil {
		return fail(err)
	}
	undo = append(undo, func() {
		if err := nftDeleteTable(e.nftTable); err != nil {
			fmt.Fprintln(os.Stderr, "firewall bench:", err)
		}
	})

	if o.iperf {
		if e.cli, err = l.AddHost("client"); err != nil {
			return fail(err)
		}
		if e.clk, err = l.ConnectRoot(e.cli, lab.LinkOptions{Quiet: true, Channels: o.channels}); err != nil {
			return fail(err)
		}
		if err := e.steer(ctx); err != nil {
			return fail(err)
		}
		if e.port, err = freePort(e.clk.BAddr); err != nil {
			return fail(err)
		}
		srv, err := startBG("iperf3", "-s", "-B", e.clk.BAddr.String(), "-p", strconv.Itoa(e.port))
		if err != nil {
			return fail(err)
		}
		undo = append(undo, func() { srv.stop(2 * time.Second) })
		if err := waitListening(ctx, srv, e.port); err != nil {
			return fail(err)
		}
	}
	return e, cleanup, nil
}

// randomTop is the highest second octet of the random sources: 10.0-X.*.*
// lies inside the first n blocked /24s (X = 38 for 10,000: 9,984 of them).
func randomTop(n int) int { return min(n/256, 256) - 1 }

// trafgenConf is a trafgen packet: Ethernet, IPv4 and UDP to the root end
// of the lab link, 60 bytes, from blockedSrc or, when random, from
// 10.X.Y.Z with X stepping through 0-randomTop and Y, Z random, all inside
// the blocklist.
func trafgenConf(dst, src net.HardwareAddr, dstIP netip.Addr, random bool, prefixes int) string {
	hexb := func(b []byte) string {
		s := make([]string, len(b))
		for i, x := range b {
			s[i] = fmt.Sprintf("0x%02x", x)
		}
		return strings.Join(s, ", ")
	}
	d := dstIP.As4()
	s := blockedSrc.As4()
	srcIP := fmt.Sprintf("%d, %d, %d, %d", s[0], s[1], s[2], s[3])
	if random {
		srcIP = fmt.Sprintf("10, dinc(0, %d, 1), drnd(1), drnd(1)", randomTop(prefixes))
	}
	return fmt.Sprintf(`{
  %s,
  %s,
  c16(0x0800),
  0x45, 0x00, c16(%d), c16(0), c16(0), 64, 17, csumip(14, 33),
  %s,
  %d, %d, %d, %d,
  c16(%d), c16(%d), c16(%d), c16(0),
  fill(0x00, %d),
}
`, hexb(dst), hexb(src), 20+8+payloadLen, srcIP, d[0], d[1], d[2], d[3], floodSport, floodDport, 8+payloadLen, payloadLen)
}

// active is a configuration set up on the flood's interface.
type active struct {
	name  string
	dev   string // attacker-side device trafgen sends on
	drops func(ctx context.Context) (uint64, error)
	down  func() error
}

// up sets a configuration up.
func (e *floodEnv) up(ctx context.Context, cfg string) (*active, error) {
	a := &active{name: cfg, dev: e.alk.AIface, down: func() error { return nil }}
	switch cfg {
	case cfgSender:
		a.dev = sinkName
		a.drops = func(ctx context.Context) (uint64, error) {
			c, err := e.nsCounters(ctx, sinkName)
			return c.sent, err
		}
	case cfgXDPDrop:
		prog, cnt, err := xdpDropProgram()
		if err != nil {
			return nil, fmt.Errorf("xdp-drop program: %w", err)
		}
		lnk, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: e.alk.BIndex, Flags: link.XDPDriverMode})
		if err != nil {
			prog.Close()
			cnt.Close()
			return nil, fmt.Errorf("xdp-drop attach (driver mode): %w", err)
		}
		a.drops = func(context.Context) (uint64, error) {
			var per []uint64
			if err := cnt.Lookup(uint32(0), &per); err != nil {
				return 0, err
			}
			var s uint64
			for _, v := range per {
				s += v
			}
			return s, nil
		}
		a.down = func() error {
			err := lnk.Close()
			prog.Close()
			cnt.Close()
			return err
		}
	case cfgFirewall:
		f, err := firewall.Start(ctx, firewall.Options{Manager: e.m, Iface: e.alk.BIface, Logger: quiet()})
		if err != nil {
			return nil, err
		}
		if err := f.Apply(e.ops); err != nil {
			f.Close(false)
			return nil, err
		}
		if info, err := e.m.Get(firewall.ProbeName); err == nil {
			for _, p := range info.Programs {
				if p.Name == "fw_xdp" {
					e.fwMode = p.Mode
				}
			}
		}
		a.drops = func(context.Context) (uint64, error) {
			st, err := f.Stats()
			return st["dropped"], err
		}
		a.down = func() error { return f.Close(false) }
	case cfgNft:
		if _, err := nftRun(ctx, "-f", e.nftFile); err != nil {
			nftDeleteTable(e.nftTable)
			return nil, err
		}
		a.drops = func(ctx context.Context) (uint64, error) { return nftDrops(ctx, e.nftTable) }
		a.down = func() error { return nftDeleteTable(e.nftTable) }
	default:
		return nil, fmt.Errorf("unknown configuration %q", cfg)
	}
	return a, nil
}

// xdpDropProgram is the reference XDP program: count the packet in a
// per-CPU array and drop it.
func xdpDropProgram() (*ebpf.Program, *ebpf.Map, error) {
	cnt, err := ebpf.NewMap(&ebpf.MapSpec{Name: "fwb_drops", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, nil, err
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "fwb_xdp_drop", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{
			asm.StoreImm(asm.R10, -4, 0, asm.Word),
			asm.Mov.Reg(asm.R2, asm.R10),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, cnt.FD()),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, xdpDrop).WithSymbol("out"),
			asm.Return(),
		},
	})
	if err != nil {
		cnt.Close()
		return nil, nil, err
	}
	return prog, cnt, nil
}

// devCounters are the packets trafgen handed to a device: the packets it
// transmitted and those it dropped (veth: the peer's queue was full). The
// ifb sink counts them as received.
type devCounters struct{ sent, txDropped uint64 }

// nsCounters reads a device's counters in the attacker's namespace.
func (e *floodEnv) nsCounters(ctx context.Context, dev string) (devCounters, error) {
	out, err := e.atk.Run(ctx, 10*time.Second, "ip", "-j", "-s", "link", "show", "dev", dev)
	if err != nil {
		return devCounters{}, err
	}
	var doc []struct {
		Stats64 struct {
			Rx, Tx struct {
				Packets uint64 `json:"packets"`
				Dropped uint64 `json:"dropped"`
			}
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &doc); err != nil || len(doc) != 1 {
		return devCounters{}, fmt.Errorf("ip -j -s link show %s: %v: %s", dev, err, tailString(out, 256))
	}
	st := doc[0].Stats64
	if dev == sinkName {
		return devCounters{sent: st.Rx.Packets}, nil
	}
	return devCounters{st.Tx.Packets, st.Tx.Dropped}, nil
}

// flood is a running trafgen.
type flood struct {
	p *lab.Process
}

// startFlood starts trafgen in the attacker's namespace on dev, in its own
// process group (lab.Host.Start), under timeout(1) so that it stops by
// itself even if this process dies without cleaning up.
//
// With pps > 0 trafgen paces itself to that rate (one process, sendto(2)
// per packet instead of its TX ring); otherwise it sends as fast as it can
// from -flood-cpus processes.
func (e *floodEnv) startFlood(mode, dev string, seconds float64, pps int) (*flood, error) {
	conf := e.confs[mode]
	limit := strconv.Itoa(int(seconds) + 15)
	args := []string{"-s", "INT", "-k", "3", limit, e.o.trafgen, "--dev", dev, "--conf", conf,
		"--no-sock-mem", "--notouch-irq"}
	if pps > 0 {
		args = append(args, "--cpus", "1", "--rate", strconv.Itoa(pps)+"pps")
	} else {
		args = append(args, "--cpus", strconv.Itoa(e.o.floodCPUs))
	}
	p, err := e.atk.Start("timeout", args...)
	if err != nil {
		return nil, err
	}
	return &flood{p: p}, nil
}

func (f *flood) stop() error { return f.p.Stop() }

// sample is what a flood run reads at the start and the end of its window.
type sample struct {
	cpu      cpuTimes
	procs    procSnapshot
	children float64 // CPU seconds of reaped children
	drops    uint64
	sent     devCounters
	trafgen  uint64 // CPU ticks of trafgen's process group
}

func (e *floodEnv) sample(ctx context.Context, a *active, fl *flood) (sample, error) {
	var s sample
	var err error
	if s.drops, err = a.drops(ctx); err != nil {
		return s, err
	}
	if s.sent, err = e.nsCounters(ctx, a.dev); err != nil {
		return s, err
	}
	s.procs = snapshotProcs()
	s.trafgen = s.procs.groupCPU(fl.p.Pid())
	s.children = childrenCPU()
	if s.cpu, err = readCPUTimes(); err != nil {
		return s, err
	}
	return s, nil
}

// floodRun is one measured flood window.
type floodRun struct {
	cfg, mode string
	round     int
	seconds   float64
	busy      float64 // whole-machine busy CPU seconds
	steal     float64
	noise     float64 // busy CPU seconds not of this benchmark: other processes, short-lived ones included
	softirq   float64 // sampled softirq column
	trafgen   float64 // CPU seconds of trafgen's processes
	sent      uint64  // packets the attacker's device transmitted
	txDropped uint64  // packets it dropped (veth: the peer's queue was full)
	dropped   uint64  // packets the filter dropped (sender: the sink freed)
	retries   int
	noisy     bool
}

// used is the CPU the flood and its filter used: busy minus hypervisor
// steal and minus other processes.
func (r floodRun) used() float64 { return r.busy - r.steal - r.noise }

// runFlood measures one window of a flood against configuration a, again
// (up to -retries times) while other processes take too much CPU.
func (e *floodEnv) runFlood(ctx context.Context, a *active, mode string, round int) (floodRun, error) {
	var res floodRun
	for try := 0; ; try++ {
		var err error
		if res, err = e.floodOnce(ctx, a, mode, round); err != nil {
			return res, err
		}
		res.retries = try
		limit := e.o.maxNoise * e.o.seconds
		if res.noise <= limit || try >= e.o.retries {
			res.noisy = res.noise > limit
			return res, nil
		}
		fmt.Fprintf(os.Stderr, "firewall bench: %s/%s: other processes used %.2f CPU s during the run (limit %.2f): measuring again\n", a.name, mode, res.noise, limit)
		if err := sleep(ctx, time.Duration(1<<try)*time.Second); err != nil {
			return res, err
		}
	}
}

func (e *floodEnv) floodOnce(ctx context.Context, a *active, mode string, round int) (res floodRun, err error) {
	res = floodRun{cfg: a.name, mode: mode, round: round}
	fl, err := e.startFlood(mode, a.dev, e.o.warm.Seconds()+e.o.seconds, 0)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := fl.stop(); serr != nil && err == nil {
			err = fmt.Errorf("trafgen: %w: %s", serr, tailString([]byte(fl.p.Output()), 1024))
		}
	}()
	if err := sleep(ctx, e.o.warm); err != nil {
		return res, err
	}
	s0, err := e.sample(ctx, a, fl)
	if err != nil {
		return res, err
	}
	if err := sleep(ctx, time.Duration(e.o.seconds*float64(time.Second))); err != nil {
		return res, err
	}
	s1, err := e.sample(ctx, a, fl)
	if err != nil {
		return res, err
	}
	if s1.trafgen == 0 || s1.sent.sent == s0.sent.sent {
		return res, fmt.Errorf("trafgen is not sending: %s", tailString([]byte(fl.p.Output()), 1024))
	}
	res.seconds = s1.cpu.at.Sub(s0.cpu.at).Seconds()
	res.busy = s1.cpu.busySince(s0.cpu)
	res.steal = float64(s1.cpu.steal-s0.cpu.steal) / userHZ
	res.softirq = float64(s1.cpu.softirq-s0.cpu.softirq) / userHZ
	// Everything busy that is not ours (this process, trafgen, kernel
	// threads, reaped children such as the ip commands of the samples) is
	// noise: other processes, those that exited meanwhile included.
	own := float64(ownCPU(s0.procs, s1.procs))/userHZ + s1.children - s0.children
	res.noise = max(res.busy-res.steal-own, 0)
	res.trafgen = float64(s1.trafgen-s0.trafgen) / userHZ
	res.sent = s1.sent.sent - s0.sent.sent
	res.txDropped = s1.sent.txDropped - s0.sent.txDropped
	res.dropped = s1.drops - s0.drops
	return res, nil
}

// benchFlood runs part 3: rounds of every configuration with both source
// modes, the order of configurations rotated every round.
func (e *floodEnv) benchFlood(ctx context.Context) ([]floodRun, error) {
	var out []floodRun
	cfgs := e.o.floodConfigs
	for r := 0; r < e.o.rounds; r++ {
		for i := range cfgs {
			cfg := cfgs[(i+r)%len(cfgs)]
			runs, err := e.floodConfig(ctx, cfg, r)
			out = append(out, runs...)
			if err != nil {
				return out, fmt.Errorf("round %d, %s: %w", r+1, cfg, err)
			}
		}
	}
	return out, nil
}

func (e *floodEnv) floodConfig(ctx context.Context, cfg string, r int) (out []floodRun, err error) {
	a, err := e.up(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		// Let packets in flight drain before the filter goes.
		time.Sleep(100 * time.Millisecond)
		if derr := a.down(); derr != nil && err == nil {
			err = derr
		}
	}()
	for j := range modes {
		mode := modes[(j+r)%len(modes)]
		res, err := e.runFlood(ctx, a, mode, r)
		if err != nil {
			return out, fmt.Errorf("%s flood: %w", mode, err)
		}
		if e.o.verbose {
			fmt.Fprintf(os.Stderr, "flood round %d %-8s %-6s %5.2f Mpps dropped of %5.2f sent (%d tx-dropped)  busy %.2f s  steal %.2f  noise %.2f  softirq %.2f  trafgen %.2f s  %4.0f ns/drop\n",
				r+1, cfg, mode, float64(res.dropped)/res.seconds/1e6, float64(res.sent)/res.seconds/1e6, res.txDropped,
				res.busy, res.steal, res.noise, res.softirq, res.trafgen, 1e9*res.used()/float64(max(res.dropped, 1)))
		}
		out = append(out, res)
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return out, err
		}
	}
	return out, nil
}

// iperfRun is one benign-throughput measurement (part 4).
type iperfRun struct {
	cfg     iperfCfg
	round   int
	gbps    float64
	retrans uint64
	dropped uint64 // flood packets the filter dropped meanwhile
	seconds float64
	noise   float64 // CPU seconds of other processes (alive at the end) during the iperf3 run
	retries int
	noisy   bool
}

// iperfCfg is a part 4 configuration: which filter drops the flood (none:
// no flood at all) and the flood's rate (0: as fast as trafgen can).
type iperfCfg struct {
	filter string
	pps    int
}

func (c iperfCfg) String() string {
	switch {
	case c.filter == "":
		return "no flood"
	case c.pps == 0:
		return c.filter + ", full-rate flood"
	}
	return fmt.Sprintf("%s, %d kpps flood", c.filter, c.pps/1000)
}

// iperfConfigs are the part 4 configurations in the order of round 1.
func (o options) iperfConfigs() []iperfCfg {
	cfgs := []iperfCfg{{}, {cfgFirewall, 0}, {cfgNft, 0}}
	if o.pacedPPS > 0 {
		cfgs = append(cfgs, iperfCfg{cfgFirewall, o.pacedPPS}, iperfCfg{cfgNft, o.pacedPPS})
	}
	return cfgs
}

// benchIperf runs part 4: iperf3 from the client namespace with no flood,
// and with the random-source flood dropped by the firewall and by nft.
func (e *floodEnv) benchIperf(ctx context.Context) ([]iperfRun, error) {
	cfgs := e.o.iperfConfigs()
	var out []iperfRun
	for r := 0; r < e.o.rounds; r++ {
		for i := range cfgs {
			cfg := cfgs[(i+r)%len(cfgs)]
			var res iperfRun
			for try := 0; ; try++ {
				var err error
				if res, err = e.iperfOnce(ctx, cfg, r); err != nil {
					return out, fmt.Errorf("iperf3 round %d, %s: %w", r+1, cfg, err)
				}
				res.retries = try
				limit := e.o.maxNoise * float64(e.o.iperfSeconds)
				if res.noise <= limit || try >= e.o.retries {
					res.noisy = res.noise > limit
					break
				}
				fmt.Fprintf(os.Stderr, "firewall bench: iperf3, %s: other processes used %.2f CPU s during the run (limit %.2f): measuring again\n", cfg, res.noise, limit)
				if err := sleep(ctx, time.Duration(1<<try)*time.Second); err != nil {
					return out, err
				}
			}
			if e.o.verbose {
				fmt.Fprintf(os.Stderr, "iperf3 round %d %-26s %6.2f Gbit/s  retrans %d  flood dropped %.3f Mpps  noise %.2f s\n", r+1, cfg, res.gbps, res.retrans, float64(res.dropped)/res.seconds/1e6, res.noise)
			}
			out = append(out, res)
		}
	}
	return out, nil
}

func (e *floodEnv) iperfOnce(ctx context.Context, cfg iperfCfg, r int) (res iperfRun, err error) {
	res = iperfRun{cfg: cfg, round: r}
	var a *active
	var fl *flood
	if cfg.filter != "" {
		if a, err = e.up(ctx, cfg.filter); err != nil {
			return res, err
		}
		defer func() {
			time.Sleep(100 * time.Millisecond)
			if derr := a.down(); derr != nil && err == nil {
				err = derr
			}
		}()
		if fl, err = e.startFlood(modeRandom, a.dev, e.o.warm.Seconds()+float64(e.o.iperfSeconds)+10, cfg.pps); err != nil {
			return res, err
		}
		defer func() {
			if serr := fl.stop(); serr != nil && err == nil {
				err = fmt.Errorf("trafgen: %w", serr)
			}
		}()
		if err := sleep(ctx, e.o.warm); err != nil {
			return res, err
		}
	}
	var d0 uint64
	if a != nil {
		if d0, err = a.drops(ctx); err != nil {
			return res, err
		}
	}
	t0 := time.Now()
	args := []string{"-c", e.clk.BAddr.String(), "-p", strconv.Itoa(e.port), "-P", strconv.Itoa(e.o.streams),
		"-t", strconv.Itoa(e.o.iperfSeconds), "-J"}
	if e.o.pin != "" {
		args = append(args, "-A", e.o.pin)
	}
	// Noise here is the CPU of other processes alive at the end: unlike
	// during a flood the CPUs idle at times, and receive work that an
	// idle CPU does (steered there by RPS) belongs to no process, so what
	// no process of ours used is not necessarily someone else's.
	p0 := snapshotProcs()
	out, err := e.cli.Run(ctx, time.Duration(e.o.iperfSeconds)*time.Second+30*time.Second, "iperf3", args...)
	res.seconds = time.Since(t0).Seconds()
	if err != nil {
		return res, err
	}
	res.noise = float64(foreignCPU(p0, snapshotProcs())) / userHZ
	if a != nil {
		d1, err := a.drops(ctx)
		if err != nil {
			return res, err
		}
		res.dropped = d1 - d0
		if res.dropped == 0 {
			return res, errors.New("the flood was not running (nothing dropped)")
		}
	}
	ip, err := parseIperf(out)
	if err != nil {
		return res, err
	}
	res.gbps = ip.End.SumReceived.BitsPerSecond / 1e9
	res.retrans = ip.End.SumSent.Retransmits
	return res, nil
}

// steer sets receive packet steering on the client link's two ends so that
// each end's receive processing runs on the CPU of the iperf3 process
// there (as bench/netmon does, for the same reason: without it a flow's
// segments are queued on whichever CPU sent them and arrive out of order).
func (e *floodEnv) steer(ctx context.Context) error {
	if e.o.pin == "" {
		return nil
	}
	cli, srv, ok := strings.Cut(e.o.pin, ",")
	if !ok {
		return fmt.Errorf("-pin %q: want CLIENT,SERVER", e.o.pin)
	}
	mask := func(cpu string) (string, error) {
		n, err := strconv.Atoi(cpu)
		if err != nil || n < 0 || n > 63 {
			return "", fmt.Errorf("-pin %q: bad CPU %q", e.o.pin, cpu)
		}
		return strconv.FormatUint(1<<n, 16), nil
	}
	srvMask, err := mask(srv)
	if err != nil {
		return err
	}
	cliMask, err := mask(cli)
	if err != nil {
		return err
	}
	for q := 0; q < max(e.o.channels, 1); q++ {
		p := fmt.Sprintf("/sys/class/net/%s/queues/rx-%d/rps_cpus", e.clk.BIface, q)
		if err := os.WriteFile(p, []byte(srvMask), 0o644); err != nil {
			return fmt.Errorf("rps: %w", err)
		}
		p = fmt.Sprintf("/sys/class/net/%s/queues/rx-%d/rps_cpus", e.clk.AIface, q)
		if _, err := e.cli.Run(ctx, 10*time.Second, "sh", "-c", "echo "+cliMask+" > "+p); err != nil {
			return fmt.Errorf("rps: %w", err)
		}
	}
	return nil
}

// freePort picks a TCP port free on addr.
func freePort(addr netip.Addr) (int, error) {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits for the iperf3 server's listening socket, read from
// /proc/net/tcp so that no connection disturbs the server.
func waitListening(ctx context.Context, p *bg, port int) error {
	hexPort := fmt.Sprintf(":%04X ", port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile("/proc/net/tcp")
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) > 3 && strings.HasSuffix(fs[1]+" ", hexPort) && fs[3] == "0A" {
				return nil
			}
		}
		if !p.running() {
			return fmt.Errorf("iperf3 server exited: %s", p.output())
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("iperf3 server not listening on port %d after 10 s: %s", port, p.output())
}

// iperfResult is the part of `iperf3 -J` output the benchmark reads.
type iperfResult struct {
	Error string `json:"error"`
	End   struct {
		SumReceived struct {
			Bytes         uint64  `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		SumSent struct {
			Retransmits uint64 `json:"retransmits"`
		} `json:"sum_sent"`
	} `json:"end"`
}

func parseIperf(out []byte) (iperfResult, error) {
	var r iperfResult
	i := strings.IndexByte(string(out), '{')
	if i < 0 {
		return r, fmt.Errorf("iperf3: no JSON in output: %q", tailString(out, 512))
	}
	if err := json.Unmarshal(out[i:], &r); err != nil {
		return r, fmt.Errorf("iperf3: %w: %q", err, tailString(out, 512))
	}
	if r.Error != "" {
		return r, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.Bytes == 0 {
		return r, fmt.Errorf("iperf3: the receiver got no bytes")
	}
	return r, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
