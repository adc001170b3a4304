package flow

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ExporterOptions configures an Exporter. The zero value uses the defaults.
type ExporterOptions struct {
	// ObservationDomain is the observation domain id of every message.
	ObservationDomain uint32
	// MTU, TemplateRefreshMessages and TemplateRefreshInterval are as in
	// Encoder.
	MTU                     int
	TemplateRefreshMessages int
	TemplateRefreshInterval time.Duration
	// Now returns the export time (default time.Now).
	Now func() time.Time
}

// ExporterStats are an exporter's counters since it was created.
type ExporterStats struct {
	Records    uint64 // data records in messages sent
	Messages   uint64 // messages sent
	SendErrors uint64 // messages that could not be sent
	Invalid    uint64 // records skipped because they could not be encoded
}

// Exporter sends flow records as IPFIX messages over UDP to one collector.
// It is safe for concurrent use.
type Exporter struct {
	mu   sync.Mutex // serialises encoding and sending: sequence numbers stay in order
	conn *net.UDPConn
	enc  *Encoder
	now  func() time.Time

	closed     atomic.Bool
	records    atomic.Uint64
	messages   atomic.Uint64
	sendErrors atomic.Uint64
	invalid    atomic.Uint64
}

// NewExporter returns an exporter sending to the collector at addr
// ("host:port", UDP).
func NewExporter(addr string, opts ExporterOptions) (*Exporter, error) {
	enc := NewEncoder(opts.ObservationDomain)
	enc.MTU = opts.MTU
	enc.TemplateRefreshMessages = opts.TemplateRefreshMessages
	enc.TemplateRefreshInterval = opts.TemplateRefreshInterval
	if m := enc.mtu(); m < minMTU() || m > maxIPFIXMessage {
		return nil, fmt.Errorf("ipfix exporter: MTU %d out of range [%d, %d]", m, minMTU(), maxIPFIXMessage)
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("ipfix exporter: %w", err)
	}
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, fmt.Errorf("ipfix exporter: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Exporter{conn: conn, enc: enc, now: now}, nil
}

// Addr returns the collector's address.
func (x *Exporter) Addr() net.Addr { return x.conn.RemoteAddr() }

// Export encodes flows and sends the messages. It tries every message and
// returns the first send error (counted in SendErrors) or, when some records
// could not be encoded, an error wrapping ErrInvalidFlow. Records in messages
// that were not sent are lost; the collector sees the gap in the sequence
// numbers, and the next message carries the templates again.
func (x *Exporter) Export(flows []Flow) error {
	if len(flows) == 0 {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed.Load() {
		return fmt.Errorf("ipfix exporter: %w", net.ErrClosed)
	}
	msgs, encErr := x.enc.encode(x.now(), flows)
	if encErr != nil && errors.Is(encErr, ErrInvalidFlow) {
		x.invalid.Add(uint64(len(flows) - countRecords(msgs)))
	}
	var sendErr error
	for _, m := range msgs {
		if _, err := x.conn.Write(m.data); err != nil {
			x.sendErrors.Add(1)
			if sendErr == nil {
				sendErr = fmt.Errorf("ipfix exporter: send to %v: %w", x.conn.RemoteAddr(), err)
			}
			// The collector may have missed templates (or restarted,
			// which is what a refused send often means).
			x.enc.ResendTemplates()
			continue
		}
		x.messages.Add(1)
		x.records.Add(uint64(m.records))
	}
	if sendErr != nil {
		return sendErr
	}
	return encErr
}

func countRecords(msgs []ipfixMessage) int {
	n := 0
	for _, m := range msgs {
		n += m.records
	}
	return n
}

// Stats returns the counters.
func (x *Exporter) Stats() ExporterStats {
	return ExporterStats{
		Records:    x.records.Load(),
		Messages:   x.messages.Load(),
		SendErrors: x.sendErrors.Load(),
		Invalid:    x.invalid.Load(),
	}
}

// Close closes the socket. Export fails afterwards.
func (x *Exporter) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed.Swap(true) {
		return nil
	}
	return x.conn.Close()
}
