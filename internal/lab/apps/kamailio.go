package apps

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/rampart-shield/rampart/internal/lab"
)

// Kamailio is the SIP proxy's name, as in SIPProxy.Name.
const Kamailio = "kamailio"

// kamailioModules is where Debian's kamailio keeps its modules.
const kamailioModules = "/usr/lib/x86_64-linux-gnu/kamailio/modules"

// SIPOptions configure a lab SIP proxy. Zero fields take their defaults.
type SIPOptions struct {
	// Addr is the listen address, UDP and TCP ("IP:port"; port 0 or an
	// empty Addr picks a free port, an empty IP means 127.0.0.1).
	Addr string
	// Host runs the proxy in this lab host's network namespace (nil: the
	// current one).
	Host *lab.Host
	// Relay is where every request not for the proxy itself goes, over
	// UDP: the SIPp UAS ("IP:port"). Required.
	Relay string
	// Children (UDP workers, default 4) and TCPChildren (TCP readers,
	// default 4) are Kamailio's process counts.
	Children, TCPChildren int
	// MaxTCP is tcp_max_connections (default 64): beyond it the proxy
	// closes new TCP connections as it accepts them.
	MaxTCP int
	// TCPLifetime is tcp_connection_lifetime, how long an idle TCP
	// connection is kept (default 60 s).
	TCPLifetime time.Duration
	// StartTimeout bounds the start, until the proxy answers an OPTIONS
	// over UDP and TCP (default 20 s).
	StartTimeout time.Duration
}

// SIPProxy is a running lab Kamailio: a stateful proxy (tm) that answers
// OPTIONS for itself and relays everything else to SIPOptions.Relay.
type SIPProxy struct {
	Name    string // Kamailio
	Addr    string // "IP:port", UDP and TCP
	Relay   string
	MaxTCP  int
	MainPID int // the main process, also the process group id
	Dir     string

	host      *lab.Host
	proc      *proc
	closeOnce sync.Once
	closeErr  error
}

// kamailioCfg is the proxy's configuration: the smallest stateful proxy.
// The dialog's requests (ACK, BYE) have no Route (SIPp's built-in UAC
// sends them to the proxy, ignoring Record-Route), so everything but the
// proxy's own OPTIONS, and CANCEL or ACK of a known transaction, is
// relayed to the UAS; tm keeps the INVITE transactions (fr_inv_timer 10 s).
const kamailioCfg = `#!KAMAILIO
debug=1
log_stderror=yes
log_prefix=""
fork=yes
children={{.Children}}
tcp_children={{.TCPChildren}}
disable_tcp=no
tcp_max_connections={{.MaxTCP}}
tcp_connection_lifetime={{.Lifetime}}
tcp_accept_no_cl=yes
dns=no
rev_dns=no
listen=udp:{{.Addr}}
listen=tcp:{{.Addr}}
mpath="{{.Modules}}/"
loadmodule "pv.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
modparam("tm", "fr_timer", 5000)
modparam("tm", "fr_inv_timer", 10000)
request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	if (is_method("OPTIONS") && uri==myself && !has_totag()) {
		sl_send_reply("200", "OK");
		exit;
	}
	if (is_method("CANCEL|ACK") && t_check_trans()) {
		t_relay();
		exit;
	}
	rewritehostport("{{.Relay}}");
	if (!t_relay()) {
		xlog("L_WARN", "relay of $rm $ci failed\n");
		sl_reply_error();
	}
	exit;
}
`

// StartKamailio starts Kamailio (Debian's kamailio binary, never the
// system service) with its own config in a temporary directory, in the
// foreground (-DD) so its main process stays the group leader, as nobody
// when started by root.
func StartKamailio(ctx context.Context, opts SIPOptions) (*SIPProxy, error) {
	bin, err := lookPath("kamailio")
	if err != nil {
		return nil, unavailable("kamailio (Debian package kamailio): %v", err)
	}
	for _, m := range []string{"pv", "tm", "sl", "rr", "maxfwd", "textops", "siputils", "xlog"} {
		if _, err := os.Stat(filepath.Join(kamailioModules, m+".so")); err != nil {
			return nil, unavailable("kamailio module %s: %v", m, err)
		}
	}
	if _, _, err := net.SplitHostPort(opts.Relay); err != nil {
		return nil, fmt.Errorf("apps: kamailio relay %q: %w", opts.Relay, err)
	}
	addr, err := listenAddr(Options{Addr: opts.Addr, Host: opts.Host})
	if err != nil {
		return nil, err
	}
	dir, err := newDir(Kamailio)
	if err != nil {
		return nil, err
	}
	conf := struct {
		Addr, Relay, Modules          string
		Children, TCPChildren, MaxTCP int
		Lifetime                      int
	}{Addr: addr, Relay: opts.Relay, Modules: kamailioModules,
		Children: opts.Children, TCPChildren: opts.TCPChildren, MaxTCP: opts.MaxTCP,
		Lifetime: int(opts.TCPLifetime / time.Second)}
	if conf.Children <= 0 {
		conf.Children = 4
	}
	if conf.TCPChildren <= 0 {
		conf.TCPChildren = 4
	}
	if conf.MaxTCP <= 0 {
		conf.MaxTCP = 64
	}
	if conf.Lifetime <= 0 {
		conf.Lifetime = 60
	}
	var b strings.Builder
	if err := template.Must(template.New("kamailio.cfg").Option("missingkey=error").Parse(kamailioCfg)).Execute(&b, conf); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("apps: kamailio.cfg: %w", err)
	}
	cfg := filepath.Join(dir, "kamailio.cfg")
	if err := writeFile(dir, "kamailio.cfg", []byte(b.String())); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("apps: %w", err)
	}
	args := []string{"-f", cfg, "-DD", "-E", "-Y", dir, "-w", dir}
	if os.Geteuid() == 0 {
		u, g := unprivileged()
		args = append(args, "-u", u, "-g", g)
	}
	p, err := startProc(opts.Host, dir, nil, bin, args...)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &SIPProxy{Name: Kamailio, Addr: addr, Relay: opts.Relay, MaxTCP: conf.MaxTCP, Dir: dir,
		host: opts.Host, proc: p, MainPID: p.pid()}
	if err := writeServer(dir, s.MainPID, bin); err != nil {
		s.Close()
		return nil, fmt.Errorf("apps: %w", err)
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = defaultStartTimeout
	}
	if err := s.WaitReady(ctx, timeout); err != nil {
		out := s.Output()
		s.Close()
		return nil, fmt.Errorf("apps: kamailio on %s: %w\n%s", addr, err, out)
	}
	return s, nil
}

// KamailioForTest starts a proxy closed by t.Cleanup, skipping the test
// when not root or when kamailio is not installed.
func KamailioForTest(t TB, opts SIPOptions) *SIPProxy {
	t.Helper()
	return startForTest(t, time.Minute, func(ctx context.Context) (*SIPProxy, error) { return StartKamailio(ctx, opts) })
}

// PIDs lists the proxy's live processes (its process group).
func (s *SIPProxy) PIDs() []int { return groupPIDs(s.MainPID) }

// Running reports whether the main process is still alive.
func (s *SIPProxy) Running() bool { return s.proc.running() }

// Output returns the tail of the proxy's log (stderr).
func (s *SIPProxy) Output() string { return s.proc.output() }

// Dial is a DialFunc of the proxy's own namespace.
func (s *SIPProxy) Dial() DialFunc {
	if s.host != nil {
		return Dialer(s.host)
	}
	return (&net.Dialer{}).DialContext
}

// Close kills every process of the proxy and removes its directory.
func (s *SIPProxy) Close() error {
	s.closeOnce.Do(func() {
		err := s.proc.stop()
		s.closeErr = errors.Join(err, os.RemoveAll(s.Dir))
	})
	return s.closeErr
}

// WaitReady waits until the proxy answers an OPTIONS with 200 over UDP
// and over TCP, each within 1 s.
func (s *SIPProxy) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for _, network := range []string{"udp", "tcp"} {
		for {
			if !s.proc.running() {
				return errNotRunning
			}
			code, err := SIPOptionsPing(ctx, s.Dial(), network, s.Addr, time.Second)
			if err == nil && code == 200 {
				break
			}
			if err == nil {
				err = fmt.Errorf("OPTIONS over %s: status %d", network, code)
			}
			last = err
			select {
			case <-ctx.Done():
				return fmt.Errorf("not answering after %v: %v", timeout, last)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// SIPOptionsPing sends one OPTIONS for addr itself over network ("udp" or
// "tcp") and returns the status code of the first reply.
func SIPOptionsPing(ctx context.Context, dial DialFunc, network, addr string, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := dial(ctx, network, addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	local := c.LocalAddr().String()
	tr := strings.ToUpper(network)
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	msg := "OPTIONS sip:" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + tr + " " + local + ";branch=z9hG4bK" + id + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:ping@lab>;tag=" + id + "\r\n" +
		"To: <sip:" + addr + ">\r\n" +
		"Call-ID: " + id + "@lab\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := io.WriteString(c, msg); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, err
	}
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "SIP/2.0" {
		return 0, fmt.Errorf("not a SIP reply: %q", line)
	}
	return strconv.Atoi(f[1])
}

// SIP flood methods, for SIPFloodOptions.Method.
const (
	// SIPInviteFlood: INVITEs relayed to the UAS, whose 200 (and its
	// retransmissions) is read and never ACKed.
	SIPInviteFlood = "INVITE"
	// SIPOptionsFlood: OPTIONS for the proxy itself, answered by it.
	SIPOptionsFlood = "OPTIONS"
)

// SIPFloodOptions configure a SIP flood over TCP.
type SIPFloodOptions struct {
	// Dial opens the flood's connections (Dialer(attackerHost)).
	Dial DialFunc
	// Target is the proxy, "IP:port".
	Target string
	// Method is SIPInviteFlood (default) or SIPOptionsFlood.
	Method string
	// Rate is new connections (one request each) per second (default 50).
	Rate float64
	// Hold is how long each connection is kept open after its request,
	// reading whatever comes and never completing a call (default 60 s).
	Hold time.Duration
}

// SIPFlood is a running flood: every 1/Rate s it opens a TCP connection
// to the proxy, sends one request and holds the connection for Hold, so
// that the proxy keeps it (tcp_connection_lifetime) and, for INVITEs, the
// transaction; a proxy that closes connections at its limit refuses the
// next ones, callers' included.
type SIPFlood struct {
	opts   SIPFloodOptions
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	st SIPFloodStats
}

// SIPFloodStats count a flood's connections.
type SIPFloodStats struct {
	Opened   int // connections established and sent a request
	Answered int // that got a SIP reply
	Refused  int // failed to connect or send, or closed by the proxy before a reply
	Held     int // open now
}

// StartSIPFlood starts a flood, until Stop or ctx ends.
func StartSIPFlood(ctx context.Context, opts SIPFloodOptions) (*SIPFlood, error) {
	if opts.Dial == nil || opts.Target == "" {
		return nil, errors.New("apps: a SIP flood needs a dialer and a target")
	}
	if opts.Method == "" {
		opts.Method = SIPInviteFlood
	}
	if opts.Method != SIPInviteFlood && opts.Method != SIPOptionsFlood {
		return nil, fmt.Errorf("apps: SIP flood method %q", opts.Method)
	}
	if opts.Rate <= 0 {
		opts.Rate = 50
	}
	if opts.Hold <= 0 {
		opts.Hold = time.Minute
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &SIPFlood{opts: opts, cancel: cancel}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		tk := time.NewTicker(time.Duration(float64(time.Second) / opts.Rate))
		defer tk.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.one(ctx, n)
			}()
		}
	}()
	return f, nil
}

func (f *SIPFlood) count(fn func(*SIPFloodStats)) {
	f.mu.Lock()
	fn(&f.st)
	f.mu.Unlock()
}

// one opens one connection, sends the request and holds it.
func (f *SIPFlood) one(ctx context.Context, n int) {
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	c, err := f.opts.Dial(dctx, "tcp", f.opts.Target)
	cancel()
	if err != nil {
		f.count(func(s *SIPFloodStats) { s.Refused++ })
		return
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := io.WriteString(c, sipRequest(f.opts.Method, f.opts.Target, c.LocalAddr().String(), n)); err != nil {
		f.count(func(s *SIPFloodStats) { s.Refused++ })
		return
	}
	f.count(func(s *SIPFloodStats) { s.Opened++; s.Held++ })
	defer f.count(func(s *SIPFloodStats) { s.Held-- })
	c.SetReadDeadline(time.Now().Add(f.opts.Hold))
	buf := make([]byte, 4096)
	answered := false
	for {
		k, err := c.Read(buf)
		if k > 0 && !answered && strings.HasPrefix(string(buf[:k]), "SIP/2.0 ") {
			answered = true
			f.count(func(s *SIPFloodStats) { s.Answered++ })
		}
		if err != nil {
			if !answered && ctx.Err() == nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					f.count(func(s *SIPFloodStats) { s.Refused++ })
				}
			}
			return
		}
	}
}

// sipRequest is the flood's n-th request, sent from local.
func sipRequest(method, target, local string, n int) string {
	id := strconv.Itoa(n) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	uri, to := "sip:"+target, "<sip:"+target+">"
	if method == SIPInviteFlood {
		uri, to = "sip:flood@"+target, "<sip:flood@"+target+">"
	}
	host, _, _ := net.SplitHostPort(local)
	var body string
	if method == SIPInviteFlood {
		body = "v=0\r\no=flood 1 1 IN IP4 " + host + "\r\ns=-\r\nc=IN IP4 " + host +
			"\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	}
	h := method + " " + uri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + local + ";branch=z9hG4bK" + id + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:flood@" + host + ">;tag=" + id + "\r\n" +
		"To: " + to + "\r\n" +
		"Call-ID: " + id + "@" + host + "\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		"Contact: <sip:flood@" + local + ";transport=tcp>\r\n"
	if body != "" {
		h += "Content-Type: application/sdp\r\n"
	}
	return h + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// Stats returns the flood's counters so far.
func (f *SIPFlood) Stats() SIPFloodStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

// Stop ends the flood, closing its connections, and returns its counters.
func (f *SIPFlood) Stop() SIPFloodStats {
	f.cancel()
	f.wg.Wait()
	return f.Stats()
}

// sippUAS is SIPp's built-in UAS without its 180 Ringing: the proxy's UDP
// workers relay the UAS's replies in parallel, so a 180 sent just before
// the 200 can reach the caller after it, which SIPp's built-in UAC takes
// for an unexpected message and fails the call for.
const sippUAS = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="UAS: answer at once">
  <recv request="INVITE" crlf="true"/>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
  <recv request="ACK" optional="true" rtd="true" crlf="true"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <timewait milliseconds="4000"/>
</scenario>
`

// SIPpOptions configure a SIPp run.
type SIPpOptions struct {
	// Host runs SIPp in this lab host's namespace (required).
	Host *lab.Host
	// Target is the proxy ("IP:port"); Local the address to bind (the
	// host's own, required: SIPp puts it in Via and Contact).
	Target, Local string
	// Scenario: "uac" (SIPp's built-in caller: INVITE, ACK, a pause of
	// CallLength, BYE), "uas" (its built-in callee without the 180:
	// sippUAS).
	Scenario string
	// Transport is SIPp's -t: "tn" (a TCP connection per call, default
	// for callers), "t1", "u1" (default for "uas").
	Transport string
	// Port is the local port of a UAS (-p; default 5060).
	Port int
	// Rate is calls (requests) per second (default 10); Calls stops
	// after that many (0: until stopped).
	Rate  float64
	Calls int
	// CallLength is the pause of "uac" between ACK and BYE (default
	// 1 s).
	CallLength time.Duration
	// RecvTimeout fails a call whose next expected message does not come
	// within it (default 5 s).
	RecvTimeout time.Duration
	// Nice runs SIPp under nice -n Nice.
	Nice int
	// MaxSockets bounds SIPp's sockets (default 10000).
	MaxSockets int
}

// SIPp is a running SIPp.
// A caller ("uac") is started again when it exits by itself: SIPp ends
// its whole run when the proxy resets one of its connections (as Kamailio
// does to connections beyond tcp_max_connections), failing the calls in
// progress; the next run goes on calling. Its counters add up over runs.
type SIPp struct {
	host    *lab.Host
	name    string
	args    []string
	dir     string
	restart bool
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once

	mu       sync.Mutex
	p        *lab.Process
	run      int       // current run, from 0; -1 between runs and after the last
	past     SIPpStats // final counters of the runs before
	restarts int
	lastOut  string // output of the last run that ended
}

// SIPpStats are SIPp's cumulative counters, from its -trace_stat file.
type SIPpStats struct {
	Time       time.Time // when SIPp wrote them
	Created    int       // calls begun
	Current    int       // calls in progress
	Successful int
	Failed     int
}

// StartSIPp runs SIPp in opts.Host's namespace.
func StartSIPp(opts SIPpOptions) (*SIPp, error) {
	bin, err := exec.LookPath("sipp")
	if err != nil {
		return nil, unavailable("sipp (Debian package sip-tester): %v", err)
	}
	if opts.Host == nil || opts.Local == "" {
		return nil, errors.New("apps: sipp needs a lab host and its address")
	}
	dir, err := os.MkdirTemp("", "rampart-sipp-")
	if err != nil {
		return nil, fmt.Errorf("apps: %w", err)
	}
	s := &SIPp{host: opts.Host, dir: dir, restart: opts.Scenario == "uac",
		stop: make(chan struct{}), done: make(chan struct{})}
	tr := opts.Transport
	if tr == "" {
		tr = "tn"
		if opts.Scenario == "uas" {
			tr = "u1"
		}
	}
	maxSock := opts.MaxSockets
	if maxSock <= 0 {
		maxSock = 10000
	}
	args := []string{"-i", opts.Local, "-t", tr, "-nostdin", "-max_socket", strconv.Itoa(maxSock),
		"-trace_stat", "-fd", "1", "-trace_err", "-error_file", filepath.Join(dir, "errors.log")}
	rate := opts.Rate
	if rate <= 0 {
		rate = 10
	}
	// -r takes an integer: a fractional rate is expressed per 10 s.
	rateArgs := []string{"-r", strconv.Itoa(int(rate*10 + 0.5)), "-rp", "10s"}
	if rate == float64(int(rate)) {
		rateArgs = []string{"-r", strconv.Itoa(int(rate))}
	}
	switch opts.Scenario {
	case "uas":
		port := opts.Port
		if port == 0 {
			port = 5060
		}
		f := filepath.Join(dir, "uas.xml")
		if err := os.WriteFile(f, []byte(sippUAS), 0o644); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("apps: %w", err)
		}
		args = append(args, "-sf", f, "-p", strconv.Itoa(port))
	case "uac":
		cl := opts.CallLength
		if cl <= 0 {
			cl = time.Second
		}
		rt := opts.RecvTimeout
		if rt <= 0 {
			rt = 5 * time.Second
		}
		// A connection the proxy resets (at its limit) fails that call,
		// not the whole run: SIPp exits on a reset unless it may
		// reconnect.
		args = append(args, "-max_reconnect", "1000000", "-reconnect_sleep", "0")
		args = append(args, "-sn", "uac", "-d", strconv.Itoa(int(cl/time.Millisecond)),
			"-recv_timeout", strconv.Itoa(int(rt/time.Millisecond)))
		args = append(args, rateArgs...)
	default:
		os.RemoveAll(dir)
		return nil, fmt.Errorf("apps: sipp scenario %q", opts.Scenario)
	}
	if opts.Calls > 0 {
		args = append(args, "-m", strconv.Itoa(opts.Calls))
	}
	if opts.Target != "" {
		args = append(args, opts.Target)
	}
	name := bin
	if opts.Nice != 0 {
		args = append([]string{"-n", strconv.Itoa(opts.Nice), bin}, args...)
		name = "nice"
	}
	s.name, s.args = name, args
	p, err := s.start(0)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.p = p
	go s.supervise()
	return s, nil
}

func (s *SIPp) statFile(run int) string {
	return filepath.Join(s.dir, "stat-"+strconv.Itoa(run)+".csv")
}

func (s *SIPp) start(run int) (*lab.Process, error) {
	args := append(append([]string(nil), s.args...), "-stf", s.statFile(run))
	return s.host.Start(s.name, args...)
}

// supervise waits for each run and starts the next one (callers only).
func (s *SIPp) supervise() {
	defer close(s.done)
	for {
		s.mu.Lock()
		p, run := s.p, s.run
		s.mu.Unlock()
		exited := make(chan struct{})
		go func() { p.Wait(); close(exited) }()
		select {
		case <-s.stop:
			p.Stop()
			<-exited
		case <-exited:
		}
		st, _ := readSIPpStats(s.statFile(run))
		s.mu.Lock()
		s.past, s.run = s.past.add(st), -1
		s.lastOut = p.Output()
		s.mu.Unlock()
		if !s.restart {
			return
		}
		select {
		case <-s.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
		np, err := s.start(run + 1)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.p, s.run = np, run+1
		s.restarts++
		s.mu.Unlock()
	}
}

// Restarts counts the runs started again after SIPp exited by itself.
func (s *SIPp) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// Stats returns the counters so far: those of the ended runs plus the
// latest the current run wrote (once a second).
func (s *SIPp) Stats() (SIPpStats, error) {
	s.mu.Lock()
	past, run := s.past, s.run
	s.mu.Unlock()
	if run < 0 {
		return past, nil
	}
	st, err := readSIPpStats(s.statFile(run))
	if err != nil {
		if past.Time.IsZero() {
			return past, err
		}
		return past, nil // the run just started: no line yet
	}
	return past.add(st), nil
}

// add sums counters of two runs (Current and Time from the later).
func (a SIPpStats) add(b SIPpStats) SIPpStats {
	return SIPpStats{Time: b.Time, Current: b.Current, Created: a.Created + b.Created,
		Successful: a.Successful + b.Successful, Failed: a.Failed + b.Failed}
}

// Output is the tail of SIPp's output (the current run's, or the last
// one's) and its error log.
func (s *SIPp) Output() string {
	s.mu.Lock()
	out := s.lastOut
	if s.run >= 0 {
		out = s.p.Output()
	}
	s.mu.Unlock()
	return out + "\n--- errors ---\n" + tailFile(filepath.Join(s.dir, "errors.log"), 4<<10)
}

// Stop stops SIPp and returns its counters over all runs (SIPp writes its
// final ones as it exits).
func (s *SIPp) Stop() (SIPpStats, error) {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	st, err := s.Stats()
	return st, err
}

// Close stops SIPp and removes its directory.
func (s *SIPp) Close() {
	s.Stop()
	os.RemoveAll(s.dir)
}

// readSIPpStats parses the last line of a -trace_stat file: fields named
// in its header, ";"-separated.
func readSIPpStats(path string) (SIPpStats, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return SIPpStats{}, fmt.Errorf("apps: sipp stats: %w", err)
	}
	r := csv.NewReader(strings.NewReader(string(b)))
	r.Comma, r.FieldsPerRecord, r.LazyQuotes = ';', -1, true
	recs, err := r.ReadAll()
	if err != nil || len(recs) < 2 {
		return SIPpStats{}, fmt.Errorf("apps: sipp stats %s: %d lines, %v", path, len(recs), err)
	}
	head, last := recs[0], recs[len(recs)-1]
	get := func(name string) (int, error) {
		for i, h := range head {
			if h == name && i < len(last) {
				return strconv.Atoi(strings.TrimSpace(last[i]))
			}
		}
		return 0, fmt.Errorf("apps: sipp stats: no field %s", name)
	}
	var st SIPpStats
	for _, f := range []struct {
		name string
		v    *int
	}{{"TotalCallCreated", &st.Created}, {"CurrentCall", &st.Current},
		{"SuccessfulCall(C)", &st.Successful}, {"FailedCall(C)", &st.Failed}} {
		if *f.v, err = get(f.name); err != nil {
			return SIPpStats{}, err
		}
	}
	for i, h := range head {
		if h == "CurrentTime" && i < len(last) {
			// "2026-12-02\t01:46:55.340608\t1796176015.340608": the epoch last.
			if f := strings.Fields(last[i]); len(f) > 0 {
				if sec, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
					st.Time = time.Unix(0, int64(sec*1e9))
				}
			}
		}
	}
	return st, nil
}

// Rate is the success rate of the calls that ended between two readings
// (successful / (successful + failed)), and how many ended.
func (st SIPpStats) Rate(since SIPpStats) (float64, int) {
	ok, bad := st.Successful-since.Successful, st.Failed-since.Failed
	if ok+bad <= 0 {
		return 0, 0
	}
	return float64(ok) / float64(ok+bad), ok + bad
}
