package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrHelp is returned by Load when the arguments ask for help (-h, --help);
// main then prints Usage and exits 0.
var ErrHelp = errors.New("help requested")

// setting describes one configuration value and every name it goes by.
type setting struct {
	flag  string   // flag name without dashes; also the name used in errors
	env   []string // environment variables, the first set one wins
	key   string   // YAML key
	usage string
	field func(*Config) any // pointer to the Config field
}

// settings is the table behind flags, environment variables, YAML keys and
// usage. Order is the order of usage and of `config check` output.
var settings = []setting{
	{"interface", []string{"SONDE_INTERFACES"}, "interfaces", "interface to capture from; repeatable or comma-separated (default: the default-route interface)", func(c *Config) any { return &c.Interfaces }},
	{"data-dir", []string{"SONDE_DATA_DIR", "DATA_DIR"}, "data_dir", "directory of the capture ring", func(c *Config) any { return &c.DataDir }},
	{"listen", []string{"SONDE_LISTEN"}, "listen", "host:port of the HTTP API and /metrics", func(c *Config) any { return &c.Listen }},
	{"node-name", []string{"SONDE_NODE_NAME"}, "node_name", "name of this sensor (default: the host name)", func(c *Config) any { return &c.NodeName }},
	{"snaplen", []string{"SONDE_SNAPLEN"}, "snaplen", "bytes kept of each packet (64-262144)", func(c *Config) any { return &c.Snaplen }},
	{"workers", []string{"SONDE_WORKERS"}, "workers", "capture workers per interface (0: one per CPU)", func(c *Config) any { return &c.Workers }},
	{"promisc", []string{"SONDE_PROMISC"}, "promisc", "put interfaces in promiscuous mode", func(c *Config) any { return &c.Promisc }},
	{"user", []string{"SONDE_USER"}, "user", "numeric UID[:GID] to run as once capture is set up, with no capabilities (default: stay as started)", func(c *Config) any { return &c.User }},
	{"engine", []string{"SONDE_ENGINE"}, "engine", "capture engine: afpacket, or pcap (libpcap, in builds with -tags libpcap)", func(c *Config) any { return &c.Engine }},
	{"prefilter", []string{"SONDE_PREFILTER"}, "prefilter", "where the filter runs: classic (BPF) or ebpf (also counts every packet by class; falls back to classic where eBPF is not allowed)", func(c *Config) any { return &c.Prefilter }},
	{"flow-cutoff-packets", []string{"SONDE_FLOW_CUTOFF_PACKETS"}, "flow_cutoff_packets", "keep only the first N packets of each flow (0: all; needs --prefilter ebpf)", func(c *Config) any { return &c.FlowCutoffPackets }},
	{"flow-cutoff-bytes", []string{"SONDE_FLOW_CUTOFF_BYTES"}, "flow_cutoff_bytes", "keep each flow's packets only until it carried this much (0: all; needs --prefilter ebpf)", func(c *Config) any { return &c.FlowCutoffBytes }},
	{"sample", []string{"SONDE_SAMPLE"}, "sample", "keep 1 packet in N, at random (0 or 1: all; needs --prefilter ebpf)", func(c *Config) any { return &c.Sample }},
	{"prefilter-stats", []string{"SONDE_PREFILTER_STATS"}, "prefilter_stats", "export the prefilter's own run time (turns on BPF run-time statistics host-wide; needs --prefilter ebpf)", func(c *Config) any { return &c.PrefilterStats }},
	{"filter", []string{"SONDE_FILTER"}, "filter", "tcpdump filter expression: capture only what it matches (default: everything)", func(c *Config) any { return &c.Filter }},
	{"capture-ring-bytes", []string{"SONDE_CAPTURE_RING_BYTES"}, "capture_ring_bytes", "kernel ring size per worker socket (at least 4 blocks)", func(c *Config) any { return &c.CaptureRingBytes }},
	{"capture-block-bytes", []string{"SONDE_CAPTURE_BLOCK_BYTES"}, "capture_block_bytes", "kernel ring block size (power of two, 64KiB-128MiB)", func(c *Config) any { return &c.CaptureBlockBytes }},
	{"capture-block-timeout", []string{"SONDE_CAPTURE_BLOCK_TIMEOUT"}, "capture_block_timeout", "time after which the kernel retires a partly filled block (1ms-1s)", func(c *Config) any { return &c.CaptureBlockTimeout }},
	{"file-format", []string{"SONDE_FILE_FORMAT"}, "file_format", "capture file format: pcap or pcapng", func(c *Config) any { return &c.FileFormat }},
	{"file-max-bytes", []string{"SONDE_FILE_MAX_BYTES"}, "file_max_bytes", "close a capture file at this size (0: no limit, else at least 64KiB)", func(c *Config) any { return &c.FileMaxBytes }},
	{"file-max-duration", []string{"SONDE_FILE_MAX_DURATION"}, "file_max_duration", "close a capture file after this long (0: no limit, else at least 1s)", func(c *Config) any { return &c.FileMaxDuration }},
	{"ring-max-bytes", []string{"SONDE_RING_MAX_BYTES"}, "ring_max_bytes", "evict the oldest files beyond this total size (0: unlimited)", func(c *Config) any { return &c.RingMaxBytes }},
	{"ring-max-files", []string{"SONDE_RING_MAX_FILES"}, "ring_max_files", "evict the oldest files beyond this count (0: unlimited)", func(c *Config) any { return &c.RingMaxFiles }},
	{"ring-max-age", []string{"SONDE_RING_MAX_AGE"}, "ring_max_age", "evict files older than this (0: unlimited)", func(c *Config) any { return &c.RingMaxAge }},
	{"min-free-percent", []string{"SONDE_MIN_FREE_PERCENT"}, "min_free_percent", "evict the oldest files to keep this much of the data volume free (0-99)", func(c *Config) any { return &c.MinFreePercent }},
	{"write-queue-bytes", []string{"SONDE_WRITE_QUEUE_BYTES"}, "write_queue_bytes", "packets queued for the disk per stream before dropping", func(c *Config) any { return &c.WriteQueueBytes }},
	{"api-token-file", []string{"SONDE_API_TOKEN_FILE"}, "api_token_file", "file of /api/v1 bearer tokens, one per line (default: none, /api/v1 refuses every request)", func(c *Config) any { return &c.APITokenFile }},
	{"api-auth", []string{"SONDE_API_AUTH"}, "api_auth", "require a bearer token on /api/v1; false opens it to anyone who reaches the listener", func(c *Config) any { return &c.APIAuth }},
	{"api-auth-ops", []string{"SONDE_API_AUTH_OPS"}, "api_auth_ops", "require the token on /metrics, /api/health and /api/ready too", func(c *Config) any { return &c.APIAuthOps }},
	{"api-max-window", []string{"SONDE_API_MAX_WINDOW"}, "api_max_window", "longest window /api/v1/pcap extracts", func(c *Config) any { return &c.APIMaxWindow }},
	{"api-max-bytes", []string{"SONDE_API_MAX_BYTES"}, "api_max_bytes", "most bytes one /api/v1/pcap extraction serves; beyond, it ends at a record boundary", func(c *Config) any { return &c.APIMaxBytes }},
	{"pin-max-bytes", []string{"SONDE_PIN_MAX_BYTES"}, "pin_max_bytes", "most bytes snapshots may pin, outside the ring's limits (default 0: a tenth of --ring-max-bytes)", func(c *Config) any { return &c.PinMaxBytes }},
	{"tls-cert", []string{"SONDE_TLS_CERT"}, "tls_cert", "PEM certificate: serve HTTPS (with --tls-key)", func(c *Config) any { return &c.TLSCert }},
	{"tls-key", []string{"SONDE_TLS_KEY"}, "tls_key", "PEM private key of --tls-cert", func(c *Config) any { return &c.TLSKey }},
	{"tls-client-ca", []string{"SONDE_TLS_CLIENT_CA"}, "tls_client_ca", "PEM CA certificates: require and verify client certificates (mutual TLS)", func(c *Config) any { return &c.TLSClientCA }},
	{"log-level", []string{"SONDE_LOG_LEVEL", "LOG_LEVEL"}, "log_level", "debug, info, warn or error", func(c *Config) any { return &c.LogLevel }},
	{"log-format", []string{"SONDE_LOG_FORMAT"}, "log_format", "auto (console on a terminal, else JSON), json or console", func(c *Config) any { return &c.LogFormat }},
	{"analysis", []string{"SONDE_ANALYSIS"}, "analysis", "analyse traffic (metrics, health, anomaly events) beside the ring", func(c *Config) any { return &c.Analysis }},
	{"window", []string{"SONDE_WINDOW"}, "window", "analysis reporting window (1s-1h)", func(c *Config) any { return &c.Window }},
	{"max-flows", []string{"SONDE_MAX_FLOWS"}, "max_flows", "flows tracked by analysis over all workers (0: the engine default, 2097152)", func(c *Config) any { return &c.MaxFlows }},
	{"anomaly", []string{"SONDE_ANOMALY"}, "anomaly", "anomaly thresholds to override, key=value;... such as port_scan_targets=50;internal_nets=10.0.0.0/8 (SIGHUP reloads)", func(c *Config) any { return &c.Anomaly }},
	{"metrics-top-talkers", []string{"SONDE_METRICS_TOP_TALKERS"}, "metrics_top_talkers", "export the last window's N top talkers as series labelled by address (0: off; at most 100)", func(c *Config) any { return &c.MetricsTopTalkers }},
	{"snapshot-on-anomaly", []string{"SONDE_SNAPSHOT_ON_ANOMALY"}, "snapshot_on_anomaly", "pin the files of each anomaly's window, this much before and after it (0: off)", func(c *Config) any { return &c.SnapshotOnAnomaly }},
	{"snapshot-ttl", []string{"SONDE_SNAPSHOT_TTL"}, "snapshot_ttl", "how long anomaly snapshots keep their files", func(c *Config) any { return &c.SnapshotTTL }},
	{"max-upload-size-mb", []string{"SONDE_MAX_UPLOAD_SIZE_MB", "MAX_UPLOAD_SIZE_MB"}, "max_upload_size_mb", "largest capture file /api/v1/reports/upload accepts, in MiB", func(c *Config) any { return &c.MaxUploadSizeMB }},
	{"max-queue-size", []string{"SONDE_MAX_QUEUE_SIZE", "MAX_QUEUE_SIZE"}, "max_queue_size", "reports queued, uploading or running at once; past it /api/v1/reports answers 429", func(c *Config) any { return &c.MaxQueueSize }},
	{"report-workers", []string{"SONDE_REPORT_WORKERS", "REPORT_WORKERS"}, "report_workers", "reports analysed at once", func(c *Config) any { return &c.ReportWorkers }},
	{"report-ttl-hours", []string{"SONDE_REPORT_TTL_HOURS", "REPORT_TTL_HOURS"}, "report_ttl_hours", "hours a finished report is kept under DATA_DIR/reports", func(c *Config) any { return &c.ReportTTLHours }},
	{"s3-endpoint", []string{"SONDE_S3_ENDPOINT"}, "s3_endpoint", "object storage to copy every published file to: host:port (TLS), https://host[:port] or http://host[:port] (default: none, offload off)", func(c *Config) any { return &c.S3Endpoint }},
	{"s3-insecure", []string{"SONDE_S3_INSECURE"}, "s3_insecure", "plain HTTP to a host:port --s3-endpoint", func(c *Config) any { return &c.S3Insecure }},
	{"s3-bucket", []string{"SONDE_S3_BUCKET"}, "s3_bucket", "bucket of the uploads (it must exist)", func(c *Config) any { return &c.S3Bucket }},
	{"s3-prefix", []string{"SONDE_S3_PREFIX"}, "s3_prefix", "key prefix: objects are PREFIX/NODE/INTERFACE/YYYY/MM/DD/FILE", func(c *Config) any { return &c.S3Prefix }},
	{"s3-region", []string{"SONDE_S3_REGION", "AWS_REGION"}, "s3_region", "region of the bucket (default: none, as MinIO)", func(c *Config) any { return &c.S3Region }},
	{"s3-ca-file", []string{"SONDE_S3_CA_FILE"}, "s3_ca_file", "PEM CA certificates to trust for the endpoint's TLS (default: the system's)", func(c *Config) any { return &c.S3CAFile }},
	{"s3-path-style", []string{"SONDE_S3_PATH_STYLE"}, "s3_path_style", "path-style bucket addressing, as MinIO needs (false: virtual-hosted, bucket.host)", func(c *Config) any { return &c.S3PathStyle }},
	{"s3-compress", []string{"SONDE_S3_COMPRESS"}, "s3_compress", "compress capture files before upload: none or zstd", func(c *Config) any { return &c.S3Compress }},
	{"s3-upload-workers", []string{"SONDE_S3_UPLOAD_WORKERS"}, "s3_upload_workers", "uploads at once (1-64)", func(c *Config) any { return &c.S3UploadWorkers }},
	{"s3-max-age", []string{"SONDE_S3_MAX_AGE"}, "s3_max_age", "delete uploaded capture files whose last packet is older than this (0: keep forever)", func(c *Config) any { return &c.S3MaxAge }},
	{"s3-access-key-file", []string{"SONDE_S3_ACCESS_KEY_FILE"}, "s3_access_key_file", "file holding the access key (default: AWS_ACCESS_KEY_ID)", func(c *Config) any { return &c.S3AccessKeyFile }},
	{"s3-secret-key-file", []string{"SONDE_S3_SECRET_KEY_FILE"}, "s3_secret_key_file", "file holding the secret key (default: AWS_SECRET_ACCESS_KEY)", func(c *Config) any { return &c.S3SecretKeyFile }},
}

const (
	configFlag = "config"
	configEnv  = "SONDE_CONFIG"
)

// set parses v into the field of s. Its error says what is allowed; the
// caller adds the setting, value and source.
func (s *setting) set(c *Config, v string) error {
	switch p := s.field(c).(type) {
	case *string:
		*p = strings.TrimSpace(v)
	case *[]string:
		*p = splitList(v)
	case *int:
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return errors.New("want a whole number")
		}
		*p = n
	case *bool:
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return errors.New("want true or false")
		}
		*p = b
	case *Size:
		n, err := ParseSize(v)
		if err != nil {
			return err
		}
		*p = n
	case *time.Duration:
		t := strings.TrimSpace(v)
		if t == "0" {
			*p = 0
			return nil
		}
		d, err := time.ParseDuration(t)
		if err != nil {
			return errors.New("want a duration such as 10ms, 30s or 1h")
		}
		*p = d
	default:
		panic(fmt.Sprintf("config: setting %s has unsupported type %T", s.flag, p))
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Load builds the configuration of `sonde run` from its arguments (without
// the program and command names) and an environment lookup such as
// os.LookupEnv (nil means an empty environment). Precedence is flags, then
// environment, then the YAML file, then defaults. An environment variable set
// to the empty string counts as unset. The result is validated.
func Load(args []string, env func(string) (string, bool)) (*Config, error) {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	flags, err := parseArgs(args)
	if err != nil {
		return nil, err
	}

	c := Default()
	path, pathSrc := "", ""
	if v, ok := env(configEnv); ok && v != "" {
		path, pathSrc = v, "env "+configEnv
	}
	if v, ok := flags[configFlag]; ok {
		path, pathSrc = v[len(v)-1], "flag --"+configFlag
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read config file (%s): %w", pathSrc, err)
		}
		if err := c.applyYAML(path, data); err != nil {
			return nil, err
		}
		c.ConfigFile = path
	}

	var errs []error
	for i := range settings {
		s := &settings[i]
		for _, name := range s.env {
			v, ok := env(name)
			if !ok || v == "" {
				continue
			}
			c.setSource(s.flag, "env "+name)
			c.setRaw(s.flag, v)
			if err := s.set(c, v); err != nil {
				errs = append(errs, c.invalid(s.flag, v, err.Error()))
			}
			break
		}
	}
	for i := range settings {
		s := &settings[i]
		vals, ok := flags[s.flag]
		if !ok {
			continue
		}
		c.setSource(s.flag, "flag --"+s.flag)
		c.setRaw(s.flag, vals[len(vals)-1])
		if _, list := s.field(c).(*[]string); list {
			// A repeated list flag accumulates; it still replaces lower layers.
			vals = []string{strings.Join(vals, ",")}
		}
		v := vals[len(vals)-1]
		if err := s.set(c, v); err != nil {
			errs = append(errs, c.invalid(s.flag, v, err.Error()))
		}
	}
	c.normalize()
	// Object storage credentials come only from the environment (or files
	// main reads): never flags, never the YAML file.
	for _, v := range []struct {
		dst  *Secret
		name string
	}{{&c.S3AccessKey, "AWS_ACCESS_KEY_ID"}, {&c.S3SecretKey, "AWS_SECRET_ACCESS_KEY"}, {&c.S3SessionToken, "AWS_SESSION_TOKEN"}} {
		if s, ok := env(v.name); ok {
			*v.dst = Secret(strings.TrimSpace(s))
		}
	}
	// A value that failed to parse kept its previous one, so Validate does
	// not report it twice; together they list every problem at once.
	if err := errors.Join(append(errs, c.Validate())...); err != nil {
		return nil, err
	}
	return c, nil
}

// normalize lower-cases the enumerated settings, which are accepted in any case.
func (c *Config) normalize() {
	c.FileFormat = strings.ToLower(c.FileFormat)
	c.Engine = strings.ToLower(c.Engine)
	c.Prefilter = strings.ToLower(c.Prefilter)
	c.LogLevel = strings.ToLower(c.LogLevel)
	c.LogFormat = strings.ToLower(c.LogFormat)
}

// rawFlag collects every value given to one flag, so that Load can apply
// flags after the file and the environment.
type rawFlag struct {
	name   string
	isBool bool
	vals   map[string][]string
}

func (f *rawFlag) String() string { return "" }
func (f *rawFlag) Set(v string) error {
	f.vals[f.name] = append(f.vals[f.name], v)
	return nil
}
func (f *rawFlag) IsBoolFlag() bool { return f.isBool }

func parseArgs(args []string) (map[string][]string, error) {
	vals := make(map[string][]string)
	fs := flag.NewFlagSet("sonde run", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned; Usage prints help
	fs.Var(&rawFlag{name: configFlag, vals: vals}, configFlag, "")
	for i := range settings {
		s := &settings[i]
		_, isBool := s.field(&Config{}).(*bool)
		fs.Var(&rawFlag{name: s.flag, isBool: isBool, vals: vals}, s.flag, s.usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, ErrHelp
		}
		return nil, fmt.Errorf("parse arguments: %w (see --help)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("parse arguments: unexpected argument %q (boolean flags take their value as --flag=false)", fs.Arg(0))
	}
	return vals, nil
}

// Usage writes the settings, with their flags, environment variables, YAML
// keys and defaults, to w.
func Usage(w io.Writer) {
	d := Default()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  --%s\t%s\t%s\t%s\n", configFlag, configEnv, "", "YAML configuration file (keys as below)")
	for i := range settings {
		s := &settings[i]
		usage := s.usage
		if !strings.Contains(usage, "(default") {
			usage += " (default " + displayValue(s.field(d)) + ")"
		}
		fmt.Fprintf(tw, "  --%s\t%s\t%s\t%s\n", s.flag, strings.Join(s.env, ", "), s.key, usage)
	}
	tw.Flush()
}

func displayValue(p any) string {
	switch p := p.(type) {
	case *string:
		return *p
	case *[]string:
		return strings.Join(*p, ",")
	case *int:
		return strconv.Itoa(*p)
	case *bool:
		return strconv.FormatBool(*p)
	case *Size:
		return FormatSize(*p)
	case *time.Duration:
		return formatDuration(*p)
	}
	return fmt.Sprint(p)
}

// formatDuration is time.Duration.String without zero trailing units:
// "1m" rather than "1m0s", "0" rather than "0s".
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// applyYAML applies a configuration file. It is strict: an unknown or
// repeated key, a non-scalar value or a second document is an error. Values go
// through the same parsers as flags and environment variables, so errors read
// the same wherever a value came from.
func (c *Config) applyYAML(path string, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file sets nothing
		}
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: want a single YAML document", path)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config file %s:%d: want a mapping of settings such as \"snaplen: 1500\"", path, root.Line)
	}

	byKey := make(map[string]*setting, len(settings))
	for i := range settings {
		byKey[settings[i].key] = &settings[i]
	}
	seen := make(map[string]int)
	var errs []error
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		s, ok := byKey[k.Value]
		if !ok || k.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("config file %s:%d: unknown key %q: want one of %s", path, k.Line, k.Value, knownKeys()))
			continue
		}
		if line, dup := seen[k.Value]; dup {
			errs = append(errs, fmt.Errorf("config file %s:%d: key %q already set on line %d", path, k.Line, k.Value, line))
			continue
		}
		seen[k.Value] = k.Line

		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			continue // "key:" with no value leaves the default
		}
		raw, err := scalarOrList(s, v)
		c.setSource(s.flag, fmt.Sprintf("config file %s:%d", path, v.Line))
		c.setRaw(s.flag, raw)
		if err != nil {
			errs = append(errs, c.invalid(s.flag, raw, err.Error()))
			continue
		}
		if err := s.set(c, raw); err != nil {
			errs = append(errs, c.invalid(s.flag, raw, err.Error()))
		}
	}
	return errors.Join(errs...)
}

// scalarOrList returns a YAML value as the string a flag would carry. Lists
// are accepted only for list settings, as a sequence or a comma-separated
// string.
func scalarOrList(s *setting, v *yaml.Node) (string, error) {
	_, isList := s.field(&Config{}).(*[]string)
	switch {
	case v.Kind == yaml.ScalarNode:
		return v.Value, nil
	case v.Kind == yaml.SequenceNode && isList:
		items := make([]string, 0, len(v.Content))
		for _, it := range v.Content {
			if it.Kind != yaml.ScalarNode {
				return "", errors.New("want a list of names")
			}
			if strings.Contains(it.Value, ",") {
				return it.Value, errors.New("want one name per list item")
			}
			items = append(items, it.Value)
		}
		return strings.Join(items, ","), nil
	case isList:
		return "", errors.New("want a list of names")
	}
	return "", errors.New("want a single value, not a list or mapping")
}

func knownKeys() string {
	keys := make([]string, len(settings))
	for i := range settings {
		keys[i] = settings[i].key
	}
	return strings.Join(keys, ", ")
}

// YAML writes the configuration as a YAML file that Load accepts and
// that reproduces it, with a comment on each value that did not come from the
// defaults saying where it came from. It is what `sonde config check` prints.
func (c *Config) YAML() ([]byte, error) {
	var root yaml.Node
	if err := root.Encode(c); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		for j := range settings {
			if settings[j].key != k.Value {
				continue
			}
			if d, ok := settings[j].field(c).(*time.Duration); ok {
				v.Value, v.Tag = formatDuration(*d), "" // plain, so 0 is not quoted
			}
			if src := c.Source(settings[j].flag); src != "default" {
				k.LineComment = "from " + src
			}
		}
	}
	var buf bytes.Buffer
	if c.ConfigFile != "" {
		fmt.Fprintf(&buf, "# effective sonde configuration (config file %s)\n", c.ConfigFile)
	} else {
		buf.WriteString("# effective sonde configuration\n")
	}
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&root); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}
