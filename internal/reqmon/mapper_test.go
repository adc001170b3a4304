package reqmon_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/apptarget"
	"github.com/rampart-shield/rampart/internal/bpftest"
	"github.com/rampart-shield/rampart/internal/lab/apps"
	"github.com/rampart-shield/rampart/internal/reqmon"
	rq "github.com/rampart-shield/rampart/probes/reqmon"
)

// TestMapperApache: uprobe request mappers on a real Apache httpd (begin at
// ap_process_request's entry, end at its return, which comes after the
// response's final flush; the thread as the id). Each request completes as a mapped request with
// its connection, the bytes of its request and response, and the CPU of
// its handler (a Lua route burning ~100 ms); nothing is left to the socket
// mapping.
func TestMapperApache(t *testing.T) {
	bpftest.Require(t)
	bin := "/usr/sbin/apache2"
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("needs Apache httpd (Debian package apache2): %v", err)
	}
	cfg := filepath.Join(t.TempDir(), "mappers.yaml")
	os.WriteFile(cfg, []byte(`mappers:
  - executable: `+bin+`
    function: ap_process_request
    action: begin
    id: tid
  - executable: `+bin+`
    function: ap_process_request
    return: true
    action: end
    id: tid
`), 0o644)
	mappers, err := reqmon.ReadMappers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := apps.ForTest(t, apps.Apache, apps.Options{Workers: 2})
	m := newManager(t)
	mon, err := reqmon.Start(context.Background(), reqmon.Options{Manager: m, Spec: apptarget.Spec{PIDs: []int{srv.MainPID}, Tree: true}, Mappers: mappers})
	bpftest.CheckLoad(t, err)
	t.Cleanup(mon.Close)
	info, err := m.Get(rq.ProbeName)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range info.Programs {
		if strings.HasPrefix(p.Name, "reqmon_map") && p.Mode != "uprobe" {
			t.Fatalf("mapper program %+v not attached as a uprobe", p)
		}
	}

	kv, err := srv.Attack("lua-pattern-backtrack")
	if err != nil {
		t.Fatal(err)
	}
	cl := srv.Client(30 * time.Second)
	do := func(r apps.Route) {
		req, err := r.Request(context.Background(), srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", r.Path, resp.Status)
		}
	}
	const n = 20
	for i := 0; i < n; i++ {
		do(apps.Route{Path: "/static/1k.txt"})
	}
	heavy := kv.Crafted(450)
	start := time.Now()
	do(heavy)
	took := time.Since(start)

	var mapped, heavySeen, socket int
	deadline := time.After(10 * time.Second)
	for mapped < n+1 {
		select {
		case s := <-mon.Completed():
			if s.Reason != rq.ReasonMapped {
				socket++
				t.Logf("not mapped: %+v", s.Request)
				continue
			}
			mapped++
			if !s.Remote.IsValid() || s.Local.Port() == 0 {
				t.Errorf("mapped request without its connection: %+v", s.Request)
			}
			if s.RX == 0 || s.TX == 0 {
				t.Errorf("mapped request without its bytes (the read before the begin is taken over): %+v", s.Request)
			}
			if cpu := time.Duration(s.Vector[reqmon.FCPU]); s.RX > 200 {
				heavySeen++
				t.Logf("crafted request: %v CPU of %v wall, rx %d tx %d", cpu, took.Round(time.Millisecond), s.RX, s.TX)
				if cpu < took/3 {
					t.Errorf("crafted request charged %v CPU, took %v", cpu, took)
				}
			} else if cpu > 20*time.Millisecond {
				t.Errorf("a static file charged %v CPU: %+v", cpu, s.Request)
			}
		case <-deadline:
			t.Fatalf("%d of %d requests completed as mapped (%d others); stats %+v", mapped, n+1, socket, mon.Stats())
		}
	}
	if heavySeen != 1 {
		t.Errorf("%d crafted requests seen, want 1", heavySeen)
	}
	if socket > 0 {
		t.Errorf("%d requests completed through the socket mapping", socket)
	}
}

// TestMapperConfigErrors: a bad mapper file is refused with a reason.
func TestMapperConfigErrors(t *testing.T) {
	exe, _ := os.Executable()
	for _, c := range []struct{ body, want string }{
		{"mappers: []", "no mappers"},
		{"mappers:\n  - executable: /nonexistent\n    function: f\n    action: begin\n    id: arg0", "no such file"},
		{"mappers:\n  - executable: " + exe + "\n    function: f\n    action: start\n    id: arg0", "want begin or end"},
		{"mappers:\n  - executable: " + exe + "\n    function: f\n    action: end\n    id: arg7", "arg0 to arg5"},
		{"mappers:\n  - executable: " + exe + "\n    function: f\n    action: end\n    id: ret", "return: true"},
		{"mappers:\n  - executable: " + exe + "\n    function: f\n    return: true\n    action: end\n    id: arg1", "arguments are gone"},
		{"mappers:\n  - executable: " + exe + "\n    function: f\n    action: end\n    id: tid\n    bogus: 1", "unknown field"},
	} {
		p := filepath.Join(t.TempDir(), "m.yaml")
		os.WriteFile(p, []byte(c.body), 0o644)
		if _, err := reqmon.ReadMappers(p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.body, err, c.want)
		}
	}
}
