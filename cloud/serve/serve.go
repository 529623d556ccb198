// Package serve is `ote-cloud serve`: the cluster controller with the
// Kubernetes API it is driven through.
//
// In its embedded default it runs kine on a SQLite file in the data
// directory and the upstream kube-apiserver (the kube binary built in
// cross/kube) as a supervised child pointed at kine, with certificates
// from the tree's CA, and writes an admin kubeconfig next to them. Given
// a kubeconfig instead, it uses that cluster and starts no API server.
// Either way it installs or updates OTE's CRDs at start.
package serve

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/ote-edge/ote/appliance/state"
	"github.com/ote-edge/ote/appliance/supervisor"
	"github.com/ote-edge/ote/cloud/controller"
	"github.com/ote-edge/ote/cloud/crds"
	"github.com/ote-edge/ote/cloud/enrollment"
	"github.com/ote-edge/ote/cloud/pki"
	"github.com/ote-edge/ote/cloud/profiling"
	"github.com/ote-edge/ote/cloud/shard"
	"github.com/ote-edge/ote/cloud/tunnel"
	"github.com/ote-edge/ote/cloud/uplink"
	"github.com/ote-edge/ote/cross/buildinfo"
)

// Config configures Run.
type Config struct {
	// DataDir holds the embedded control plane: state.db, pki/, kubeconfig.
	DataDir string
	// Kubeconfig, when set, points at an existing cluster to use instead.
	Kubeconfig string
	// KubeBinary is the kube multi-call binary; default: next to this
	// binary, else on PATH.
	KubeBinary string
	// APIListen is where the embedded API server listens; default
	// 127.0.0.1:6443.
	APIListen string
	// Listen is the UDP address of the tunnel listener; default :7443.
	Listen string
	// Name is this level's name, given to children as their parent.
	Name string
	// CertValidity is how long the identities this level issues last.
	CertValidity time.Duration
	// EnrollFile makes this a lower level of a tree: the enroll.yaml with
	// the token (made with --level) that joins it to Parent, or to the
	// file's server when Parent is empty. The level takes its name from
	// the identity it gets.
	EnrollFile string
	Parent     string
	// Advertise is where this level's tunnel is reached, told to the
	// parent for the alternates of other levels' children; default: the
	// bound address when it names a host.
	Advertise string
	// LostAfter, FailoverAfter and ReturnEvery tune the level's own
	// uplink (see uplink.Config).
	LostAfter, FailoverAfter, ReturnEvery time.Duration
	// MaxHandshakes bounds the children's handshakes in progress (see
	// tunnel.ListenConfig); 0 means the default.
	MaxHandshakes int
	// PingChildren is how often the tunnel pings each child (see
	// tunnel.ListenConfig.KeepAlive): 0 means the default, a negative
	// value never.
	PingChildren time.Duration
	// TunnelShards, if more than 1, holds the children's connections in
	// that many processes that share the tunnel's port (package shard);
	// ShardMemoryLimit, if set, bounds each one's memory.
	TunnelShards     int
	ShardMemoryLimit int64
	// ShardNice is added to this process's niceness for the shards'.
	ShardNice int
	// APIServerMemoryLimit, if set, is the embedded API server's
	// GOMEMLIMIT, with GOGC off: it collects by that bound instead of at
	// each doubling of its heap.
	APIServerMemoryLimit int64
	// ProfilingListen, when set, serves net/http/pprof there; tunnel
	// shard i serves its own on the port i+1 above.
	ProfilingListen string
	Log             *slog.Logger
	Console         io.Writer // the API server's output; nil discards
	// Ready, if set, is called once the API serves OTE's CRDs and the
	// tunnel listens, with the kubeconfig's path and the tunnel's address.
	Ready func(kubeconfig, tunnel string)
}

// Run serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ProfilingListen != "" {
		stop, err := profiling.Serve(ctx, cfg.ProfilingListen)
		if err != nil {
			return err
		}
		defer stop()
	}
	if cfg.Kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		if err != nil {
			return fmt.Errorf("kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
		return serveTree(ctx, rc, cfg, cfg.Kubeconfig)
	}
	return runEmbedded(ctx, cfg)
}

// serveTree installs the CRDs in the cluster behind rc, gets the tree CA
// (created at the root, given by the parent at a lower level), and runs
// the cluster controller, and a lower level's uplink, until ctx ends.
func serveTree(ctx context.Context, rc *rest.Config, cfg Config, kubeconfig string) error {
	// client-go's default of 5 requests per second (burst 10) puts a
	// 200ms step into every delivery once a few children are busy: a
	// controller of a level talks to its API server far more than that.
	rc.QPS, rc.Burst = 500, 1000
	dyn, cs, err := installCRDs(ctx, rc, cfg)
	if err != nil {
		return err
	}
	tokens := enrollment.Store{Client: cs}
	var level *levelStore
	var up uplink.Config
	var ca *pki.CA
	if cfg.EnrollFile != "" {
		level = &levelStore{cs: cs, dyn: dyn, log: cfg.Log}
		up = uplink.Config{
			EnrollFile: cfg.EnrollFile, Server: cfg.Parent, AgentVersion: buildinfo.Version(),
			Store: level, Log: cfg.Log.With("uplink", true), Level: true,
			FailoverAfter: cfg.FailoverAfter, ReturnEvery: cfg.ReturnEvery, LostAfter: cfg.LostAfter,
		}
		id, err := uplink.Enroll(ctx, up)
		if err != nil {
			return nil // ctx ended
		}
		if ca, err = levelCA(ctx, tokens, id); err != nil {
			return err
		}
		cfg.Name = id.Cluster
	} else if ca, err = tokens.TreeCA(ctx, true); err != nil {
		return err
	}
	cfg.Log.Info("tree CA ready", "root", ca.IsRoot())
	if cfg.Listen == "" {
		cfg.Listen = ":7443"
	}
	resetKey, err := tokens.ResetKey(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ccfg := controller.Config{
		Listen: cfg.Listen, Name: cfg.Name, CA: ca, ResetKey: resetKey, MaxHandshakes: cfg.MaxHandshakes, PingChildren: cfg.PingChildren, Tokens: tokens, Dynamic: dyn, Log: cfg.Log,
		CertValidity: cfg.CertValidity,
	}
	var pool *shard.Pool
	if cfg.TunnelShards > 1 {
		pool, err = shard.Listen(shard.Config{
			Listen: cfg.Listen, Shards: cfg.TunnelShards, Root: ca.Root, ResetKey: resetKey,
			MaxHandshakes: cfg.MaxHandshakes, KeepAlive: cfg.PingChildren, MemoryLimit: cfg.ShardMemoryLimit, Nice: cfg.ShardNice,
			ProfilingListen: cfg.ProfilingListen, Log: cfg.Log,
		})
		if err != nil {
			return err
		}
		ccfg.Tunnel = pool
	}
	ctl, err := controller.Listen(ccfg)
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		return err
	}
	if pool != nil {
		// The controller closes the pool as it stops.
		wg.Go(func() { pool.Run(ctx) })
	}
	cfg.Log.Info("tunnel listening", "addr", ctl.Addr().String(), "shards", max(cfg.TunnelShards, 1))
	cfg.ready(kubeconfig, ctl.Addr().String())
	if level == nil {
		return ctl.Run(ctx)
	}
	level.setController(ctl)
	up.Source = ctl
	up.Serves = advertised(cfg.Advertise, ctl.Addr())
	up.OnWelcome = func(server string, w *tunnel.Welcome) {
		level.welcomed(w.Parent)
		ctl.SetUpstream(server, w.Siblings)
	}
	up.OnIdentity = func(id uplink.Identity) {
		ictx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ca, err := levelCA(ictx, tokens, id)
		if err == nil {
			err = ctl.SetCA(ca)
		}
		if err != nil {
			cfg.Log.Error("renewed level CA", "err", err)
		}
	}
	wg.Go(func() { uplink.Run(ctx, up) })
	return ctl.Run(ctx)
}

// levelCA makes a level's identity its CA and stores it as its tree CA,
// for tokens and for the controller.
func levelCA(ctx context.Context, tokens enrollment.Store, id uplink.Identity) (*pki.CA, error) {
	ca, err := pki.ParseIntermediate(id.Cert, id.Key, id.CA)
	if err != nil {
		return nil, fmt.Errorf("the level's identity is not a CA (was its token made with --level?): %w", err)
	}
	if err := tokens.SaveLevelCA(ctx, ca); err != nil {
		return nil, err
	}
	return ca, nil
}

// advertised is where children of other levels reach this one.
func advertised(given string, bound net.Addr) string {
	if given != "" {
		return given
	}
	if u, ok := bound.(*net.UDPAddr); ok && !u.IP.IsUnspecified() {
		return u.String()
	}
	return ""
}

func (cfg Config) ready(kubeconfig, tunnel string) {
	if cfg.Ready != nil {
		cfg.Ready(kubeconfig, tunnel)
	}
}

func installCRDs(ctx context.Context, rc *rest.Config, cfg Config) (dynamic.Interface, kubernetes.Interface, error) {
	client, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	ictx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := crds.Install(ictx, client); err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	if err := (enrollment.Store{Client: cs}).EnsureNamespace(ictx); err != nil {
		return nil, nil, err
	}
	cfg.Log.Info("CRDs installed")
	return client, cs, nil
}

func runEmbedded(ctx context.Context, cfg Config) error {
	if cfg.DataDir == "" {
		return errors.New("serve: --data-dir or --kubeconfig is required")
	}
	if cfg.APIListen == "" {
		cfg.APIListen = "127.0.0.1:6443"
	}
	host, port, err := net.SplitHostPort(cfg.APIListen)
	if err != nil {
		return fmt.Errorf("serve: API listen address %q: %w", cfg.APIListen, err)
	}
	kube, err := findKube(cfg.KubeBinary)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	certs, err := issueCerts(filepath.Join(dir, "pki"), host)
	if err != nil {
		return err
	}
	apiURL := "https://" + net.JoinHostPort(connectHost(host), port)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, apiURL, certs); err != nil {
		return err
	}

	kineSocket := filepath.Join(dir, "kine.sock")
	stateCtx, stopState := context.WithCancel(context.Background())
	stateDone := make(chan struct{})
	var stateErr error
	go func() {
		defer close(stateDone)
		stateErr = state.Serve(stateCtx, state.ServerConfig{DBPath: filepath.Join(dir, "state.db"), Socket: kineSocket, Log: cfg.Log})
	}()
	defer func() {
		stopState()
		<-stateDone
	}()

	probeClient, err := adminHTTPClient(certs)
	if err != nil {
		return err
	}
	sup, err := supervisor.New(supervisor.Config{
		Log:     cfg.Log,
		Console: cfg.Console,
		Services: []supervisor.Service{{
			Name:      "apiserver",
			Argv:      apiserverArgs(kube, host, port, "unix://"+kineSocket, certs),
			Env:       apiserverEnv(cfg.APIServerMemoryLimit),
			Ready:     supervisor.HTTPProbe{URL: apiURL + "/readyz", Client: probeClient},
			StopGrace: 15 * time.Second,
		}},
		ProbeInterval: 250 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	supCtx, stopSup := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { sup.Run(supCtx) })
	defer func() {
		stopSup()
		wg.Wait()
	}()

	select {
	case <-sup.Ready("apiserver"):
	case <-stateDone:
		return fmt.Errorf("serve: local state stopped: %v", stateErr)
	case <-ctx.Done():
		return nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	treeErr := make(chan error, 1)
	go func() { treeErr <- serveTree(ctx, rc, cfg, kubeconfig) }()
	select {
	case err := <-treeErr:
		return err
	case <-stateDone:
		<-treeErr
		return fmt.Errorf("serve: local state stopped: %v", stateErr)
	}
}

// findKube looks for the kube binary where it was asked, next to ours, or on PATH.
func findKube(given string) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", fmt.Errorf("kube binary: %w", err)
		}
		return given, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "kube")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("kube")
	if err != nil {
		return "", errors.New("kube binary not found next to ote-cloud or on PATH; build it with make kube or pass --kube-binary")
	}
	return p, nil
}

// connectHost is the address clients dial for a listen host.
func connectHost(host string) string {
	if host == "" || host == "0.0.0.0" || host == "::" {
		return "127.0.0.1"
	}
	return host
}

// apiserverEnv is what the API server's environment adds to this
// process's: with a memory limit, GOGC off and GOMEMLIMIT (the runtime
// reads both at its start); nil without one.
func apiserverEnv(memoryLimit int64) []string {
	if memoryLimit <= 0 {
		return nil
	}
	return []string{"GOGC=off", "GOMEMLIMIT=" + strconv.FormatInt(memoryLimit, 10)}
}

func apiserverArgs(kube, host, port, etcd string, c certFiles) []string {
	bind := host
	if bind == "" {
		bind = "0.0.0.0"
	}
	return []string{
		kube, "apiserver",
		"--etcd-servers=" + etcd,
		"--bind-address=" + bind,
		"--secure-port=" + port,
		"--advertise-address=" + connectHost(host),
		"--tls-cert-file=" + c.serverCert,
		"--tls-private-key-file=" + c.serverKey,
		"--client-ca-file=" + c.caCert,
		"--service-account-key-file=" + c.saKey,
		"--service-account-signing-key-file=" + c.saKey,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--authorization-mode=Node,RBAC",
		"--anonymous-auth=false",
		"--allow-privileged=true",
		"--service-cluster-ip-range=10.43.0.0/16",
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--enable-priority-and-fairness=false",
		"--storage-backend=etcd3",
		"--watch-cache=true",
	}
}

// certFiles are the embedded control plane's certificates and keys.
type certFiles struct {
	caCert                string
	serverCert, serverKey string
	adminCert, adminKey   string
	saKey                 string
	caPool                *x509.CertPool
}

// issueCerts makes (or keeps) the CA, the API server's serving
// certificate, the admin client certificate and the service-account key.
func issueCerts(dir, host string) (certFiles, error) {
	ca, err := pki.LoadOrCreateCA(dir, "ote")
	if err != nil {
		return certFiles{}, fmt.Errorf("serve: CA: %w", err)
	}
	c := certFiles{caCert: filepath.Join(dir, "ca.crt"), caPool: x509.NewCertPool()}
	c.caPool.AddCert(ca.Cert)
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 43, 0, 1)}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		ips = append(ips, ip)
	}
	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}
	if h, err := os.Hostname(); err == nil {
		dns = append(dns, h)
	}
	year := 365 * 24 * time.Hour
	if c.serverCert, c.serverKey, err = ca.IssueFiles(dir, "apiserver", pki.Request{
		CommonName: "kube-apiserver", DNSNames: dns, IPs: ips, Server: true, Validity: year,
	}); err != nil {
		return c, err
	}
	if c.adminCert, c.adminKey, err = ca.IssueFiles(dir, "admin", pki.Request{
		CommonName: "ote-admin", Organization: []string{"system:masters"}, Client: true, Validity: year,
	}); err != nil {
		return c, err
	}
	c.saKey = filepath.Join(dir, "service-account.key")
	if _, err := os.Stat(c.saKey); errors.Is(err, os.ErrNotExist) {
		// SEC1, not PKCS#8: the API server reads this file for the public
		// key too, and that reader takes only SEC1 for EC keys.
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return c, err
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return c, err
		}
		if err := pki.WriteFileAtomic(c.saKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return c, err
		}
	}
	return c, nil
}

func adminHTTPClient(c certFiles) (*http.Client, error) {
	pair, err := tls.LoadX509KeyPair(c.adminCert, c.adminKey)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: c.caPool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
		}},
	}, nil
}

func writeKubeconfig(path, server string, c certFiles) error {
	read := func(p string) []byte {
		b, _ := os.ReadFile(p)
		return b
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["ote"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: read(c.caCert)}
	kc.AuthInfos["ote-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: read(c.adminCert), ClientKeyData: read(c.adminKey)}
	kc.Contexts["ote"] = &clientcmdapi.Context{Cluster: "ote", AuthInfo: "ote-admin"}
	kc.CurrentContext = "ote"
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(path, b, 0o600)
}
