package tests

import (
	"strings"
	"testing"
)

// The three OTE binaries share one command-line contract: usage on stderr
// and exit 2 for no or unknown commands, help on stdout, a stamped version.
func TestBinariesCommandLine(t *testing.T) {
	for _, name := range []string{"ote", "ote-cloud", "ote-image"} {
		t.Run(name, func(t *testing.T) {
			bin := builtBinary(t, name)

			r := runBinary(t, bin)
			if r.code != 2 || !strings.Contains(r.stderr, "usage: "+name) || r.stdout != "" {
				t.Errorf("%s with no command = exit %d, stdout %q, stderr %q; want exit 2 and usage on stderr only", name, r.code, r.stdout, r.stderr)
			}

			r = runBinary(t, bin, "no-such-command")
			if r.code != 2 || !strings.Contains(r.stderr, `unknown command "no-such-command"`) || !strings.Contains(r.stderr, "usage: ") {
				t.Errorf("%s no-such-command = exit %d, stderr %q; want exit 2 naming the command, then usage", name, r.code, r.stderr)
			}

			r = runBinary(t, bin, "help")
			if r.code != 0 || !strings.Contains(r.stdout, "usage: "+name) {
				t.Errorf("%s help = exit %d, stdout %q; want exit 0 and usage on stdout", name, r.code, r.stdout)
			}

			r = runBinary(t, bin, "version")
			fields := strings.Fields(r.stdout)
			if r.code != 0 || len(fields) != 4 || fields[0] != name || fields[2] != "(commit" {
				t.Fatalf("%s version = exit %d, %q; want %q", name, r.code, r.stdout, name+" VERSION (commit HASH)")
			}
			// make stamps both from git; an unstamped build says dev/unknown.
			if fields[1] == "dev" || fields[3] == "unknown)" {
				t.Errorf("%s version = %q; the build did not stamp version and commit", name, r.stdout)
			}
		})
	}
}
