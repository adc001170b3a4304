package procstat

import (
	"os"
	"testing"
)

func TestFields(t *testing.T) {
	f, ok := Fields([]byte("42 (a b) c) S 1 42 42 0 -1 0 0 0 0 0 7 3 2 1\n"))
	if !ok || f[0] != "S" || f[1] != "1" || f[14-3] != "7" || f[15-3] != "3" {
		t.Fatalf("fields %q, ok %v", f, ok)
	}
	if _, ok := Fields([]byte("42 (cut")); ok {
		t.Error("a line without ')' split")
	}
}

func TestTicksSelf(t *testing.T) {
	own, err := Ticks(os.Getpid(), false)
	if err != nil {
		t.Fatal(err)
	}
	all, err := Ticks(os.Getpid(), true)
	if err != nil || all < own {
		t.Fatalf("with children %d (%v), without %d", all, err, own)
	}
	if _, err := Ticks(-1, false); err == nil {
		t.Error("no error for pid -1")
	}
}
