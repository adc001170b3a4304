package probe

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/rampart-shield/rampart/bpf"
)

// clangNames are tried in order; Debian installs versioned binaries too.
var clangNames = []string{"clang", "clang-19", "clang-18", "clang-17", "clang-16", "clang-15", "clang-14"}

// compileSource compiles C source to a BPF object with clang, against the
// embedded vmlinux.h and rampart.h and the system's libbpf headers.
func compileSource(ctx context.Context, src []byte) ([]byte, error) {
	clang := ""
	for _, n := range clangNames {
		if p, err := exec.LookPath(n); err == nil {
			clang = p
			break
		}
	}
	if clang == "" {
		return nil, errorf(KindUnavailable, "cannot compile C source: clang is not installed on the agent's host (Debian: apt-get install clang llvm libbpf-dev), or load a compiled object with --object")
	}
	if _, err := os.Stat("/usr/include/bpf/bpf_helpers.h"); err != nil {
		return nil, errorf(KindUnavailable, "cannot compile C source: bpf/bpf_helpers.h is missing (Debian: apt-get install libbpf-dev), or load a compiled object with --object")
	}
	dir, err := os.MkdirTemp("", "rampart-cc-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	inc := filepath.Join(dir, "include")
	if err := os.MkdirAll(inc, 0o700); err != nil {
		return nil, err
	}
	err = fs.WalkDir(bpf.Include, "include", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := bpf.Include.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(inc, filepath.Base(path)), b, 0o600)
	})
	if err != nil {
		return nil, fmt.Errorf("writing headers: %w", err)
	}
	srcPath := filepath.Join(dir, "probe.bpf.c")
	objPath := filepath.Join(dir, "probe.bpf.o")
	if err := os.WriteFile(srcPath, src, 0o600); err != nil {
		return nil, err
	}
	arch := map[string]string{"amd64": "x86", "arm64": "arm64"}[runtime.GOARCH]
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, clang, "-O2", "-g", "-Wall", "-target", "bpf",
		"-D__TARGET_ARCH_"+arch, "-I", inc, "-c", srcPath, "-o", objPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		detail := strings.ReplaceAll(out.String(), dir+"/", "")
		return nil, &Error{Kind: KindInvalid, Msg: "compiling the C source failed (" + filepath.Base(clang) + ")", Detail: tail(detail, 30), Err: err}
	}
	return os.ReadFile(objPath)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
