// Package ui is isolationd's web console at /ui: plain HTML, CSS and a
// small script, embedded in the binary (no build step, nothing fetched at
// run time), that read the JSON API with the console session's cookie.
// It holds no data and decides nothing: every fetch is authenticated and
// authorized by the API (internal/api), and every page but the sign-in
// page answers only a browser with a valid session. internal/server
// mounts it; it imports nothing of the server.
package ui

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
)

//go:embed assets
var assets embed.FS

// CSP is the Content Security Policy of every answer: scripts, styles and
// images from the server itself only, no inline code of any kind, and
// nothing reaches anywhere but the API.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// Options configure the console.
type Options struct {
	// SignedIn reports whether a request carries a valid console
	// session's cookie (api.API.ConsoleSignedIn).
	SignedIn func(*http.Request) bool
	// Flows says that the API serves flow records (GET /v1/flows): the
	// pages ask for them only then.
	Flows bool
}

// pages are the console's pages, all served by one shell whose script
// renders the one the path names.
var pages = []string{"/ui/environments", "/ui/environments/{id}", "/ui/policies", "/ui/policies/{id}", "/ui/audit", "/ui/flows"}

// Handler serves /ui and everything below it.
func Handler(opts Options) http.Handler {
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /ui/sign-in", func(w http.ResponseWriter, r *http.Request) { serveFile(w, r, "signin.html", false) })
	for _, p := range pages {
		mux.HandleFunc("GET "+p, func(w http.ResponseWriter, r *http.Request) {
			if !opts.SignedIn(r) {
				http.Redirect(w, r, "/ui/sign-in", http.StatusSeeOther)
				return
			}
			serveFile(w, r, "index.html", opts.Flows)
		})
	}
	mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/environments", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/environments", http.StatusSeeOther)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}

// serveFile serves an HTML file of the assets; flows turns the flow
// sections on (the body's data-flows attribute, which the script reads).
func serveFile(w http.ResponseWriter, r *http.Request, name string, flows bool) {
	b, err := assets.ReadFile(path.Join("assets", name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if flows {
		b = bytes.Replace(b, []byte("<body>"), []byte(`<body data-flows="on">`), 1)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b)
}
