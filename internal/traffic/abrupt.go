package traffic

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Benign clients that end their connections abruptly or slowly: common
// on the Internet (browsers, one-shot HTTP/1.0 tools, clients that time
// out or stop a download, keep-alive pools that reset idle connections),
// and ending in a reset or a lone packet after a pause, as many attack
// sessions do. A detector must not call them attacks.

// span is a random duration in [lo, hi].
type span struct{ lo, hi time.Duration }

func (s span) pick(rng *rand.Rand) time.Duration {
	if s.hi <= s.lo {
		return s.lo
	}
	return s.lo + time.Duration(rng.Int64N(int64(s.hi-s.lo)+1))
}

func (s span) String() string { return fmt.Sprintf("%v-%v", s.lo, s.hi) }

// sleepCtx sleeps d or until ctx ends; it reports whether ctx is still on.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// workers runs fn in n goroutines in the benign client's namespace until
// ctx ends (each with its number w and its own generator), and fails when
// no fn call ever succeeded.
func (e *env) workers(ctx context.Context, what string, n int, seed uint64, fn func(ctx context.Context, w int, rng *rand.Rand) bool) error {
	var wg sync.WaitGroup
	var ok atomic.Int64
	for w := range n {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)+1))
			e.benign.Do(func() error {
				for ctx.Err() == nil {
					if fn(ctx, w, rng) {
						ok.Add(1)
					}
				}
				return nil
			})
		})
	}
	wg.Wait()
	if ok.Load() == 0 {
		return errors.New(what + ": no request was answered")
	}
	return nil
}

// portPool hands out local ports from a small range, each worker its
// own: clients behind a busy NAT, or with a small ephemeral port range,
// reuse a port (and so a whole 5-tuple) within seconds, and a connection
// closed with a reset leaves no TIME_WAIT to stop that. A port still
// taken (TIME_WAIT after a FIN) is skipped.
type portPool struct {
	base, size int
	next       int
}

// dial connects to addr, from the pool's next free port when it has any.
func (p *portPool) dial(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if p == nil || p.size == 0 {
		return d.DialContext(ctx, "tcp", addr)
	}
	var err error
	for range 4 {
		d.LocalAddr = &net.TCPAddr{Port: p.base + p.next}
		p.next = (p.next + 1) % p.size
		var c net.Conn
		if c, err = d.DialContext(ctx, "tcp", addr); err == nil {
			return c, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	return nil, err
}

// addr picks the IPv6 server with probability v6, else the IPv4 one.
func (e *env) addr(rng *rand.Rand, v6 float64) string {
	if rng.Float64() < v6 {
		return e.srv.httpAddrs[1]
	}
	return e.srv.httpAddrs[0]
}

// sizePath is /size/N with N in [lo, hi], or / (a 600-byte page) with
// probability root.
func sizePath(rng *rand.Rand, lo, hi int, root float64) string {
	if rng.Float64() < root {
		return "/"
	}
	return "/size/" + strconv.Itoa(lo+rng.IntN(hi-lo+1))
}

// oneShot is lab.HTTPLoad's kind of client: one request per connection
// (HTTP/1.0, or HTTP/1.1 with Connection: close), reading only the first
// bytes of the answer before closing, so the kernel resets the
// connection when data was left unread. Whether the server's FIN came
// before the reset depends on timing (a busy server closes later); with
// probability hold the server closes a set time after its answer
// (/hold/MS), so the reset comes first.
type oneShot struct {
	workers          int
	duration         time.Duration
	gap              span  // between connections of a worker
	reads            []int // bytes read before closing, one picked per connection
	minSize, maxSize int   // /size/N answers; "/" with probability root
	root             float64
	hold             float64
	holdFor          span
	http11, v6       float64
	// ports, when > 0, is each worker's local port pool (from 20000 on):
	// a port is used again every ports connections.
	ports int
	seed  uint64
}

func (o oneShot) String() string {
	return fmt.Sprintf("one-shot HTTP clients: %d workers for %v, %v apart, reading %v bytes of / (%.0f%%), /hold/%v (%.0f%%) or /size/%d-%d, %.0f%% HTTP/1.1 close, %.0f%% over IPv6, local ports reused every %d connections",
		o.workers, o.duration, o.gap, o.reads, 100*o.root, o.holdFor, 100*o.hold, o.minSize, o.maxSize, 100*o.http11, 100*o.v6, o.ports)
}

func (o oneShot) path(rng *rand.Rand) string {
	if rng.Float64() < o.hold {
		return "/hold/" + strconv.Itoa(int(o.holdFor.pick(rng)/time.Millisecond))
	}
	return sizePath(rng, o.minSize, o.maxSize, o.root)
}

func (o oneShot) run(ctx context.Context, e *env) error {
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	pools := make([]*portPool, o.workers) // each worker's own
	for w := range pools {
		if o.ports > 0 {
			pools[w] = &portPool{base: 20000 + w*o.ports, size: o.ports}
		}
	}
	return e.workers(ctx, "one-shot client", o.workers, o.seed, func(ctx context.Context, w int, rng *rand.Rand) bool {
		defer sleepCtx(ctx, o.gap.pick(rng))
		pool := pools[w]
		addr := e.addr(rng, o.v6)
		c, err := pool.dial(ctx, addr, 500*time.Millisecond)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		req := "GET " + o.path(rng) + " HTTP/1.0\r\n\r\n"
		if rng.Float64() < o.http11 {
			req = "GET " + o.path(rng) + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n\r\n"
		}
		if _, err := io.WriteString(c, req); err != nil {
			return false
		}
		buf := make([]byte, o.reads[rng.IntN(len(o.reads))])
		n, _ := io.ReadAtLeast(c, buf, min(12, len(buf)))
		return n >= 12 && string(buf[9:12]) == "200"
	})
}

// lingerZero clients close with SO_LINGER 0 (a reset instead of a FIN):
// a few keep-alive requests, each answer read in full, then the abortive
// close; with probability early the last request is not waited for (the
// answer meets a reset socket).
type lingerZero struct {
	workers          int
	duration         time.Duration
	requests         [2]int // per connection, min and max
	pause            span   // between requests, and before the close
	minSize, maxSize int
	early, v6        float64
	seed             uint64
}

func (o lingerZero) String() string {
	return fmt.Sprintf("SO_LINGER 0 clients: %d workers for %v, %d-%d requests (/size/%d-%d) %v apart per connection, %.0f%% closed before the last answer, %.0f%% over IPv6",
		o.workers, o.duration, o.requests[0], o.requests[1], o.minSize, o.maxSize, o.pause, 100*o.early, 100*o.v6)
}

func (o lingerZero) run(ctx context.Context, e *env) error {
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	return e.workers(ctx, "SO_LINGER 0 client", o.workers, o.seed, func(ctx context.Context, _ int, rng *rand.Rand) bool {
		addr := e.addr(rng, o.v6)
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			sleepCtx(ctx, 10*time.Millisecond)
			return false
		}
		c.(*net.TCPConn).SetLinger(0)
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		br := bufio.NewReader(c)
		n := o.requests[0] + rng.IntN(o.requests[1]-o.requests[0]+1)
		early := rng.Float64() < o.early
		ok := false
		for i := range n {
			req := "GET " + sizePath(rng, o.minSize, o.maxSize, 0.2) + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: lab-linger0/1.0\r\n\r\n"
			if _, err := io.WriteString(c, req); err != nil {
				return ok
			}
			if early && i == n-1 {
				sleepCtx(ctx, time.Duration(rng.IntN(300))*time.Microsecond)
				return ok
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return ok
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ok = true
			if !sleepCtx(ctx, o.pause.pick(rng)) {
				return ok
			}
		}
		return ok
	})
}

// idleClose is a keep-alive connection pool: a few requests with short
// think times, then the connection sits idle and the client closes it,
// with a reset (SO_LINGER 0, as some browsers and HTTP libraries do)
// with probability reset, else with a FIN. Idle times over a second make
// the close a session of its own.
type idleClose struct {
	users            int
	duration         time.Duration
	requests         [2]int
	think, idle      span
	minSize, maxSize int
	reset, v6        float64
	seed             uint64
}

func (o idleClose) String() string {
	return fmt.Sprintf("keep-alive clients closing idle connections: %d users for %v, %d-%d requests (/size/%d-%d) %v apart, idle %v, %.0f%% closed with a reset, %.0f%% over IPv6",
		o.users, o.duration, o.requests[0], o.requests[1], o.minSize, o.maxSize, o.think, o.idle, 100*o.reset, 100*o.v6)
}

func (o idleClose) run(ctx context.Context, e *env) error {
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	return e.workers(ctx, "idle-closing client", o.users, o.seed, func(ctx context.Context, _ int, rng *rand.Rand) bool {
		addr := e.addr(rng, o.v6)
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			sleepCtx(ctx, 10*time.Millisecond)
			return false
		}
		defer c.Close()
		br := bufio.NewReader(c)
		ok := false
		for i := range o.requests[0] + rng.IntN(o.requests[1]-o.requests[0]+1) {
			if i > 0 && !sleepCtx(ctx, o.think.pick(rng)) {
				return ok
			}
			c.SetDeadline(time.Now().Add(2 * time.Second))
			req := "GET " + sizePath(rng, o.minSize, o.maxSize, 0.3) + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: lab-pool/1.0\r\nAccept: */*\r\n\r\n"
			if _, err := io.WriteString(c, req); err != nil {
				return ok
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return ok
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ok = true
		}
		sleepCtx(ctx, o.idle.pick(rng))
		if rng.Float64() < o.reset {
			c.(*net.TCPConn).SetLinger(0)
		}
		return ok
	})
}

// giveUp clients time out: a request to /delay/D with a deadline shorter
// than D, then the close (a FIN: nothing was left unread); the late
// answer meets the closed socket, which resets. With probability partial
// they instead start a large download (/size/N) and stop after a few
// kilobytes (a reset: data left unread).
type giveUp struct {
	workers         int
	duration        time.Duration
	delay, deadline span
	partial, v6     float64
	seed            uint64
}

func (o giveUp) String() string {
	return fmt.Sprintf("clients giving up: %d workers for %v, /delay/%v with deadlines of %v, %.0f%% downloads stopped after a few kB, %.0f%% over IPv6",
		o.workers, o.duration, o.delay, o.deadline, 100*o.partial, 100*o.v6)
}

func (o giveUp) run(ctx context.Context, e *env) error {
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	return e.workers(ctx, "giving-up client", o.workers, o.seed, func(ctx context.Context, _ int, rng *rand.Rand) bool {
		defer sleepCtx(ctx, time.Duration(5+rng.IntN(30))*time.Millisecond)
		addr := e.addr(rng, o.v6)
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			return false
		}
		defer c.Close()
		if rng.Float64() < o.partial {
			c.SetDeadline(time.Now().Add(time.Second))
			req := "GET /size/" + strconv.Itoa(100000+rng.IntN(400000)) + " HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"
			if _, err := io.WriteString(c, req); err != nil {
				return false
			}
			n, _ := io.ReadAtLeast(c, make([]byte, 16384), 1000+rng.IntN(8000))
			return n > 0
		}
		d := o.delay.pick(rng)
		c.SetDeadline(time.Now().Add(o.deadline.pick(rng)))
		req := "GET /delay/" + strconv.Itoa(int(d/time.Millisecond)) + " HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"
		if _, err := io.WriteString(c, req); err != nil {
			return false
		}
		_, err = c.Read(make([]byte, 512))
		var ne net.Error
		return err == nil || errors.As(err, &ne) && ne.Timeout() // timing out is the point
	})
}

// slowClient is a slow but legitimate client: it sends its request in
// pieces a little apart (a slow uplink, a proxy that forwards as it
// reads), then reads the answer slowly (a small receive buffer, chunks
// of readChunk bytes readGap apart: a slow device or a busy client) and
// closes.
type slowClient struct {
	workers          int
	duration         time.Duration
	pieces           [2]int
	gap              span // between pieces
	minSize, maxSize int
	rcvbuf           int // SO_RCVBUF
	readChunk        int
	readGap          span
	v6               float64
	seed             uint64
}

func (o slowClient) String() string {
	return fmt.Sprintf("slow clients: %d workers for %v, requests in %d-%d pieces %v apart, /size/%d-%d read %d bytes at a time %v apart with a %d-byte receive buffer, %.0f%% over IPv6",
		o.workers, o.duration, o.pieces[0], o.pieces[1], o.gap, o.minSize, o.maxSize, o.readChunk, o.readGap, o.rcvbuf, 100*o.v6)
}

func (o slowClient) run(ctx context.Context, e *env) error {
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	d := net.Dialer{Timeout: time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, o.rcvbuf) })
		return errors.Join(err, serr)
	}}
	return e.workers(ctx, "slow client", o.workers, o.seed, func(ctx context.Context, _ int, rng *rand.Rand) bool {
		addr := e.addr(rng, o.v6)
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			sleepCtx(ctx, 10*time.Millisecond)
			return false
		}
		defer c.Close()
		c.(*net.TCPConn).SetNoDelay(true)
		c.SetDeadline(time.Now().Add(8 * time.Second))
		req := "GET " + sizePath(rng, o.minSize, o.maxSize, 0.3) + " HTTP/1.1\r\nHost: " + addr +
			"\r\nUser-Agent: Mozilla/5.0 (lab slow client)\r\nAccept: text/html,*/*\r\nAccept-Language: en\r\nConnection: close\r\n\r\n"
		k := o.pieces[0] + rng.IntN(o.pieces[1]-o.pieces[0]+1)
		for i := range k {
			part := req[i*len(req)/k : (i+1)*len(req)/k]
			if i > 0 && !sleepCtx(ctx, o.gap.pick(rng)) {
				return false
			}
			if _, err := io.WriteString(c, part); err != nil {
				return false
			}
		}
		resp, err := http.ReadResponse(bufio.NewReaderSize(c, 512), nil)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		buf := make([]byte, o.readChunk)
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				return errors.Is(err, io.EOF) && resp.StatusCode == 200
			}
			if !sleepCtx(ctx, o.readGap.pick(rng)) {
				return false
			}
		}
	})
}

// slowLink rate-limits both directions of the benign client's link (a
// token bucket: a slow access link, whose queue also delays packets)
// until the returned function undoes it.
func (e *env) slowLink(ctx context.Context, rate string) (func(), error) {
	args := func(dev string) []string {
		return []string{"qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "32kb", "latency", "200ms"}
	}
	if _, err := e.benign.Run(ctx, 10*time.Second, "tc", args(e.bLink.AIface)...); err != nil {
		return nil, err
	}
	undo := func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.benign.Run(c, 0, "tc", "qdisc", "del", "dev", e.bLink.AIface, "root")
		e.up.Router.Run(c, 0, "tc", "qdisc", "del", "dev", e.bLink.BIface, "root")
	}
	if _, err := e.up.Router.Run(ctx, 10*time.Second, "tc", args(e.bLink.BIface)...); err != nil {
		undo()
		return nil, err
	}
	return undo, nil
}

// together runs fns at once and joins their errors; each returns what it
// ran.
func together(fns ...func() (string, error)) (string, error) {
	var wg sync.WaitGroup
	cmds := make([]string, len(fns))
	errs := make([]error, len(fns))
	for i, fn := range fns {
		wg.Go(func() { cmds[i], errs[i] = fn() })
	}
	wg.Wait()
	return strings.Join(cmds, " & "), errors.Join(errs...)
}

// keepAlive clients hold one connection each for the whole scenario,
// requesting with think times, so their connections outlive ddosfeat's
// 10-second window: the session of the next window starts mid-stream
// (with a request, an answer or an ACK, from either side), as every
// long-lived connection's do live. With burstFor > 0 a client requests
// back to back (as wrk or a page load does) for burstFor from burstAt
// after it connected, so that its next window starts in the middle of a
// busy exchange (often with one of the server's answers).
type keepAlive struct {
	users            int
	duration         time.Duration
	think            span
	burstAt          span
	burstFor         time.Duration
	minSize, maxSize int
	v6               float64
	seed             uint64
}

func (o keepAlive) String() string {
	burst := ""
	if o.burstFor > 0 {
		burst = fmt.Sprintf(", back to back for %v from %v after connecting", o.burstFor, o.burstAt)
	}
	return fmt.Sprintf("long keep-alive clients: %d connections for %v, requests (/size/%d-%d) %v apart%s, %.0f%% over IPv6",
		o.users, o.duration, o.minSize, o.maxSize, o.think, burst, 100*o.v6)
}

func (o keepAlive) run(ctx context.Context, e *env) error {
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	return e.workers(ctx, "keep-alive client", o.users, o.seed, func(ctx context.Context, _ int, rng *rand.Rand) bool {
		addr := e.addr(rng, o.v6)
		t0 := time.Now()
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			sleepCtx(ctx, 50*time.Millisecond)
			return false
		}
		defer c.Close()
		burst := t0.Add(o.burstAt.pick(rng))
		br := bufio.NewReader(c)
		ok := false
		for {
			pause := o.think.pick(rng)
			if now := time.Now(); o.burstFor > 0 && now.Add(pause).After(burst) {
				pause = max(0, burst.Sub(now))
				if now.After(burst.Add(o.burstFor)) {
					pause = o.think.pick(rng)
				}
			}
			if !sleepCtx(ctx, pause) {
				return ok
			}
			c.SetDeadline(time.Now().Add(2 * time.Second))
			req := "GET " + sizePath(rng, o.minSize, o.maxSize, 0.3) + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: lab-keepalive/1.0\r\n\r\n"
			if _, err := io.WriteString(c, req); err != nil {
				return ok
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return ok
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ok = true
		}
	})
}
