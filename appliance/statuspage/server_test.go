package statuspage

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ote-edge/ote/appliance/supervisor"
)

// services stands in for the supervisor: the handlers only read its
// status and logs and ask for restarts.
type services struct {
	mu       sync.Mutex
	restarts []string
	ring     *supervisor.Ring
}

func (s *services) Status() []supervisor.Status {
	return []supervisor.Status{{Name: "web", State: supervisor.StateRunning, Pid: 42}}
}

func (s *services) Restart(name string) error {
	if name != "web" {
		return supervisor.ErrUnknownService
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restarts = append(s.restarts, name)
	return nil
}

func (s *services) Logs(name string) (*supervisor.Ring, error) {
	if name != "web" {
		return nil, supervisor.ErrUnknownService
	}
	return s.ring, nil
}

func (s *services) restarted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.restarts)
}

const password = "correct horse"

func newTestServer(t *testing.T) (*httptest.Server, *services, *int) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	svcs := &services{ring: supervisor.NewRing(10)}
	svcs.ring.Add(supervisor.Line{Stream: "stdout", Text: "hello from web"})
	reboots := 0
	s, err := New(Config{
		Services:     svcs,
		Hostname:     "box-1",
		ConfigErrors: []string{"config.yaml:3: network.mode: unknown mode"},
		PasswordHash: func() string { return string(hash) },
		Reboot:       func() { reboots++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, svcs, &reboots
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func TestPageAndJSON(t *testing.T) {
	ts, _, _ := newTestServer(t)
	resp, err := http.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	for _, want := range []string{`id="service-web"`, "running", "hello from web", "box-1", "network.mode: unknown mode", "not enrolled"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); csp != "default-src 'self'" {
		t.Errorf("CSP = %q", csp)
	}

	for _, req := range []struct{ path, accept string }{{"/api/v1/status", ""}, {"/", "application/json"}} {
		r, _ := http.NewRequest("GET", ts.URL+req.path, nil)
		r.Header.Set("Accept", req.accept)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		var rep Report
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
			t.Fatalf("GET %s (Accept %q): %v", req.path, req.accept, err)
		}
		resp.Body.Close()
		if len(rep.Services) != 1 || rep.Services[0].Name != "web" || rep.Services[0].Log[0].Text != "hello from web" || rep.Uplink.Phase != "not enrolled" {
			t.Errorf("GET %s = %+v", req.path, rep)
		}
	}
}

func TestActionsNeedThePassword(t *testing.T) {
	ts, svcs, reboots := newTestServer(t)
	client := &http.Client{CheckRedirect: noRedirect}
	post := func(path string, form url.Values, header map[string]string) int {
		r, _ := http.NewRequest("POST", ts.URL+path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			r.Header.Set(k, v)
		}
		resp, err := client.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	restart := "/api/v1/services/web/restart"
	tests := []struct {
		name     string
		path     string
		form     url.Values
		header   map[string]string
		code     int
		restarts int
	}{
		{"no password", restart, nil, nil, 403, 0},
		{"wrong password", restart, url.Values{"password": {"hunter2"}}, nil, 403, 0},
		{"cross-site form", restart, url.Values{"password": {password}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, 0},
		{"foreign origin", restart, url.Values{"password": {password}}, map[string]string{"Origin": "http://evil.example"}, 403, 0},
		{"form password", restart, url.Values{"password": {password}}, nil, 303, 1},
		{"header password", restart, nil, map[string]string{"X-OTE-Password": password}, 200, 2},
		{"unknown service", "/api/v1/services/nope/restart", url.Values{"password": {password}}, nil, 404, 2},
		{"oversized form", restart, url.Values{"password": {password}, "pad": {strings.Repeat("x", 20000)}}, nil, 400, 2},
		{"reboot, wrong password", "/api/v1/reboot", url.Values{"password": {"nope"}}, nil, 403, 2},
	}
	for _, tt := range tests {
		if code := post(tt.path, tt.form, tt.header); code != tt.code || svcs.restarted() != tt.restarts {
			t.Errorf("%s: POST %s = %d with %d restarts so far, want %d and %d", tt.name, tt.path, code, svcs.restarted(), tt.code, tt.restarts)
		}
	}
	if *reboots != 0 {
		t.Fatalf("reboot ran without the password")
	}
	if code := post("/api/v1/reboot", url.Values{"password": {password}}, nil); code != 303 || *reboots != 1 {
		t.Errorf("reboot with the password = %d, %d reboots; want 303 and 1", code, *reboots)
	}

	// A malformed body is a 400, not a crash.
	r, _ := http.NewRequest("POST", ts.URL+restart, strings.NewReader("password=%zz"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("malformed form = %d, want 400", resp.StatusCode)
	}
	if got := get(t, ts.URL+"/api/v1/services/web/restart"); got != http.StatusMethodNotAllowed {
		t.Errorf("GET on an action = %d, want 405", got)
	}
}

func TestLiveLogs(t *testing.T) {
	for _, path := range []string{"/api/v1/services/web/logs", "/api/v1/logs"} {
		t.Run(path, func(t *testing.T) { testLiveLogs(t, path) })
	}
}

func testLiveLogs(t *testing.T, path string) {
	ts, svcs, _ := newTestServer(t)
	resp, err := http.Get(ts.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				lines <- data
			}
		}
		close(lines)
	}()
	next := func() supervisor.Line {
		select {
		case data := <-lines:
			var l logEvent
			if err := json.Unmarshal([]byte(data), &l); err != nil {
				t.Fatalf("event %q: %v", data, err)
			}
			if l.Service != "web" {
				t.Errorf("event %q names service %q, want web", data, l.Service)
			}
			return l.Line
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return supervisor.Line{}
	}
	if l := next(); l.Text != "hello from web" {
		t.Errorf("first event = %+v, want the kept line", l)
	}
	svcs.ring.Add(supervisor.Line{Stream: "stderr", Text: "a new line"})
	if l := next(); l.Text != "a new line" || l.Stream != "stderr" {
		t.Errorf("second event = %+v, want the new line", l)
	}
	if got := get(t, ts.URL+"/api/v1/services/nope/logs"); got != 404 {
		t.Errorf("logs of an unknown service = %d, want 404", got)
	}
}

func get(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}
