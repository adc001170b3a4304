package apps

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

// assets holds the servers' code and config templates:
//
//	node/    server.js, package.json, package-lock.json (npm ci)
//	lua/     labwork.lua, the Lua handlers shared by Apache and nginx
//	apache/  httpd.conf.tmpl, handlers.lua (mod_lua entry points)
//	nginx/   nginx.conf.tmpl, handlers.lua (ngx_http_lua entry points)
//
//go:embed assets
var assets embed.FS

func asset(name string) []byte {
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		panic(err) // embedded: cannot fail for a known name
	}
	return b
}

// writeFile writes data to dir/name, world-readable, making parents.
func writeFile(dir, name string, data []byte) error {
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

// copyAssets copies the embedded files under assets/from (not *.tmpl) to
// dir/to.
func copyAssets(dir, from, to string) error {
	return fs.WalkDir(assets, "assets/"+from, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".tmpl") {
			return err
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		return writeFile(dir, filepath.Join(to, strings.TrimPrefix(p, "assets/"+from+"/")), b)
	})
}

// renderTemplate renders assets/name with data into dir/out.
func renderTemplate(dir, name, out string, data any) error {
	t, err := template.New(name).Option("missingkey=error").Parse(string(asset(name)))
	if err != nil {
		return fmt.Errorf("apps: %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return fmt.Errorf("apps: %s: %w", name, err)
	}
	return writeFile(dir, out, b.Bytes())
}

// Static documents served by Apache and nginx, by path and size. Text is
// deterministic filler; sizes span 100 B to 1 MB like a small site.
var staticSizes = []struct {
	path string
	size int
}{
	{"static/100.txt", 100},
	{"static/1k.txt", 1 << 10},
	{"static/10k.txt", 10 << 10},
	{"static/50k.txt", 50 << 10},
	{"static/200k.txt", 200 << 10},
	{"static/1m.txt", 1 << 20},
}

const indexHTML = `<!doctype html>
<html><head><title>rampart lab site</title></head>
<body><h1>rampart lab site</h1>
<p>A small site used to test application-layer DoS detection.</p>
<ul>
<li><a href="/static/1k.txt">/static/{100,1k,10k,50k,200k,1m}.txt</a> static text</li>
<li><a href="/api/items.json">/api/items.json</a> a JSON document</li>
<li><a href="/lua/kv?text=a%3D1">/lua/kv?text=</a> parse key = value lines (Lua)</li>
<li><a href="/lua/primes?n=1000">/lua/primes?n=</a> count primes below n (Lua)</li>
</ul></body></html>
`

// writeStatic fills dir/htdocs with index.html, the static texts and a
// JSON document.
func writeStatic(dir string) error {
	docs := filepath.Join(dir, "htdocs")
	if err := writeFile(docs, "index.html", []byte(indexHTML)); err != nil {
		return err
	}
	for _, f := range staticSizes {
		if err := writeFile(docs, f.path, filler(f.size)); err != nil {
			return err
		}
	}
	var b strings.Builder
	b.WriteString(`{"items": [`)
	for i := 1; i <= 100; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"id": %d, "name": "item-%d", "price": %d.%d}`, i, i, (i*37)%100, i%10)
	}
	b.WriteString("]}\n")
	return writeFile(docs, "api/items.json", []byte(b.String()))
}

var fillerWords = strings.Fields(`lorem ipsum dolor sit amet consectetur adipiscing
elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua ut enim ad
minim veniam quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat`)

// filler returns n bytes of deterministic lorem-ipsum text.
func filler(n int) []byte {
	b := make([]byte, 0, n+16)
	for i := 0; len(b) < n; i++ {
		b = append(b, fillerWords[(i*7919)%len(fillerWords)]...)
		if i%13 == 12 {
			b = append(b, ".\n"...)
		} else {
			b = append(b, ' ')
		}
	}
	return b[:n]
}
