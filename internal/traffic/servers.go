package traffic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// servers are what the lab clients talk to, in the root namespace on the
// uplink's server addresses: an HTTP server (Go, no timeouts, so slow
// HTTP attacks hold their connections; /size/N answers N bytes,
// /delay/MS after MS milliseconds, /hold/MS closes MS milliseconds after
// its answer, /drip/N streams N kB slowly), a
// DNS-like UDP responder and an iperf3 server.
type servers struct {
	http           *http.Server
	httpAddrs      []string // host:port, IPv4 then IPv6
	dns            []net.PacketConn
	dnsAddrs       []string
	iperf          *exec.Cmd
	iperfPort      int
	closedPort     int // a TCP and UDP port nothing listens on
	wg             sync.WaitGroup
	mu             sync.Mutex
	closed         bool
	requests, dnsQ int64
}

// maxBody bounds /size/N responses, maxDelayMs /delay/MS.
const (
	maxBody    = 1 << 20
	maxDelayMs = 5000
)

func startServers(ctx context.Context, v4, v6 netip.Addr) (*servers, error) {
	s := &servers{}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/size/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || n < 0 || n > maxBody {
			http.Error(w, "bad size", http.StatusBadRequest)
			return
		}
		io.Copy(io.Discard, r.Body)
		s.count(&s.requests)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(make([]byte, n))
	})
	// /delay/MS answers after MS milliseconds (a slow backend; it does not
	// notice a client that gave up, so its answer may meet a closed
	// socket), /drip/N streams N chunks of 1000 bytes 20 ms apart.
	mux.HandleFunc("/delay/{ms}", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.PathValue("ms"))
		if err != nil || ms < 0 || ms > maxDelayMs {
			http.Error(w, "bad delay", http.StatusBadRequest)
			return
		}
		io.Copy(io.Discard, r.Body)
		s.count(&s.requests)
		time.Sleep(time.Duration(ms) * time.Millisecond)
		io.WriteString(w, "<html><body>"+strings.Repeat("late ", 40)+"</body></html>\n")
	})
	// /hold/MS answers the page at once but closes the connection (its
	// FIN) only MS milliseconds later, as a busy server does.
	mux.HandleFunc("/hold/{ms}", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.PathValue("ms"))
		if err != nil || ms < 0 || ms > maxDelayMs {
			http.Error(w, "bad delay", http.StatusBadRequest)
			return
		}
		s.count(&s.requests)
		w.Header().Set("Connection", "close")
		io.WriteString(w, "<html><head><title>lab</title></head><body>"+strings.Repeat("rampart lab page ", 30)+"</body></html>\n")
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
	})
	mux.HandleFunc("/drip/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || n < 0 || n > 1000 {
			http.Error(w, "bad count", http.StatusBadRequest)
			return
		}
		s.count(&s.requests)
		w.Header().Set("Content-Type", "application/octet-stream")
		f, _ := w.(http.Flusher)
		chunk := make([]byte, 1000)
		for i := range n {
			if i > 0 {
				select {
				case <-r.Context().Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			if _, err := w.Write(chunk); err != nil {
				return
			}
			if f != nil {
				f.Flush()
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		s.count(&s.requests)
		io.WriteString(w, "<html><head><title>lab</title></head><body>"+strings.Repeat("rampart lab page ", 30)+"</body></html>\n")
	})
	s.http = &http.Server{Handler: mux, ErrorLog: nil}
	for _, a := range []netip.Addr{v4, v6} {
		if !a.IsValid() {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(a.String(), "0"))
		if err != nil {
			return nil, fmt.Errorf("traffic: http server: %w", err)
		}
		s.httpAddrs = append(s.httpAddrs, ln.Addr().String())
		s.wg.Go(func() { s.http.Serve(ln) })

		pc, err := net.ListenPacket("udp", net.JoinHostPort(a.String(), "0"))
		if err != nil {
			return nil, fmt.Errorf("traffic: dns-like server: %w", err)
		}
		s.dns = append(s.dns, pc)
		s.dnsAddrs = append(s.dnsAddrs, pc.LocalAddr().String())
		s.wg.Go(func() { s.answer(pc) })
	}
	var err error
	if s.closedPort, err = freePort(v4); err != nil {
		return nil, err
	}
	if s.iperfPort, err = freePort(v4); err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("iperf3"); err == nil {
		s.iperf = exec.Command("iperf3", "-s", "-B", v4.String(), "-p", strconv.Itoa(s.iperfPort))
		s.iperf.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := s.iperf.Start(); err != nil {
			return nil, fmt.Errorf("traffic: iperf3 server: %w", err)
		}
		if err := waitListening(ctx, net.JoinHostPort(v4.String(), strconv.Itoa(s.iperfPort))); err != nil {
			return nil, fmt.Errorf("traffic: iperf3 server: %w", err)
		}
	}
	ok = true
	return s, nil
}

func (s *servers) count(n *int64) {
	s.mu.Lock()
	*n++
	s.mu.Unlock()
}

// answer replies to every datagram like a DNS server: the 12-byte header
// back, then an answer a little larger than the question.
func (s *servers) answer(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		s.count(&s.dnsQ)
		reply := make([]byte, min(512, 16+2*n))
		copy(reply, buf[:min(n, 12)])
		if len(reply) > 2 {
			reply[2] |= 0x80 // QR: a response
		}
		pc.WriteTo(reply, from)
	}
}

// freePort returns a TCP port that is free on a (for UDP too, at the time
// of the call).
func freePort(a netip.Addr) (int, error) {
	for range 32 {
		ln, err := net.Listen("tcp", net.JoinHostPort(a.String(), "0"))
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(a.String(), strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port, nil
		}
	}
	return 0, errors.New("traffic: no free port")
}

func waitListening(ctx context.Context, addr string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("nothing listens on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *servers) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	if s.http != nil {
		s.http.Close()
	}
	for _, pc := range s.dns {
		pc.Close()
	}
	if s.iperf != nil && s.iperf.Process != nil {
		syscall.Kill(-s.iperf.Process.Pid, syscall.SIGKILL)
		s.iperf.Wait()
	}
	s.wg.Wait()
}
