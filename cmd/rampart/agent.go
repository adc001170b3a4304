package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rampart-shield/rampart/internal/alert"
	"github.com/rampart-shield/rampart/internal/api"
	appwatch "github.com/rampart-shield/rampart/internal/app"
	"github.com/rampart-shield/rampart/internal/detect/lucid"
	"github.com/rampart-shield/rampart/internal/detect/threshold"
	"github.com/rampart-shield/rampart/internal/firewall"
	"github.com/rampart-shield/rampart/internal/probe"
	"github.com/rampart-shield/rampart/internal/respond"
	"github.com/rampart-shield/rampart/models"
	"github.com/rampart-shield/rampart/probes"
)

const defaultProbe = "flowmon"

type agentFlags struct {
	config    string
	listen    string
	probes    []string
	noDefault bool
	ipfix     []string
	firewall  string
	keepRules bool
	mode      string
	audit     string
	pinRoot   string
	noDetect  bool
	watches   []string
	train     string
}

func (a *app) agentCommand() *cobra.Command {
	var o agentFlags
	cmd := &cobra.Command{
		Use:   "agent [--config FILE] [--listen ADDR] [--probe SPEC ...]",
		Short: "Run the rampart agent (the daemon)",
		Long: `Run the agent: it loads probes into the kernel and serves the API until
SIGINT or SIGTERM. It needs root (or CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON).

The API listens on a unix socket (--socket, default ` + defaultSocket + `),
mode 0600: only root and the agent's user may use it. --listen ADDR adds TCP,
where every request needs "Authorization: Bearer TOKEN": the token is read
from --token-file, or generated and written (mode 0600) next to the socket,
as token. Prometheus scrapes GET /metrics.

Startup probes come from --probe (repeatable) and the config file:
  --probe NAME                    a built-in probe, e.g. packet-counter
  --probe NAME@IFACE              the same on interface IFACE
  --probe NAME=PATH/manifest.yaml a probe of yours (its object or source
                                  path is relative to the manifest)
With neither, the agent loads the built-in flowmon on the interface of the
default route (lo when there is none), ingress and egress; --no-default
skips that. A probe that fails to load is logged and skipped; the agent
keeps running.

Whenever a probe named flowmon runs, the agent turns its counters into flow
records (rampart flows top|recent, /v1/flows) and exports them as IPFIX to
every --ipfix collector (host:port, UDP).

--firewall IFACE runs the built-in firewall there: XDP on ingress, TC on
egress, rules managed with rampart fw. Its rules and counters are pinned in
bpffs (--pin-root): they keep filtering if the agent dies, and the next
agent adopts them. A clean stop removes them unless --keep-rules.

The responder turns alerts (from the agent's detectors, or POST /v1/alerts
and rampart respond alert) into firewall blocks, process kills or socket
closes by the respond: policy. --mode observe (the default) only records
what it would do; enforce acts. Every decision goes to the audit trail
(--audit-file, and rampart respond audit).

The config file (YAML) mirrors the flags; flags win:
  socket: /run/rampart/api.sock
  listen: 0.0.0.0:9443
  token-file: /etc/rampart/token
  flows:
    active: 60s          # report long flows at least this often
    idle: 15s            # a flow without packets this long has ended
    ipfix: [127.0.0.1:4739]
  probes:
    - name: flowmon
      iface: eth0
    - name: synmon
      manifest: probes/synmon/manifest.yaml   # relative to this file
      attach: [tc-ingress:eth0]
      params: {N_SESSION: 4096}
  firewall:
    iface: eth0
    allowlist: [192.0.2.0/24]  # always passed, never blocked
    keep-rules: false
  respond:
    mode: observe            # or enforce
    max-per-second: {block: 10, kill: 1}
    allowlist: [203.0.113.7] # besides own addresses, gateways, API peers
    rules:                   # first match decides; none: follow suggestions
      - {kind: "*-flood", action: block, duration: 10m, prefix-v4: 32}
      - {kind: redos, action: kill, signal: KILL}
      - {kind: slow*, action: close-sockets}`,
		Example: `  # Defaults: unix socket, flowmon on the default-route interface:
  sudo rampart agent

  # The same, exporting flows as IPFIX to a local nfcapd:
  sudo rampart agent --ipfix 127.0.0.1:4739

  # A config file, and TCP for Prometheus and remote clients:
  sudo rampart agent --config /etc/rampart/agent.yaml --listen 0.0.0.0:9443 --token-file /etc/rampart/token

  # The firewall on eth0, and a responder that acts on alerts:
  sudo rampart agent --firewall eth0 --mode enforce

  # Only your own probe, on eth1:
  sudo rampart agent --no-default --probe synmon=./synmon/manifest.yaml@eth1`,
		Args: argsExactly(0, "no arguments (probes go in --probe)"),
		RunE: func(cmd *cobra.Command, args []string) error { return a.runAgent(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.config, "config", "c", "", "YAML config file (flags override it)")
	f.StringVar(&o.listen, "listen", "", "also serve the API on this TCP address (needs a token)")
	f.StringArrayVar(&o.probes, "probe", nil, "load at startup: NAME, NAME@IFACE or NAME=MANIFEST[@IFACE] (repeatable)")
	f.BoolVar(&o.noDefault, "no-default", false, "do not load flowmon when no probe is configured")
	f.StringArrayVar(&o.ipfix, "ipfix", nil, "export flow records as IPFIX to this collector, host:port over UDP (repeatable)")
	f.StringVar(&o.firewall, "firewall", "", "run the firewall on this interface (XDP ingress, TC egress; rules with rampart fw)")
	f.BoolVar(&o.keepRules, "keep-rules", false, "on exit, leave the firewall's rules filtering (pinned) for the next agent to adopt")
	f.StringVar(&o.mode, "mode", "", "responder mode: observe (default: log what it would do) or enforce")
	f.BoolVar(&o.noDetect, "no-detect", false, "do not run the threshold detector (it runs with --firewall)")
	f.StringVar(&o.pinRoot, "pin-root", probe.DefaultPinRoot, "bpffs folder for pinned probe state (the firewall's rules); one per agent")
	f.StringArrayVar(&o.watches, "watch", nil, "watch a server's requests from the start: exec:PATH, pid:PID, tree:PID or cgroup:PATH (repeatable; rampart app watch does it later)")
	f.StringVar(&o.train, "train", "", "training window of the --watch request models (default 200s)")
	f.StringVar(&o.audit, "audit-file", "", "the responder's audit trail, JSON lines (default /var/lib/rampart/audit.jsonl; - for none)")
	return cmd
}

func (a *app) runAgent(cmd *cobra.Command, o agentFlags) error {
	log := a.log
	var cfg agentConfig
	if o.config != "" {
		var err error
		if cfg, err = readAgentConfig(o.config); err != nil {
			return err
		}
	}
	// Flags (and the environment) win over the config file.
	socket := cfg.Socket
	if f := a.root.PersistentFlags().Lookup("socket"); f.Changed || a.getenv("RAMPART_SOCKET") != "" || socket == "" {
		socket = a.socketPath()
	}
	listen := cfg.Listen
	if o.listen != "" {
		listen = o.listen
	}
	tokenFile := cfg.TokenFile
	if a.tokenFile != "" {
		tokenFile = a.tokenFile
	}
	startup := cfg.Probes
	for _, spec := range o.probes {
		p, err := parseProbeSpec(spec)
		if err != nil {
			return usageError{err}
		}
		startup = append(startup, p)
	}
	if len(startup) == 0 && !o.noDefault {
		iface := "lo"
		if f, err := os.Open("/proc/net/route"); err == nil {
			if i := defaultRouteIface(f); i != "" {
				iface = i
			}
			f.Close()
		}
		log.Info("no probes configured: loading the built-in "+defaultProbe+" (--no-default skips it)", "iface", iface)
		startup = []probeConfig{{Name: defaultProbe, Iface: iface}}
	}

	var token string
	if listen != "" {
		var err error
		if token, err = agentToken(log, tokenFile, filepath.Join(filepath.Dir(socket), "token")); err != nil {
			return err
		}
	}

	m, err := probe.NewManager(probe.ManagerOptions{Logger: log, Builtin: probes.Lookup, PinRoot: o.pinRoot})
	if err != nil {
		return fmt.Errorf("probe manager: %w", err)
	}
	defer func() {
		if err := m.Close(); err != nil {
			log.Error("closing the probe manager", "err", err)
		}
	}()
	flows, err := newFlowService(m, log, cfg.Flows, o.ipfix)
	if err != nil {
		return err
	}
	fwCfg := cfg.Firewall
	if o.firewall != "" {
		fwCfg.Iface = o.firewall
	}
	if o.keepRules {
		fwCfg.KeepRules = true
	}
	policy := cfg.Respond
	if o.mode != "" {
		policy.Mode = o.mode
	}
	if o.audit != "" {
		policy.AuditFile = o.audit
	}
	var fw *firewall.Firewall
	var resp *respond.Responder
	var fwAPI api.Firewall
	if fwCfg.Iface != "" {
		fw, err = firewall.Start(cmd.Context(), firewall.Options{Manager: m, Iface: fwCfg.Iface, Logger: log,
			OnExpire: func(r firewall.Rule) {
				if resp != nil {
					resp.Expired(r)
				}
			}})
		if err != nil {
			return err
		}
		fwAPI = fw
		defer func() {
			if err := fw.Close(fwCfg.KeepRules); err != nil {
				log.Error("closing the firewall", "err", err)
			} else if fwCfg.KeepRules {
				log.Info("firewall rules left filtering (--keep-rules); the next agent adopts them", "pins", m.PinDir(firewall.ProbeName))
			}
		}()
		if len(fwCfg.Allowlist) > 0 {
			if err := fw.Allow(fwCfg.Allowlist...); err != nil {
				return err
			}
		}
		rules, _ := fw.Rules()
		log.Info("firewall running", "iface", fwCfg.Iface, "rules", len(rules), "list", "rampart fw list")
	}
	var rfw respond.Firewall
	if fw != nil {
		rfw = fw
	}
	if resp, err = respond.New(respond.Options{Policy: policy, Firewall: rfw, Logger: log}); err != nil {
		return err
	}
	defer resp.Close()
	log.Info("responder ready", "mode", resp.Mode(), "audit", "rampart respond audit")
	apps := &appwatch.Manager{Probes: m, Log: log}
	defer apps.Close()
	srv := api.NewServer(m, api.Options{Logger: log, Version: version, Flows: flows, Firewall: fwAPI, FirewallIface: fwCfg.Iface, Responder: resp, Apps: apps})
	apps.OnAlert = func(a alert.Alert) { srv.RecordAlert(a, resp.Handle(a)) }
	for _, w := range o.watches {
		spec, err := watchSpecFromFlags(w)
		if err != nil {
			return usageError{err}
		}
		info, err := apps.Watch(cmd.Context(), appwatch.WatchRequest{Target: spec, Train: o.train})
		if err != nil {
			return fmt.Errorf("--watch %s: %w", w, err)
		}
		log.Info("watching requests", "watch", info.Name, "target", info.Target, "processes", len(info.Processes))
	}
	detectors, err := startDetection(cmd.Context(), log, m, cfg.Detect, fwCfg.Iface, o.noDetect, func(a alert.Alert) {
		srv.RecordAlert(a, resp.Handle(a))
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	uln, err := api.ListenUnix(socket)
	if err != nil {
		return fmt.Errorf("API socket: %w", err)
	}
	var tln net.Listener
	if listen != "" {
		if tln, err = net.Listen("tcp", listen); err != nil {
			uln.Close()
			return fmt.Errorf("API listen: %w", err)
		}
	}
	errc := make(chan error, 2)
	servers := 1
	go func() { errc <- srv.ServeUnixListener(ctx, uln) }()
	if tln != nil {
		servers++
		go func() { errc <- srv.ServeTCPListener(ctx, tln, token) }()
	}
	log.Info("rampart agent running", "version", version, "socket", socket, "pid", os.Getpid())

	loadStartupProbes(ctx, log, m, startup, socket)
	for _, run := range detectors {
		go run(ctx)
	}
	go resp.Run(ctx, time.Second)
	flowsDone := make(chan struct{})
	go func() {
		defer close(flowsDone)
		flows.Run(ctx)
	}()
	// Flush the flows (their last records, IPFIX included) before the
	// probes are unloaded.
	defer func() { <-flowsDone }()

	var firstErr error
	select {
	case <-ctx.Done():
	case firstErr = <-errc:
		servers--
		stop()
	}
	log.Info("rampart agent stopping")
	for ; servers > 0; servers-- {
		if err := <-errc; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("removing the socket", "err", err)
	}
	if firstErr != nil {
		return fmt.Errorf("API server: %w", firstErr)
	}
	return nil
}

// defaultDDoSModel is the CNN the agent uses when the config names none.
var defaultDDoSModel = models.DDoS

// startDetection loads the detectors' probes on the detection interface
// (by default the firewall's) and returns their loops, none when
// detection is off: the threshold detector on hoststat, and the CNN on
// ddosfeat when a model is available.
func startDetection(ctx context.Context, log *slog.Logger, m *probe.Manager, dc detectConfig, fwIface string, off bool, onAlert func(alert.Alert)) ([]func(context.Context), error) {
	iface := dc.Iface
	if iface == "" {
		iface = fwIface
	}
	if off || dc.Off || iface == "" {
		return nil, nil
	}
	interval := 500 * time.Millisecond
	if dc.Interval != "" {
		d, err := time.ParseDuration(dc.Interval)
		if err != nil || d < 100*time.Millisecond || d > time.Minute {
			return nil, fmt.Errorf("detect: interval %q: want 100ms to 1m", dc.Interval)
		}
		interval = d
	}
	det, err := threshold.New(dc.Threshold)
	if err != nil {
		return nil, err
	}
	if _, err := m.Load(ctx, probe.LoadRequest{Name: "hoststat", Iface: iface}); err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	log.Info("threshold detector running", "iface", iface, "interval", interval, "alerts", "rampart respond audit")
	svc := &threshold.Service{Manager: m, Probe: "hoststat", Detector: det, Interval: interval, OnAlert: onAlert, Log: log}
	loops := []func(context.Context){svc.Run}

	if dc.Lucid.Off {
		return loops, nil
	}
	var model *lucid.Model
	switch {
	case dc.Lucid.Model != "":
		if model, err = lucid.LoadFile(dc.Lucid.Model); err != nil {
			return nil, fmt.Errorf("detect: lucid model: %w", err)
		}
	default:
		if model, err = defaultDDoSModel(); err != nil {
			return nil, fmt.Errorf("detect: the built-in lucid model: %w", err)
		}
	}
	params := map[string]string{"n_packets": fmt.Sprint(model.N)}
	if _, err := m.Load(ctx, probe.LoadRequest{Name: "ddosfeat", Iface: iface, Params: params}); err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	log.Info("lucid CNN detector running", "iface", iface, "model", model.Name+" "+model.Version, "packets", model.N)
	ls := &lucid.Service{Manager: m, Probe: "ddosfeat", Detector: lucid.NewDetector(model, dc.Lucid.Config), OnAlert: onAlert, Log: log}
	loops = append(loops, func(ctx context.Context) {
		if err := ls.Run(ctx); err != nil {
			log.Warn("lucid detector stopped", "err", err)
		}
	})
	return loops, nil
}

// agentToken reads the TCP token from tokenFile or, when none is given,
// generates one and writes it to genPath (mode 0600). The token itself is
// never logged.
func agentToken(log *slog.Logger, tokenFile, genPath string) (string, error) {
	if tokenFile != "" {
		return readToken(tokenFile)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b)
	if err := writeSecret(genPath, token+"\n"); err != nil {
		return "", fmt.Errorf("writing the generated API token: %w", err)
	}
	log.Info("generated an API token for --listen; clients pass --token-file", "path", genPath)
	return token, nil
}

// writeSecret writes data to path with mode 0600, atomically.
func writeSecret(path, data string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".token-*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// loadStartupProbes loads each configured probe; failures are logged and
// skipped.
func loadStartupProbes(ctx context.Context, log *slog.Logger, m *probe.Manager, list []probeConfig, socket string) {
	for _, pc := range list {
		if ctx.Err() != nil {
			return
		}
		req, err := startupRequest(pc)
		if err != nil {
			log.Error("startup probe not loaded", "probe", pc.label(), "err", err)
			continue
		}
		info, err := m.Load(ctx, req)
		if err != nil {
			args := []any{"probe", req.Name, "err", err}
			var pe *probe.Error
			if errors.As(err, &pe) && pe.Detail != "" {
				args = append(args, "detail", pe.Detail)
			}
			log.Error("startup probe not loaded", args...)
			continue
		}
		hooks := make([]string, 0, len(info.Programs))
		for _, p := range info.Programs {
			hooks = append(hooks, p.Name+"→"+p.Hook)
		}
		metrics := make([]string, 0, len(info.Metrics))
		for _, mt := range info.Metrics {
			metrics = append(metrics, mt.Name)
		}
		log.Info("startup probe ready", "probe", info.Name, "origin", info.Origin,
			"programs", strings.Join(hooks, ","), "metrics", strings.Join(metrics, ","),
			"read", "rampart probe metrics "+info.Name,
			"curl", fmt.Sprintf("curl --unix-socket %s http://rampart/v1/probes/%s/metrics", socket, info.Name))
	}
}

// startupRequest turns a configured probe into a load request.
func startupRequest(pc probeConfig) (probe.LoadRequest, error) {
	params, err := pc.params()
	if err != nil {
		return probe.LoadRequest{}, err
	}
	var req probe.LoadRequest
	switch {
	case pc.Manifest != "":
		if req, err = api.ReadLoadRequest(pc.Name, api.ProbeFiles{Manifest: pc.Manifest}); err != nil {
			return req, err
		}
		req.Origin = "user"
	case pc.Builtin != "" && pc.Name != "" && pc.Builtin != pc.Name:
		// A built-in under another name: hand the manager its bundle.
		man, obj, ok := probes.Lookup(pc.Builtin)
		if !ok {
			names := strings.Join(probes.Names(), ", ")
			if names == "" {
				names = "none"
			}
			return req, fmt.Errorf("no built-in probe %q (built-ins: %s)", pc.Builtin, names)
		}
		req = probe.LoadRequest{Name: pc.Name, Manifest: man, Object: obj, Origin: "builtin"}
	default:
		req.Name = pc.Name
		if req.Name == "" {
			req.Name = pc.Builtin
		}
	}
	req.Attach, req.Iface, req.Params = pc.Attach, pc.Iface, params
	return req, nil
}
