package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc/stat and /proc/PID/stat times (USER_HZ, 100
// on every Linux architecture Go supports).
const userHZ = 100

// cpuTimes is the "cpu" line of /proc/stat (ticks), the number of CPUs
// and when it was read.
//
// With tick-based CPU accounting (CONFIG_TICK_CPU_ACCOUNTING, no
// IRQ_TIME_ACCOUNTING) user, system, irq and softirq are samples taken at
// each timer tick: work that keeps in step with the tick (a paced sender
// waking on timers) is largely missed. Idle and iowait are measured exactly
// at idle entry and exit (NO_HZ), so busy time is taken as CPUs x elapsed
// minus idle and iowait: the same quantity, user + nice + system + irq +
// softirq + steal, without the sampling error.
type cpuTimes struct {
	at    time.Time
	ncpu  int
	task  uint64 // user + nice + system: sampled time charged to tasks (guest is inside user and nice)
	irq   uint64 // irq + softirq, sampled
	steal uint64
	idle  uint64 // idle + iowait
}

// sampled is user + nice + system + irq + softirq + steal as the columns
// say.
func (c cpuTimes) sampled() uint64 { return c.task + c.irq + c.steal }

// busySince is the whole machine's busy time from c0 to c in seconds:
// CPUs x elapsed - (idle + iowait).
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
	return cpuTimes{at: at, ncpu: n, task: v[1] + v[2] + v[3], irq: v[6] + v[7], steal: v[8], idle: v[4] + v[5]}, nil
}

// procStat is what the benchmark needs of /proc/PID/stat.
type procStat struct {
	ppid    int
	kthread bool
	start   uint64 // starttime: tells a pid's reuse apart
	cpu     uint64 // utime + stime, ticks
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
		kthread: num(9)&pfKthread != 0,
		start:   num(22),
		cpu:     num(14) + num(15),
	}, nil
}

// procCPU is the CPU time (user + system) a process used so far, ticks.
func procCPU(pid int) uint64 {
	s, err := readProcStat(pid)
	if err != nil {
		return 0
	}
	return s.cpu
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

// cpuSplit is the CPU time (ticks) processes used between two snapshots:
// own is this benchmark's live processes (itself, the iperf3 server,
// softflowd) and kernel threads (ksoftirqd, workers: mostly the traffic's
// own packet processing); foreign is every other user-space process alive
// at the second snapshot. Processes that started and exited in between are
// in neither (children of ours: getrusage(RUSAGE_CHILDREN) has them).
func cpuSplit(before, after procSnapshot) (own, foreign uint64) {
	for pid, a := range after {
		d := a.cpu // started in between
		if b, ok := before[pid]; ok && b.start == a.start {
			d = 0
			if a.cpu > b.cpu {
				d = a.cpu - b.cpu
			}
		}
		if a.kthread || after.ours(pid) {
			own += d
		} else {
			foreign += d
		}
	}
	return own, foreign
}

// ifStat reads an interface counter of the root network namespace.
func ifStat(iface, counter string) (uint64, error) {
	b, err := os.ReadFile("/sys/class/net/" + iface + "/statistics/" + counter)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

type ifCounters struct{ rxBytes, rxPackets, txBytes, txPackets uint64 }

func readIfCounters(iface string) (ifCounters, error) {
	var c ifCounters
	for _, x := range []struct {
		name string
		dst  *uint64
	}{{"rx_bytes", &c.rxBytes}, {"rx_packets", &c.rxPackets}, {"tx_bytes", &c.txBytes}, {"tx_packets", &c.txPackets}} {
		v, err := ifStat(iface, x.name)
		if err != nil {
			return c, err
		}
		*x.dst = v
	}
	return c, nil
}

func (c ifCounters) sub(o ifCounters) ifCounters {
	return ifCounters{c.rxBytes - o.rxBytes, c.rxPackets - o.rxPackets, c.txBytes - o.txBytes, c.txPackets - o.txPackets}
}

// iperfResult is the part of `iperf3 -J` output the benchmark reads.
type iperfResult struct {
	Error string `json:"error"`
	End   struct {
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			Bytes         uint64  `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		SumSent struct {
			Retransmits uint64 `json:"retransmits"`
		} `json:"sum_sent"`
	} `json:"end"`
}

// parseIperf decodes the client's JSON (stderr may precede it).
func parseIperf(out []byte) (iperfResult, error) {
	var r iperfResult
	i := bytes.IndexByte(out, '{')
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

func tailString(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
