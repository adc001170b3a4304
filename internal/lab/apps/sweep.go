package apps

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rampart-shield/rampart/internal/procstat"
)

// A server's directory records who owns it, so Sweep can tell a live
// server from one left by a crashed test binary:
//
//	owner  "PID STARTTIME" of the process that started the server
//	server "PGID BINARY" of the server's process group, once started
const (
	ownerFile  = "owner"
	serverFile = "server"
)

// procStart returns a process's start time (clock ticks since boot), or ""
// if it does not exist.
func procStart(pid int) string {
	f, err := procstat.Read("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil || len(f) < 20 {
		return ""
	}
	return f[19] // field 22 of stat; f[0] is field 3
}

func writeOwner(dir string) error {
	pid := os.Getpid()
	return writeFile(dir, ownerFile, []byte(fmt.Sprintf("%d %s\n", pid, procStart(pid))))
}

func writeServer(dir string, pgid int, bin string) error {
	return writeFile(dir, serverFile, []byte(fmt.Sprintf("%d %s\n", pgid, bin)))
}

// Sweep kills the processes and removes the directories of servers whose
// owner (the process that started them) is gone, such as those of a test
// binary killed by a timeout. Directories younger than olderThan without
// an owner file are spared (being created). Only processes of the recorded
// group that run the recorded binary are killed.
func Sweep(olderThan time.Duration) error {
	base := os.TempDir()
	dirs := map[string]bool{}
	for _, b := range []string{base, "/tmp"} {
		for _, n := range []string{Node, Apache, Nginx} {
			m, _ := filepath.Glob(filepath.Join(b, "rampart-"+n+"-*"))
			for _, d := range m {
				dirs[d] = true
			}
		}
	}
	var errs []string
	for d := range dirs {
		if !stale(d, olderThan) {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(d, serverFile)); err == nil {
			var pgid int
			var bin string
			if _, err := fmt.Sscanf(string(b), "%d %s", &pgid, &bin); err == nil && pgid > 1 {
				for _, pid := range groupPIDs(pgid) {
					if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && sameFile(exe, bin) {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
		}
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if errs != nil {
		return fmt.Errorf("apps: sweep: %s", strings.Join(errs, "; "))
	}
	return nil
}

// stale reports whether dir's owner is gone.
func stale(dir string, olderThan time.Duration) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		fi, err := os.Stat(dir)
		return err == nil && time.Since(fi.ModTime()) > olderThan
	}
	var pid int
	var start string
	if _, err := fmt.Sscanf(string(b), "%d %s", &pid, &start); err != nil {
		return false
	}
	return procStart(pid) != start
}

func sameFile(a, b string) bool {
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	return err1 == nil && err2 == nil && ra == rb
}
