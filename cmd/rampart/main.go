// Command rampart is the rampart agent and its command-line client.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/rampart-shield/rampart/internal/api"
	"github.com/rampart-shield/rampart/internal/probe"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func init() {
	if version != "dev" {
		return
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		version = bi.Main.Version
	}
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// run runs the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	a := newApp(stdout, stderr, getenv)
	root := a.rootCommand()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if isUsageError(err) {
		fmt.Fprintf(stderr, "rampart: %s\n", err)
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	printError(stderr, err)
	return exitError
}

// usageError marks a mistake on the command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func isUsageError(err error) bool {
	var ue usageError
	if errors.As(err, &ue) {
		return true
	}
	// Cobra's own complaints about the command line.
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "invalid argument", "flag needs an argument", "required flag"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// printError prints "rampart: ERROR" and the error's detail (e.g. the tail
// of the verifier's log) indented below it.
func printError(w io.Writer, err error) {
	fmt.Fprintf(w, "rampart: %s\n", err)
	detail := ""
	var ae *api.APIError
	var pe *probe.Error
	switch {
	case errors.As(err, &ae):
		detail = ae.Detail
	case errors.As(err, &pe):
		detail = pe.Detail
		if detail != "" && strings.HasSuffix(err.Error(), detail) {
			detail = "" // already printed as part of the message
		}
	}
	detail = strings.TrimRight(detail, "\n")
	if detail == "" {
		return
	}
	for _, line := range strings.Split(detail, "\n") {
		fmt.Fprintf(w, "    %s\n", line)
	}
}
