package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/internal/firewall"
	"github.com/rampart-shield/rampart/internal/flow"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/internal/respond"
)

// Client talks to an agent's API over its unix socket or over TCP.
type Client struct {
	base  string // URL prefix of every request
	where string // the socket path or server URL, for messages
	unix  bool
	token string
	hc    *http.Client
}

// NewUnixClient returns a client for the agent listening on socket.
func NewUnixClient(socket string) *Client {
	d := net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{base: "http://rampart", where: socket, unix: true, hc: &http.Client{Transport: tr}}
}

// NewClient returns a client for the agent at server ("http://host:port")
// that authenticates with token.
func NewClient(server, token string) (*Client, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server %q: want a URL such as http://10.0.0.5:9443", server)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	return &Client{
		base:  strings.TrimRight(server, "/"),
		where: server,
		token: token,
		hc:    &http.Client{Transport: tr},
	}, nil
}

// Where is the socket path or server URL the client talks to.
func (c *Client) Where() string { return c.where }

// APIError is an error answer of the agent.
type APIError struct {
	Status int
	Msg    string
	Detail string
}

func (e *APIError) Error() string { return e.Msg }

// do sends a request and returns the response of a 2xx answer; any other
// answer becomes an *APIError.
func (c *Client) do(ctx context.Context, method, path string, body any, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.reachError(ctx, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var eb ErrorBody
	if json.Unmarshal(raw, &eb) == nil && eb.Error != "" {
		return nil, &APIError{Status: resp.StatusCode, Msg: eb.Error, Detail: eb.Detail}
	}
	msg := strings.TrimSpace(string(raw))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return nil, &APIError{Status: resp.StatusCode, Msg: fmt.Sprintf("%s %s: %s", method, path, resp.Status), Detail: msg}
}

// reachError explains a failure to talk to the agent at all.
func (c *Client) reachError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if c.unix {
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("cannot reach the agent at %s: is `rampart agent` running? (start it with: sudo rampart agent)", c.where)
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			return fmt.Errorf("permission denied on %s: the agent's socket is for root only (run with sudo)", c.where)
		}
		return fmt.Errorf("cannot reach the agent at %s: %w", c.where, err)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot reach the agent at %s: is `rampart agent --listen ADDR` running there?", c.where)
	}
	return fmt.Errorf("cannot reach the agent at %s: %w", c.where, err)
}

func (c *Client) getJSON(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, body, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: bad answer: %w", method, path, err)
	}
	return nil
}

func probePath(name string, rest ...string) string {
	p := "/v1/probes/" + url.PathEscape(name)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

func readQuery(opts probe.ReadOptions) string {
	if opts.PerCPU {
		return "?percpu=true"
	}
	return ""
}

// Health asks whether the agent is up and which version it runs.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	err := c.getJSON(ctx, http.MethodGet, "/v1/health", nil, &h)
	return h, err
}

// Load loads or replaces the probe req.Name.
func (c *Client) Load(ctx context.Context, req probe.LoadRequest) (probe.ProbeInfo, error) {
	var info probe.ProbeInfo
	if req.Name == "" {
		return info, errors.New("no probe name")
	}
	err := c.getJSON(ctx, http.MethodPut, probePath(req.Name), req, &info)
	return info, err
}

// List lists the loaded probes.
func (c *Client) List(ctx context.Context) ([]probe.ProbeInfo, error) {
	var list []probe.ProbeInfo
	err := c.getJSON(ctx, http.MethodGet, "/v1/probes", nil, &list)
	return list, err
}

// Get describes one probe.
func (c *Client) Get(ctx context.Context, name string) (probe.ProbeInfo, error) {
	var info probe.ProbeInfo
	err := c.getJSON(ctx, http.MethodGet, probePath(name), nil, &info)
	return info, err
}

// Unload detaches and unloads a probe.
func (c *Client) Unload(ctx context.Context, name string) error {
	return c.getJSON(ctx, http.MethodDelete, probePath(name), nil, nil)
}

// Metrics reads every metric of a probe.
func (c *Client) Metrics(ctx context.Context, name string, opts probe.ReadOptions) ([]probe.MetricValue, error) {
	var vals []probe.MetricValue
	err := c.getJSON(ctx, http.MethodGet, probePath(name, "metrics")+readQuery(opts), nil, &vals)
	return vals, err
}

// Metric reads one metric of a probe.
func (c *Client) Metric(ctx context.Context, name, metric string, opts probe.ReadOptions) (probe.MetricValue, error) {
	var v probe.MetricValue
	err := c.getJSON(ctx, http.MethodGet, probePath(name, "metrics", metric)+readQuery(opts), nil, &v)
	return v, err
}

// OpenMetricsAccept asks for OpenMetrics text rather than Prometheus text.
const OpenMetricsAccept = "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5"

// OpenMetrics returns one probe's metrics as OpenMetrics text.
func (c *Client) OpenMetrics(ctx context.Context, name string) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, probePath(name, "open-metrics"), nil, OpenMetricsAccept)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// Events follows a probe's event streams (every probe when name is empty,
// every stream when stream is empty) and calls fn for each event until ctx
// ends, fn fails or the agent ends the stream.
func (c *Client) Events(ctx context.Context, name, stream string, fn func(probe.Event) error) error {
	q := url.Values{}
	if name != "" {
		q.Set("probe", name)
	}
	if stream != "" {
		q.Set("stream", stream)
	}
	path := "/v1/events"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.do(ctx, http.MethodGet, path, nil, "text/event-stream")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	err = ReadSSE(resp.Body, func(_ string, data []byte) error {
		var ev probe.Event
		if err := json.Unmarshal(data, &ev); err != nil {
			return fmt.Errorf("bad event from the agent: %w", err)
		}
		return fn(ev)
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// ReadSSE reads a server-sent event stream and calls fn with each event's
// name and data. Comments and unknown fields are skipped.
func ReadSSE(r io.Reader, fn func(event string, data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var event string
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if data != nil {
				if err := fn(event, data); err != nil {
					return err
				}
			}
			event, data = "", nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			event = value
		case "data":
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, value...)
		}
	}
	return sc.Err()
}

// Flows returns the latest n flow records.
func (c *Client) Flows(ctx context.Context, n int) ([]flow.Flow, error) {
	var out []flow.Flow
	err := c.getJSON(ctx, http.MethodGet, "/v1/flows?n="+strconv.Itoa(n), nil, &out)
	return out, err
}

// TopTalkers returns the n sources that sent the most bytes (or packets).
func (c *Client) TopTalkers(ctx context.Context, n int, byPackets bool) ([]flow.Talker, error) {
	by := "bytes"
	if byPackets {
		by = "packets"
	}
	var out []flow.Talker
	err := c.getJSON(ctx, http.MethodGet, "/v1/flows/top?n="+strconv.Itoa(n)+"&by="+by, nil, &out)
	return out, err
}

// FirewallStatus returns the firewall's interface, rule count, allowlist
// and packet counters.
func (c *Client) FirewallStatus(ctx context.Context) (FirewallStatus, error) {
	var out FirewallStatus
	err := c.getJSON(ctx, http.MethodGet, "/v1/firewall", nil, &out)
	return out, err
}

// Rules lists the firewall rules in order, with counters.
func (c *Client) Rules(ctx context.Context) ([]firewall.Rule, error) {
	var out []firewall.Rule
	err := c.getJSON(ctx, http.MethodGet, "/v1/firewall/rules", nil, &out)
	return out, err
}

// Batch applies firewall operations all or nothing and returns the rules.
func (c *Client) Batch(ctx context.Context, ops []firewall.Op) ([]firewall.Rule, error) {
	var out []firewall.Rule
	err := c.getJSON(ctx, http.MethodPost, "/v1/firewall/rules/batch", BatchRequest{Operations: ops}, &out)
	return out, err
}

// FlushRules deletes every firewall rule and says how many there were.
func (c *Client) FlushRules(ctx context.Context) (int, error) {
	var out map[string]int
	err := c.getJSON(ctx, http.MethodDelete, "/v1/firewall/rules", nil, &out)
	return out["deleted"], err
}

// ChangeAllowlist adds (or, with remove, removes) allowlist prefixes.
func (c *Client) ChangeAllowlist(ctx context.Context, prefixes []string, remove bool) (PrefixList, error) {
	var out PrefixList
	method := http.MethodPost
	if remove {
		method = http.MethodDelete
	}
	err := c.getJSON(ctx, method, "/v1/firewall/allowlist", PrefixList{Prefixes: prefixes}, &out)
	return out, err
}

// SendAlert hands an alert to the agent's responder.
func (c *Client) SendAlert(ctx context.Context, a alert.Alert) (AlertResult, error) {
	var out AlertResult
	err := c.getJSON(ctx, http.MethodPost, "/v1/alerts", a, &out)
	return out, err
}

// Alerts lists the recent alerts with the responder's decisions.
func (c *Client) Alerts(ctx context.Context) ([]AlertResult, error) {
	var out []AlertResult
	err := c.getJSON(ctx, http.MethodGet, "/v1/alerts", nil, &out)
	return out, err
}

// Audit returns the responder's last n decisions.
func (c *Client) Audit(ctx context.Context, n int) ([]respond.Decision, error) {
	var out []respond.Decision
	err := c.getJSON(ctx, http.MethodGet, "/v1/audit?n="+strconv.Itoa(n), nil, &out)
	return out, err
}

// SetMode switches the responder to observe or enforce.
func (c *Client) SetMode(ctx context.Context, mode string) error {
	return c.getJSON(ctx, http.MethodPut, "/v1/respond", map[string]string{"mode": mode}, nil)
}
