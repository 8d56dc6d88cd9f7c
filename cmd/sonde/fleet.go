package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/sonde-project/sonde/exporter"
	"github.com/sonde-project/sonde/internal/api"
	"github.com/sonde-project/sonde/internal/config"
	"github.com/sonde-project/sonde/internal/fleet"
	"github.com/sonde-project/sonde/internal/logging"
	"github.com/sonde-project/sonde/internal/report"
)

// fleetSettings are the settings of `sonde fleet`, each from a flag, else
// its environment variable, else the default.
type fleetSettings struct {
	listen, members, membersDNS, membersK8s, k8sAPI  string
	memberPort                                       int
	memberTokenFile, memberCA, memberCert, memberKey string
	memberTLS                                        bool
	memberTimeout, memberIdle, memberPoll            time.Duration
	apiTokenFile                                     string
	apiAuth, apiAuthOps                              bool
	tlsCert, tlsKey, tlsClientCA                     string
	maxWindow                                        time.Duration
	maxBytes, reportMaxBytes                         config.Size
	dataDir                                          string
	maxQueue, reportWorkers                          int
	reportTTL                                        time.Duration
	logLevel, logFormat                              string
}

// fleetFlags declares every setting on fs with its environment variable;
// set returns what went wrong reading the environment.
func fleetFlags(fs *flag.FlagSet, s *fleetSettings, lookup func(string) (string, bool)) func() []string {
	var errs []string
	env := func(name, flagName string, set func(string) error) string {
		if v, ok := lookup(name); ok {
			if err := set(v); err != nil {
				errs = append(errs, fmt.Sprintf("invalid --%s %q (env %s): %v", flagName, v, name, err))
			}
		}
		return name
	}
	str := func(p *string, name, envName, def, usage string) {
		*p = def
		env(envName, name, func(v string) error { *p = v; return nil })
		fs.StringVar(p, name, *p, usage+" (env "+envName+")")
	}
	dur := func(p *time.Duration, name, envName string, def time.Duration, usage string) {
		*p = def
		env(envName, name, func(v string) (err error) { *p, err = parseDuration(v); return })
		fs.Func(name, fmt.Sprintf("%s (env %s, default %s)", usage, envName, def), func(v string) (err error) { *p, err = parseDuration(v); return })
	}
	size := func(p *config.Size, name, envName string, def config.Size, usage string) {
		*p = def
		env(envName, name, func(v string) (err error) { *p, err = config.ParseSize(v); return })
		fs.Func(name, fmt.Sprintf("%s (env %s, default %s)", usage, envName, def), func(v string) (err error) { *p, err = config.ParseSize(v); return })
	}
	integer := func(p *int, name, envName string, def int, usage string) {
		*p = def
		env(envName, name, func(v string) (err error) { *p, err = strconv.Atoi(v); return })
		fs.IntVar(p, name, *p, usage+" (env "+envName+")")
	}
	boolean := func(p *bool, name, envName string, def bool, usage string) {
		*p = def
		env(envName, name, func(v string) (err error) { *p, err = strconv.ParseBool(v); return })
		fs.BoolVar(p, name, *p, usage+" (env "+envName+")")
	}
	str(&s.listen, "listen", "SONDE_FLEET_LISTEN", ":9751", "host:port of the fleet API")
	str(&s.members, "members", "SONDE_FLEET_MEMBERS", "", "members as host:port,host:port,...")
	str(&s.membersDNS, "members-dns", "SONDE_FLEET_MEMBERS_DNS", "", "members as NAME:PORT: every A/AAAA record of NAME (a headless service), resolved per request")
	str(&s.membersK8s, "members-k8s", "SONDE_FLEET_MEMBERS_K8S", "", "members as NAMESPACE/LABELSELECTOR: the running pods, from the Kubernetes API with the pod's service account")
	integer(&s.memberPort, "member-port", "SONDE_FLEET_MEMBER_PORT", 9750, "the members' API port, with --members-k8s")
	str(&s.k8sAPI, "k8s-api", "SONDE_FLEET_K8S_API", "", "Kubernetes API URL (default: the in-cluster service)")
	str(&s.memberTokenFile, "member-token-file", "SONDE_FLEET_MEMBER_TOKEN_FILE", "", "bearer token sent to members (the first token of the file)")
	str(&s.memberCA, "member-ca-file", "SONDE_FLEET_MEMBER_CA_FILE", "", "CA that signed the members' certificates (implies --member-tls)")
	str(&s.memberCert, "member-cert-file", "SONDE_FLEET_MEMBER_CERT_FILE", "", "client certificate for members (mutual TLS; implies --member-tls)")
	str(&s.memberKey, "member-key-file", "SONDE_FLEET_MEMBER_KEY_FILE", "", "key of --member-cert-file")
	boolean(&s.memberTLS, "member-tls", "SONDE_FLEET_MEMBER_TLS", false, "reach members over HTTPS")
	dur(&s.memberTimeout, "member-timeout", "SONDE_FLEET_MEMBER_TIMEOUT", fleet.DefaultTimeout, "longest wait for a member's response headers")
	dur(&s.memberIdle, "member-idle-timeout", "SONDE_FLEET_MEMBER_IDLE_TIMEOUT", fleet.DefaultIdleTimeout, "longest pause in a member's stream")
	dur(&s.memberPoll, "member-poll-interval", "SONDE_FLEET_MEMBER_POLL_INTERVAL", fleet.DefaultPollInterval, "how often every member's /api/health is polled (sonde_fleet_member_up, the fleet's /api/health)")
	str(&s.apiTokenFile, "api-token-file", "SONDE_FLEET_API_TOKEN_FILE", "", "the fleet's own bearer tokens, one per line")
	boolean(&s.apiAuth, "api-auth", "SONDE_FLEET_API_AUTH", true, "require a token (or client certificate); false opens the fleet API to anyone")
	boolean(&s.apiAuthOps, "api-auth-ops", "SONDE_FLEET_API_AUTH_OPS", false, "require the token on /metrics, /api/health and /api/ready too")
	str(&s.tlsCert, "tls-cert", "SONDE_FLEET_TLS_CERT", "", "serve HTTPS with this certificate")
	str(&s.tlsKey, "tls-key", "SONDE_FLEET_TLS_KEY", "", "key of --tls-cert")
	str(&s.tlsClientCA, "tls-client-ca", "SONDE_FLEET_TLS_CLIENT_CA", "", "require client certificates signed by this CA")
	dur(&s.maxWindow, "api-max-window", "SONDE_FLEET_API_MAX_WINDOW", api.DefaultMaxWindow, "longest window served")
	size(&s.maxBytes, "api-max-bytes", "SONDE_FLEET_API_MAX_BYTES", api.DefaultMaxBytes, "most bytes of one merged window")
	str(&s.dataDir, "data-dir", "SONDE_FLEET_DATA_DIR", "./fleet-data", "directory of the fleet's reports")
	size(&s.reportMaxBytes, "report-max-bytes", "SONDE_FLEET_REPORT_MAX_BYTES", 1<<30, "largest merged window a report reads")
	integer(&s.maxQueue, "max-queue-size", "SONDE_FLEET_MAX_QUEUE_SIZE", report.DefaultMaxQueue, "report jobs waiting or running at most")
	integer(&s.reportWorkers, "report-workers", "SONDE_FLEET_REPORT_WORKERS", report.DefaultWorkers, "report jobs run at once")
	dur(&s.reportTTL, "report-ttl", "SONDE_FLEET_REPORT_TTL", report.DefaultTTL, "reports are deleted after this")
	str(&s.logLevel, "log-level", "SONDE_LOG_LEVEL", "info", "debug, info, warn, error")
	str(&s.logFormat, "log-format", "SONDE_LOG_FORMAT", "auto", "json, console or auto")
	return func() []string { return errs }
}

func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, errors.New("want a positive duration such as 10s")
	}
	return d, nil
}

// fleetSetup is what runFleet starts: the server and its report queue.
type fleetSetup struct {
	cfg     fleet.Config
	reports *report.Queue
}

// fleetConfig checks the settings and builds the fleet's configuration;
// every error is a usageError naming the setting.
func fleetConfig(s *fleetSettings, log *zap.Logger) (*fleetSetup, error) {
	var disc fleet.Discovery
	sources := 0
	for _, v := range []string{s.members, s.membersDNS, s.membersK8s} {
		if v != "" {
			sources++
		}
	}
	if sources != 1 {
		return nil, usageError{errors.New("give the members with exactly one of --members, --members-dns and --members-k8s")}
	}
	switch {
	case s.members != "":
		var list fleet.Static
		for _, m := range strings.Split(s.members, ",") {
			m = strings.TrimSpace(m)
			if _, port, err := net.SplitHostPort(m); err != nil || port == "" {
				return nil, usageError{fmt.Errorf("invalid --members entry %q: want host:port", m)}
			}
			list = append(list, m)
		}
		disc = list
	case s.membersDNS != "":
		host, port, err := net.SplitHostPort(s.membersDNS)
		p, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
			return nil, usageError{fmt.Errorf("invalid --members-dns %q: want NAME:PORT, such as sonde-members.monitoring.svc.cluster.local:9750", s.membersDNS)}
		}
		disc = fleet.DNS{Name: host, Port: p}
	default:
		ns, sel, ok := strings.Cut(s.membersK8s, "/")
		if !ok || ns == "" || sel == "" {
			return nil, usageError{fmt.Errorf("invalid --members-k8s %q: want NAMESPACE/LABELSELECTOR, such as monitoring/app.kubernetes.io/name=sonde", s.membersK8s)}
		}
		if s.memberPort < 1 || s.memberPort > 65535 {
			return nil, usageError{fmt.Errorf("invalid --member-port %d: want 1-65535", s.memberPort)}
		}
		k := &fleet.Kubernetes{API: s.k8sAPI, Namespace: ns, Selector: sel, Port: s.memberPort}
		if s.k8sAPI == "" {
			var err error
			if k, err = fleet.InCluster(ns, sel, s.memberPort); err != nil {
				return nil, usageError{fmt.Errorf("--members-k8s: %w (or give --k8s-api)", err)}
			}
		} else if _, err := os.Stat(fleet.ServiceAccount + "/token"); err == nil {
			k.TokenFile, k.CAFile = fleet.ServiceAccount+"/token", fleet.ServiceAccount+"/ca.crt"
		}
		disc = k
	}

	client := &fleet.Client{Scheme: "http", Timeout: s.memberTimeout, IdleTimeout: s.memberIdle}
	if s.memberTokenFile != "" {
		toks, err := api.ReadTokenFile(s.memberTokenFile)
		if err != nil {
			return nil, usageError{fmt.Errorf("--member-token-file: %w", err)}
		}
		client.Token = toks[0]
	}
	if (s.memberCert == "") != (s.memberKey == "") {
		return nil, usageError{errors.New("--member-cert-file and --member-key-file go together")}
	}
	if s.memberTLS || s.memberCA != "" || s.memberCert != "" {
		tc, err := fleet.ClientTLS(s.memberCA, s.memberCert, s.memberKey)
		if err != nil {
			return nil, usageError{err}
		}
		client.Scheme, client.HTTP = "https", fleet.NewHTTPClient(tc)
	} else {
		client.HTTP = fleet.NewHTTPClient(nil)
	}

	reg := prometheus.NewRegistry()
	if err := exporter.Register(reg, exporter.ReadBuildInfo(version), nil, nil); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	cfg := fleet.Config{Discovery: disc, Client: client, Listen: s.listen, AuthDisabled: !s.apiAuth, AuthOps: s.apiAuthOps,
		PollInterval: s.memberPoll, Registry: reg, MaxWindow: s.maxWindow, MaxBytes: int64(s.maxBytes), Version: versionString()}
	if _, _, err := net.SplitHostPort(s.listen); err != nil {
		return nil, usageError{fmt.Errorf("invalid --listen %q: want host:port such as :9751", s.listen)}
	}
	if s.apiTokenFile != "" {
		toks, err := api.ReadTokenFile(s.apiTokenFile)
		if err != nil {
			return nil, usageError{fmt.Errorf("--api-token-file: %w", err)}
		}
		cfg.Tokens = toks
	}
	if (s.tlsCert == "") != (s.tlsKey == "") || s.tlsClientCA != "" && s.tlsCert == "" {
		return nil, usageError{errors.New("--tls-cert and --tls-key go together, and --tls-client-ca needs them")}
	}
	if s.tlsCert != "" {
		tc, err := api.TLSConfig(s.tlsCert, s.tlsKey, s.tlsClientCA)
		if err != nil {
			return nil, usageError{err}
		}
		cfg.TLS = tc
	}
	if s.maxQueue < 1 || s.reportWorkers < 1 {
		return nil, usageError{fmt.Errorf("invalid --max-queue-size %d or --report-workers %d: want at least 1", s.maxQueue, s.reportWorkers)}
	}
	q, err := report.New(report.Config{Dir: filepath.Join(s.dataDir, "reports"), MaxQueue: s.maxQueue, Workers: s.reportWorkers,
		TTL: s.reportTTL, MaxUploadBytes: int64(s.reportMaxBytes)}, log.Named("report"))
	if err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", s.dataDir, err)
	}
	cfg.Reports = q
	return &fleetSetup{cfg: cfg, reports: q}, nil
}

func versionString() string {
	if version != "" {
		return version
	}
	return "dev"
}

const fleetUsage = `Usage: sonde fleet [flags]

Serves the /api/v1 read API of many sensors as one: windows of every member
merged into one pcapng (an interface per node and interface), the union of
their capture files, member status, and reports over all nodes' packets.
Give the members with exactly one of --members, --members-dns, --members-k8s.
Flags take precedence over the environment.

`

// runFleet is `sonde fleet`.
func runFleet(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sonde fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s fleetSettings
	envErrs := fleetFlags(fs, &s, os.LookupEnv)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), fleetUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sonde fleet: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	// An environment variable a flag overrides may be malformed: only
	// report those the flags left in force.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	bad := false
	for _, e := range envErrs() {
		name := strings.TrimPrefix(strings.Fields(e)[1], "--")
		if !set[name] {
			fmt.Fprintf(stderr, "sonde fleet: %s\n", e)
			bad = true
		}
	}
	if bad {
		return exitUsage
	}
	log, err := logging.New(s.logLevel, s.logFormat, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sonde fleet: invalid --log-level or --log-format: %v\n", err)
		return exitUsage
	}
	defer log.Sync()
	setup, err := fleetConfig(&s, log)
	if err != nil {
		fmt.Fprintf(stderr, "sonde fleet: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitFailed
	}
	srv, err := fleet.New(setup.cfg, log.Named("fleet"))
	if err != nil {
		fmt.Fprintf(stderr, "sonde fleet: %v\n", err)
		return exitFailed
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(ctx) })
	g.Go(func() error { return setup.reports.Run(ctx) })
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("sonde fleet stopped", zap.Error(err))
		return exitFailed
	}
	return exitOK
}
