// Package config holds the one configuration of `sonde run` and loads it.
//
// Values come from four layers, each overriding the one before: the defaults
// in Default, an optional YAML file (--config or SONDE_CONFIG), environment
// variables, and command-line flags. Every value, whatever its layer, goes
// through the same parser, and every error names the setting, the value, where
// it came from and what is allowed. The package never reads the process
// environment itself: Load is given the arguments and an environment lookup.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sonde-project/sonde/analysis"
	"github.com/sonde-project/sonde/analysis/anomaly"
	"github.com/sonde-project/sonde/bpf"
	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/offload"
	"github.com/sonde-project/sonde/internal/privilege"
)

// Config is the effective configuration of `sonde run`. The YAML keys are the
// ones accepted in a configuration file.
type Config struct {
	// Interfaces to capture from. Empty means the interface of the default
	// route, which main resolves with DefaultRouteInterface.
	Interfaces []string `yaml:"interfaces"`
	DataDir    string   `yaml:"data_dir"`
	Listen     string   `yaml:"listen"`
	NodeName   string   `yaml:"node_name"`

	Snaplen int  `yaml:"snaplen"`
	Workers int  `yaml:"workers"` // 0 means runtime.NumCPU(); see WorkerCount
	Promisc bool `yaml:"promisc"`
	// User, when set ("UID" or "UID:GID"), is who sonde runs as once its
	// sockets are open: every capability is dropped too.
	User string `yaml:"user"`
	// Engine is the capture engine: afpacket (sonde's own reader) or pcap
	// (libpcap, in binaries built with -tags libpcap).
	Engine string `yaml:"engine"`
	// Prefilter is where the filter runs: classic BPF, or sonde's eBPF
	// program, which also counts every packet by class and can cut flows off
	// and sample.
	Prefilter         string `yaml:"prefilter"`
	FlowCutoffPackets int    `yaml:"flow_cutoff_packets"`
	FlowCutoffBytes   Size   `yaml:"flow_cutoff_bytes"`
	Sample            int    `yaml:"sample"`
	// PrefilterStats turns on the kernel's run-time statistics for BPF
	// programs, host-wide, so the prefilter's own cost can be exported.
	PrefilterStats bool `yaml:"prefilter_stats"`
	// Filter is a tcpdump filter expression compiled to classic BPF and
	// attached to every capture socket; empty captures everything.
	Filter string `yaml:"filter"`

	// TPACKET_V3 ring of each worker socket.
	CaptureRingBytes    Size          `yaml:"capture_ring_bytes"`
	CaptureBlockBytes   Size          `yaml:"capture_block_bytes"`
	CaptureBlockTimeout time.Duration `yaml:"capture_block_timeout"`

	FileFormat      string        `yaml:"file_format"`
	FileMaxBytes    Size          `yaml:"file_max_bytes"`    // 0: no size limit
	FileMaxDuration time.Duration `yaml:"file_max_duration"` // 0: no time limit

	RingMaxBytes   Size          `yaml:"ring_max_bytes"` // 0: unlimited
	RingMaxFiles   int           `yaml:"ring_max_files"` // 0: unlimited
	RingMaxAge     time.Duration `yaml:"ring_max_age"`   // 0: unlimited
	MinFreePercent int           `yaml:"min_free_percent"`

	WriteQueueBytes Size `yaml:"write_queue_bytes"` // per stream

	// The /api/v1 capture API: bearer tokens (one per line), whether they
	// are required (and on the operational endpoints too), limits, pin
	// budget (0: a tenth of RingMaxBytes), and optional (mutual) TLS.
	APITokenFile string        `yaml:"api_token_file"`
	APIAuth      bool          `yaml:"api_auth"`
	APIAuthOps   bool          `yaml:"api_auth_ops"`
	APIMaxWindow time.Duration `yaml:"api_max_window"`
	APIMaxBytes  Size          `yaml:"api_max_bytes"`
	PinMaxBytes  Size          `yaml:"pin_max_bytes"`
	TLSCert      string        `yaml:"tls_cert"`
	TLSKey       string        `yaml:"tls_key"`
	TLSClientCA  string        `yaml:"tls_client_ca"`

	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`

	// Analysis runs the traffic analysis engine and anomaly detection beside
	// the ring; Window is its reporting window and MaxFlows its flow table
	// bound over all workers (0: the engine's default).
	Analysis bool          `yaml:"analysis"`
	Window   time.Duration `yaml:"window"`
	MaxFlows int           `yaml:"max_flows"`
	// Anomaly overrides the anomaly thresholds: key=value;... (see
	// anomaly.Parse). SIGHUP applies a change without a restart.
	Anomaly string `yaml:"anomaly"`
	// MetricsTopTalkers exports the last window's N top talkers as series
	// labelled by address (0: off).
	MetricsTopTalkers int `yaml:"metrics_top_talkers"`
	// SnapshotOnAnomaly, when set, pins the files of every anomaly event's
	// window, widened by this much on both sides, for SnapshotTTL.
	SnapshotOnAnomaly time.Duration `yaml:"snapshot_on_anomaly"`
	SnapshotTTL       time.Duration `yaml:"snapshot_ttl"`

	// Reports (/api/v1/reports): the largest upload in MiB, how many
	// reports may be queued or running at once, how many run at once, and
	// how long a finished one is kept, in hours.
	MaxUploadSizeMB int `yaml:"max_upload_size_mb"`
	MaxQueueSize    int `yaml:"max_queue_size"`
	ReportWorkers   int `yaml:"report_workers"`
	ReportTTLHours  int `yaml:"report_ttl_hours"`

	// Object storage (S3, MinIO): off while S3Endpoint is empty. The
	// credentials are never settings: they come from AWS_ACCESS_KEY_ID,
	// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (Load's environment), or
	// from the files named by S3AccessKeyFile and S3SecretKeyFile, which main
	// reads.
	S3Endpoint      string `yaml:"s3_endpoint"`
	S3Insecure      bool   `yaml:"s3_insecure"`
	S3Bucket        string `yaml:"s3_bucket"`
	S3Prefix        string `yaml:"s3_prefix"`
	S3Region        string `yaml:"s3_region"`
	S3CAFile        string `yaml:"s3_ca_file"`
	S3PathStyle     bool   `yaml:"s3_path_style"`
	S3Compress      string `yaml:"s3_compress"`
	S3UploadWorkers int    `yaml:"s3_upload_workers"`
	// S3MaxAge deletes uploaded capture files whose last packet is older
	// (0: keep them, e.g. for a bucket lifecycle rule to expire).
	S3MaxAge        time.Duration `yaml:"s3_max_age"`
	S3AccessKeyFile string        `yaml:"s3_access_key_file"`
	S3SecretKeyFile string        `yaml:"s3_secret_key_file"`
	// Credentials from the environment; never printed.
	S3AccessKey    Secret `yaml:"-"`
	S3SecretKey    Secret `yaml:"-"`
	S3SessionToken Secret `yaml:"-"`

	// ConfigFile is the YAML file the configuration was read from, if any.
	ConfigFile string `yaml:"-"`

	// sources records, per flag name, where a non-default value came from,
	// and raw the text it was given as, so that errors quote the user.
	sources map[string]string
	raw     map[string]string
}

// Allowed values of the enumerated settings.
var (
	FileFormats = []string{"pcap", "pcapng"}
	LogLevels   = []string{"debug", "info", "warn", "error"}
	LogFormats  = []string{"auto", "json", "console"}
)

// Default returns the configuration used when nothing is set. NodeName is the
// host name, or empty if it cannot be read (Validate then asks for one).
func Default() *Config {
	host, _ := os.Hostname()
	return &Config{
		DataDir:             "./data",
		Listen:              ":9750",
		NodeName:            host,
		Snaplen:             262144,
		Workers:             0,
		Promisc:             true,
		Engine:              capture.EngineAFPacket,
		SnapshotTTL:         24 * time.Hour,
		Prefilter:           "classic",
		CaptureRingBytes:    64 * MiB,
		CaptureBlockBytes:   1 * MiB,
		CaptureBlockTimeout: 10 * time.Millisecond,
		FileFormat:          "pcap",
		FileMaxBytes:        100 * MiB,
		FileMaxDuration:     time.Minute,
		RingMaxBytes:        1 * GiB,
		RingMaxFiles:        0,
		RingMaxAge:          0,
		MinFreePercent:      10,
		WriteQueueBytes:     32 * MiB,
		APIAuth:             true,
		APIMaxWindow:        time.Hour,
		APIMaxBytes:         4 * GiB,
		LogLevel:            "info",
		LogFormat:           "auto",
		Analysis:            true,
		Window:              10 * time.Second,
		MaxUploadSizeMB:     100,
		MaxQueueSize:        8,
		ReportWorkers:       1,
		ReportTTLHours:      24,
		S3PathStyle:         true,
		S3Compress:          "none",
		S3UploadWorkers:     2,
	}
}

// Secret is a credential: it prints as "REDACTED", so that no log line or
// error can carry it by accident.
type Secret string

func (Secret) String() string   { return "REDACTED" }
func (Secret) GoString() string { return "REDACTED" }

// Offload reports whether object storage is configured.
func (c *Config) Offload() bool { return c.S3Endpoint != "" }

// WorkerCount is the number of capture workers per interface: Workers, or the
// number of CPUs when Workers is 0.
func (c *Config) WorkerCount() int {
	if c.Workers > 0 {
		return c.Workers
	}
	return runtime.NumCPU()
}

// Source says where the value of the setting named by its flag (for example
// "snaplen") came from: "default", "flag --snaplen", "env SONDE_SNAPLEN" or
// "config file PATH:LINE".
func (c *Config) Source(flag string) string {
	if s, ok := c.sources[flag]; ok {
		return s
	}
	return "default"
}

func (c *Config) setSource(flag, src string) {
	if c.sources == nil {
		c.sources = make(map[string]string)
	}
	c.sources[flag] = src
}

func (c *Config) setRaw(flag, v string) {
	if c.raw == nil {
		c.raw = make(map[string]string)
	}
	c.raw[flag] = strings.TrimSpace(v)
}

// shown is how an error quotes a size or duration: as the user wrote it
// ("1000KB"), or formatted if it was not read from text.
func (c *Config) shown(flag, formatted string) string {
	if r, ok := c.raw[flag]; ok {
		return r
	}
	return formatted
}

// invalid formats the one shape of error this package returns for a value.
func (c *Config) invalid(flag string, value any, allowed string) error {
	v := fmt.Sprint(value)
	if s, ok := value.(string); ok {
		v = strconv.Quote(s)
	}
	if src, ok := c.sources[flag]; ok {
		return fmt.Errorf("invalid --%s %s (%s): %s", flag, v, src, allowed)
	}
	return fmt.Errorf("invalid --%s %s: %s", flag, v, allowed)
}

// Validate checks every setting and returns all problems found, each naming
// the setting, its value, its source and what is allowed.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag string, value any, allowed string) {
		errs = append(errs, c.invalid(flag, value, allowed))
	}

	seen := make(map[string]bool)
	for _, name := range c.Interfaces {
		if !validInterfaceName(name) {
			bad("interface", name, "want an interface name of 1 to 15 characters without '/', ':' or whitespace")
		} else if seen[name] {
			bad("interface", name, "listed more than once")
		}
		seen[name] = true
	}
	if c.User != "" {
		if _, _, err := privilege.ParseUser(c.User); err != nil {
			bad("user", c.User, "want a numeric UID or UID:GID, such as 65532:65532")
		}
	}
	switch c.Engine {
	case capture.EngineAFPacket:
	case capture.EnginePcap:
		if !capture.PcapAvailable {
			bad("engine", c.Engine, "this binary was built without libpcap: rebuild with -tags libpcap, or use afpacket")
		}
	default:
		bad("engine", c.Engine, "want afpacket or pcap")
	}
	switch c.Prefilter {
	case "classic":
		if c.FlowCutoffPackets != 0 {
			bad("flow-cutoff-packets", c.FlowCutoffPackets, "needs --prefilter ebpf")
		}
		if c.FlowCutoffBytes != 0 {
			bad("flow-cutoff-bytes", c.FlowCutoffBytes, "needs --prefilter ebpf")
		}
		if c.Sample > 1 {
			bad("sample", c.Sample, "needs --prefilter ebpf")
		}
		if c.PrefilterStats {
			bad("prefilter-stats", c.PrefilterStats, "needs --prefilter ebpf")
		}
	case "ebpf":
		if c.Engine == capture.EnginePcap {
			bad("prefilter", c.Prefilter, "the eBPF prefilter needs --engine afpacket")
		}
	default:
		bad("prefilter", c.Prefilter, "want classic or ebpf")
	}
	if c.FlowCutoffPackets < 0 {
		bad("flow-cutoff-packets", c.FlowCutoffPackets, "want 0 (off) or a packet count")
	}
	if c.Sample < 0 {
		bad("sample", c.Sample, "want 0 or 1 (off), or N to keep 1 packet in N")
	}
	if c.Filter != "" && c.Engine != capture.EnginePcap {
		// libpcap checks its own (wider) syntax when the pcap engine opens.
		// Syntax is checked here for Ethernet; each interface's own link type
		// is checked again when the daemon compiles the filter for it.
		if _, err := bpf.Compile(c.Filter, bpf.LinkEthernet, c.Snaplen); err != nil {
			errs = append(errs, fmt.Errorf("invalid --filter (%s): %w", c.Source("filter"), err))
		}
	}
	if strings.TrimSpace(c.DataDir) == "" {
		bad("data-dir", c.DataDir, "want a directory path")
	}
	if err := checkListen(c.Listen); err != nil {
		bad("listen", c.Listen, err.Error())
	}
	if strings.TrimSpace(c.NodeName) == "" || len(c.NodeName) > 255 {
		bad("node-name", c.NodeName, "want a name of 1 to 255 characters (the host name could not be read)")
	}
	if c.Snaplen < 64 || c.Snaplen > 262144 {
		bad("snaplen", c.Snaplen, "want 64 to 262144")
	}
	if c.Workers < 0 || c.Workers > 256 {
		bad("workers", c.Workers, "want 0 (one per CPU) to 256")
	}

	blk := c.CaptureBlockBytes
	switch {
	case blk < 64*KiB || blk > 128*MiB || blk&(blk-1) != 0:
		bad("capture-block-bytes", c.shown("capture-block-bytes", FormatSize(blk)), "want a power of two from 64KiB to 128MiB")
	case int64(blk) < int64(c.Snaplen):
		bad("capture-block-bytes", c.shown("capture-block-bytes", FormatSize(blk)), fmt.Sprintf("want at least --snaplen (%d): a packet must fit in one block", c.Snaplen))
	case c.CaptureRingBytes < 4*blk:
		bad("capture-ring-bytes", c.shown("capture-ring-bytes", FormatSize(c.CaptureRingBytes)), fmt.Sprintf("want at least 4 blocks of --capture-block-bytes (%s)", FormatSize(4*blk)))
	}
	if c.CaptureBlockTimeout < time.Millisecond || c.CaptureBlockTimeout > time.Second {
		bad("capture-block-timeout", c.shown("capture-block-timeout", c.CaptureBlockTimeout.String()), "want a duration from 1ms to 1s")
	}

	if !oneOf(c.FileFormat, FileFormats) {
		bad("file-format", c.FileFormat, "want pcap or pcapng")
	}
	if c.FileMaxBytes != 0 && c.FileMaxBytes < 64*KiB {
		bad("file-max-bytes", c.shown("file-max-bytes", FormatSize(c.FileMaxBytes)), "want 0 (no limit) or at least 64KiB")
	}
	if c.FileMaxDuration != 0 && c.FileMaxDuration < time.Second {
		bad("file-max-duration", c.shown("file-max-duration", c.FileMaxDuration.String()), "want 0 (no limit) or at least 1s")
	}
	if c.FileMaxBytes == 0 && c.FileMaxDuration == 0 {
		errs = append(errs, fmt.Errorf("invalid --file-max-bytes 0 (%s) with --file-max-duration 0 (%s): want at least one of them set, or files never close",
			c.Source("file-max-bytes"), c.Source("file-max-duration")))
	}

	if c.RingMaxBytes < 0 {
		bad("ring-max-bytes", int64(c.RingMaxBytes), "want 0 (unlimited) or a positive size")
	} else if c.RingMaxBytes != 0 && c.FileMaxBytes != 0 && c.RingMaxBytes < c.FileMaxBytes {
		bad("ring-max-bytes", c.shown("ring-max-bytes", FormatSize(c.RingMaxBytes)), fmt.Sprintf("want 0 (unlimited) or at least --file-max-bytes (%s)", FormatSize(c.FileMaxBytes)))
	}
	if c.RingMaxFiles < 0 {
		bad("ring-max-files", c.RingMaxFiles, "want 0 (unlimited) or a positive count")
	}
	if c.RingMaxAge < 0 {
		bad("ring-max-age", c.shown("ring-max-age", c.RingMaxAge.String()), "want 0 (unlimited) or a positive duration")
	}
	if c.MinFreePercent < 0 || c.MinFreePercent > 99 {
		bad("min-free-percent", c.MinFreePercent, "want 0 to 99")
	}
	if c.WriteQueueBytes < 64*KiB {
		bad("write-queue-bytes", c.shown("write-queue-bytes", FormatSize(c.WriteQueueBytes)), "want at least 64KiB")
	}

	if c.APIMaxWindow <= 0 {
		bad("api-max-window", c.shown("api-max-window", c.APIMaxWindow.String()), "want a positive duration such as 1h")
	}
	if c.APIMaxBytes < 64*KiB {
		bad("api-max-bytes", c.shown("api-max-bytes", FormatSize(c.APIMaxBytes)), "want at least 64KiB")
	}
	if c.PinMaxBytes < 0 {
		bad("pin-max-bytes", int64(c.PinMaxBytes), "want 0 (a tenth of --ring-max-bytes) or a positive size")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, fmt.Errorf("invalid --tls-cert %q with --tls-key %q: want both set (HTTPS) or neither (HTTP)", c.TLSCert, c.TLSKey))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		bad("tls-client-ca", c.TLSClientCA, "needs --tls-cert and --tls-key: client certificates are only asked for over TLS")
	}

	if c.Window < time.Second || c.Window > time.Hour {
		bad("window", c.shown("window", c.Window.String()), "want a duration from 1s to 1h")
	}
	if c.MaxFlows != 0 && (c.MaxFlows < 16*c.WorkerCount()*max(1, len(c.Interfaces)) || c.MaxFlows > 1<<26) {
		bad("max-flows", c.MaxFlows, fmt.Sprintf("want 0 (the default, %d) or %d to %d", analysis.DefaultMaxFlows, 16*c.WorkerCount()*max(1, len(c.Interfaces)), 1<<26))
	}
	if _, err := anomaly.Parse(c.Anomaly); err != nil {
		errs = append(errs, fmt.Errorf("invalid --anomaly (%s): %w", c.Source("anomaly"), err))
	}
	if c.SnapshotOnAnomaly < 0 || c.SnapshotOnAnomaly > time.Hour {
		bad("snapshot-on-anomaly", c.SnapshotOnAnomaly, "want 0 (off) or how much before and after each event to keep, up to 1h")
	}
	if c.SnapshotTTL <= 0 {
		bad("snapshot-ttl", c.SnapshotTTL, "want how long anomaly snapshots are kept, such as 24h")
	}
	if c.SnapshotOnAnomaly > 0 && !c.Analysis {
		bad("snapshot-on-anomaly", c.SnapshotOnAnomaly, "needs --analysis")
	}
	if c.MetricsTopTalkers < 0 || c.MetricsTopTalkers > 100 {
		bad("metrics-top-talkers", c.MetricsTopTalkers, "want 0 (off) to 100")
	}
	if c.MaxUploadSizeMB < 1 || c.MaxUploadSizeMB > 1<<20 {
		bad("max-upload-size-mb", c.MaxUploadSizeMB, "want 1 to 1048576 (MiB)")
	}
	if c.MaxQueueSize < 1 || c.MaxQueueSize > 1024 {
		bad("max-queue-size", c.MaxQueueSize, "want 1 to 1024")
	}
	if c.ReportWorkers < 1 || c.ReportWorkers > 64 {
		bad("report-workers", c.ReportWorkers, "want 1 to 64")
	}
	if c.ReportTTLHours < 1 || c.ReportTTLHours > 8760 {
		bad("report-ttl-hours", c.ReportTTLHours, "want 1 to 8760 (a year)")
	}

	c.validateS3(bad, &errs)

	if !oneOf(c.LogLevel, LogLevels) {
		bad("log-level", c.LogLevel, "want debug, info, warn or error")
	}
	if !oneOf(c.LogFormat, LogFormats) {
		bad("log-format", c.LogFormat, "want auto, json or console")
	}
	return errors.Join(errs...)
}

func oneOf(s string, allowed []string) bool {
	for _, a := range allowed {
		if strings.EqualFold(s, a) {
			return true
		}
	}
	return false
}

// validInterfaceName mirrors the kernel's dev_valid_name.
func validInterfaceName(name string) bool {
	if len(name) == 0 || len(name) > 15 || name == "." || name == ".." {
		return false
	}
	for _, r := range name {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

func checkListen(addr string) error {
	const want = "want host:port with a port from 0 to 65535, such as :9750 or 127.0.0.1:9750"
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New(want)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n > 65535 {
		return errors.New(want)
	}
	return nil
}

// validateS3 checks the object storage settings.
func (c *Config) validateS3(bad func(string, any, string), errs *[]error) {
	if !c.Offload() {
		for flag, set := range map[string]bool{"s3-bucket": c.S3Bucket != "", "s3-prefix": c.S3Prefix != "", "s3-ca-file": c.S3CAFile != "",
			"s3-access-key-file": c.S3AccessKeyFile != "", "s3-secret-key-file": c.S3SecretKeyFile != "", "s3-max-age": c.S3MaxAge != 0} {
			if set {
				*errs = append(*errs, fmt.Errorf("invalid --%s (%s): needs --s3-endpoint (object storage is off without it)", flag, c.Source(flag)))
			}
		}
		return
	}
	_, secure, err := offload.ParseEndpoint(c.S3Endpoint, c.S3Insecure)
	if err != nil {
		bad("s3-endpoint", c.S3Endpoint, "want host:port (TLS), https://host[:port] or http://host[:port]: "+err.Error())
	}
	if !validBucket(c.S3Bucket) {
		bad("s3-bucket", c.S3Bucket, "want a bucket name of 3 to 63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit")
	}
	if strings.Contains(c.S3Prefix, "//") || strings.ContainsAny(c.S3Prefix, "\\\x00") || len(c.S3Prefix) > 512 {
		bad("s3-prefix", c.S3Prefix, "want a key prefix such as captures or team/sonde, without '//' or backslashes, up to 512 characters")
	}
	if c.S3CAFile != "" && err == nil && !secure {
		bad("s3-ca-file", c.S3CAFile, "needs a TLS endpoint: this one is plain HTTP (http:// or --s3-insecure)")
	}
	if c.S3Compress = strings.ToLower(c.S3Compress); c.S3Compress != "none" && c.S3Compress != "zstd" {
		bad("s3-compress", c.S3Compress, "want none or zstd")
	}
	// One PUT per file, which S3 caps at 5 GiB: every ring file must end
	// below that (a file exceeds --file-max-bytes only by a lone record of at
	// most the snaplen, so 1 MiB is left for it). Without a size limit a
	// file's upload could fail on every try until the file is evicted.
	if c.FileMaxBytes == 0 || c.FileMaxBytes > maxOffloadFile {
		bad("file-max-bytes", c.shown("file-max-bytes", FormatSize(c.FileMaxBytes)),
			"with --s3-endpoint want 64KiB to "+FormatSize(maxOffloadFile)+": each file is uploaded in one PUT, and object storage takes at most 5GiB in one")
	}
	if c.S3UploadWorkers < 1 || c.S3UploadWorkers > 64 {
		bad("s3-upload-workers", c.S3UploadWorkers, "want 1 to 64")
	}
	if c.S3MaxAge < 0 {
		bad("s3-max-age", c.shown("s3-max-age", c.S3MaxAge.String()), "want 0 (keep objects forever) or a positive duration")
	}
	if (c.S3AccessKeyFile == "") != (c.S3SecretKeyFile == "") {
		*errs = append(*errs, fmt.Errorf("invalid --s3-access-key-file %q with --s3-secret-key-file %q: want both set, or neither (then AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
			c.S3AccessKeyFile, c.S3SecretKeyFile))
	} else if c.S3AccessKeyFile == "" && (c.S3AccessKey == "" || c.S3SecretKey == "") {
		*errs = append(*errs, fmt.Errorf("invalid --s3-endpoint %q (%s): no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment, or --s3-access-key-file and --s3-secret-key-file",
			c.S3Endpoint, c.Source("s3-endpoint")))
	}
}

// maxOffloadFile is the largest --file-max-bytes offload takes: S3's 5 GiB
// for one PUT, less 1 MiB for a file's last record.
const maxOffloadFile = 5*GiB - MiB

// validBucket follows S3's bucket naming rules (the common subset).
func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 || strings.Contains(b, "..") {
		return false
	}
	for i, r := range b {
		alnum := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || i == len(b)-1 || (r != '.' && r != '-')) {
			return false
		}
	}
	return true
}
