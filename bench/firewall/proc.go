package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of /proc/stat and /proc/PID/stat times (USER_HZ, 100
// on every Linux architecture Go supports).
const userHZ = 100

// cpuTimes is the "cpu" line of /proc/stat (ticks), the number of CPUs and
// when it was read.
//
// With tick-based CPU accounting (CONFIG_TICK_CPU_ACCOUNTING, no
// IRQ_TIME_ACCOUNTING, as on our machines) user, system, irq and softirq
// are samples taken at each timer tick. Idle and iowait are measured at
// idle entry and exit (NO_HZ), so busy time is taken as CPUs x elapsed
// minus idle and iowait.
type cpuTimes struct {
	at      time.Time
	ncpu    int
	softirq uint64 // sampled
	steal   uint64
	idle    uint64 // idle + iowait
}

// busySince is the whole machine's busy time from c0 to c in seconds.
func (c cpuTimes) busySince(c0 cpuTimes) float64 {
	return float64(c.ncpu)*c.at.Sub(c0.at).Seconds() - float64(c.idle-c0.idle)/userHZ
}

func readCPUTimes() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	at := time.Now()
	if err != nil {
		return cpuTimes{}, err
	}
	line, rest, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [9]uint64
	for i := 1; i < 9; i++ { // user nice system idle iowait irq softirq steal
		if v[i], err = strconv.ParseUint(f[i], 10, 64); err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
	}
	n := 0
	for _, l := range strings.Split(string(rest), "\n") {
		if strings.HasPrefix(l, "cpu") {
			n++
		}
	}
	return cpuTimes{at: at, ncpu: n, softirq: v[7], steal: v[8], idle: v[4] + v[5]}, nil
}

// procStat is what the benchmark needs of /proc/PID/stat.
type procStat struct {
	ppid, pgrp int
	kthread    bool
	start      uint64 // starttime: tells a pid's reuse apart
	cpu        uint64 // utime + stime, ticks
}

// pfKthread is PF_KTHREAD in the flags field of /proc/PID/stat.
const pfKthread = 0x00200000

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields that follow start after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 { // f[0] is field 3 (state)
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	num := func(field int) uint64 {
		n, _ := strconv.ParseUint(f[field-3], 10, 64)
		return n
	}
	return procStat{
		ppid:    int(num(4)),
		pgrp:    int(num(5)),
		kthread: num(9)&pfKthread != 0,
		start:   num(22),
		cpu:     num(14) + num(15),
	}, nil
}

// procSnapshot maps pid to its stat, for every process.
type procSnapshot map[int]procStat

func snapshotProcs() procSnapshot {
	s := procSnapshot{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return s
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readProcStat(pid); err == nil {
			s[pid] = st
		}
	}
	return s
}

// groupCPU is the CPU time (ticks) of the processes of group pgid in the
// snapshot.
func (s procSnapshot) groupCPU(pgid int) uint64 {
	var t uint64
	for _, st := range s {
		if st.pgrp == pgid {
			t += st.cpu
		}
	}
	return t
}

// ours reports whether pid is this process or one of its descendants.
func (s procSnapshot) ours(pid int) bool {
	self := os.Getpid()
	for i := 0; i < 64 && pid > 1; i++ {
		if pid == self {
			return true
		}
		st, ok := s[pid]
		if !ok {
			return false
		}
		pid = st.ppid
	}
	return false
}

// ownCPU is the CPU time (ticks) that this benchmark's live processes
// (itself, trafgen, the iperf3 server) and kernel threads (ksoftirqd,
// workers: the traffic's own packet processing) used between two
// snapshots. Processes that started and exited in between are not in it
// (children of ours: getrusage(RUSAGE_CHILDREN) has them).
func ownCPU(before, after procSnapshot) uint64 {
	var own uint64
	for pid, a := range after {
		if !a.kthread && !after.ours(pid) {
			continue
		}
		d := a.cpu // started in between
		if b, ok := before[pid]; ok && b.start == a.start {
			d = 0
			if a.cpu > b.cpu {
				d = a.cpu - b.cpu
			}
		}
		own += d
	}
	return own
}

// foreignCPU is the CPU time (ticks) that user-space processes other than
// this benchmark's used between two snapshots, counting those alive at the
// second one only (a lower bound).
func foreignCPU(before, after procSnapshot) uint64 {
	var foreign uint64
	for pid, a := range after {
		if a.kthread || after.ours(pid) {
			continue
		}
		d := a.cpu // started in between
		if b, ok := before[pid]; ok && b.start == a.start {
			d = 0
			if a.cpu > b.cpu {
				d = a.cpu - b.cpu
			}
		}
		foreign += d
	}
	return foreign
}

// childrenCPU is the CPU time of this process's reaped children, seconds.
func childrenCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// ifStat reads an interface counter of the root network namespace.
func ifStat(iface, counter string) (uint64, error) {
	b, err := os.ReadFile("/sys/class/net/" + iface + "/statistics/" + counter)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// bg is a command run in the background in the root network namespace, in
// its own process group, so stop kills it and everything it started. (Lab
// hosts run their processes through lab.Host.Start, which does the same.)
type bg struct {
	name   string
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{} // closed when the leader exited (still unreaped)
	once   sync.Once
	err    error
}

func startBG(name string, args ...string) (*bg, error) {
	p := &bg{name: name, out: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		// Wait without reaping: while the leader is a zombie its pid (the
		// group id) cannot be reused, so signalling the group stays safe.
		var info unix.Siginfo
		for unix.Waitid(unix.P_PID, p.cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
		}
		close(p.exited)
	}()
	return p, nil
}

func (p *bg) pid() int { return p.cmd.Process.Pid }

// running reports whether the leader has not exited yet.
func (p *bg) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the group, SIGKILL after grace, then kills what is
// left of the group and reaps the leader. It returns the leader's exit
// error unless a signal of ours ended it.
func (p *bg) stop(grace time.Duration) error {
	p.once.Do(func() {
		unix.Kill(-p.pid(), unix.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(grace):
			unix.Kill(-p.pid(), unix.SIGKILL)
			<-p.exited
		}
		unix.Kill(-p.pid(), unix.SIGKILL)
		err := p.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				err = nil
			}
		}
		p.err = err
	})
	return p.err
}

func (p *bg) output() string { return tailString(p.out.Bytes(), 2048) }

// lockedBuffer keeps a command's output (both pipes write to it).
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 1<<20 {
		b.b.Reset()
	}
	return b.b.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.b.Bytes()...)
}

func tailString(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
