package api

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadLoadRequest(t *testing.T) {
	dir := t.TempDir()
	man := func(extra string) string {
		return "name: counter\n" + extra + "programs:\n  - name: count\n    hook: xdp\n"
	}
	writeFile(t, filepath.Join(dir, "p", "manifest.yaml"), man("object: build/probe.o\n"))
	writeFile(t, filepath.Join(dir, "p", "build", "probe.o"), "ELF-from-manifest")
	writeFile(t, filepath.Join(dir, "p", "src.yaml"), man("source: probe.c\n"))
	writeFile(t, filepath.Join(dir, "p", "probe.c"), "int x;")
	writeFile(t, filepath.Join(dir, "p", "bare.yaml"), man(""))
	writeFile(t, filepath.Join(dir, "p", "bad.yaml"), "name: counter\nprograms: []\n")
	writeFile(t, filepath.Join(dir, "other.o"), "ELF-from-flag")

	p := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		name    string
		probe   string
		files   ProbeFiles
		wantErr string
		wantObj string
		wantSrc string
		wantNm  string
	}{
		{name: "object relative to manifest", files: ProbeFiles{Manifest: p("p/manifest.yaml")}, wantObj: "ELF-from-manifest", wantNm: "counter"},
		{name: "name override", probe: "mine", files: ProbeFiles{Manifest: p("p/manifest.yaml")}, wantObj: "ELF-from-manifest", wantNm: "mine"},
		{name: "flag object wins", files: ProbeFiles{Manifest: p("p/manifest.yaml"), Object: p("other.o")}, wantObj: "ELF-from-flag", wantNm: "counter"},
		{name: "source", files: ProbeFiles{Manifest: p("p/src.yaml")}, wantSrc: "int x;", wantNm: "counter"},
		{name: "bare manifest with flag", files: ProbeFiles{Manifest: p("p/bare.yaml"), Object: p("other.o")}, wantObj: "ELF-from-flag", wantNm: "counter"},
		{name: "bare manifest", files: ProbeFiles{Manifest: p("p/bare.yaml")}, wantErr: "names no object or source"},
		{name: "invalid manifest", files: ProbeFiles{Manifest: p("p/bad.yaml")}, wantErr: "bad.yaml: manifest: no programs"},
		{name: "missing manifest", files: ProbeFiles{Manifest: p("nope.yaml")}, wantErr: "no such file"},
		{name: "missing object", files: ProbeFiles{Manifest: p("p/manifest.yaml"), Object: p("nope.o")}, wantErr: "object: open"},
		{name: "both", files: ProbeFiles{Manifest: p("p/manifest.yaml"), Object: "a", Source: "b"}, wantErr: "not both"},
		{name: "no manifest", files: ProbeFiles{Object: "a"}, wantErr: "no manifest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := ReadLoadRequest(tt.probe, tt.files)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(req.Object) != tt.wantObj || string(req.Source) != tt.wantSrc || req.Name != tt.wantNm {
				t.Errorf("got name %q object %q source %q", req.Name, req.Object, req.Source)
			}
			if req.Manifest == nil || req.Manifest.Object != "" || req.Manifest.Source != "" {
				t.Errorf("manifest should be sent without paths: %+v", req.Manifest)
			}
		})
	}
}
