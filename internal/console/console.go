// Package console serves Rallye's web console for managers and HR at
// /console/: live boards with a TV mode and the KPI dashboards, in French and
// English. It is TypeScript (web/src) on the repository's own Connect client
// (clients/ts), bundled by esbuild into dist/, which is committed and
// embedded, so that `go build` needs no JavaScript toolchain. The console
// calls the same RPCs as every client, under the same rules: it holds no
// rights of its own.
package console

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

//go:embed dist
var dist embed.FS

// Path is where the console is served.
const Path = "/console/"

// Config is what the console's page needs to know from the server.
type Config struct {
	// OIDCIssuer and OIDCClientID: the company's identity provider, with which
	// the browser signs in (authorization code with PKCE). Empty: no sign-in
	// but the demo's.
	OIDCIssuer   string
	OIDCClientID string
}

// DemoPerson is a person of the demo company the sign-in page offers, with a
// token for them.
type DemoPerson struct {
	Name  string   `json:"name"`
	Email string   `json:"email"`
	Roles []string `json:"roles"`
	Token string   `json:"token"`
}

// Console is the console's HTTP handler.
type Console struct {
	cfg    Config
	csp    string
	assets http.Handler
	demo   atomic.Pointer[[]DemoPerson]
}

// New returns the console; demo sign-in stays off until EnableDemo.
func New(cfg Config) *Console {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	// The page talks to its own origin, and to the identity provider to sign in.
	connect := "'self'"
	if u, err := url.Parse(cfg.OIDCIssuer); err == nil && u.Host != "" {
		connect += " " + u.Scheme + "://" + u.Host
	}
	csp := "default-src 'self'; connect-src " + connect + "; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
	return &Console{cfg: cfg, csp: csp, assets: http.StripPrefix(Path, http.FileServerFS(sub))}
}

// EnableDemo turns on the person picker of `serve --demo`: anyone who reaches
// the console may then act as any of these people. Never in production.
func (c *Console) EnableDemo(people []DemoPerson) {
	c.demo.Store(&people)
}

type pageConfig struct {
	Demo bool        `json:"demo"`
	OIDC *oidcConfig `json:"oidc,omitempty"`
}

type oidcConfig struct {
	Issuer   string `json:"issuer"`
	ClientID string `json:"clientId"`
}

// ServeHTTP serves the page, its assets, its configuration and, in demo mode
// only, the demo people.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", c.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch strings.TrimPrefix(r.URL.Path, Path) {
	case "config.json":
		pc := pageConfig{Demo: c.demo.Load() != nil}
		if c.cfg.OIDCIssuer != "" {
			pc.OIDC = &oidcConfig{Issuer: c.cfg.OIDCIssuer, ClientID: c.cfg.OIDCClientID}
		}
		writeJSON(w, pc)
	case "demo/people":
		people := c.demo.Load()
		if people == nil {
			http.NotFound(w, r)
			return
		}
		h.Set("Cache-Control", "no-store")
		writeJSON(w, *people)
	case "", "index.html":
		h.Set("Cache-Control", "no-cache")
		c.assets.ServeHTTP(w, r)
	default:
		c.assets.ServeHTTP(w, r)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
