// Command sonde is a live network capture sensor: it captures packets on the
// host's interfaces through AF_PACKET, rolls them into a ring of pcap files on
// a volume, and serves Prometheus metrics and a health API.
//
// main only parses configuration and wires components; every component is
// started on one context and stopped by cancelling it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/exporter"
	"github.com/sonde-project/sonde/internal/api"
	"github.com/sonde-project/sonde/internal/config"
	"github.com/sonde-project/sonde/internal/extract"
	"github.com/sonde-project/sonde/internal/logging"
	"github.com/sonde-project/sonde/internal/offload"
	"github.com/sonde-project/sonde/internal/pcapio"
	"github.com/sonde-project/sonde/internal/privilege"
	"github.com/sonde-project/sonde/internal/report"
	"github.com/sonde-project/sonde/internal/ring"
)

// version is set by the linker (-X main.version=...); the revision comes
// from the VCS stamp Go embeds at build time.
var version = ""

// Exit statuses: 2 is a usage or configuration error, as with flag parsing.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `sonde: live network capture sensor

Usage:
  sonde run [flags]           capture, roll pcap files, serve metrics and health
  sonde fleet [flags]         serve the API of many sensors as one (merged windows, captures, reports)
  sonde config check [flags]  validate the configuration and print it; capture nothing
  sonde healthcheck [--ready]  ask a running sonde for its health (exit 0 when healthy)
  sonde version               print the version
  sonde help                  this text; 'sonde run --help' lists every setting
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return runDaemon(args[1:], stdout, stderr)
	case "analyze":
		return analyzeCmd(args[1:], stdout, stderr)
	case "fleet":
		return runFleet(args[1:], stdout, stderr)
	case "config":
		if len(args) < 2 || args[1] != "check" {
			fmt.Fprintf(stderr, "sonde: unknown config command %q: want 'sonde config check'\n", stringAt(args, 1))
			return exitUsage
		}
		return configCheck(args[2:], stdout, stderr)
	case "healthcheck":
		return healthCmd(args[1:], stdout, stderr)
	case "version", "--version":
		b := exporter.ReadBuildInfo(version)
		fmt.Fprintf(stdout, "sonde %s (revision %s, %s, %s/%s)\n", b.Version, b.Revision, b.GoVersion, runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "sonde: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

func stringAt(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}

// loadConfig loads and validates the configuration; ok is false when the
// caller should exit with the returned status (help printed, or an error).
func loadConfig(args []string, stdout, stderr io.Writer) (cfg *config.Config, status int, ok bool) {
	cfg, err := config.Load(args, os.LookupEnv)
	if errors.Is(err, config.ErrHelp) {
		config.Usage(stdout)
		return nil, exitOK, false
	}
	if err != nil {
		fmt.Fprintf(stderr, "sonde: %v\n", err)
		return nil, exitUsage, false
	}
	if len(cfg.Interfaces) == 0 {
		name, err := config.DefaultRouteInterface()
		if err != nil {
			fmt.Fprintf(stderr, "sonde: no --interface given and the default-route interface could not be found: %v\n", err)
			return nil, exitUsage, false
		}
		cfg.Interfaces = []string{name}
	}
	return cfg, exitOK, true
}

func configCheck(args []string, stdout, stderr io.Writer) int {
	cfg, status, ok := loadConfig(args, stdout, stderr)
	if !ok {
		return status
	}
	rc := ringConfig(cfg)
	if err := rc.Validate(); err != nil {
		fmt.Fprintf(stderr, "sonde: %v\n", err)
		return exitUsage
	}
	out, err := cfg.YAML()
	if err != nil {
		fmt.Fprintf(stderr, "sonde: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "# configuration is valid\n%s", out)
	if cfg.Offload() {
		src := "environment AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"
		if cfg.S3AccessKeyFile != "" {
			src = "files " + cfg.S3AccessKeyFile + ", " + cfg.S3SecretKeyFile
		}
		fmt.Fprintf(stdout, "# s3 credentials: from %s (REDACTED)\n", src)
	}
	return exitOK
}

// offloadConfig is the object storage configuration, with the credentials
// read from their files (while still privileged: they are typically
// readable by root only) or taken from the environment.
func offloadConfig(cfg *config.Config) (offload.Config, error) {
	oc := offload.Config{
		Endpoint: cfg.S3Endpoint, Insecure: cfg.S3Insecure, Bucket: cfg.S3Bucket, Prefix: cfg.S3Prefix, Region: cfg.S3Region,
		PathStyle: cfg.S3PathStyle, CAFile: cfg.S3CAFile, Compress: cfg.S3Compress, Workers: cfg.S3UploadWorkers, MaxAge: cfg.S3MaxAge,
		Node: cfg.NodeName, DataDir: cfg.DataDir, ReportsDir: filepath.Join(cfg.DataDir, "reports"),
		AccessKey: string(cfg.S3AccessKey), SecretKey: string(cfg.S3SecretKey), SessionToken: string(cfg.S3SessionToken),
	}
	if cfg.S3AccessKeyFile != "" {
		for _, f := range []struct {
			dst        *string
			path, flag string
		}{{&oc.AccessKey, cfg.S3AccessKeyFile, "s3-access-key-file"}, {&oc.SecretKey, cfg.S3SecretKeyFile, "s3-secret-key-file"}} {
			b, err := os.ReadFile(f.path)
			if err != nil {
				return oc, usageError{fmt.Errorf("invalid --%s %q: %w", f.flag, f.path, err)}
			}
			if *f.dst = strings.TrimSpace(string(b)); *f.dst == "" {
				return oc, usageError{fmt.Errorf("invalid --%s %q: the file is empty", f.flag, f.path)}
			}
		}
		oc.SessionToken = ""
	}
	if cfg.S3CAFile != "" {
		// Read now, as root; the client reads it again at New, so check here
		// that it is readable and holds a certificate.
		if _, err := os.ReadFile(cfg.S3CAFile); err != nil {
			return oc, usageError{fmt.Errorf("invalid --s3-ca-file %q: %w", cfg.S3CAFile, err)}
		}
	}
	return oc, nil
}

func ringConfig(cfg *config.Config) ring.Config {
	return ring.Config{
		Dir:             cfg.DataDir,
		Node:            cfg.NodeName,
		Format:          pcapio.Format(cfg.FileFormat),
		FileMaxBytes:    int64(cfg.FileMaxBytes),
		FileMaxDuration: cfg.FileMaxDuration,
		MaxBytes:        int64(cfg.RingMaxBytes),
		MaxFiles:        cfg.RingMaxFiles,
		MaxAge:          cfg.RingMaxAge,
		MinFreePercent:  float64(cfg.MinFreePercent),
		PinMaxBytes:     int64(cfg.PinMaxBytes),
		QueueBytes:      int64(cfg.WriteQueueBytes),
	}
}

func runDaemon(args []string, stdout, stderr io.Writer) int {
	cfg, status, ok := loadConfig(args, stdout, stderr)
	if !ok {
		return status
	}
	log, err := logging.New(cfg.LogLevel, cfg.LogFormat, os.Stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sonde: %v\n", err)
		return exitUsage
	}
	defer log.Sync() //nolint:errcheck // nothing to do if stderr is gone
	if err := daemon(args, cfg, log); err != nil {
		log.Error("sonde stopped", zap.Error(err))
		var usage usageError
		if errors.As(err, &usage) {
			return exitUsage
		}
		return exitFailed
	}
	return exitOK
}

// reload is SIGHUP: the configuration is read again from the same flags,
// environment and file. Retention applies at once (capture is not touched,
// so no packet is lost); a configuration that does not validate is refused
// whole and the running one kept; settings that only a restart can change
// are named in a warning.
func reload(args []string, cur *config.Config, rg *ring.Ring, la *liveAnalysis, log *zap.Logger) {
	next, err := config.Load(args, os.LookupEnv)
	if err == nil && len(next.Interfaces) == 0 {
		next.Interfaces = cur.Interfaces // the default-route interface, resolved at start
	}
	if err == nil {
		err = rg.SetRetention(retention(next))
	}
	if err != nil {
		log.Error("configuration reload rejected; the running configuration is kept", zap.Error(err))
		return
	}
	if changed := restartOnly(cur, next); len(changed) > 0 {
		log.Warn("configuration reloaded, but these settings change only on restart", zap.Strings("settings", changed))
	}
	cur.RingMaxBytes, cur.RingMaxFiles, cur.RingMaxAge, cur.MinFreePercent = next.RingMaxBytes, next.RingMaxFiles, next.RingMaxAge, next.MinFreePercent
	if la != nil && next.Anomaly != cur.Anomaly {
		la.reload(next)
		cur.Anomaly = next.Anomaly
		log.Info("anomaly thresholds reloaded", zap.String("anomaly", next.Anomaly))
	}
	log.Info("configuration reloaded", zap.Stringer("ring_max_bytes", next.RingMaxBytes), zap.Int("ring_max_files", next.RingMaxFiles),
		zap.Duration("ring_max_age", next.RingMaxAge), zap.Int("min_free_percent", next.MinFreePercent))
}

func retention(c *config.Config) ring.Retention {
	return ring.Retention{
		MaxBytes: int64(c.RingMaxBytes), MaxFiles: c.RingMaxFiles, MaxAge: c.RingMaxAge, MinFreePercent: float64(c.MinFreePercent),
	}
}

// restartOnly names the settings that differ between a and b other than the
// ones a reload applies.
func restartOnly(a, b *config.Config) []string {
	reloadable := map[string]bool{"RingMaxBytes": true, "RingMaxFiles": true, "RingMaxAge": true, "MinFreePercent": true, "ConfigFile": true, "Anomaly": true}
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var out []string
	for i := 0; i < va.NumField(); i++ {
		f := va.Type().Field(i)
		if !f.IsExported() || reloadable[f.Name] {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, f.Name)
		}
	}
	return out
}

// usageError is a configuration error found only once the interfaces can be
// inspected (a filter that cannot apply to an interface's link type); it
// exits with the usage status, like any other bad setting.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// health is what the API reads: capture state, ring state, and whether the
// ring can take a new file.
type health struct {
	*capture.Capture
	*ring.Ring
}

func daemon(args []string, cfg *config.Config, log *zap.Logger) error {
	start := time.Now()
	rcfg := ringConfig(cfg)
	if err := rcfg.Validate(); err != nil {
		return err
	}
	var err error
	var (
		filter     capture.Filter
		pcapFilter string
		pf         *prefilters
		mode       = filterMode{Mode: "classic"}
	)
	if cfg.Engine == capture.EnginePcap {
		pcapFilter, mode.Mode = cfg.Filter, "libpcap"
	} else if filter, pf, mode, err = buildFilter(cfg, log); err != nil {
		return err
	}
	if pf != nil {
		defer pf.Close()
	}
	capCfg := capture.Config{
		Interfaces:   cfg.Interfaces,
		Workers:      cfg.WorkerCount(),
		Promisc:      cfg.Promisc,
		Snaplen:      cfg.Snaplen,
		RingBytes:    int64(cfg.CaptureRingBytes),
		BlockBytes:   int(cfg.CaptureBlockBytes),
		BlockTimeout: cfg.CaptureBlockTimeout,
		Engine:       cfg.Engine,
		Filter:       filter,
		PcapFilter:   pcapFilter,
	}
	// Privileged setup first: capture sockets (and eBPF programs), the
	// listener, keys. The data directory is opened only after the privilege
	// drop, so every file in it is created by the user sonde runs as.
	cp, err := capture.New(capCfg, log.With(zap.String("component", "capture")), nil)
	if errors.Is(err, capture.ErrFilter) {
		return usageError{err}
	}
	if err != nil {
		return fmt.Errorf("open capture: %w", err)
	}
	defer cp.Close()
	// The listener too is opened before privileges go, so a port below 1024
	// works and a port in use is reported before capture starts.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	// API tokens and TLS keys are read while still privileged: they are
	// typically readable by root only.
	apiOpts, err := apiOptions(cfg, api.Options{})
	if err != nil {
		return err
	}
	var ocfg offload.Config
	if cfg.Offload() {
		if ocfg, err = offloadConfig(cfg); err != nil {
			return err
		}
	}
	if cfg.User != "" {
		uid, gid, err := privilege.ParseUser(cfg.User)
		if err != nil {
			return usageError{err}
		}
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return fmt.Errorf("create the data directory: %w", err)
		}
		if err := privilege.PrepareDir(cfg.DataDir, uid, gid); err != nil {
			return err
		}
		if err := privilege.Drop(uid, gid); err != nil {
			return fmt.Errorf("drop privileges: %w", err)
		}
		log.Info("dropped privileges: running without capabilities", zap.Int("uid", uid), zap.Int("gid", gid))
	}
	// The offloader exists before the ring opens: the ring's first
	// retention pass already asks it what is uploaded.
	var off *offload.Offloader
	if cfg.Offload() {
		if off, err = offload.New(ocfg, log, nil); err != nil {
			return fmt.Errorf("object storage: %w", err)
		}
		rcfg.Offload = off
	}
	rg, err := ring.Open(rcfg, log.With(zap.String("component", "ring")))
	if err != nil {
		return fmt.Errorf("open the data directory: %w", err)
	}
	var la *liveAnalysis
	if cfg.Analysis {
		if la, err = newLiveAnalysis(cfg, rg, log.With(zap.String("component", "analysis"))); err != nil {
			return err
		}
	}
	cp.SetConsumers(func(w capture.Worker) []capture.Consumer {
		cs := []capture.Consumer{rg.NewStream(w.Interface, w.Index, w.LinkType, w.Snaplen, w.KernelDrops)}
		if la != nil {
			if a := la.consumer(w); a != nil {
				cs = append(cs, a)
			}
		}
		return cs
	})

	build := exporter.ReadBuildInfo(version)
	reg := prometheus.NewRegistry()
	if err := exporter.Register(reg, build, cp, rg); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	if la != nil {
		opts := exporter.AnalysisOptions{TopTalkers: cfg.MetricsTopTalkers, Window: cfg.Window}
		if err := reg.Register(exporter.NewAnalysisCollector(la.eng, la.det, opts)); err != nil {
			return fmt.Errorf("register analysis metrics: %w", err)
		}
	}
	if pf != nil {
		if err := reg.Register(exporter.NewPrefilterCollector(pf)); err != nil {
			return fmt.Errorf("register prefilter metrics: %w", err)
		}
	}
	if off != nil {
		if err := reg.Register(off.Collector()); err != nil {
			return fmt.Errorf("register offload metrics: %w", err)
		}
	}
	apiOpts.Filter = api.FilterHealth{Mode: mode.Mode, Expression: cfg.Filter, Note: mode.Note}
	apiOpts.Listen, apiOpts.Listener, apiOpts.Version, apiOpts.DataDir, apiOpts.MinFreePercent = cfg.Listen, ln, build.Version, cfg.DataDir, cfg.MinFreePercent
	apiOpts.Store = rg
	if off != nil {
		// Windows and reports read what local retention deleted from the
		// store: listed from the catalog, opened locally or else remotely.
		root, err := os.OpenRoot(cfg.DataDir)
		if err != nil {
			return fmt.Errorf("open the data directory: %w", err)
		}
		defer root.Close()
		apiOpts.Store, apiOpts.Opener = off.Store(rg), off.Opener(extract.Dir(root))
	}
	// Reports live beside the ring, created after the privilege drop.
	rq, err := report.New(report.Config{
		Dir: filepath.Join(cfg.DataDir, "reports"), MaxQueue: cfg.MaxQueueSize, Workers: cfg.ReportWorkers,
		TTL: time.Duration(cfg.ReportTTLHours) * time.Hour, MaxUploadBytes: int64(cfg.MaxUploadSizeMB) << 20,
		Window: cfg.Window, MaxFlows: cfg.MaxFlows,
	}, log.With(zap.String("component", "reports")))
	if err != nil {
		return err
	}
	apiOpts.Reports = rq
	srv := api.New(apiOpts, log.With(zap.String("component", "api")), reg, health{cp, rg})
	defer srv.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("sonde started", zap.String("version", build.Version), zap.Strings("interfaces", cfg.Interfaces),
		zap.String("data_dir", cfg.DataDir), zap.String("listen", cfg.Listen))

	// One errgroup: a component that fails (the listener cannot bind, say)
	// cancels the others. On a signal the capture workers stop reading and
	// close their streams; the ring then drains, publishes the open files and
	// returns, so every packet read is on disk before the process exits.
	g, gctx := errgroup.WithContext(ctx)
	// The event sink outlives capture: the analyzers publish their last
	// window when capture closes them, and its events must still be written.
	sinkCtx, stopSink := context.WithCancel(context.Background())
	defer stopSink()
	g.Go(func() error { defer stopSink(); return cp.Run(gctx) })
	if la != nil {
		g.Go(func() error { return la.Run(sinkCtx) })
	}
	g.Go(func() error { return rg.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return rq.Run(gctx) })
	if off != nil {
		g.Go(func() error { return off.Run(gctx, rg) })
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				reload(args, cfg, rg, la, log)
			}
		}
	})
	err = g.Wait()
	if err == nil {
		log.Info("sonde stopped cleanly", zap.Duration("uptime", time.Since(start)))
	}
	return err
}
