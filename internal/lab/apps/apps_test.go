package apps

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/lab"
)

var servers = []string{Node, Apache, Nginx}

// TestServe starts each server, checks every benign route and every
// attack's benign request answer fast, then that Close leaves nothing.
func TestServe(t *testing.T) {
	for _, name := range servers {
		t.Run(name, func(t *testing.T) {
			s := ForTest(t, name, Options{})
			pids := s.PIDs()
			t.Logf("%s on %s, pids %v", name, s.URL, pids)
			if !slices.Contains(pids, s.MainPID) {
				t.Fatalf("PIDs %v lack MainPID %d", pids, s.MainPID)
			}
			if name == Nginx && len(pids) != 3 {
				t.Errorf("nginx: %d processes, want a master and 2 workers", len(pids))
			}
			c := s.Client(5 * time.Second)
			for _, r := range s.Routes() {
				checkFast(t, c, s, r)
			}
			for _, a := range s.Attacks() {
				t.Logf("%s: benign %s %s: %v", a.Kind, a.Benign.Method, a.Benign.Path, checkFast(t, c, s, a.Benign))
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			checkGone(t, s, pids)
		})
	}
}

// checkFast requests r (after a warm-up) and wants 200 well under 50 ms.
func checkFast(t *testing.T, c *http.Client, s *Server, r Route) time.Duration {
	t.Helper()
	var best time.Duration
	for i := 0; i < 3; i++ {
		req, err := r.Request(context.Background(), s.URL)
		if err != nil {
			t.Fatal(err)
		}
		if r.UserAgent == "" {
			req.Header.Set("User-Agent", browserUAs[0])
		}
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.Name, r.Path, err)
		}
		var b strings.Builder
		buf := make([]byte, 32<<10)
		n := 0
		for {
			k, rerr := resp.Body.Read(buf)
			if n < 200 {
				b.Write(buf[:min(k, 200-n)])
			}
			n += k
			if rerr != nil {
				break
			}
		}
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %s: %s", r.Name, r.Path, resp.Status, b.String())
		}
		if i == 0 || d < best {
			best = d
		}
	}
	// Best of three: the test machine is shared, a single sample may wait
	// for the CPU.
	if best > 50*time.Millisecond {
		t.Errorf("%s %s: %v, want < 50ms", r.Name, r.Path, best)
	}
	return best
}

// checkGone wants every process of the server gone and its directory
// removed.
func checkGone(t *testing.T, s *Server, pids []int) {
	t.Helper()
	if left := s.PIDs(); len(left) > 0 {
		t.Errorf("processes left after Close: %v", left)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(st), ") Z ") {
				t.Errorf("pid %d alive after Close: %s", pid, st)
			}
		}
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists (%v)", s.Dir, err)
	}
}

// TestAttacks sends each attack's test-size crafted request with a 3 s
// client timeout: it must take at least 2 s, while its benign request on
// the same route takes < 50 ms. A fresh server per attack keeps one busy
// route from delaying the next.
func TestAttacks(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: crafted requests take seconds")
	}
	for _, name := range servers {
		for _, kind := range Kinds(name) {
			t.Run(name+"/"+kind, func(t *testing.T) {
				s := ForTest(t, name, Options{Workers: 2})
				a, err := s.Attack(kind)
				if err != nil {
					t.Fatal(err)
				}
				checkFast(t, s.Client(5*time.Second), s, a.Benign)
				res, err := s.RunAttack(context.Background(), kind, AttackOptions{Size: a.TestSize, Timeout: 3 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				r := res[0]
				t.Logf("%s (%s, %s) n=%d: %v", kind, a.Library, a.CVE, a.TestSize, r)
				if r.Duration < 2*time.Second {
					t.Errorf("crafted request took %v, want >= 2s (%v)", r.Duration, r)
				}
				if r.Err != nil && !r.TimedOut {
					t.Errorf("crafted request: %v", r.Err)
				}
			})
		}
	}
}

// TestCalibrate prints each attack's unhindered time at FullSize and
// TestSize; run it by hand with RAMPART_APPS_CALIBRATE=1 (minutes).
func TestCalibrate(t *testing.T) {
	if os.Getenv("RAMPART_APPS_CALIBRATE") == "" {
		t.Skip("set RAMPART_APPS_CALIBRATE=1 to measure the attacks' times")
	}
	only := os.Getenv("RAMPART_APPS_CALIBRATE")
	for _, name := range servers {
		s := ForTest(t, name, Options{})
		for _, a := range s.Attacks() {
			if only != "1" && !strings.Contains(a.Kind, only) && only != name {
				continue
			}
			for _, n := range []int{a.FullSize, a.TestSize} {
				res, _ := s.RunAttack(context.Background(), a.Kind, AttackOptions{Size: n, Timeout: 90 * time.Second})
				t.Logf("%s %s n=%d: %v", name, a.Kind, n, res[0])
			}
		}
	}
}

// TestLoad runs the benign mix against each server for 2 s and checks the
// stats: many requests, no errors, low latency, full availability.
func TestLoad(t *testing.T) {
	for _, name := range servers {
		t.Run(name, func(t *testing.T) {
			s := ForTest(t, name, Options{})
			l := s.StartLoad(context.Background(), LoadOptions{Concurrency: 4, Duration: 2 * time.Second, ThinkTime: 5 * time.Millisecond})
			time.Sleep(2 * time.Second)
			st := l.Stop()
			t.Logf("%s: %d requests, %d errors, p50 %v p99 %v max %v, availability %.3f, %d routes",
				name, st.Count, st.Errors, st.P50, st.P99, st.Max, st.Availability, len(st.Routes))
			if st.Count < 100 || st.Errors > 0 {
				for _, r := range l.Records() {
					if !r.OK() {
						t.Logf("failed: %s %d %v", r.Route, r.Status, r.Err)
						break
					}
				}
				t.Fatalf("%d requests, %d errors", st.Count, st.Errors)
			}
			if st.P50 > 20*time.Millisecond {
				t.Errorf("p50 %v, want < 20ms", st.P50)
			}
			for _, sec := range st.PerSecond {
				if sec.Availability < 1 {
					t.Errorf("second %v: availability %.2f", sec.Start.Sub(st.PerSecond[0].Start), sec.Availability)
				}
			}
		})
	}
}

// TestLoadDuringAttack shows the Node app's single event loop: a crafted
// request stalls the benign load, which the per-second availability shows.
func TestLoadDuringAttack(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	s := ForTest(t, Node, Options{})
	l := s.StartLoad(context.Background(), LoadOptions{Concurrency: 4, Timeout: time.Second, ThinkTime: 10 * time.Millisecond})
	time.Sleep(time.Second)
	a, _ := s.Attack("moment-redos")
	res, _ := s.RunAttack(context.Background(), a.Kind, AttackOptions{Size: a.TestSize, Timeout: 10 * time.Second})
	time.Sleep(time.Second)
	st := l.Stop()
	t.Logf("attack: %v", res[0])
	var worst float64 = 1
	for _, sec := range st.PerSecond {
		t.Logf("  %v done %d ok %d stalled %d availability %.2f", sec.Start.Sub(st.PerSecond[0].Start).Round(time.Second), sec.Done, sec.OK, sec.Stalled, sec.Availability)
		worst = min(worst, sec.Availability)
	}
	if res[0].Duration < 2*time.Second {
		t.Fatalf("attack took %v", res[0].Duration)
	}
	if worst > 0.2 {
		t.Errorf("worst second availability %.2f during a %v stall, want ~0", worst, res[0].Duration)
	}
	if st.PerSecond[0].Availability < 1 {
		t.Errorf("first second availability %.2f before the attack", st.PerSecond[0].Availability)
	}
}

// TestNamespace runs each server in a lab host and reaches it from another
// host over a veth link: benign load and a crafted request.
func TestNamespace(t *testing.T) {
	l := lab.ForTest(t)
	srv, err := l.AddHost("srv")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := l.AddHost("cli")
	if err != nil {
		t.Fatal(err)
	}
	link, err := l.Connect(srv, cli, lab.LinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var nsWant syscall.Stat_t
	if err := syscall.Stat(srv.NSPath(), &nsWant); err != nil {
		t.Fatal(err)
	}
	for _, name := range servers {
		t.Run(name, func(t *testing.T) {
			s := ForTest(t, name, Options{Host: srv, Addr: link.AAddr.String() + ":0"})
			pids := s.PIDs()
			for _, pid := range pids {
				var ns syscall.Stat_t
				if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &ns); err != nil {
					t.Fatal(err)
				}
				if ns.Ino != nsWant.Ino {
					t.Errorf("pid %d is not in %s", pid, srv.NS)
				}
			}
			ld := s.StartLoad(context.Background(), LoadOptions{Dial: Dialer(cli), Concurrency: 2})
			time.Sleep(time.Second)
			st := ld.Stop()
			t.Logf("%s on %s from %s: %d requests, %d errors, p50 %v", name, s.URL, cli.NS, st.Count, st.Errors, st.P50)
			if st.Count < 20 || st.Errors > 0 {
				t.Errorf("%d requests, %d errors", st.Count, st.Errors)
			}
			if !testing.Short() {
				a := s.Attacks()[0]
				res, err := s.RunAttack(context.Background(), a.Kind, AttackOptions{Dial: Dialer(cli), Size: a.TestSize, Timeout: 3 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s: %v", a.Kind, res[0])
				if res[0].Duration < 2*time.Second || (res[0].Err != nil && !res[0].TimedOut) {
					t.Errorf("crafted request: %v", res[0])
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			checkGone(t, s, pids)
		})
	}
}

// TestContent checks a few answers, so a route that fails softly (an error
// page with status 200) is caught.
func TestContent(t *testing.T) {
	want := map[string]map[string]string{
		Node: {
			"/duration?d=2h":               `"ms":7200000`,
			"/date?d=2024-03-01T12:00:00Z": `"weekday":"Friday"`,
			"/api/items?n=2":               `"count":2`,
		},
		Apache: {
			"/lua/kv?text=" + benignKV: `"host": "example.org", "port": "8080"`,
			"/lua/primes?n=1000":       `"primes": 168`,
			"/static/10k.txt":          "lorem",
			// The crafted form relies on '+' decoding to a space.
			"POST text=a+%3D+b": `"a": "b"`,
		},
	}
	want[Nginx] = want[Apache]
	for _, name := range servers {
		t.Run(name, func(t *testing.T) {
			s := ForTest(t, name, Options{})
			c := s.Client(5 * time.Second)
			for path, sub := range want[name] {
				var resp *http.Response
				var err error
				if form, ok := strings.CutPrefix(path, "POST "); ok {
					resp, err = c.Post(s.URL+"/lua/kv", formType, strings.NewReader(form))
				} else {
					resp, err = c.Get(s.URL + path)
				}
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.Contains(string(b), sub) {
					t.Errorf("%s: %q lacks %q", path, b, sub)
				}
			}
		})
	}
}

// TestApacheMPM starts Apache with each MPM.
func TestApacheMPM(t *testing.T) {
	for _, mpm := range []string{"prefork", "event", "worker"} {
		t.Run(mpm, func(t *testing.T) {
			s := ForTest(t, Apache, Options{MPM: mpm, Workers: 4})
			pids := s.PIDs()
			t.Logf("%s: pids %v", mpm, pids)
			checkFast(t, s.Client(5*time.Second), s, Route{Name: "kv", Path: "/lua/kv?text=" + benignKV})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			checkGone(t, s, pids)
		})
	}
}

// TestSweep fakes a server left by a dead test binary: Sweep kills its
// process group and removes its directory, and spares a live owner's.
func TestSweep(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root like the servers")
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip(err)
	}
	sleeper := exec.Command("sleep", "30")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := sleeper.Start(); err != nil {
		t.Skip(err)
	}
	defer sleeper.Process.Kill()
	exited := make(chan error, 1)
	go func() { exited <- sleeper.Wait() }()
	bin, _ := exec.LookPath("sleep")

	left, err := newDir(Node)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(left)
	writeFile(left, ownerFile, []byte(fmt.Sprintf("%d %s\n", dead.Process.Pid, "1")))
	writeServer(left, sleeper.Process.Pid, bin)
	live, err := newDir(Node)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(live)
	writeServer(live, sleeper.Process.Pid, bin) // ours: must survive

	if err := Sweep(time.Minute); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(2 * time.Second):
		t.Error("sweep left the server's process")
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("sweep left %s", left)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("sweep removed a live owner's %s: %v", live, err)
	}
}
