package traffic

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/internal/detect/lucid"
	"github.com/rampart-shield/rampart/internal/lab"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/models"
	"github.com/rampart-shield/rampart/probes"
)

// liveRun is the agent's CNN detection path on a live interface: a
// lucid.Service feeding a fresh lucid.NewDetector (default config) with
// the ddosfeat probe's records, alerts collected.
type liveRun struct {
	det    *lucid.Detector
	start  time.Time
	mu     sync.Mutex
	alerts []alert.Alert
	at     []time.Duration // since start
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func startLive(ctx context.Context, m *probe.Manager, model *lucid.Model) *liveRun {
	r := &liveRun{det: lucid.NewDetector(model, lucid.DetectorConfig{}), start: time.Now(), done: make(chan error, 1)}
	var sctx context.Context
	sctx, r.cancel = context.WithCancel(ctx)
	svc := &lucid.Service{Manager: m, Probe: "ddosfeat", Detector: r.det, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnAlert: func(a alert.Alert) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.alerts = append(r.alerts, a)
			r.at = append(r.at, time.Since(r.start))
		}}
	go func() { r.done <- svc.Run(sctx) }()
	return r
}

// next waits up to d for an alert raised after from and returns it.
func (r *liveRun) next(ctx context.Context, from time.Time, d time.Duration) (alert.Alert, time.Duration, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		r.mu.Lock()
		for i, a := range r.alerts {
			if at := r.start.Add(r.at[i]); !at.Before(from) {
				r.mu.Unlock()
				return a, at.Sub(from), true
			}
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return alert.Alert{}, 0, false
}

// stop ends the service; the detector's counters are then safe to read.
func (r *liveRun) stop() ([]alert.Alert, []time.Duration, error) {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	err := r.err
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.alerts, r.at, err
}

// TestLiveDetector is the live acceptance test of the shipped model: the
// agent's CNN detection (ddosfeat at tc-ingress and tc-egress of the
// server's interface of a lab uplink, offloads as the lab makes them,
// lucid.Service with the default detector config) sees about 20 s of
// benign traffic (lab.HTTPLoad's resetting one-shot clients against a
// tiny page and against a larger one over IPv6, wrk, a curl loop,
// DNS-like UDP, pings) without an alert, then alerts on an hping3 SYN
// flood from random IPv4 sources and on a UDP flood, each within 3 s.
// Random-source floods are IPv4 only: the uplink's strict rp_filter keeps
// the server from answering them.
func TestLiveDetector(t *testing.T) {
	if testing.Short() {
		t.Skip("runs about 40 s of live lab traffic; skipped with -short")
	}
	requireTools(t, "hping3", "wrk", "curl", "ping", "ip")
	_ = lab.Sweep(10 * time.Minute)
	model, err := models.DDoS()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := lab.ForTest(t)
	u, err := l.Uplink(ctx, lab.UplinkOptions{IPv6: true}, "benign", "web", "attacker")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startServers(ctx, u.Server, u.Server6)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	// The demo's and TestDetectAndMitigate's web server: a 22-byte page.
	ln, err := net.Listen("tcp", net.JoinHostPort(u.Server.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	tiny := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from the server\n") })}
	go tiny.Serve(ln)
	defer tiny.Close()

	m, err := probe.NewManager(probe.ManagerOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Builtin: probes.Lookup})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Load(ctx, probe.LoadRequest{Name: "ddosfeat", Iface: u.Root.BIface, Params: map[string]string{"n_packets": strconv.Itoa(model.N)}}); err != nil {
		t.Fatal(err)
	}
	benign, web, attacker := u.Clients[0], u.Clients[1], u.Clients[2]
	e := &env{up: u, srv: srv, benign: benign}

	// ---- benign traffic, about 20 s: no alert ----
	const soak = 20 * time.Second
	secs := strconv.Itoa(int(soak.Seconds()) - 1) // the tools end before the soak does
	run := startLive(ctx, m, model)
	defer run.stop()
	bctx, stopBenign := context.WithTimeout(ctx, soak)
	defer stopBenign()
	load := benign.HTTPLoad(bctx, ln.Addr().String())
	load6 := benign.HTTPLoad(bctx, e.http6())
	var wg sync.WaitGroup
	var wrkOut, pingOut []byte
	var dnsErr error
	wg.Go(func() {
		wrkOut, _ = web.Run(bctx, 0, "wrk", "-t", "1", "-c", "16", "-d", secs+"s", "http://"+e.http4()+"/size/2000")
	})
	wg.Go(func() {
		loop := "for i in $(seq 1 100000); do curl -s -o /dev/null -m 2 http://" + e.http4() + "/size/$((i*37 % 30000)); " +
			"curl -s -o /dev/null -m 2 -I http://" + e.http6() + "/; curl -s -o /dev/null -m 2 -d a=$i http://" + e.http4() + "/form; done"
		web.Run(bctx, 0, "sh", "-c", loop)
	})
	wg.Go(func() {
		dnsErr = dnsLike{queries: 1 << 20, gap: 2 * time.Millisecond, minSize: 28, maxSize: 90, fresh: 0.7, v6: 0.3, seed: 7}.run(bctx, e)
	})
	wg.Go(func() {
		pingOut, _ = benign.Run(bctx, 0, "sh", "-c", "ping -n -q -i 0.2 -w "+secs+" "+u.Server.String()+
			" & ping -6 -n -q -i 0.25 -w "+secs+" "+u.Server6.String()+"; wait")
	})
	wg.Wait()
	load.Stop()
	load6.Stop()
	time.Sleep(1500 * time.Millisecond) // the last sessions complete (1 s idle) and are classified
	benignEnd := time.Now()
	t.Logf("benign: lab.HTTPLoad answered %d (IPv4, a 22-byte page) and %d (IPv6, a 600-byte page) requests in %v", load.OK(), load6.OK(), soak)
	t.Logf("wrk:\n%s", lastLines(string(wrkOut), 4))
	t.Logf("ping: %s", strings.Join(pingLines(string(pingOut)), "; "))
	alerts, at, err := run.stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("benign: %d sessions classified, %d called attack (%.3f%%)", run.det.Classified, run.det.Attacks, 100*float64(run.det.Attacks)/float64(max(run.det.Classified, 1)))
	for i, a := range alerts {
		t.Errorf("alert %v into the benign traffic: %s", at[i].Round(time.Millisecond), a.Summary)
	}
	if load.OK() < 1000 || load6.OK() < 1000 || !strings.Contains(string(wrkOut), "Requests/sec") || dnsErr != nil {
		t.Fatalf("the benign traffic did not run: lab.HTTPLoad %d and %d answered, dns-like: %v", load.OK(), load6.OK(), dnsErr)
	}

	// ---- floods: an alert within 3 s each, the benign client still on ----
	// One service and detector for both, as the agent runs it (a new
	// subscription first gets the stream's recent records: here benign
	// ones, but after a flood the flood's).
	run = startLive(ctx, m, model)
	defer run.stop()
	_, port, _ := net.SplitHostPort(e.http4())
	last := benignEnd.Add(-time.Hour)
	for _, f := range []struct {
		name, proto string
		hping       []string
	}{
		{"syn flood from random sources", "tcp", []string{"-S", "--flood", "--rand-source", "-p", port}},
		{"udp flood", "udp", []string{"--udp", "--flood", "-p", "9", "-d", "64"}},
	} {
		// The detector alerts at most every 5 s per destination; the
		// last flood's sessions complete within a second of its end.
		time.Sleep(max(2*time.Second, time.Until(last.Add(5500*time.Millisecond))))
		bg := benign.HTTPLoad(ctx, ln.Addr().String())
		time.Sleep(500 * time.Millisecond)
		t0 := time.Now()
		p, err := attacker.Start("hping3", append(f.hping, "-q", u.Server.String())...)
		if err != nil {
			t.Fatal(err)
		}
		a, took, ok := run.next(ctx, t0, 3*time.Second)
		p.Stop()
		bg.Stop()
		if !ok {
			t.Errorf("%s: no alert within 3 s", f.name)
			continue
		}
		last = t0.Add(took)
		t.Logf("%s: alert %v after the flood started: %s", f.name, took.Round(time.Millisecond), a.Summary)
		if a.Detector != lucid.DetectorName || a.Kind != "ddos" || a.Subject.Dst != u.Server.String() || a.Subject.Proto != f.proto {
			t.Errorf("%s: alert %s, want a ddos alert on %s for %s", f.name, a, f.proto, u.Server)
		}
	}
	if _, _, err := run.stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("floods: %d sessions classified, %d called attack", run.det.Classified, run.det.Attacks)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func pingLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "packets transmitted") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}
