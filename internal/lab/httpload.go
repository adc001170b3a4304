package lab

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPLoad is a benign HTTP client running in a host: one HTTP/1.0
// request per connection, back to back (5 ms apart), each with a 500 ms
// deadline.
type HTTPLoad struct {
	ok   atomic.Int64
	mu   sync.Mutex
	at   []time.Time
	done chan struct{}
	stop context.CancelFunc
}

// HTTPLoad starts requesting http://addr/ from h until Stop or ctx ends.
func (h *Host) HTTPLoad(ctx context.Context, addr string) *HTTPLoad {
	ctx, cancel := context.WithCancel(ctx)
	l := &HTTPLoad{done: make(chan struct{}), stop: cancel}
	go func() {
		defer close(l.done)
		h.Do(func() error {
			buf := make([]byte, 64)
			for ctx.Err() == nil {
				c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				c.SetDeadline(time.Now().Add(500 * time.Millisecond))
				c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
				n, _ := io.ReadAtLeast(c, buf, 12)
				c.Close()
				if n >= 12 && string(buf[9:12]) == "200" {
					l.ok.Add(1)
					l.mu.Lock()
					l.at = append(l.at, time.Now())
					l.mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
			return nil
		})
	}()
	return l
}

// OK is how many requests were answered 200 so far.
func (l *HTTPLoad) OK() int64 { return l.ok.Load() }

// Between counts the answered requests in [from, to).
func (l *HTTPLoad) Between(from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, t := range l.at {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// Stop ends the load and waits for it.
func (l *HTTPLoad) Stop() {
	l.stop()
	<-l.done
}
