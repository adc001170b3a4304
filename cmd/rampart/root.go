package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rampart-shield/rampart/internal/api"
)

const defaultSocket = "/run/rampart/api.sock"

// app holds what every command shares: output, environment, global flags.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	root      *cobra.Command
	socket    string
	server    string
	token     string
	tokenFile string
	logLevel  string
	log       *slog.Logger
}

func newApp(stdout, stderr io.Writer, getenv func(string) string) *app {
	if getenv == nil {
		getenv = os.Getenv
	}
	return &app{stdout: stdout, stderr: stderr, getenv: getenv}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "rampart",
		Short: "rampart — a host shield against denial of service",
		Long: `rampart watches a host's network and applications with eBPF probes, spots
denial-of-service attacks and (when told to) blocks them.

Two halves live in this one binary:

  rampart agent     the daemon: loads probes into the kernel and serves the
                    API on a unix socket (` + defaultSocket + `, root only)
                    and, with --listen, on TCP with a bearer token.
  rampart probe ... the client: loads, lists, reads and unloads probes by
                    talking to a running agent; rampart flows, fw and
                    respond read flows, manage firewall rules and drive
                    the responder the same way.

A probe is an eBPF object plus a manifest that says where its programs
attach, which maps are metrics and which ring buffers are event streams.
Built-in probes (such as packet-counter) load by name; your own load from a
manifest and an object or C source.

The client reaches the agent over --socket (default ` + defaultSocket + `,
env RAMPART_SOCKET) or, with --server URL (env RAMPART_SERVER), over TCP
using --token-file or RAMPART_TOKEN.`,
		Example: `  # Start the agent (it loads flowmon on the default-route interface):
  sudo rampart agent

  # In another terminal, see what it loaded, the top talkers, the counters:
  sudo rampart probe list
  sudo rampart flows top
  sudo rampart probe metrics flowmon

  # With the firewall on eth0, block a prefix for ten minutes:
  sudo rampart agent --firewall eth0
  sudo rampart fw add --src 198.51.100.0/24 --action drop --ttl 10m

  # Talk to a remote agent started with --listen:
  rampart --server http://10.0.0.5:9443 --token-file ./token probe list`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
				return usagef("--log-level %q: want debug, info, warn or error", a.logLevel)
			}
			a.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			return nil
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })

	pf := root.PersistentFlags()
	pf.StringVar(&a.socket, "socket", defaultSocket, "the agent's unix socket (env RAMPART_SOCKET)")
	pf.StringVar(&a.server, "server", "", "talk to the agent over TCP at this URL, e.g. http://10.0.0.5:9443 (env RAMPART_SERVER)")
	pf.StringVar(&a.token, "token", "", "bearer token for --server (env RAMPART_TOKEN; prefer --token-file, arguments are visible to other users)")
	pf.StringVar(&a.tokenFile, "token-file", "", "file holding the bearer token (the agent reads it for --listen)")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")

	root.AddCommand(a.agentCommand(), a.probeCommand(), a.flowsCommand(), a.fwCommand(), a.alertCommand(), a.appCommand(), a.demoCommand(), a.replayCommand(), a.modelCommand(), a.versionCommand())
	a.root = root
	return root
}

// argsExactly requires n positional arguments, naming them in the error.
func argsExactly(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s (got %d argument%s)", cmd.CommandPath(), names, len(args), plural(len(args)))
		}
		return nil
	}
}

// argsBetween requires min..max positional arguments.
func argsBetween(min, max int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			return usagef("%s takes %s (got %d argument%s)", cmd.CommandPath(), names, len(args), plural(len(args)))
		}
		return nil
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// setting returns the flag's value when given, else the environment
// variable's, else the flag's default.
func (a *app) setting(flag, env string) string {
	f := a.root.PersistentFlags().Lookup(flag)
	if f.Changed {
		return f.Value.String()
	}
	if v := a.getenv(env); v != "" {
		return v
	}
	return f.Value.String()
}

func (a *app) socketPath() string { return a.setting("socket", "RAMPART_SOCKET") }

// readToken reads a token file: the first line, trimmed.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if i := strings.IndexByte(tok, '\n'); i >= 0 {
		tok = strings.TrimSpace(tok[:i])
	}
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return tok, nil
}

// client returns an API client for the unix socket, or for --server.
func (a *app) client() (*api.Client, error) {
	server := a.setting("server", "RAMPART_SERVER")
	if server == "" {
		return api.NewUnixClient(a.socketPath()), nil
	}
	token := a.token
	if token == "" && a.tokenFile != "" {
		t, err := readToken(a.tokenFile)
		if err != nil {
			return nil, err
		}
		token = t
	}
	if token == "" {
		token = a.getenv("RAMPART_TOKEN")
	}
	return api.NewClient(server, token)
}
