package statuspage

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ote-edge/ote/cross/multicall"
)

// Main is `ote status [--addr HOST:PORT] [--json]`: the status page's
// report in a terminal.
func Main(ctx context.Context, args []string) error {
	fs := multicall.FlagSet("status", os.Stderr)
	addr := fs.String("addr", "127.0.0.1:80", "status page `HOST:PORT`")
	raw := fs.Bool("json", false, "print the JSON report as it is")
	if err := multicall.Parse(fs, args, 0); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+*addr+"/api/v1/status", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	if *raw {
		_, err = os.Stdout.Write(body)
		return err
	}
	var r Report
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("decode report: %w", err)
	}
	return r.WriteText(os.Stdout)
}

// WriteText writes the report for a terminal.
func (r Report) WriteText(w io.Writer) error {
	d := r.Device
	fmt.Fprintf(w, "%s  %s %s  Linux %s  up %s  load %.2f %.2f %.2f\n", d.Hostname, d.Board, d.Arch, d.Kernel, d.Uptime(), d.Load[0], d.Load[1], d.Load[2])
	fmt.Fprintf(w, "memory %s/%s  data %s/%s\n\n", humanBytes(d.MemTotal-d.MemAvailable), humanBytes(d.MemTotal), humanBytes(d.DataUsed), humanBytes(d.DataTotal))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tPID\tRESTARTS\tLAST EXIT\tERROR")
	for _, s := range r.Services {
		state := string(s.State)
		if s.CrashLoop {
			state += " (crash loop)"
		}
		last := ""
		if s.LastExit != nil {
			last = s.LastExit.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", s.Name, state, s.Pid, s.Restarts, last, s.LastError)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nstate: %s, %s, revision %d %s\n", r.State.File, humanBytes(r.State.SizeBytes), r.State.Revision, r.State.Error)
	u := r.Uplink
	fmt.Fprintf(w, "uplink: %s", u.Phase)
	if u.Cluster != "" {
		fmt.Fprintf(w, ", cluster %s via %s (parent %s, rtt %.1f ms)", u.Cluster, u.Server, u.Parent, u.RTTMillis)
	}
	if u.Error != "" {
		fmt.Fprintf(w, "; last error: %s", u.Error)
	}
	fmt.Fprintln(w)
	if len(r.ConfigErrors) > 0 {
		fmt.Fprintf(w, "configuration errors:\n  %s\n", strings.Join(r.ConfigErrors, "\n  "))
	}
	return nil
}
