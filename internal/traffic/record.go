// Package traffic records labelled traffic in a lab for training and
// testing DDoS detectors: benign mixes (wrk, ab, iperf3, curl, a DNS-like
// UDP client, ping, browser-like clients, and clients that end their
// connections abruptly: one-shot HTTP/1.0 clients that read a few bytes
// and reset, SO_LINGER 0 closes, keep-alive connections reset when idle,
// curl --max-time aborts and timeouts, slow clients on a slow link) and
// attacks (hping3 SYN, ACK, UDP and ICMP floods from fixed and random
// sources, the lab flooder's spoofed IPv6 floods, slowhttptest slow
// headers and slow body), each scenario into its own pcap, so that every
// packet of a file belongs to one class.
//
// Topology (lab.Uplink): a "benign" and an "attacker" client behind a
// router, reaching servers in the root namespace (HTTP, DNS-like UDP and
// iperf3, bound to the uplink's lab addresses). Each capture runs tcpdump
// on the router's end of the uplink's root link (the wire into the
// server's interface, where the live detector's probe sits), both
// directions, filtered to the server addresses, with a snap length of 128
// bytes. Segmentation offloads stay as the lab (and live hosts) have
// them: TSO and GSO on, so the server's interface sees aggregates of up
// to 64 KiB, as live; lucid.SessionsFromPcap pads cut frames back and
// replays aggregates cut, with their lengths restored.
//
// Safety: traffic only goes to lab addresses. IPv4 random-source floods
// rely on the strict rp_filter of the uplink's root end (the server never
// answers them); IPv6 spoofing uses only Uplink.SpoofPrefix6, routed back
// into the lab. Each attack checks that the transmit counter of the
// machine's default-route interface did not jump meanwhile.
//
// A Variant selects the parameters: Train and Test use different rates,
// sizes, ports, connection counts and durations of the same tools, so
// that test recordings are held out from training in more than time.
package traffic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rampart-shield/rampart/internal/lab"
)

// Variant selects the parameters of the scenarios.
type Variant string

// Variants.
const (
	Train Variant = "train"
	Test  Variant = "test"
)

// Class is the label of a recording.
type Class string

// Classes.
const (
	Benign Class = "benign"
	Attack Class = "attack"
)

// Label is 1 for attacks, 0 for benign traffic.
func (c Class) Label() int {
	if c == Attack {
		return 1
	}
	return 0
}

// Options tune Record.
type Options struct {
	// Dir receives the captures (created if needed) and recordings.json.
	Dir     string
	Variant Variant
	// Seed varies random choices (DNS-like query sizes, flood sources);
	// 0 picks the variant's default, so recordings are repeatable.
	Seed uint64
	// Only, when not empty, lists the scenarios to run (see Scenarios).
	Only []string
	// Logf, when not nil, gets progress lines.
	Logf func(format string, args ...any)
}

// Recording is one capture of one scenario.
type Recording struct {
	Scenario string  `json:"scenario"`
	Class    Class   `json:"class"`
	Variant  Variant `json:"variant"`
	// Path is the pcap, relative to the manifest's folder in
	// recordings.json and absolute in Record's result.
	Path string `json:"path"`
	// What ran, for the record.
	Command string `json:"command"`
	// Packets captured and dropped by the kernel (tcpdump's counts).
	Packets  int           `json:"packets"`
	Dropped  int           `json:"dropped"`
	Duration time.Duration `json:"duration_ns"`
	// EgressMAC is the MAC of the server's end of the captured link:
	// frames from it replay through ddosfeat's egress program, as the
	// live probe on the server's interface sees them (--egress-from).
	EgressMAC string `json:"egress_mac"`
}

// Manifest is the name of the list of recordings Record writes in Dir.
const Manifest = "recordings.json"

// env is the lab a recording runs in.
type env struct {
	lab      *lab.Lab
	up       *lab.Uplink
	srv      *servers
	benign   *lab.Host
	attacker *lab.Host
	bLink    *lab.Link
	aLink    *lab.Link
	// dev is the captured interface: the router's end of the root link.
	dev    string
	spoof6 netip.Prefix
	v      Variant
	seed   uint64
	logf   func(format string, args ...any)
	tmp    string // scratch files of the scenarios
}

// file writes a scratch file and returns its path.
func (e *env) file(name, content string) (string, error) {
	p := filepath.Join(e.tmp, name)
	return p, os.WriteFile(p, []byte(content), 0o644)
}

func (e *env) server4() netip.Addr { return e.up.Server }
func (e *env) server6() netip.Addr { return e.up.Server6 }
func (e *env) http4() string       { return e.srv.httpAddrs[0] }
func (e *env) http6() string       { return e.srv.httpAddrs[1] }
func (e *env) httpPort() string {
	_, p, _ := net.SplitHostPort(e.http4())
	return p
}

// pick returns train or test by the variant.
func pick[T any](v Variant, train, test T) T {
	if v == Test {
		return test
	}
	return train
}

// Record builds a lab, runs the scenarios of o.Variant one after the
// other, each into DIR/VARIANT-SCENARIO.pcap, writes DIR/recordings.json
// (with Only, the earlier entries of the other scenarios stay) and tears
// the lab down. Scenarios whose tools are missing are skipped (logged); a
// scenario that fails fails the recording.
func Record(ctx context.Context, o Options) ([]Recording, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("traffic: recording needs root (network namespaces, tcpdump, raw sockets)")
	}
	if o.Variant != Train && o.Variant != Test {
		return nil, fmt.Errorf("traffic: variant %q: want %q or %q", o.Variant, Train, Test)
	}
	if _, err := exec.LookPath("tcpdump"); err != nil {
		return nil, errors.New("traffic: needs tcpdump (apt-get install tcpdump)")
	}
	if o.Seed == 0 {
		o.Seed = pick[uint64](o.Variant, 1, 2)
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	for _, name := range o.Only {
		if !slices.Contains(Scenarios(), name) {
			return nil, fmt.Errorf("traffic: no scenario %q (have %s)", name, strings.Join(Scenarios(), ", "))
		}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}

	l, err := lab.New()
	if err != nil {
		return nil, err
	}
	defer l.Close()
	e, err := setup(ctx, l, o, logf)
	if err != nil {
		return nil, err
	}
	defer e.srv.close()
	if e.tmp, err = os.MkdirTemp("", "rampart-traffic-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(e.tmp)

	tx0, txIface := defaultRouteTx()
	defer func() {
		if tx1, _ := defaultRouteTx(); txIface != "" {
			logf("the default-route interface %s sent %d packets during the recording", txIface, tx1-tx0)
		}
	}()
	var recs []Recording
	for _, sc := range scenarios {
		if len(o.Only) > 0 && !slices.Contains(o.Only, sc.name) {
			continue
		}
		if missing := missingTools(sc.tools); missing != "" {
			logf("%s: skipped, %s not installed", sc.name, missing)
			continue
		}
		if err := ctx.Err(); err != nil {
			return recs, err
		}
		rec, err := e.record(ctx, sc, filepath.Join(dir, string(o.Variant)+"-"+sc.name+".pcap"))
		if err != nil {
			return recs, fmt.Errorf("traffic: scenario %s: %w", sc.name, err)
		}
		logf("%s (%s): %d packets (%d dropped) in %v: %s", sc.name, sc.class, rec.Packets, rec.Dropped, rec.Duration.Round(10*time.Millisecond), rec.Command)
		recs = append(recs, rec)
	}
	// With Only, the other scenarios' earlier recordings stay listed.
	all := recs
	if len(o.Only) > 0 {
		if old, err := ReadManifest(dir); err == nil {
			all = nil
			for _, r := range old {
				if r.Variant == o.Variant && !slices.ContainsFunc(recs, func(n Recording) bool { return n.Scenario == r.Scenario }) {
					all = append(all, r)
				}
			}
			all = append(all, recs...)
			slices.SortStableFunc(all, func(a, b Recording) int { return scenarioIndex(a.Scenario) - scenarioIndex(b.Scenario) })
		}
	}
	if err := WriteManifest(dir, all); err != nil {
		return recs, err
	}
	return recs, nil
}

func scenarioIndex(name string) int {
	return slices.IndexFunc(scenarios, func(s scenario) bool { return s.name == name })
}

// WriteManifest writes recs to DIR/recordings.json with paths relative to
// dir.
func WriteManifest(dir string, recs []Recording) error {
	out := make([]Recording, len(recs))
	for i, r := range recs {
		if rel, err := filepath.Rel(dir, r.Path); err == nil && !strings.HasPrefix(rel, "..") {
			r.Path = rel
		}
		out[i] = r
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, Manifest), append(b, '\n'), 0o644)
}

// ReadManifest reads DIR/recordings.json; paths come back joined to dir.
func ReadManifest(dir string) ([]Recording, error) {
	b, err := os.ReadFile(filepath.Join(dir, Manifest))
	if err != nil {
		return nil, err
	}
	var recs []Recording
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("traffic: %s: %w", filepath.Join(dir, Manifest), err)
	}
	for i := range recs {
		if !filepath.IsAbs(recs[i].Path) {
			recs[i].Path = filepath.Join(dir, recs[i].Path)
		}
	}
	return recs, nil
}

func missingTools(tools []string) string {
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	return strings.Join(missing, ", ")
}

// setup builds the uplink with the two clients (offloads as the lab
// makes them, as live), routes the spoofed IPv6 prefix back to the
// attacker and starts the servers.
func setup(ctx context.Context, l *lab.Lab, o Options, logf func(string, ...any)) (*env, error) {
	u, err := l.Uplink(ctx, lab.UplinkOptions{IPv6: true}, "benign", "attacker")
	if err != nil {
		return nil, err
	}
	e := &env{lab: l, up: u, benign: u.Clients[0], attacker: u.Clients[1], bLink: u.Links[0], aLink: u.Links[1],
		dev: u.Root.AIface, v: o.Variant, seed: o.Seed, logf: logf}
	e.spoof6 = u.SpoofPrefix6(1)
	if err := u.RouteBack(ctx, 1, e.spoof6); err != nil {
		return nil, err
	}
	if e.srv, err = startServers(ctx, u.Server, u.Server6); err != nil {
		return nil, err
	}
	// The clients can reach the servers over both families.
	for _, h := range u.Clients {
		for _, a := range []netip.Addr{u.Server, u.Server6} {
			if n, err := h.Ping(ctx, a, 1, 0); err != nil || n != 1 {
				e.srv.close()
				return nil, fmt.Errorf("traffic: %s cannot reach %s: %v", h.Name, a, err)
			}
		}
	}
	logf("lab %s: benign %s / %s, attacker %s / %s, servers %s %s (http %s, dns %s, iperf3 %d)", l.ID,
		e.bLink.AAddr, e.bLink.AAddr6, e.aLink.AAddr, e.aLink.AAddr6, u.Server, u.Server6,
		strings.Join(e.srv.httpAddrs, " "), strings.Join(e.srv.dnsAddrs, " "), e.srv.iperfPort)
	return e, nil
}

// settle is how long a capture runs before and after its scenario.
const settle = 300 * time.Millisecond

// captureFilter keeps the traffic to and from the server addresses. A
// benign capture also keeps the link's neighbour discovery and multicast
// listener messages (ICMPv6 types 130 to 143, also link-local; MLD comes
// after a hop-by-hop header), which the live probe sees on the server's
// interface; an attack capture drops them (they are not the attack's).
func (e *env) captureFilter(c Class) string {
	hosts := "(host " + e.server4().String() + " or host " + e.server6().String() + ")"
	const nd = "(ip6 and ((ip6[6] == 58 and ip6[40] >= 130 and ip6[40] <= 143) or (ip6[6] == 0 and ip6[40] == 58 and ip6[48] >= 130 and ip6[48] <= 143)))"
	if c == Attack {
		return hosts + " and not " + nd
	}
	return hosts + " or " + nd
}

// record captures one scenario on the wire into the server (one scenario
// runs at a time, so the file holds one class).
func (e *env) record(ctx context.Context, sc scenario, path string) (Recording, error) {
	rec := Recording{Scenario: sc.name, Class: sc.class, Variant: e.v, Path: path, EgressMAC: e.up.Root.BMAC.String()}
	os.Remove(path)
	dump, err := e.up.Router.Start("tcpdump", "-i", e.dev, "-n", "-s", "128", "-B", "16384", "-U", "--immediate-mode",
		"-c", strconv.Itoa(sc.maxPackets), "-w", path, e.captureFilter(sc.class))
	if err != nil {
		return rec, err
	}
	dumpDone := make(chan struct{})
	go func() { dump.Wait(); close(dumpDone) }()
	defer dump.Stop()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if fi, err := os.Stat(path); err == nil && fi.Size() >= 24 {
			break
		}
		select {
		case <-dumpDone:
			return rec, fmt.Errorf("tcpdump exited: %s", dump.Output())
		default:
		}
		if time.Now().After(deadline) {
			return rec, fmt.Errorf("tcpdump did not start: %s", dump.Output())
		}
	}
	time.Sleep(settle)

	// The scenario runs until it ends, or until tcpdump has its packets.
	sctx, cancel := context.WithTimeout(ctx, sc.timeout)
	defer cancel()
	go func() {
		select {
		case <-dumpDone:
			cancel()
		case <-sctx.Done():
		}
	}()
	tx0, txIface := defaultRouteTx()
	// Neighbour discovery between the router and the server runs now
	// and then during every benign scenario (ping has its own, faster).
	churned := make(chan struct{})
	if sc.class == Benign && sc.name != "ping" {
		go func() {
			defer close(churned)
			e.neighbourChurn(sctx, pick(e.v, 700*time.Millisecond, 900*time.Millisecond))
		}()
	} else {
		close(churned)
	}
	start := time.Now()
	cmd, err := sc.run(sctx, e)
	rec.Command = cmd
	rec.Duration = time.Since(start)
	cancel()
	<-churned
	if err != nil && ctx.Err() == nil && !(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return rec, err
	}
	if ctx.Err() != nil {
		return rec, ctx.Err()
	}
	time.Sleep(settle)
	dump.Stop()
	<-dumpDone
	if tx1, _ := defaultRouteTx(); txIface != "" && tx1 > tx0+maxLeak {
		return rec, fmt.Errorf("the default-route interface %s sent %d packets during the scenario: lab traffic may have left the lab", txIface, tx1-tx0)
	}
	out := dump.Output()
	rec.Packets = countOf(out, capturedRe)
	rec.Dropped = countOf(out, droppedRe)
	if rec.Packets == 0 {
		return rec, fmt.Errorf("nothing captured (%s): %s", cmd, strings.TrimSpace(out))
	}
	return rec, nil
}

// maxLeak is the default-route transmit increase during one scenario
// that fails it (background traffic stays far below).
const maxLeak = 2000

var (
	capturedRe = regexp.MustCompile(`(\d+) packets? captured`)
	droppedRe  = regexp.MustCompile(`(\d+) packets? dropped by kernel`)
)

func countOf(out string, re *regexp.Regexp) int {
	m := re.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// defaultRouteTx returns the transmitted packets of the root namespace's
// IPv4 default-route interface ("" when there is none).
func defaultRouteTx() (uint64, string) {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return 0, ""
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 7 && f[1] == "00000000" && f[7] == "00000000" {
			v, err := os.ReadFile("/sys/class/net/" + f[0] + "/statistics/tx_packets")
			if err != nil {
				return 0, ""
			}
			n, _ := strconv.ParseUint(strings.TrimSpace(string(v)), 10, 64)
			return n, f[0]
		}
	}
	return 0, ""
}
