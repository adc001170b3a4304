package apps

import (
	"context"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Route is one kind of request in a load mix, or a crafted request.
type Route struct {
	Name        string  // short name for per-route stats, e.g. "text-1k"
	Weight      float64 // relative frequency in a mix
	Method      string  // default GET
	Path        string  // path and query, e.g. "/text?size=1000"
	Body        string
	ContentType string
	UserAgent   string // default: a browser user agent chosen per client
}

// Request builds the request against baseURL ("http://host:port").
func (r Route) Request(ctx context.Context, baseURL string) (*http.Request, error) {
	m := r.Method
	if m == "" {
		m = http.MethodGet
	}
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, m, baseURL+r.Path, body)
	if err != nil {
		return nil, err
	}
	if r.ContentType != "" {
		req.Header.Set("Content-Type", r.ContentType)
	}
	if r.UserAgent != "" {
		req.Header.Set("User-Agent", r.UserAgent)
	}
	return req, nil
}

// KeepAlive says which load clients reuse connections.
type KeepAlive int

const (
	KeepAliveMixed  KeepAlive = iota // every other client (the default)
	KeepAliveAlways                  // all clients
	KeepAliveNever                   // none: one connection per request
)

// LoadOptions configure StartLoad. The zero value is 4 clients, no rate
// cap, no think time, mixed keep-alive and a 2 s timeout, until Stop.
type LoadOptions struct {
	Routes      []Route       // the mix (default: the server's Routes)
	Concurrency int           // clients, each with its own connections (default 4)
	Rate        float64       // cap on request starts per second, all clients together (0: none)
	ThinkTime   time.Duration // mean pause after each response, exponential (0: none)
	KeepAlive   KeepAlive
	Timeout     time.Duration // per request, connect to last byte (default 2 s)
	Duration    time.Duration // stop by itself after this (0: at Stop)
	Dial        DialFunc      // default: the server's Dial, else a plain dial
	Seed        uint64        // for the route choice and think times (0: time-based)
}

// Record is one benign request's outcome.
type Record struct {
	Route   string
	Start   time.Time
	Latency time.Duration // to the last byte of the body, or to the error
	Status  int           // 0 without a response
	Bytes   int64
	Err     error
}

// OK reports a 2xx or 3xx response read completely.
func (r Record) OK() bool { return r.Err == nil && r.Status >= 200 && r.Status < 400 }

// Load is a running benign load generator.
type Load struct {
	start  time.Time
	stop   context.CancelFunc // stops issuing requests
	done   chan struct{}
	stopMu sync.Once

	mu       sync.Mutex
	recs     []Record
	inflight map[int]time.Time // client -> start of its current request
}

// StartLoad starts benign clients against s (see LoadOptions) until Stop,
// opts.Duration or ctx ends. Ending ctx also aborts requests in flight;
// Stop lets them finish (each is bounded by opts.Timeout).
func (s *Server) StartLoad(ctx context.Context, opts LoadOptions) *Load {
	if opts.Routes == nil {
		opts.Routes = s.routes
	}
	if opts.Dial == nil {
		opts.Dial = s.Dial()
	}
	return StartLoad(ctx, s.URL, opts)
}

// StartLoad starts benign clients against baseURL; see Server.StartLoad.
func StartLoad(ctx context.Context, baseURL string, opts LoadOptions) *Load {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if len(opts.Routes) == 0 {
		opts.Routes = staticRoutes
	}
	seed := opts.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	var (
		issue context.Context
		stop  context.CancelFunc
	)
	if opts.Duration > 0 {
		issue, stop = context.WithTimeout(ctx, opts.Duration)
	} else {
		issue, stop = context.WithCancel(ctx)
	}
	l := &Load{start: time.Now(), stop: stop, done: make(chan struct{}), inflight: map[int]time.Time{}}

	var tokens <-chan time.Time
	if opts.Rate > 0 {
		t := time.NewTicker(max(time.Duration(float64(time.Second)/opts.Rate), time.Microsecond))
		tokens = t.C
		go func() { <-issue.Done(); t.Stop() }()
	}
	pick := picker(opts.Routes)
	var wg sync.WaitGroup
	for i := 0; i < opts.Concurrency; i++ {
		keep := opts.KeepAlive == KeepAliveAlways || (opts.KeepAlive == KeepAliveMixed && i%2 == 0)
		tr := &http.Transport{DialContext: opts.Dial, DisableKeepAlives: !keep,
			MaxIdleConnsPerHost: 1, IdleConnTimeout: 10 * time.Second}
		client := &http.Client{Transport: tr, Timeout: opts.Timeout}
		rnd := rand.New(rand.NewPCG(seed, uint64(i)))
		ua := browserUAs[(int(seed)+i)%len(browserUAs)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer tr.CloseIdleConnections()
			for issue.Err() == nil {
				if tokens != nil {
					select {
					case <-tokens:
					case <-issue.Done():
						return
					}
				}
				r := pick(rnd)
				if r.UserAgent == "" {
					r.UserAgent = ua
				}
				l.one(ctx, i, client, baseURL, r)
				if opts.ThinkTime > 0 {
					d := time.Duration(rnd.ExpFloat64() * float64(opts.ThinkTime))
					select {
					case <-time.After(min(d, 10*opts.ThinkTime)):
					case <-issue.Done():
						return
					}
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(l.done)
	}()
	return l
}

// one sends one request; requests aborted by the caller's ctx are dropped.
func (l *Load) one(ctx context.Context, id int, c *http.Client, baseURL string, r Route) {
	start := time.Now()
	l.mu.Lock()
	l.inflight[id] = start
	l.mu.Unlock()
	rec := Record{Route: r.Name, Start: start}
	req, err := r.Request(ctx, baseURL)
	if err == nil {
		var resp *http.Response
		resp, err = c.Do(req)
		if err == nil {
			rec.Status = resp.StatusCode
			rec.Bytes, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	rec.Latency, rec.Err = time.Since(start), err
	l.mu.Lock()
	delete(l.inflight, id)
	if ctx.Err() == nil {
		l.recs = append(l.recs, rec)
	}
	l.mu.Unlock()
}

// Stop stops issuing requests, waits for those in flight (each bounded by
// the timeout) and returns the stats.
func (l *Load) Stop() Stats {
	l.stop()
	<-l.done
	return l.Stats()
}

// Records returns a copy of the finished requests' records.
func (l *Load) Records() []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

// Stats summarizes every request finished so far.
func (l *Load) Stats() Stats { return l.Window(time.Time{}, time.Time{}) }

// Window summarizes the requests started in [from, to); a zero bound is
// open. Requests still in flight count as stalled in PerSecond.
func (l *Load) Window(from, to time.Time) Stats {
	l.mu.Lock()
	recs := slices.Clone(l.recs)
	var open []time.Time
	for _, t := range l.inflight {
		open = append(open, t)
	}
	l.mu.Unlock()
	now := time.Now()
	var in []Record
	for _, r := range recs {
		if (from.IsZero() || !r.Start.Before(from)) && (to.IsZero() || r.Start.Before(to)) {
			in = append(in, r)
		}
	}
	for _, t := range open {
		if (from.IsZero() || !t.Before(from)) && (to.IsZero() || t.Before(to)) {
			in = append(in, Record{Start: t, Latency: now.Sub(t), Status: -1})
		}
	}
	begin := l.start
	if !from.IsZero() && from.After(begin) {
		begin = from
	}
	return summarize(in, begin)
}

// Stats summarize benign requests.
type Stats struct {
	Count    int // finished requests
	OK       int // 2xx/3xx, read completely
	Errors   int // Count - OK: transport errors, timeouts, 4xx, 5xx
	Timeouts int
	// Latency quantiles and maximum over all finished requests (failed
	// ones at the time they failed).
	P50, P90, P99, Max time.Duration
	// Availability is OK / Count (1 with no requests).
	Availability float64
	PerSecond    []Second
	Routes       map[string]RouteStats
}

// Second is one second of a load, from its start.
type Second struct {
	Start time.Time
	Done  int // requests that finished in this second
	OK    int // of which OK
	// Stalled counts requests in flight during the whole second (started
	// before it, finished after it or not yet).
	Stalled int
	// Availability is OK / (Done + Stalled), or 1 for an idle second: a
	// server that answers nothing while clients wait scores 0.
	Availability float64
}

// RouteStats summarize one route of the mix.
type RouteStats struct {
	Count, OK int
	P50, P99  time.Duration
}

// summarize computes Stats; records with Status -1 are still in flight.
func summarize(recs []Record, begin time.Time) Stats {
	st := Stats{Routes: map[string]RouteStats{}, Availability: 1}
	var lat []time.Duration
	byRoute := map[string][]time.Duration{}
	var end time.Time
	for _, r := range recs {
		if e := r.Start.Add(r.Latency); e.After(end) {
			end = e
		}
		if r.Status == -1 {
			continue
		}
		st.Count++
		rs := st.Routes[r.Route]
		rs.Count++
		if r.OK() {
			st.OK++
			rs.OK++
		}
		if r.Err != nil && isTimeout(r.Err) {
			st.Timeouts++
		}
		st.Routes[r.Route] = rs
		lat = append(lat, r.Latency)
		byRoute[r.Route] = append(byRoute[r.Route], r.Latency)
	}
	st.Errors = st.Count - st.OK
	if st.Count > 0 {
		st.Availability = float64(st.OK) / float64(st.Count)
	}
	st.P50, st.P90, st.P99, st.Max = quantile(lat, .5), quantile(lat, .9), quantile(lat, .99), quantile(lat, 1)
	for name, l := range byRoute {
		rs := st.Routes[name]
		rs.P50, rs.P99 = quantile(l, .5), quantile(l, .99)
		st.Routes[name] = rs
	}
	if len(recs) == 0 || !end.After(begin) {
		return st
	}
	n := int(math.Ceil(end.Sub(begin).Seconds()))
	st.PerSecond = make([]Second, n)
	for i := range st.PerSecond {
		st.PerSecond[i].Start = begin.Add(time.Duration(i) * time.Second)
	}
	for _, r := range recs {
		s := int(r.Start.Sub(begin) / time.Second)
		e := int(r.Start.Add(r.Latency).Sub(begin) / time.Second)
		if r.Status != -1 && e >= 0 && e < n {
			st.PerSecond[e].Done++
			if r.OK() {
				st.PerSecond[e].OK++
			}
		}
		if r.Status == -1 { // in flight: stalled up to now
			e = n
		}
		for i := max(s+1, 0); i < e && i < n; i++ {
			st.PerSecond[i].Stalled++
		}
	}
	for i := range st.PerSecond {
		sec := &st.PerSecond[i]
		sec.Availability = 1
		if d := sec.Done + sec.Stalled; d > 0 {
			sec.Availability = float64(sec.OK) / float64(d)
		}
	}
	return st
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

// picker returns a weighted random choice among routes.
func picker(routes []Route) func(*rand.Rand) Route {
	cum := make([]float64, len(routes))
	total := 0.0
	for i, r := range routes {
		w := r.Weight
		if w <= 0 {
			w = 1
		}
		total += w
		cum[i] = total
	}
	return func(rnd *rand.Rand) Route {
		x := rnd.Float64() * total
		i := sort.SearchFloat64s(cum, x)
		return routes[min(i, len(routes)-1)]
	}
}

const formType = "application/x-www-form-urlencoded"

const uaRedmi = "Mozilla/5.0 (Linux; Android 10; Redmi Note 8 Pro Build/QP1A.190711.020) " +
	"AppleWebKit/537.36 (KHTML, like Gecko) Chrome/91.0.4472.120 Mobile Safari/537.36"

// browserUAs are ordinary user agents, one per load client.
var browserUAs = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
	"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
	uaRedmi,
	"Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36",
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
	"curl/7.88.1",
}

const benignMarkdown = `# Release notes

Version **2.4** brings a faster *parser* and [new docs](https://example.com/docs).

## Changes

- fixed a crash when the config is empty
- added ` + "`--verbose`" + `
- updated dependencies

> Upgrade with ` + "`make install`" + `.

[docs]: https://example.com/docs "Documentation"
`

const benignXML = `<?xml version="1.0"?>
<order id="1042"><customer>Alice Smith</customer>
<item sku="A-100" qty="2">Widget</item><item sku="B-7" qty="1">Gadget &amp; case</item>
<total currency="EUR">42.50</total></order>`

// benignKV is "host = example.org\nport = 8080\nname = lab" URL-encoded
// with %20, not '+': mod_lua's r:parseargs leaves '+' as is.
const benignKV = "host%20%3D%20example.org%0Aport%20%3D%208080%0Aname%20%3D%20lab"

// nodeRoutes is the Node app's benign mix: mostly cheap pages and lists,
// some large texts, and ordinary inputs on every vulnerable route.
var nodeRoutes = []Route{
	{Name: "home", Weight: 10, Path: "/"},
	{Name: "text-500", Weight: 15, Path: "/text?size=500"},
	{Name: "text-5k", Weight: 10, Path: "/text?size=5000"},
	{Name: "text-50k", Weight: 4, Path: "/text?size=50000"},
	{Name: "text-200k", Weight: 1, Path: "/text?size=200000"},
	{Name: "items-20", Weight: 12, Path: "/api/items?n=20"},
	{Name: "items-500", Weight: 2, Path: "/api/items?n=500"},
	{Name: "compute", Weight: 4, Path: "/compute?n=200"},
	{Name: "echo", Weight: 3, Method: "POST", Path: "/echo", ContentType: "application/json",
		Body: `{"message": "` + strings.Repeat("hello ", 300) + `"}`},
	{Name: "ua", Weight: 8, Path: "/ua"},
	{Name: "duration", Weight: 3, Path: "/duration?d=2h"},
	{Name: "duration-ms", Weight: 1, Path: "/duration?d=300ms"},
	{Name: "signup", Weight: 3, Method: "POST", Path: "/signup", ContentType: formType,
		Body: "name=+Alice+Smith+&email=alice%40example.com"},
	{Name: "render", Weight: 4, Method: "POST", Path: "/render", ContentType: "text/markdown",
		Body: benignMarkdown},
	{Name: "date", Weight: 3, Path: "/date?d=2024-03-01T12:00:00Z"},
	{Name: "date-rfc2822", Weight: 1, Path: "/date?d=Tue%2C+01+Nov+2016+01%3A23%3A45+%2B0000"},
	{Name: "xml", Weight: 3, Method: "POST", Path: "/xml", ContentType: "application/xml",
		Body: benignXML},
}

// staticRoutes is the Apache and nginx benign mix: static files of mixed
// sizes, a JSON document and ordinary calls of the Lua routes.
var staticRoutes = []Route{
	{Name: "home", Weight: 10, Path: "/"},
	{Name: "static-100", Weight: 8, Path: "/static/100.txt"},
	{Name: "static-1k", Weight: 15, Path: "/static/1k.txt"},
	{Name: "static-10k", Weight: 12, Path: "/static/10k.txt"},
	{Name: "static-50k", Weight: 5, Path: "/static/50k.txt"},
	{Name: "static-200k", Weight: 2, Path: "/static/200k.txt"},
	{Name: "static-1m", Weight: 0.5, Path: "/static/1m.txt"},
	{Name: "items", Weight: 10, Path: "/api/items.json"},
	{Name: "lua-kv", Weight: 6, Path: "/lua/kv?text=" + benignKV},
	{Name: "lua-kv-post", Weight: 2, Method: "POST", Path: "/lua/kv", ContentType: formType,
		Body: "text=" + benignKV},
	{Name: "lua-primes", Weight: 5, Path: "/lua/primes?n=1000"},
	{Name: "lua-primes-20k", Weight: 1, Path: "/lua/primes?n=20000"},
}
