package reqmon_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rampart-shield/rampart/internal/apptarget"
	"github.com/rampart-shield/rampart/internal/bpftest"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/internal/procstat"
	"github.com/rampart-shield/rampart/internal/reqmon"
	"github.com/rampart-shield/rampart/probes"
)

// The test binary doubles as the watched server: with RQ_TEST_SERVER set it
// serves HTTP on 127.0.0.1 (port printed on stdout) until killed.
func TestMain(m *testing.M) {
	switch os.Getenv("RQ_TEST_SERVER") {
	case "threads":
		serveThreads()
		return
	}
	os.Exit(m.Run())
}

// spin burns d of CPU time on this (locked) thread: by the thread's own
// CPU clock, so a loaded machine makes it longer, not cheaper.
func spin(d time.Duration) int {
	var ts unix.Timespec
	now := func() time.Duration {
		unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
		return time.Duration(ts.Nano())
	}
	end := now() + d
	x := 0
	for now() < end {
		for i := 0; i < 10000; i++ {
			x += i * i
		}
	}
	return x
}

// serveThreads is a multi-threaded server: each handler runs locked to its
// OS thread, like a thread-per-connection server.
func serveThreads() {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		io.WriteString(w, "hello\n")
	})
	mux.HandleFunc("/spin", func(w http.ResponseWriter, r *http.Request) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		fmt.Fprintf(w, "spun %d\n", spin(time.Duration(ms)*time.Millisecond)&1)
	})
	var keep [][]byte
	var mu sync.Mutex
	mux.HandleFunc("/alloc", func(w http.ResponseWriter, r *http.Request) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		b := make([]byte, mb<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		mu.Lock()
		keep = append(keep, b)
		mu.Unlock()
		io.WriteString(w, "allocated\n")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		kb, _ := strconv.Atoi(r.URL.Query().Get("kb"))
		w.Write(make([]byte, kb<<10))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	http.Serve(ln, mux)
}

type server struct {
	cmd  *exec.Cmd
	addr string
}

func startServer(t *testing.T, kind string) *server {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RQ_TEST_SERVER="+kind)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("server did not start: %v", err)
	}
	return &server{cmd: cmd, addr: "127.0.0.1:" + strings.TrimSpace(line)}
}

// client is a raw keep-alive HTTP/1.1 client that counts bytes exactly.
type client struct {
	c        net.Conn
	r        *bufio.Reader
	sent     int
	received int
}

func dial(t *testing.T, addr string) *client {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c: c, r: bufio.NewReader(c)}
}

type countingReader struct {
	r io.Reader
	n *int
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += n
	return n, err
}

// get sends one request and reads the response; it returns the bytes sent
// and received for it.
func (c *client) get(t *testing.T, path string) (sent, received int) {
	t.Helper()
	req := "GET " + path + " HTTP/1.1\r\nHost: test\r\nUser-Agent: reqmon-test\r\n\r\n"
	c.c.SetDeadline(time.Now().Add(60 * time.Second)) // CPU-time spins take longer on a loaded machine
	if _, err := io.WriteString(c.c, req); err != nil {
		t.Fatal(err)
	}
	n := 0
	br := bufio.NewReader(countingReader{c.c, &n})
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if br.Buffered() != 0 {
		t.Fatalf("%d bytes after the response", br.Buffered())
	}
	c.sent += len(req)
	c.received += n
	return len(req), n
}

func newManager(t *testing.T) *probe.Manager {
	bpftest.Require(t)
	m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Builtin: probes.Lookup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func startMonitor(t *testing.T, m *probe.Manager, spec apptarget.Spec) *reqmon.Monitor {
	mon, err := reqmon.Start(context.Background(), reqmon.Options{Manager: m, Spec: spec, Quiet: 300 * time.Millisecond})
	bpftest.CheckLoad(t, err)
	t.Cleanup(mon.Close)
	return mon
}

// collect waits for n completed requests of pid.
func collect(t *testing.T, mon *reqmon.Monitor, pid int, n int, timeout time.Duration) []reqmon.Sample {
	t.Helper()
	var out []reqmon.Sample
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case s := <-mon.Completed():
			if int(s.TGID) == pid {
				out = append(out, s)
			}
		case <-deadline:
			t.Fatalf("got %d of %d completed requests: %+v", len(out), n, out)
		}
	}
	return out
}

// TestRequestsThreaded: one keep-alive connection with three requests of
// known sizes and costs, then close. Each request's bytes are exact, its
// CPU time and memory are charged to it and not to its neighbours.
func TestRequestsThreaded(t *testing.T) {
	m := newManager(t)
	srv := startServer(t, "threads")
	mon := startMonitor(t, m, apptarget.Spec{PIDs: []int{srv.cmd.Process.Pid}})

	c := dial(t, srv.addr)
	type want struct {
		path       string
		sent, recv int
	}
	var ws []want
	for _, p := range []string{"/hello", "/spin?ms=300", "/alloc?mb=64", "/big?kb=512"} {
		s, r := c.get(t, p)
		ws = append(ws, want{p, s, r})
	}
	c.c.Close()
	got := collect(t, mon, srv.cmd.Process.Pid, len(ws), 5*time.Second)
	for i, w := range ws {
		s := got[i]
		t.Logf("%-14s rx %d tx %d cpu %.1f ms faults %d mem %d KiB idle %.1f ms reason %s", w.path, uint64(s.Vector[reqmon.FRX]), uint64(s.Vector[reqmon.FTX]),
			s.Vector[reqmon.FCPU]/1e6, uint64(s.Vector[reqmon.FFaults]), uint64(s.Vector[reqmon.FMem])>>10, s.Vector[reqmon.FIdle]/1e6, s.Reason)
		if int(s.Vector[reqmon.FRX]) != w.sent || int(s.Vector[reqmon.FTX]) != w.recv {
			t.Errorf("%s: rx/tx %v/%v, want %d/%d", w.path, s.Vector[reqmon.FRX], s.Vector[reqmon.FTX], w.sent, w.recv)
		}
		if s.Remote.Port() != uint16(c.c.LocalAddr().(*net.TCPAddr).Port) {
			t.Errorf("%s: remote %v, want the client's %v", w.path, s.Remote, c.c.LocalAddr())
		}
	}
	cpu := func(i int) float64 { return got[i].Vector[reqmon.FCPU] / 1e6 }
	if cpu(1) < 250 || cpu(1) > 600 {
		t.Errorf("spin 300 ms: charged %.1f ms of CPU", cpu(1))
	}
	if cpu(0) > 20 || cpu(3) > 50 {
		t.Errorf("hello/big charged %.1f/%.1f ms of CPU", cpu(0), cpu(3))
	}
	if mem := got[2].Vector[reqmon.FMem]; mem < 60<<20 {
		t.Errorf("alloc 64 MiB: charged %.0f bytes of memory", mem)
	}
	if f := got[2].Vector[reqmon.FFaults]; f < 10000 {
		t.Errorf("alloc 64 MiB: %v page faults, want >= 10000 (16384 pages touched)", f)
	}
	if got[0].Vector[reqmon.FMem] > 1<<20 || got[0].Vector[reqmon.FFaults] > 100 {
		t.Errorf("hello charged memory %v, faults %v", got[0].Vector[reqmon.FMem], got[0].Vector[reqmon.FFaults])
	}
	for i := 0; i < 3; i++ {
		if got[i].Reason.String() != "next-request" {
			t.Errorf("request %d completed by %s, want next-request", i, got[i].Reason)
		}
	}
	if r := got[3].Reason.String(); r != "closed" {
		t.Errorf("last request completed by %s, want closed", r)
	}
}

// TestInFlight: a request that burns CPU is visible while it runs, with
// its CPU time growing, long before it completes.
func TestInFlight(t *testing.T) {
	m := newManager(t)
	srv := startServer(t, "threads")
	mon := startMonitor(t, m, apptarget.Spec{PIDs: []int{srv.cmd.Process.Pid}})
	c := dial(t, srv.addr)
	done := make(chan struct{})
	cpu0 := processCPU(t, srv.cmd.Process.Pid)
	go func() {
		defer close(done)
		c.get(t, "/spin?ms=1500")
	}()
	var seen []float64
	var cpuSeen float64 // the server's CPU time at the last sweep seen
	deadline := time.Now().Add(1200 * time.Millisecond)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		for _, s := range mon.InFlight() {
			if int(s.TGID) == srv.cmd.Process.Pid {
				seen = append(seen, s.Vector[reqmon.FCPU]/1e6)
				cpuSeen = processCPU(t, srv.cmd.Process.Pid) - cpu0
			}
		}
	}
	<-done
	t.Logf("in-flight CPU ms at each sweep: %.0f (the server's own CPU time by the last: %.0f ms)", seen, cpuSeen)
	if len(seen) < 5 {
		t.Fatalf("the running request was seen in flight %d times", len(seen))
	}
	// The sweeps see the CPU time grow while the request runs, and what
	// they see is the server's CPU time (how much of it there is depends
	// on what else the machine runs; a sweep lags its read of /proc by up
	// to a sweep interval, and /proc counts in 10 ms ticks).
	last := seen[len(seen)-1]
	if last <= seen[0] || last < 0.5*cpuSeen-60 {
		t.Errorf("in-flight CPU after ~1.2 s of a 1.5 s spin: %.0f ms, the server used %.0f ms", last, cpuSeen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Errorf("in-flight CPU went down: %.0f", seen)
			break
		}
	}
}

const nodeServer = `
const http = require('http');
function cpuMs() { const u = process.cpuUsage(); return (u.user + u.system) / 1000; }
function spin(ms) { const end = cpuMs() + ms; let x = 0; while (cpuMs() < end) { for (let i = 0; i < 1000; i++) x += Math.sqrt(x + 1); } return x; }
const srv = http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  if (u.pathname === '/spin') { spin(+u.searchParams.get('ms')); }
  res.end('ok\n');
});
srv.keepAliveTimeout = 30000;
srv.listen(0, '127.0.0.1', () => { console.log(srv.address().port); });
`

// TestRequestsEventLoop: Node.js serves every connection on one thread.
// A request that blocks the loop for 400 ms is charged its CPU time; the
// requests of another connection, served before and after it on the same
// thread, are not.
func TestRequestsEventLoop(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node (Node.js) is not installed")
	}
	m := newManager(t)
	cmd := exec.Command(node, "-e", nodeServer)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("node did not start: %v", err)
	}
	addr := "127.0.0.1:" + strings.TrimSpace(line)
	mon := startMonitor(t, m, apptarget.Spec{PIDs: []int{cmd.Process.Pid}})

	a, b := dial(t, addr), dial(t, addr)
	for i := 0; i < 5; i++ {
		b.get(t, "/hello")
	}
	a.get(t, "/spin?ms=400")
	for i := 0; i < 5; i++ {
		b.get(t, "/hello")
	}
	a.c.Close()
	b.c.Close()
	got := collect(t, mon, cmd.Process.Pid, 11, 5*time.Second)
	var spinCPU, helloMax float64
	hellos := 0
	for _, s := range got {
		cpu := s.Vector[reqmon.FCPU] / 1e6
		switch s.Remote.Port() {
		case uint16(a.c.LocalAddr().(*net.TCPAddr).Port):
			spinCPU = cpu
		case uint16(b.c.LocalAddr().(*net.TCPAddr).Port):
			hellos++
			helloMax = max(helloMax, cpu)
		}
	}
	t.Logf("spin request: %.1f ms CPU; %d hello requests: at most %.1f ms CPU each", spinCPU, hellos, helloMax)
	if hellos != 10 {
		t.Errorf("%d hello requests, want 10", hellos)
	}
	if spinCPU < 350 || spinCPU > 800 {
		t.Errorf("the 400 ms spin was charged %.1f ms", spinCPU)
	}
	if helloMax > 30 {
		t.Errorf("a hello request was charged %.1f ms", helloMax)
	}
}

// TestLRUEviction: with a table of 64 requests, 200 connections that each
// leave a request half-read overflow it: the table stays bounded, the
// evictions are counted, and the monitor keeps working.
func TestLRUEviction(t *testing.T) {
	m := newManager(t)
	srv := startServer(t, "threads")
	mon, err := reqmon.Start(context.Background(), reqmon.Options{Manager: m, Spec: apptarget.Spec{PIDs: []int{srv.cmd.Process.Pid}},
		MapSizes: map[string]uint32{"reqs": 64}})
	bpftest.CheckLoad(t, err)
	t.Cleanup(mon.Close)
	const n = 200
	for i := 0; i < n; i++ {
		c := dial(t, srv.addr)
		io.WriteString(c.c, "GET /hello HTTP/1.1\r\nHost: test\r\n") // no end of headers
	}
	var st reqmon.Stats
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if st = mon.Stats(); st.Created >= n {
			break
		}
	}
	time.Sleep(150 * time.Millisecond) // a sweep or two after the last one started
	st = mon.Stats()
	t.Logf("stats: %+v", st)
	if st.Created < n {
		t.Fatalf("%d requests started, want %d", st.Created, n)
	}
	if st.InFlight == 0 || st.InFlight > 64 {
		t.Errorf("%d requests in flight in a table of 64", st.InFlight)
	}
	if st.Evicted < n-64 {
		t.Errorf("evicted %d, want at least %d", st.Evicted, n-64)
	}
	// Still working: a complete request is accounted.
	c := dial(t, srv.addr)
	c.get(t, "/hello")
	c.c.Close()
	got := collect(t, mon, srv.cmd.Process.Pid, 1, 3*time.Second)
	if got[0].Vector[reqmon.FTX] == 0 {
		t.Errorf("request after the overflow: %+v", got[0])
	}
}

// processCPU is a process's CPU time (user and system, all threads) in ms.
func processCPU(t *testing.T, pid int) float64 {
	t.Helper()
	n, err := procstat.Ticks(pid, false)
	if err != nil {
		t.Fatal(err)
	}
	return float64(n) * 1000 / procstat.UserHZ
}

// TestBenignFilter: with a benign box installed, completed requests
// inside it are counted in the kernel and not streamed (but for the
// sample), and a request outside it (more CPU than the box allows) still
// streams; without boxes every request streams again.
func TestBenignFilter(t *testing.T) {
	m := newManager(t)
	srv := startServer(t, "threads")
	pid := srv.cmd.Process.Pid
	mon := startMonitor(t, m, apptarget.Spec{PIDs: []int{pid}})
	var box [reqmon.NFeatures]float64
	for j := range box {
		box[j] = math.Inf(1)
	}
	box[reqmon.FCPU] = 50e6 // 50 ms
	if err := mon.SetBenign([][reqmon.NFeatures]float64{box}, 0); err != nil {
		t.Fatal(err)
	}
	before := mon.Stats()
	c := dial(t, srv.addr)
	const n = 40
	for i := 0; i < n; i++ {
		c.get(t, "/hello")
	}
	c.get(t, "/spin?ms=200")
	c.get(t, "/hello") // completes the spin (keep-alive)
	got := collect(t, mon, pid, 1, 10*time.Second)
	if cpu := time.Duration(got[0].Vector[reqmon.FCPU]); cpu < 100*time.Millisecond {
		t.Fatalf("the first streamed request has %v of CPU: a benign one got through the box (%+v)", cpu, got[0].Request)
	}
	st := mon.Stats()
	if p := st.Passed - before.Passed; p < n {
		t.Errorf("%d requests passed in the kernel, want at least %d", p, n)
	}
	// Off: the next requests stream.
	if err := mon.SetBenign(nil, 0); err != nil {
		t.Fatal(err)
	}
	c.get(t, "/hello")
	c.get(t, "/hello")
	c.c.Close()
	collect(t, mon, pid, 2, 10*time.Second)
	for quiet := false; !quiet; {
		select {
		case <-mon.Completed():
		case <-time.After(500 * time.Millisecond):
			quiet = true
		}
	}

	// A sample of one in 4 (of the requests inside the box) streams.
	if err := mon.SetBenign([][reqmon.NFeatures]float64{box}, 4); err != nil {
		t.Fatal(err)
	}
	c = dial(t, srv.addr)
	for i := 0; i < 64; i++ {
		c.get(t, "/hello")
	}
	c.c.Close()
	collect(t, mon, pid, 8, 10*time.Second)
	if err := mon.SetBenign(make([][reqmon.NFeatures]float64, 17), 0); err == nil {
		t.Error("17 boxes accepted: the kernel holds 16")
	}
}
