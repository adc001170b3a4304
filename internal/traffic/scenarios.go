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
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rampart-shield/rampart/internal/lab"
)

// scenario is one recording: a client runs run (returning what it ran)
// while its link is captured.
type scenario struct {
	name  string
	class Class
	tools []string
	// maxPackets bounds the capture (tcpdump -c; the scenario stops when
	// it is reached), timeout the scenario.
	maxPackets int
	timeout    time.Duration
	run        func(ctx context.Context, e *env) (string, error)
}

// Scenarios names every scenario, benign ones first.
func Scenarios() []string {
	var out []string
	for _, s := range scenarios {
		out = append(out, s.name)
	}
	return out
}

// ClassOf returns the class of a scenario.
func ClassOf(name string) (Class, bool) {
	for _, s := range scenarios {
		if s.name == name {
			return s.class, true
		}
	}
	return "", false
}

var scenarios = []scenario{
	// ---- benign ----
	{name: "wrk", class: Benign, tools: []string{"wrk"}, maxPackets: 100000, timeout: 20 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		// Keep-alive connections, then one connection per request; a
		// script paces each connection's requests (1 to 4 ms apart, 2 to
		// 8 in the test variant).
		script, err := e.file("wrk-pace.lua", pick(e.v,
			"function delay()\n  return math.random(1, 4)\nend\n",
			"function delay()\n  return math.random(2, 8)\nend\n"))
		if err != nil {
			return "", err
		}
		return e.steps(ctx, e.benign,
			step{name: "wrk", args: pick(e.v,
				[]string{"-t", "1", "-c", "8", "-d", "2s", "-s", script, "http://" + e.http4() + "/size/2000"},
				[]string{"-t", "2", "-c", "12", "-d", "2s", "-s", script, "http://" + e.http4() + "/"})},
			step{name: "wrk", args: pick(e.v,
				[]string{"-t", "1", "-c", "4", "-d", "2s", "-s", script, "-H", "Connection: close", "http://" + e.http4() + "/size/600"},
				[]string{"-t", "1", "-c", "6", "-d", "2s", "-s", script, "-H", "Connection: close", "http://" + e.http4() + "/size/1500"})},
		)
	}},
	{name: "ab", class: Benign, tools: []string{"ab"}, maxPackets: 200000, timeout: 30 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		return e.steps(ctx, e.benign,
			step{name: "ab", args: pick(e.v,
				[]string{"-q", "-n", "1500", "-c", "4", "http://" + e.http4() + "/size/300"},
				[]string{"-q", "-n", "1200", "-c", "8", "http://" + e.http4() + "/size/1200"})},
			step{name: "ab", args: pick(e.v,
				[]string{"-q", "-n", "500", "-c", "2", "http://" + e.http6() + "/size/4000"},
				[]string{"-q", "-n", "400", "-c", "3", "http://" + e.http6() + "/"})},
			step{name: "ab", args: pick(e.v,
				[]string{"-q", "-n", "300", "-c", "2", "-k", "http://" + e.http4() + "/"},
				[]string{"-q", "-n", "400", "-c", "4", "-k", "http://" + e.http4() + "/size/100"})},
		)
	}},
	{name: "curl", class: Benign, tools: []string{"curl", "sh"}, maxPackets: 100000, timeout: 30 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		// A shell loop: one connection per request, GET, HEAD and POST,
		// over both families.
		n := pick(e.v, 60, 50)
		var b strings.Builder
		fmt.Fprintf(&b, "for i in $(seq 1 %d); do ", n)
		for i, u := range pick(e.v,
			[]string{"-s -o /dev/null http://" + e.http4() + "/size/$((i*37))", "-s -o /dev/null -I http://" + e.http6() + "/", "-s -o /dev/null -d a=$i http://" + e.http4() + "/form"},
			[]string{"-s -o /dev/null http://" + e.http6() + "/size/$((i*53))", "-s -o /dev/null -d q=$i$i http://" + e.http6() + "/post", "-s -o /dev/null -I http://" + e.http4() + "/size/10"}) {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString("curl -m 2 " + u)
		}
		b.WriteString("; done")
		return e.steps(ctx, e.benign, step{name: "sh", args: []string{"-c", b.String()}})
	}},
	{name: "iperf3", class: Benign, tools: []string{"iperf3"}, maxPackets: 100000, timeout: 20 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		port := strconv.Itoa(e.srv.iperfPort)
		return e.steps(ctx, e.benign, step{name: "iperf3", args: pick(e.v,
			[]string{"-c", e.server4().String(), "-p", port, "-t", "2", "-b", "20M", "-P", "2"},
			[]string{"-c", e.server4().String(), "-p", port, "-t", "2", "-b", "30M", "-R", "-l", "8K"})})
	}},
	{name: "dns", class: Benign, maxPackets: 100000, timeout: 30 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		q := dnsLike{
			queries: pick(e.v, 1500, 1200), gap: pick(e.v, 1500*time.Microsecond, 2200*time.Microsecond),
			minSize: pick(e.v, 28, 30), maxSize: pick(e.v, 64, 90), fresh: pick(e.v, 0.75, 0.6), v6: pick(e.v, 0.3, 0.4),
			seed: e.seed,
		}
		return q.String(), q.run(ctx, e)
	}},
	{name: "browser", class: Benign, maxPackets: 100000, timeout: 30 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		b := browsing{
			users: pick(e.v, 64, 48), duration: pick(e.v, 5*time.Second, 4*time.Second),
			maxThink: pick(e.v, 2500*time.Millisecond, 2000*time.Millisecond), preconnect: pick(e.v, 0.5, 0.4),
			seed: e.seed,
		}
		return b.String(), b.run(ctx, e)
	}},
	{name: "ping", class: Benign, tools: []string{"ping", "ip"}, maxPackets: 10000, timeout: 20 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		// With neighbour discovery between the router and the server:
		// their IPv6 neighbour entries are flushed now and then.
		pctx, stop := context.WithCancel(ctx)
		churn := make(chan string, 1)
		go func() { churn <- e.neighbourChurn(pctx, pick(e.v, 300*time.Millisecond, 450*time.Millisecond)) }()
		cmd, err := e.parallel(ctx, e.benign,
			step{name: "ping", args: pick(e.v,
				[]string{"-n", "-q", "-c", "10", "-i", "0.2", e.server4().String()},
				[]string{"-n", "-q", "-c", "8", "-i", "0.3", "-s", "120", e.server4().String()})},
			step{name: "ping", args: pick(e.v,
				[]string{"-6", "-n", "-q", "-c", "8", "-i", "0.25", e.server6().String()},
				[]string{"-6", "-n", "-q", "-c", "6", "-i", "0.4", "-s", "32", e.server6().String()})},
		)
		stop()
		return cmd + " & " + <-churn, err
	}},
	// ---- benign clients that end abruptly or slowly (abrupt.go) ----
	{name: "oneshot", class: Benign, maxPackets: 100000, timeout: 30 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		// lab.HTTPLoad itself (train variant), and clients like it: one
		// request per connection, a few bytes read, then close (a reset).
		// Long enough for the kernel to reuse client ports (RST leaves
		// no TIME_WAIT): a 5-tuple used again within ddosfeat's window
		// gives a short session (a lone SYN, or SYN and SYN-ACK) as the
		// window's records run out; the port pools make that frequent.
		o := pick(e.v,
			oneShot{workers: 3, duration: 6 * time.Second, gap: span{3 * time.Millisecond, 8 * time.Millisecond}, reads: []int{64, 256},
				minSize: 100, maxSize: 3000, root: 0.3, hold: 0.3, holdFor: span{time.Millisecond, 20 * time.Millisecond}, http11: 0.3, v6: 0.3,
				ports: 300, seed: e.seed},
			oneShot{workers: 4, duration: 5 * time.Second, gap: span{2 * time.Millisecond, 10 * time.Millisecond}, reads: []int{32, 128, 512},
				minSize: 50, maxSize: 6000, root: 0.3, hold: 0.25, holdFor: span{2 * time.Millisecond, 40 * time.Millisecond}, http11: 0.5, v6: 0.4,
				ports: 450, seed: e.seed})
		fns := []func() (string, error){func() (string, error) { return o.String(), o.run(ctx, e) }}
		if e.v == Train {
			fns = append(fns, func() (string, error) {
				load := e.benign.HTTPLoad(ctx, e.http4())
				sleepCtx(ctx, o.duration)
				load.Stop()
				if load.OK() == 0 && ctx.Err() == nil {
					return "lab.HTTPLoad", errors.New("lab.HTTPLoad: no request was answered")
				}
				return fmt.Sprintf("lab.HTTPLoad of http://%s/ for %v (%d answered)", e.http4(), o.duration, load.OK()), nil
			})
		}
		return together(fns...)
	}},
	{name: "linger0", class: Benign, maxPackets: 100000, timeout: 30 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		o := pick(e.v,
			lingerZero{workers: 3, duration: 3 * time.Second, requests: [2]int{1, 3}, pause: span{0, 20 * time.Millisecond},
				minSize: 100, maxSize: 8000, early: 0.2, v6: 0.3, seed: e.seed},
			lingerZero{workers: 2, duration: 3 * time.Second, requests: [2]int{1, 4}, pause: span{0, 40 * time.Millisecond},
				minSize: 50, maxSize: 12000, early: 0.3, v6: 0.4, seed: e.seed})
		return o.String(), o.run(ctx, e)
	}},
	{name: "idle-reset", class: Benign, maxPackets: 100000, timeout: 30 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		o := pick(e.v,
			idleClose{users: 48, duration: 5 * time.Second, requests: [2]int{1, 3}, think: span{10 * time.Millisecond, 300 * time.Millisecond},
				idle: span{200 * time.Millisecond, 3 * time.Second}, minSize: 100, maxSize: 20000, reset: 0.7, v6: 0.3, seed: e.seed},
			idleClose{users: 36, duration: 4500 * time.Millisecond, requests: [2]int{1, 4}, think: span{20 * time.Millisecond, 500 * time.Millisecond},
				idle: span{300 * time.Millisecond, 2500 * time.Millisecond}, minSize: 200, maxSize: 15000, reset: 0.6, v6: 0.4, seed: e.seed})
		return o.String(), o.run(ctx, e)
	}},
	{name: "abort", class: Benign, tools: []string{"curl", "sh"}, maxPackets: 100000, timeout: 30 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		// curl --max-time stopping a rate-limited download, a slow answer
		// and a stream; Go clients timing out or stopping downloads.
		script := pick(e.v,
			"for i in $(seq 1 8); do curl -s -o /dev/null -m 0.3 --limit-rate 300k http://"+e.http4()+"/size/1000000; "+
				"curl -s -o /dev/null -m 0.2 http://"+e.http6()+"/delay/500; curl -s -o /dev/null -m 0.25 http://"+e.http4()+"/drip/40; done; true",
			"for i in $(seq 1 7); do curl -s -o /dev/null -m 0.4 --limit-rate 150k http://"+e.http6()+"/size/800000; "+
				"curl -s -o /dev/null -m 0.3 http://"+e.http4()+"/delay/700; curl -s -o /dev/null -m 0.15 http://"+e.http6()+"/drip/30; done; true")
		g := pick(e.v,
			giveUp{workers: 6, duration: 5 * time.Second, delay: span{300 * time.Millisecond, 1500 * time.Millisecond},
				deadline: span{100 * time.Millisecond, 400 * time.Millisecond}, partial: 0.4, v6: 0.3, seed: e.seed},
			giveUp{workers: 5, duration: 4500 * time.Millisecond, delay: span{400 * time.Millisecond, 2000 * time.Millisecond},
				deadline: span{150 * time.Millisecond, 600 * time.Millisecond}, partial: 0.5, v6: 0.4, seed: e.seed})
		return together(
			func() (string, error) { return e.steps(ctx, e.benign, step{name: "sh", args: []string{"-c", script}}) },
			func() (string, error) { return g.String(), g.run(ctx, e) })
	}},
	{name: "keepalive", class: Benign, tools: []string{"wrk"}, maxPackets: 150000, timeout: 30 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		// Connections longer than ddosfeat's window: keep-alive clients
		// with think times, others busy when their window ends, slow
		// readers of large downloads, paced wrk connections.
		think := pick(e.v,
			keepAlive{users: 60, duration: 11500 * time.Millisecond, think: span{50 * time.Millisecond, 400 * time.Millisecond}, minSize: 100, maxSize: 12000, v6: 0.3, seed: e.seed},
			keepAlive{users: 50, duration: 11 * time.Second, think: span{80 * time.Millisecond, 500 * time.Millisecond}, minSize: 50, maxSize: 9000, v6: 0.4, seed: e.seed})
		busy := pick(e.v,
			keepAlive{users: 40, duration: 11500 * time.Millisecond, think: span{300 * time.Millisecond, 800 * time.Millisecond},
				burstAt: span{9950 * time.Millisecond, 9990 * time.Millisecond}, burstFor: 60 * time.Millisecond, minSize: 500, maxSize: 4000, v6: 0.3, seed: e.seed + 10},
			keepAlive{users: 30, duration: 11 * time.Second, think: span{400 * time.Millisecond, 900 * time.Millisecond},
				burstAt: span{9940 * time.Millisecond, 9990 * time.Millisecond}, burstFor: 70 * time.Millisecond, minSize: 100, maxSize: 6000, v6: 0.4, seed: e.seed + 10})
		readers := pick(e.v,
			slowClient{workers: 12, duration: 11500 * time.Millisecond, pieces: [2]int{1, 1}, minSize: 600000, maxSize: 1000000,
				rcvbuf: 8192, readChunk: 4096, readGap: span{20 * time.Millisecond, 60 * time.Millisecond}, v6: 0.3, seed: e.seed + 20},
			slowClient{workers: 10, duration: 11 * time.Second, pieces: [2]int{1, 1}, minSize: 400000, maxSize: 900000,
				rcvbuf: 16384, readChunk: 8192, readGap: span{40 * time.Millisecond, 90 * time.Millisecond}, v6: 0.4, seed: e.seed + 20})
		script, err := e.file("wrk-slow.lua", pick(e.v,
			"function delay()\n  return math.random(10, 30)\nend\n",
			"function delay()\n  return math.random(15, 40)\nend\n"))
		if err != nil {
			return "", err
		}
		w := pick(e.v,
			step{name: "wrk", args: []string{"-t", "1", "-c", "8", "-d", "11s", "-s", script, "http://" + e.http4() + "/size/3000"}},
			step{name: "wrk", args: []string{"-t", "1", "-c", "6", "-d", "11s", "-s", script, "http://" + e.http4() + "/"}})
		return together(
			func() (string, error) { return think.String(), think.run(ctx, e) },
			func() (string, error) { return busy.String(), busy.run(ctx, e) },
			func() (string, error) { return readers.String(), readers.run(ctx, e) },
			func() (string, error) { return e.steps(ctx, e.benign, w) })
	}},
	{name: "slow", class: Benign, tools: []string{"tc", "curl", "sh"}, maxPackets: 100000, timeout: 30 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		// A slow link (a token bucket both ways) with browser-like users,
		// slow clients and rate-limited downloads that complete.
		rate := pick(e.v, "8mbit", "3mbit")
		undo, err := e.slowLink(ctx, rate)
		if err != nil {
			return "tc tbf", err
		}
		defer undo()
		link := "tbf rate " + rate + " both ways"
		b := pick(e.v,
			browsing{users: 16, duration: 5 * time.Second, maxThink: 1500 * time.Millisecond, preconnect: 0.3, seed: e.seed},
			browsing{users: 12, duration: 4500 * time.Millisecond, maxThink: 1200 * time.Millisecond, preconnect: 0.2, seed: e.seed})
		sc := pick(e.v,
			slowClient{workers: 6, duration: 5 * time.Second, pieces: [2]int{2, 3}, gap: span{20 * time.Millisecond, 150 * time.Millisecond},
				minSize: 500, maxSize: 30000, rcvbuf: 4096, readChunk: 2048, readGap: span{5 * time.Millisecond, 60 * time.Millisecond}, v6: 0.3, seed: e.seed},
			slowClient{workers: 5, duration: 4500 * time.Millisecond, pieces: [2]int{2, 4}, gap: span{30 * time.Millisecond, 200 * time.Millisecond},
				minSize: 300, maxSize: 20000, rcvbuf: 8192, readChunk: 1024, readGap: span{10 * time.Millisecond, 40 * time.Millisecond}, v6: 0.4, seed: e.seed})
		script := pick(e.v,
			"for i in 1 2 3 4; do curl -s -o /dev/null -m 4 --limit-rate 100k http://"+e.http4()+"/size/150000; done; true",
			"for i in 1 2 3; do curl -s -o /dev/null -m 4 --limit-rate 60k http://"+e.http6()+"/size/100000; done; true")
		cmd, err := together(
			func() (string, error) { return b.String(), b.run(ctx, e) },
			func() (string, error) { return sc.String(), sc.run(ctx, e) },
			func() (string, error) { return e.steps(ctx, e.benign, step{name: "sh", args: []string{"-c", script}}) })
		return link + ": " + cmd, err
	}},

	// ---- attacks: hping3 floods, fixed source (the attacker's address;
	// hping3 changes the source port every packet) and random sources ----
	{name: "syn", class: Attack, tools: []string{"hping3"}, maxPackets: 30000, timeout: 20 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		return e.steps(ctx, e.attacker,
			e.hping(pick(e.v, []string{"-S", "-p", e.httpPort(), "-i", "u60", "-c", "3000"}, []string{"-S", "-p", e.httpPort(), "-i", "u90", "-c", "2500", "-w", "1024"})),
			e.hping(pick(e.v, []string{"-S", "-p", e.closed(), "-i", "u100", "-c", "2000", "-d", "16"}, []string{"-S", "-p", e.closed(), "-i", "u70", "-c", "2000"})),
		)
	}},
	{name: "syn-rand", class: Attack, tools: []string{"hping3"}, maxPackets: 30000, timeout: 20 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		return e.steps(ctx, e.attacker,
			e.hping(pick(e.v, []string{"-S", "--rand-source", "-p", e.httpPort(), "-i", "u40", "-c", "4000"}, []string{"-S", "--rand-source", "-p", "443", "-i", "u50", "-c", "3000", "-w", "8192"})),
		)
	}},
	{name: "ack", class: Attack, tools: []string{"hping3"}, maxPackets: 30000, timeout: 20 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		return e.steps(ctx, e.attacker,
			e.hping(pick(e.v, []string{"-A", "-p", e.httpPort(), "-i", "u60", "-c", "2500"}, []string{"-A", "-p", e.httpPort(), "-i", "u80", "-c", "2000", "-w", "2048", "-d", "10"})),
			e.hping(pick(e.v, []string{"-A", "--rand-source", "-p", e.closed(), "-i", "u50", "-c", "2500", "-d", "40"}, []string{"-A", "--rand-source", "-p", "80", "-i", "u40", "-c", "2000"})),
		)
	}},
	{name: "udp", class: Attack, tools: []string{"hping3"}, maxPackets: 30000, timeout: 20 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		return e.steps(ctx, e.attacker,
			e.hping(pick(e.v, []string{"--udp", "-p", e.closed(), "-d", "64", "-i", "u60", "-c", "2500"}, []string{"--udp", "-p", "123", "-d", "200", "-i", "u80", "-c", "2000"})),
			e.hping(pick(e.v, []string{"--udp", "-p", "9", "-d", "1200", "-i", "u100", "-c", "1500"}, []string{"--udp", "-p", e.closed(), "-d", "1000", "-i", "u90", "-c", "1500"})),
		)
	}},
	{name: "udp-rand", class: Attack, tools: []string{"hping3"}, maxPackets: 30000, timeout: 20 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		return e.steps(ctx, e.attacker,
			e.hping(pick(e.v, []string{"--udp", "--rand-source", "-p", "53", "-d", "32", "-i", "u40", "-c", "3000"}, []string{"--udp", "--rand-source", "-p", "161", "-d", "400", "-i", "u50", "-c", "2500"})),
			e.hping(pick(e.v, []string{"--udp", "--rand-source", "-p", e.closed(), "-d", "900", "-i", "u60", "-c", "1500"}, []string{"--udp", "--rand-source", "-p", "19", "-d", "700", "-i", "u60", "-c", "1000"})),
		)
	}},
	{name: "icmp", class: Attack, tools: []string{"hping3"}, maxPackets: 30000, timeout: 20 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		// From a fixed source an ICMP flood is one session (no ports):
		// ten records per window; from random sources, one per packet.
		return e.steps(ctx, e.attacker,
			e.hping(pick(e.v, []string{"--icmp", "-d", "56", "-i", "u60", "-c", "2000"}, []string{"--icmp", "-d", "200", "-i", "u80", "-c", "2000"})),
			e.hping(pick(e.v, []string{"--icmp", "--rand-source", "-d", "64", "-i", "u40", "-c", "3000"}, []string{"--icmp", "--rand-source", "-d", "500", "-i", "u50", "-c", "2500"})),
			e.hping(pick(e.v, []string{"--icmp", "--rand-source", "-d", "1000", "-i", "u80", "-c", "1500"}, []string{"--icmp", "--rand-source", "-d", "24", "-i", "u60", "-c", "1000"})),
		)
	}},
	// ---- attacks over IPv6: the lab flooder (hping3 has no IPv6) ----
	{name: "flood6", class: Attack, maxPackets: 40000, timeout: 20 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		own := netip.PrefixFrom(e.aLink.AAddr6, 128)
		port, _ := strconv.Atoi(e.httpPort())
		closed, _ := strconv.Atoi(e.closed())
		type f struct {
			kind     string
			src      netip.Prefix
			port     uint16
			size     int
			rate     int
			duration time.Duration
		}
		runs := pick(e.v,
			[]f{{"syn", e.spoof6, uint16(port), 0, 12000, 400 * time.Millisecond}, {"syn", own, uint16(port), 0, 8000, 300 * time.Millisecond},
				{"udp", e.spoof6, uint16(closed), 100, 10000, 250 * time.Millisecond}, {"icmp", e.spoof6, 0, 56, 10000, 250 * time.Millisecond}},
			[]f{{"syn", e.spoof6, 443, 0, 9000, 400 * time.Millisecond}, {"syn", own, uint16(closed), 0, 10000, 250 * time.Millisecond},
				{"udp", e.spoof6, 53, 300, 8000, 250 * time.Millisecond}, {"icmp", e.spoof6, 0, 400, 8000, 250 * time.Millisecond}})
		var cmds []string
		for i, r := range runs {
			fl := lab.Flood{Iface: e.aLink.AIface, SrcMAC: e.aLink.AMAC, DstMAC: e.aLink.BMAC, Dst: e.server6(), Src: r.src,
				Kind: r.kind, Port: r.port, Size: r.size, Rate: r.rate, Seed: e.seed*100 + uint64(i)}
			cmds = append(cmds, fmt.Sprintf("flood %s from %s to [%s]:%d, %d bytes, %d/s for %v", r.kind, r.src, e.server6(), r.port, r.size, r.rate, r.duration))
			fctx, cancel := context.WithTimeout(ctx, r.duration)
			_, err := e.attacker.Flood(fctx, fl)
			cancel()
			if err != nil {
				return strings.Join(cmds, "; "), err
			}
			if ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		return strings.Join(cmds, "; "), nil
	}},
	// ---- slow HTTP: slowhttptest against the Go server ----
	{name: "slowloris", class: Attack, tools: []string{"slowhttptest"}, maxPackets: 60000, timeout: 30 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		// slowhttptest sends its follow-ups on a global tick of -i
		// seconds; it is stopped (its sockets closed at once) between
		// ticks, so the FIN comes a set time after the last follow-up:
		// 1.5 s and 0.4 s in the train variant's two runs (at once),
		// 0.7 s in the test variant's.
		return e.parallel(ctx, e.attacker, pick(e.v,
			[]step{e.slowhttp(5500*time.Millisecond, "-H", "-c", "200", "-r", "100", "-i", "2", "-x", "16"),
				e.slowhttp(8400*time.Millisecond, "-H", "-c", "150", "-r", "75", "-i", "4", "-x", "48")},
			[]step{e.slowhttp(6700*time.Millisecond, "-H", "-c", "200", "-r", "100", "-i", "3", "-x", "32")})...)
	}},
	{name: "slowbody", class: Attack, tools: []string{"slowhttptest"}, maxPackets: 60000, timeout: 30 * time.Second, run: func(ctx context.Context, e *env) (string, error) {
		return e.parallel(ctx, e.attacker, pick(e.v,
			[]step{e.slowhttp(5300*time.Millisecond, "-B", "-c", "150", "-r", "75", "-i", "2", "-s", "8192", "-x", "16"),
				e.slowhttp(8850*time.Millisecond, "-B", "-c", "100", "-r", "50", "-i", "4", "-s", "2048", "-x", "48")},
			[]step{e.slowhttp(6600*time.Millisecond, "-B", "-c", "150", "-r", "75", "-i", "3", "-s", "4096", "-x", "30")})...)
	}},
}

func (e *env) closed() string { return strconv.Itoa(e.srv.closedPort) }

// neighbourChurn flushes the IPv6 neighbour entries of both ends of the
// uplink's root link every d until ctx ends, so that neighbour discovery
// runs between the router and the server (as it does live).
func (e *env) neighbourChurn(ctx context.Context, d time.Duration) string {
	for sleepCtx(ctx, d) {
		e.up.Router.Run(ctx, 5*time.Second, "ip", "-6", "neigh", "flush", "dev", e.up.Root.AIface)
		exec.CommandContext(ctx, "ip", "-6", "neigh", "flush", "dev", e.up.Root.BIface).Run()
	}
	return fmt.Sprintf("ip -6 neigh flush on both ends of the root link every %v", d)
}

// hping runs hping3 quietly against the IPv4 server.
func (e *env) hping(args []string) step {
	return step{name: "hping3", args: append(append([]string{"-q", "-n"}, args...), e.server4().String())}
}

// slowhttp runs slowhttptest against the HTTP server for d. (Its
// availability probe, one complete request a second, is in the capture
// too: attack traffic that looks benign.)
func (e *env) slowhttp(d time.Duration, args ...string) step {
	return step{name: "slowhttptest", args: append(args, "-l", "60", "-p", "2", "-u", "http://"+e.http4()+"/"), d: d}
}

// step is one command of a scenario; with d > 0 it is stopped (SIGKILL
// to its process group) after d.
type step struct {
	name string
	args []string
	d    time.Duration
}

func (s step) String() string {
	if s.d > 0 {
		return fmt.Sprintf("%s %s (stopped after %v)", s.name, strings.Join(s.args, " "), s.d)
	}
	return s.name + " " + strings.Join(s.args, " ")
}

// run runs the step in h; a step stopped after its time is no failure.
func (s step) run(ctx context.Context, h *lab.Host) ([]byte, error) {
	if s.d <= 0 {
		return h.Run(ctx, stepTimeout, s.name, s.args...)
	}
	sctx, cancel := context.WithTimeout(ctx, s.d)
	defer cancel()
	out, err := h.Run(sctx, 0, s.name, s.args...)
	if sctx.Err() != nil && ctx.Err() == nil {
		err = nil
	}
	return out, err
}

// stepTimeout bounds one command.
const stepTimeout = 30 * time.Second

// steps runs commands in h one after the other, stopping at the first
// failure or when ctx ends (not a failure: the capture is full or the
// scenario's time is up).
func (e *env) steps(ctx context.Context, h *lab.Host, steps ...step) (string, error) {
	var cmds []string
	for i, s := range steps {
		cmds = append(cmds, s.String())
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		out, err := s.run(ctx, h)
		if ctx.Err() != nil {
			return strings.Join(cmds, "; "), nil
		}
		if err != nil && !(s.name == "hping3" && strings.Contains(string(out), "packets transmitted")) {
			// hping3 exits 1 when nothing answered (random sources).
			return strings.Join(cmds, "; "), fmt.Errorf("%s: %w", s, err)
		}
	}
	return strings.Join(cmds, "; "), nil
}

// parallel runs commands in h at the same time.
func (e *env) parallel(ctx context.Context, h *lab.Host, steps ...step) (string, error) {
	var wg sync.WaitGroup
	errs := make([]error, len(steps))
	var cmds []string
	for i, s := range steps {
		cmds = append(cmds, s.String())
		wg.Go(func() {
			_, err := s.run(ctx, h)
			if ctx.Err() == nil && err != nil {
				errs[i] = fmt.Errorf("%s: %w", s, err)
			}
		})
	}
	wg.Wait()
	return strings.Join(cmds, " & "), errors.Join(errs...)
}

// dnsLike is a DNS-like UDP client: queries of random sizes, each from a
// fresh socket (a new source port, as resolvers do) with probability
// fresh, else from one long-lived socket, over IPv6 with probability v6;
// every query waits for its answer (up to 200 ms).
type dnsLike struct {
	queries          int
	gap              time.Duration
	minSize, maxSize int
	fresh, v6        float64
	seed             uint64
}

func (q dnsLike) String() string {
	return fmt.Sprintf("dns-like client: %d queries %v apart, %d-%d bytes, %.0f%% from fresh sockets, %.0f%% over IPv6",
		q.queries, q.gap, q.minSize, q.maxSize, 100*q.fresh, 100*q.v6)
}

func (q dnsLike) run(ctx context.Context, e *env) error {
	rng := rand.New(rand.NewPCG(q.seed, 0x646e73))
	return e.benign.Do(func() error {
		var fixed [2]net.Conn
		defer func() {
			for _, c := range fixed {
				if c != nil {
					c.Close()
				}
			}
		}()
		buf := make([]byte, 2048)
		answered := 0
		for i := 0; i < q.queries && ctx.Err() == nil; i++ {
			fam := 0
			if rng.Float64() < q.v6 {
				fam = 1
			}
			addr := e.srv.dnsAddrs[fam]
			var c net.Conn
			fresh := rng.Float64() < q.fresh
			if fresh || fixed[fam] == nil {
				var err error
				if c, err = net.Dial("udp", addr); err != nil {
					return err
				}
				if !fresh {
					fixed[fam] = c
				}
			} else {
				c = fixed[fam]
			}
			msg := make([]byte, q.minSize+rng.IntN(q.maxSize-q.minSize+1))
			for j := range msg {
				msg[j] = byte(rng.Uint32())
			}
			c.Write(msg)
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := c.Read(buf); err == nil {
				answered++
			}
			if fresh {
				c.Close()
			}
			time.Sleep(q.gap)
		}
		if answered == 0 {
			return errors.New("dns-like client: no query was answered")
		}
		return nil
	})
}

// browsing is a browser-like HTTP/1.1 client: each user opens a
// keep-alive connection (and, with probability preconnect, a second one
// it may never use, as browsers preconnect), requests pages and assets of
// random sizes with think times up to maxThink between them, and now and
// then starts over on new connections.
type browsing struct {
	users      int
	duration   time.Duration
	maxThink   time.Duration
	preconnect float64
	seed       uint64
}

func (b browsing) String() string {
	return fmt.Sprintf("browser-like client: %d users for %v, think times up to %v, %.0f%% preconnects", b.users, b.duration, b.maxThink, 100*b.preconnect)
}

func (b browsing) run(ctx context.Context, e *env) error {
	ctx, cancel := context.WithTimeout(ctx, b.duration)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for u := range b.users {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(b.seed, uint64(u)))
			// Do: the sockets are made in the client's namespace.
			e.benign.Do(func() error {
				for ctx.Err() == nil {
					addr := e.srv.httpAddrs[rng.IntN(len(e.srv.httpAddrs))]
					n := b.session(ctx, rng, addr)
					mu.Lock()
					ok += n
					mu.Unlock()
				}
				return nil
			})
		})
	}
	wg.Wait()
	if ok == 0 {
		return errors.New("browser-like client: no request was answered")
	}
	return nil
}

// session is one visit: a few requests on one connection, and maybe an
// idle preconnected one. It returns the requests answered.
func (b browsing) session(ctx context.Context, rng *rand.Rand, addr string) int {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		time.Sleep(50 * time.Millisecond)
		return 0
	}
	defer c.Close()
	if rng.Float64() < b.preconnect {
		if pre, err := d.DialContext(ctx, "tcp", addr); err == nil {
			defer pre.Close()
		}
	}
	br := bufio.NewReader(c)
	ok := 0
	for range 1 + rng.IntN(5) {
		if ctx.Err() != nil {
			break
		}
		path := "/"
		if rng.IntN(3) > 0 {
			path = "/size/" + strconv.Itoa(100+rng.IntN(20000))
		}
		req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: lab-browser/1.0\r\nAccept: */*\r\n\r\n"
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			break
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ok++
		think := time.Duration(rng.Int64N(int64(b.maxThink)))
		select {
		case <-ctx.Done():
		case <-time.After(think):
		}
	}
	return ok
}
