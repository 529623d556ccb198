package statuspage

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ote-edge/ote/appliance/state"
	"github.com/ote-edge/ote/appliance/supervisor"
	"golang.org/x/crypto/bcrypt"
)

//go:embed assets
var assets embed.FS

// Services is what the page needs of the supervisor.
type Services interface {
	Status() []supervisor.Status
	Restart(name string) error
	Logs(name string) (*supervisor.Ring, error)
}

// Config configures a Server.
type Config struct {
	Listen   string
	Log      *slog.Logger
	Services Services
	Store    *state.Store // nil until the state service is reachable
	StateDB  string       // path of the SQLite file, for its size
	DataDir  string       // for the data partition's use
	Hostname string
	// ConfigErrors are the problems found in config.yaml and enroll.yaml.
	ConfigErrors []string
	// PasswordHash returns the bcrypt hash of the device password, or ""
	// while there is none yet (then every action is refused).
	PasswordHash func() string
	// Reboot starts an ordered shutdown and reboot.
	Reboot func()
}

// Server serves the status page.
type Server struct {
	cfg  Config
	page *template.Template
}

// maxFormBytes bounds the body of every POST.
const maxFormBytes = 16 << 10

// New returns a Server; call Run to serve.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	page, err := template.New("status.html").Funcs(template.FuncMap{
		"bytes": humanBytes,
		"since": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return time.Since(t).Round(time.Second).String()
		},
		"subtract": func(a, b int64) int64 { return a - b },
		"percent": func(used, total int64) string {
			if total == 0 {
				return "-"
			}
			return fmt.Sprintf("%.0f%%", 100*float64(used)/float64(total))
		},
	}).ParseFS(assets, "assets/status.html")
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, page: page}, nil
}

// Handler returns the page's routes, behind cross-origin protection.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", s.serveIndex)
	mux.HandleFunc("GET /api/v1/status", s.serveJSON)
	mux.HandleFunc("GET /api/v1/logs", s.serveAllLogs)
	mux.HandleFunc("GET /api/v1/services/{name}/logs", s.serveLogs)
	mux.HandleFunc("POST /api/v1/services/{name}/restart", s.serveRestart)
	mux.HandleFunc("POST /api/v1/reboot", s.serveReboot)
	return http.NewCrossOriginProtection().Handler(mux)
}

// Run serves on cfg.Listen until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("status page: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelWarn),
	}
	s.cfg.Log.Info("status page listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("status page: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(shutdown) // live-log streams end with their requests' contexts
	srv.Close()
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request) {
	if wantsJSON(r) {
		s.serveJSON(w, r)
		return
	}
	data := struct {
		Report
		Message string
	}{s.report(r.Context()), r.URL.Query().Get("msg")}
	var b strings.Builder
	if err := s.page.Execute(&b, data); err != nil {
		http.Error(w, "render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'")
	fmt.Fprint(w, b.String())
}

func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s.report(r.Context()))
}

// logEvent is one line of a live log stream.
type logEvent struct {
	Service string `json:"service"`
	supervisor.Line
}

// serveLogs streams one service's log as server-sent events.
func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ring, err := s.cfg.Services.Logs(name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	s.streamLogs(w, r, map[string]*supervisor.Ring{name: ring})
}

// serveAllLogs streams every service's log in one stream, which is what
// the page uses: a browser allows only a few connections per host, so a
// stream per service would starve the page on a box with many services.
func (s *Server) serveAllLogs(w http.ResponseWriter, r *http.Request) {
	rings := map[string]*supervisor.Ring{}
	for _, st := range s.cfg.Services.Status() {
		if ring, err := s.cfg.Services.Logs(st.Name); err == nil {
			rings[st.Name] = ring
		}
	}
	s.streamLogs(w, r, rings)
}

// streamLogs sends the kept lines of each ring, then new ones as they
// come, until the client goes away.
func (s *Server) streamLogs(w http.ResponseWriter, r *http.Request, rings map[string]*supervisor.Ring) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	send := func(ev logEvent) error {
		b, _ := json.Marshal(ev)
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return err
		}
		return rc.Flush()
	}

	ctx := r.Context()
	merged := make(chan logEvent, 64)
	var forwarders sync.WaitGroup
	defer forwarders.Wait()
	for name, ring := range rings {
		backlog, lines, cancel := ring.Subscribe(256)
		for _, l := range backlog {
			if send(logEvent{name, l}) != nil {
				cancel()
				return
			}
		}
		forwarders.Go(func() {
			defer cancel()
			for {
				select {
				case <-ctx.Done():
					return
				case l := <-lines:
					select {
					case merged <- logEvent{name, l}:
					case <-ctx.Done():
						return
					}
				}
			}
		})
	}
	if rc.Flush() != nil {
		return
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-merged:
			if send(ev) != nil {
				return
			}
		case <-keepalive.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// authorize reads the form and checks the device password. It writes the
// error response and returns false when the request may not proceed.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
		return false
	}
	password := r.PostForm.Get("password")
	if password == "" {
		password = r.Header.Get("X-OTE-Password")
	}
	hash := ""
	if s.cfg.PasswordHash != nil {
		hash = s.cfg.PasswordHash()
	}
	if hash == "" || password == "" || bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		s.cfg.Log.Warn("status page: refused action with a wrong password", "path", r.URL.Path, "remote", r.RemoteAddr)
		http.Error(w, "wrong device password", http.StatusForbidden)
		return false
	}
	return true
}

// done answers an action: JSON for API clients, a redirect back to the
// page (post/redirect/get) for the form.
func (s *Server) done(w http.ResponseWriter, r *http.Request, msg string) {
	if wantsJSON(r) || r.PostForm.Get("password") == "" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"result": msg})
		return
	}
	http.Redirect(w, r, "/?msg="+template.URLQueryEscaper(msg), http.StatusSeeOther)
}

func (s *Server) serveRestart(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	name := r.PathValue("name")
	if err := s.cfg.Services.Restart(name); err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	s.cfg.Log.Info("status page: restarting service", "service", name)
	s.done(w, r, "restarting "+name)
}

func (s *Server) serveReboot(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	s.cfg.Log.Info("status page: reboot requested")
	s.done(w, r, "rebooting")
	if s.cfg.Reboot != nil {
		s.cfg.Reboot()
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
