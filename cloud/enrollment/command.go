package enrollment

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ote-edge/ote/appliance/config"
	"github.com/ote-edge/ote/cross/multicall"
)

// Main is `ote-cloud token create|list|revoke`.
func Main(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: token create|list|revoke", multicall.ErrUsage)
	}
	switch args[0] {
	case "create":
		return create(ctx, args[1:], os.Stdout)
	case "list":
		return list(ctx, args[1:], os.Stdout)
	case "revoke":
		return revoke(ctx, args[1:])
	}
	return fmt.Errorf("%w: unknown token command %q: want create, list or revoke", multicall.ErrUsage, args[0])
}

func storeFlags(name string) (*flag.FlagSet, *string) {
	fs := multicall.FlagSet("token "+name, os.Stderr)
	return fs, fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig `FILE` of the cluster ote-cloud serves")
}

func openStore(kubeconfig string) (Store, error) {
	if kubeconfig == "" {
		return Store{}, fmt.Errorf("%w: --kubeconfig is required", multicall.ErrUsage)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return Store{}, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return Store{}, err
	}
	return Store{Client: cs}, nil
}

func create(ctx context.Context, args []string, w io.Writer) error {
	fs, kubeconfig := storeFlags("create")
	var opts Options
	tags := fs.String("tags", "", "`k=v,...` tags for every cluster enrolled with the token")
	fs.DurationVar(&opts.TTL, "ttl", 24*time.Hour, "how long the token is valid (0: forever)")
	fs.IntVar(&opts.Uses, "uses", 1, "how many boxes may enroll with it (0: unlimited)")
	fs.StringVar(&opts.NamePrefix, "name-prefix", "", "name enrolled clusters `P`-<device id> unless they ask for a name")
	fs.BoolVar(&opts.Level, "level", false, "the token enrolls a lower level of the tree (ote-cloud serve --parent) instead of a box")
	enrollYAML := fs.Bool("enroll-yaml", false, "print a ready enroll.yaml for a box's boot partition")
	server := fs.String("server", "", "`HOST:PORT` the boxes dial (for --enroll-yaml)")
	if err := multicall.Parse(fs, args, 0); err != nil {
		return err
	}
	var err error
	if opts.Tags, err = parseTags(*tags); err != nil {
		return fmt.Errorf("%w: --tags: %v", multicall.ErrUsage, err)
	}
	if opts.TTL < 0 || opts.Uses < 0 {
		return fmt.Errorf("%w: --ttl and --uses cannot be negative", multicall.ErrUsage)
	}
	if *enrollYAML {
		if _, _, err := net.SplitHostPort(*server); err != nil || strings.HasPrefix(*server, ":") {
			return fmt.Errorf("%w: --enroll-yaml needs --server HOST:PORT", multicall.ErrUsage)
		}
	}
	store, err := openStore(*kubeconfig)
	if err != nil {
		return err
	}
	t, err := store.Create(ctx, opts)
	if err != nil {
		return err
	}
	if !*enrollYAML {
		_, err = fmt.Fprintln(w, t)
		return err
	}
	fmt.Fprintf(w, "# OTE enrollment: copy to ote/enroll.yaml on the box's boot partition.\n# Token %s", t.ID)
	if opts.TTL > 0 {
		fmt.Fprintf(w, ", valid until %s", time.Now().Add(opts.TTL).UTC().Format(time.RFC3339))
	}
	_, err = fmt.Fprintf(w, ".\nserver: %q\ntoken: %q\n", *server, t.String())
	return err
}

// parseTags reads k=v,k=v with the rules of enroll.yaml's tags.
func parseTags(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	tags := map[string]string{}
	var b strings.Builder
	b.WriteString("server: a:1\ntoken: t\ntags:\n")
	for _, p := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not k=v", p)
		}
		tags[k] = v
		fmt.Fprintf(&b, "  %q: %q\n", k, v)
	}
	if _, err := config.ParseEnroll("--tags", []byte(b.String())); err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return nil, errors.New(ce.Msg)
		}
		return nil, err
	}
	return tags, nil
}

func list(ctx context.Context, args []string, w io.Writer) error {
	fs, kubeconfig := storeFlags("list")
	if err := multicall.Parse(fs, args, 0); err != nil {
		return err
	}
	store, err := openStore(*kubeconfig)
	if err != nil {
		return err
	}
	recs, err := store.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSES LEFT\tEXPIRES\tTAGS\tNAME PREFIX\tCREATED")
	for _, r := range recs {
		uses := "unlimited"
		if r.UsesLeft >= 0 {
			uses = fmt.Sprint(r.UsesLeft)
		}
		expires := "never"
		if !r.Expires.IsZero() {
			expires = r.Expires.Format(time.RFC3339)
			if time.Now().After(r.Expires) {
				expires += " (expired)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, uses, expires, encodeTags(r.Tags), r.NamePrefix, r.Created.Format(time.RFC3339))
	}
	return tw.Flush()
}

func revoke(ctx context.Context, args []string) error {
	fs, kubeconfig := storeFlags("revoke")
	if err := multicall.Parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: name the token id to revoke", multicall.ErrUsage)
	}
	store, err := openStore(*kubeconfig)
	if err != nil {
		return err
	}
	if err := store.Revoke(ctx, fs.Arg(0)); err != nil {
		return err
	}
	fmt.Printf("token %s revoked\n", fs.Arg(0))
	return nil
}
