package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/ote-edge/ote/appliance/statuspage"
)

// artifactDir is where tests leave files for people to look at: console
// logs, screenshots. $OTE_ARTIFACTS, or out/artifacts.
func artifactDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("OTE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "out", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser starts headless Chromium (Debian's) for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if testing.Short() {
			t.Skip("chromium not installed (make deps installs it)")
		}
		t.Fatalf("chromium not installed; make deps installs it: %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	return ctx
}

// The status page in a real browser: the service rows, a restart with the
// device password (and a refusal without it), live logs, a screenshot.
func TestStatusPageInBrowser(t *testing.T) {
	ctx := browser(t)
	const pw = "browser-test-password"
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	writeBootFile(t, root, "config.yaml", "hostname: shop-17\nstatus:\n  passwordHash: \""+string(hash)+"\"\n"+`
services:
  ticker:
    argv: [/bin/sh, -c, "i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done"]
`)
	b := startBox(t, root)
	b.waitFor("running services", 20*time.Second, func(r statuspage.Report) bool {
		return service(r, "state").State == "running" && service(r, "ticker").State == "running"
	})

	var title, stateCell, wrong string
	if err := chromedp.Run(ctx,
		chromedp.Navigate("http://"+b.addr+"/"),
		chromedp.WaitVisible(`#service-state`, chromedp.ByQuery),
		chromedp.Title(&title),
		chromedp.Text(`#service-state .state`, &stateCell, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("load page: %v", err)
	}
	if !strings.Contains(title, "shop-17") || strings.TrimSpace(stateCell) != "running" {
		t.Errorf("title %q, state cell %q; want the hostname and running", title, stateCell)
	}

	// Live logs: the ticker's box fills with lines newer than the page.
	var logText string
	if err := chromedp.Run(ctx, chromedp.Poll(`(() => {
		const m = document.querySelector('#log-ticker pre').textContent.match(/tick (\d+)/g) || [];
		return m.length > 3;
	})()`, nil), chromedp.Text(`#log-ticker pre`, &logText, chromedp.ByQuery)); err != nil {
		t.Fatalf("live log: %v", err)
	}

	// A wrong password is refused and restarts nothing.
	if err := chromedp.Run(ctx,
		chromedp.SendKeys(`#service-state input[name=password]`, "not-it", chromedp.ByQuery),
		chromedp.Click(`#service-state button`, chromedp.ByQuery),
		chromedp.WaitNotPresent(`#services`, chromedp.ByQuery),
		chromedp.Text(`body`, &wrong, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("wrong password: %v", err)
	}
	if !strings.Contains(wrong, "wrong device password") {
		t.Errorf("after a wrong password the browser shows %q", wrong)
	}
	if r, _ := b.status(); service(r, "state").Restarts != 0 {
		t.Fatalf("a wrong password restarted the state service")
	}

	// The right one restarts the service.
	var message string
	var shot []byte
	if err := chromedp.Run(ctx,
		chromedp.Navigate("http://"+b.addr+"/"),
		chromedp.WaitVisible(`#service-state`, chromedp.ByQuery),
		chromedp.SendKeys(`#service-state input[name=password]`, pw, chromedp.ByQuery),
		chromedp.Click(`#service-state button`, chromedp.ByQuery),
		chromedp.WaitVisible(`#message`, chromedp.ByQuery),
		chromedp.Text(`#message`, &message, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if message != "restarting state" {
		t.Errorf("message after restart = %q", message)
	}
	b.waitFor("the restarted state service", 20*time.Second, func(r statuspage.Report) bool {
		s := service(r, "state")
		return s.Restarts == 1 && s.State == "running"
	})
	if err := chromedp.Run(ctx,
		chromedp.Navigate("http://"+b.addr+"/"),
		chromedp.WaitVisible(`#service-state`, chromedp.ByQuery),
		chromedp.Sleep(500*time.Millisecond), // let the live logs fill in
		chromedp.FullScreenshot(&shot, 100),
	); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(artifactDir(t), "status-page.png")
	if err := os.WriteFile(p, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
	b.stop(15 * time.Second)
}
