package config

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// settingsOf is c without the bookkeeping of where values came from.
func settingsOf(c *Config) Config {
	v := *c
	v.sources, v.raw, v.ConfigFile = nil, nil, ""
	return v
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		err  bool
	}{
		{"0", 0, false},
		{"4096", 4096, false},
		{"100MiB", 100 * MiB, false},
		{"1GiB", GiB, false},
		{"512KiB", 512 * KiB, false},
		{"512 kib", 512 * KiB, false},
		{"10MB", 10_000_000, false},
		{"1.5GB", 1_500_000_000, false},
		{"1.1KB", 1100, false},
		{"1.5KiB", 1536, false},
		{"0.5B", 0, false},
		{"2TiB", 2 * TiB, false},
		{"7B", 7, false},
		{"", 0, true},
		{"12XB", 0, true},
		{"-1", 0, true},
		{"1e6", 0, true},
		{"1.2.3MB", 0, true},
		{".", 0, true},
		{"MiB", 0, true},
		{"9223372036854775807", 1<<63 - 1, false},
		{"9223372036854775808", 0, true},
		{"8388608TiB", 0, true},
		{"99999999999999999999.5TB", 0, true},
	} {
		got, err := ParseSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for _, tc := range []struct {
		in   Size
		want string
	}{
		{0, "0"}, {1023, "1023B"}, {KiB, "1KiB"}, {100 * MiB, "100MiB"}, {10_000_000, "10MB"},
		{1536, "1536B"}, {3 * GiB / 2, "1536MiB"}, {2 * TiB, "2TiB"}, {1000, "1KB"},
	} {
		if got := FormatSize(tc.in); got != tc.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tc.in, got, tc.want)
		}
		if back, err := ParseSize(tc.want); err != nil || back != tc.in {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", tc.in, back, err)
		}
	}
}

func TestDefaultsValid(t *testing.T) {
	c, err := Load(nil, nil)
	if err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if want := Default(); !reflect.DeepEqual(settingsOf(c), settingsOf(want)) {
		t.Errorf("Load(nil) = %+v, want defaults %+v", c, want)
	}
	if c.Source("snaplen") != "default" {
		t.Errorf("source of an unset value = %q", c.Source("snaplen"))
	}
}

// TestSettings covers every setting from flags and from the environment:
// a good value, its parsed form, and a bad value's message.
func TestSettings(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		check func(*Config) bool
		err   string
	}{
		{"interface repeated", []string{"--interface", "eth0", "-interface=eth1,eth2"}, nil,
			func(c *Config) bool { return reflect.DeepEqual(c.Interfaces, []string{"eth0", "eth1", "eth2"}) }, ""},
		{"interface env", nil, map[string]string{"SONDE_INTERFACES": " eth0 , ens5,"}, func(c *Config) bool { return reflect.DeepEqual(c.Interfaces, []string{"eth0", "ens5"}) }, ""},
		{"interface colon", []string{"--interface=eth0:1"}, nil, nil, `invalid --interface "eth0:1" (flag --interface): want an interface name of 1 to 15 characters`},
		{"interface space", nil, map[string]string{"SONDE_INTERFACES": "eth 0"}, nil, `invalid --interface "eth 0" (env SONDE_INTERFACES)`},
		{"interface 16 chars", []string{"--interface=abcdefghijklmnop"}, nil, nil, `invalid --interface "abcdefghijklmnop"`},
		{"interface dot", []string{"--interface=.."}, nil, nil, `invalid --interface ".."`},

		{"data dir flag", []string{"--data-dir=/srv/pcap"}, nil, func(c *Config) bool { return c.DataDir == "/srv/pcap" }, ""},
		{"data dir env", nil, map[string]string{"DATA_DIR": "/d"}, func(c *Config) bool { return c.DataDir == "/d" && c.Source("data-dir") == "env DATA_DIR" }, ""},
		{"data dir sonde env wins", nil, map[string]string{"DATA_DIR": "/d", "SONDE_DATA_DIR": "/s"}, func(c *Config) bool { return c.DataDir == "/s" }, ""},
		{"data dir blank", []string{"--data-dir= "}, nil, nil, `invalid --data-dir "" (flag --data-dir): want a directory path`},

		{"listen", []string{"--listen=127.0.0.1:0"}, nil, func(c *Config) bool { return c.Listen == "127.0.0.1:0" }, ""},
		{"listen v6", nil, map[string]string{"SONDE_LISTEN": "[::]:9000"}, func(c *Config) bool { return c.Listen == "[::]:9000" }, ""},
		{"listen bad port", nil, map[string]string{"SONDE_LISTEN": ":http"}, nil, `invalid --listen ":http" (env SONDE_LISTEN): want host:port`},
		{"listen no port", []string{"--listen=localhost"}, nil, nil, `invalid --listen "localhost"`},

		{"node name", []string{"--node-name=s1"}, nil, func(c *Config) bool { return c.NodeName == "s1" }, ""},
		{"node name env", nil, map[string]string{"SONDE_NODE_NAME": "s2"}, func(c *Config) bool { return c.NodeName == "s2" }, ""},

		{"snaplen", []string{"--snaplen", "64"}, nil, func(c *Config) bool { return c.Snaplen == 64 }, ""},
		{"snaplen low", []string{"--snaplen=63"}, nil, nil, `invalid --snaplen 63 (flag --snaplen): want 64 to 262144`},
		{"snaplen high", nil, map[string]string{"SONDE_SNAPLEN": "262145"}, nil, `invalid --snaplen 262145 (env SONDE_SNAPLEN): want 64 to 262144`},
		{"snaplen syntax", nil, map[string]string{"SONDE_SNAPLEN": "1.5k"}, nil, `invalid --snaplen "1.5k" (env SONDE_SNAPLEN): want a whole number`},

		{"workers", []string{"--workers=256"}, nil, func(c *Config) bool { return c.Workers == 256 && c.WorkerCount() == 256 }, ""},
		{"workers zero", nil, nil, func(c *Config) bool { return c.Workers == 0 && c.WorkerCount() >= 1 }, ""},
		{"workers negative", []string{"--workers=-1"}, nil, nil, `invalid --workers -1 (flag --workers): want 0 (one per CPU) to 256`},

		{"promisc bare", []string{"--promisc"}, map[string]string{"SONDE_PROMISC": "false"}, func(c *Config) bool { return c.Promisc }, ""},
		{"promisc false", []string{"--promisc=false"}, nil, func(c *Config) bool { return !c.Promisc }, ""},
		{"promisc env", nil, map[string]string{"SONDE_PROMISC": "0"}, func(c *Config) bool { return !c.Promisc }, ""},
		{"promisc env bad", nil, map[string]string{"SONDE_PROMISC": "nope"}, nil, `invalid --promisc "nope" (env SONDE_PROMISC): want true or false`},
		{"promisc separate value", []string{"--promisc", "false"}, nil, nil, `unexpected argument "false"`},

		{"ring bytes", []string{"--capture-ring-bytes=8MiB", "--capture-block-bytes=2MiB"}, nil, func(c *Config) bool { return c.CaptureRingBytes == 8*MiB && c.CaptureBlockBytes == 2*MiB }, ""},
		{"ring bytes small", nil, map[string]string{"SONDE_CAPTURE_RING_BYTES": "3MiB"}, nil, `invalid --capture-ring-bytes "3MiB" (env SONDE_CAPTURE_RING_BYTES): want at least 4 blocks`},
		{"block bytes pow2", []string{"--capture-block-bytes=65536"}, nil, nil, `want at least --snaplen`},
		{"block bytes small", []string{"--capture-block-bytes=32KiB", "--snaplen=1500"}, nil, nil, `invalid --capture-block-bytes "32KiB" (flag --capture-block-bytes): want a power of two from 64KiB to 128MiB`},
		{"block bytes big", []string{"--capture-block-bytes=256MiB"}, nil, nil, `want a power of two from 64KiB to 128MiB`},
		{"block bytes odd", []string{"--capture-block-bytes=1000KB"}, nil, nil, `invalid --capture-block-bytes "1000KB"`},
		{"block timeout", []string{"--capture-block-timeout=1ms"}, nil, func(c *Config) bool { return c.CaptureBlockTimeout == time.Millisecond }, ""},
		{"block timeout low", nil, map[string]string{"SONDE_CAPTURE_BLOCK_TIMEOUT": "500us"}, nil, `invalid --capture-block-timeout "500us" (env SONDE_CAPTURE_BLOCK_TIMEOUT): want a duration from 1ms to 1s`},

		{"format", []string{"--file-format=PcapNG"}, nil, func(c *Config) bool { return c.FileFormat == "pcapng" }, ""},
		{"format bad", nil, map[string]string{"SONDE_FILE_FORMAT": "erf"}, nil, `invalid --file-format "erf" (env SONDE_FILE_FORMAT): want pcap or pcapng`},
		{"file bytes", []string{"--file-max-bytes=64KiB"}, nil, func(c *Config) bool { return c.FileMaxBytes == 64*KiB }, ""},
		{"file bytes example", nil, map[string]string{"SONDE_FILE_MAX_BYTES": "12XB"}, nil, `invalid --file-max-bytes "12XB" (env SONDE_FILE_MAX_BYTES): want a size such as 100MiB`},
		{"file bytes small", []string{"--file-max-bytes=1000"}, nil, nil, `invalid --file-max-bytes "1000" (flag --file-max-bytes): want 0 (no limit) or at least 64KiB`},
		{"file duration", []string{"--file-max-duration=0", "--file-max-bytes=1MiB"}, nil, func(c *Config) bool { return c.FileMaxDuration == 0 }, ""},
		{"file duration short", []string{"--file-max-duration=500ms"}, nil, nil, `want 0 (no limit) or at least 1s`},
		{"file both zero", []string{"--file-max-duration=0", "--file-max-bytes=0"}, nil, nil, `invalid --file-max-bytes 0 (flag --file-max-bytes) with --file-max-duration 0 (flag --file-max-duration)`},

		{"analysis off", nil, map[string]string{"SONDE_ANALYSIS": "false"}, func(c *Config) bool { return !c.Analysis }, ""},
		{"analysis default", nil, nil, func(c *Config) bool { return c.Analysis && c.Window == 10*time.Second && c.MaxFlows == 0 }, ""},
		{"window short", []string{"--window=500ms"}, nil, nil, `invalid --window "500ms" (flag --window): want a duration from 1s to 1h`},
		{"max flows small", []string{"--max-flows=3", "--workers=2"}, nil, nil, `invalid --max-flows 3 (flag --max-flows): want 0 (the default, 2097152) or 32 to 67108864`},
		{"anomaly", []string{"--anomaly=syn_flood_per_second=10;brute_force_ports=22"}, nil, func(c *Config) bool { return c.Anomaly != "" }, ""},
		{"anomaly bad", []string{"--anomaly=port_scan_targets=x"}, nil, nil, `invalid --anomaly (flag --anomaly): anomaly setting port_scan_targets="x": want a whole number`},
		{"top talkers", []string{"--metrics-top-talkers=500"}, nil, nil, `invalid --metrics-top-talkers 500 (flag --metrics-top-talkers): want 0 (off) to 100`},

		{"ring max bytes unlimited", []string{"--ring-max-bytes=0"}, nil, func(c *Config) bool { return c.RingMaxBytes == 0 }, ""},
		{"ring max files", []string{"--ring-max-files=100"}, nil, func(c *Config) bool { return c.RingMaxFiles == 100 }, ""},
		{"ring max files neg", nil, map[string]string{"SONDE_RING_MAX_FILES": "-3"}, nil, `invalid --ring-max-files -3 (env SONDE_RING_MAX_FILES)`},
		{"ring max age", []string{"--ring-max-age=24h"}, nil, func(c *Config) bool { return c.RingMaxAge == 24*time.Hour }, ""},
		{"ring max age neg", []string{"--ring-max-age=-1h"}, nil, nil, `invalid --ring-max-age "-1h"`},
		{"min free", []string{"--min-free-percent=0"}, nil, func(c *Config) bool { return c.MinFreePercent == 0 }, ""},
		{"min free high", nil, map[string]string{"SONDE_MIN_FREE_PERCENT": "100"}, nil, `invalid --min-free-percent 100 (env SONDE_MIN_FREE_PERCENT): want 0 to 99`},
		{"write queue", []string{"--write-queue-bytes=1MiB"}, nil, func(c *Config) bool { return c.WriteQueueBytes == MiB }, ""},
		{"write queue small", []string{"--write-queue-bytes=1KiB"}, nil, nil, `want at least 64KiB`},

		{"log level", nil, map[string]string{"LOG_LEVEL": "WARN"}, func(c *Config) bool { return c.LogLevel == "warn" }, ""},
		{"log level bad", []string{"--log-level=trace"}, nil, nil, `invalid --log-level "trace" (flag --log-level): want debug, info, warn or error`},
		{"log format", []string{"--log-format=json"}, nil, func(c *Config) bool { return c.LogFormat == "json" }, ""},
		{"log format bad", nil, map[string]string{"SONDE_LOG_FORMAT": "xml"}, nil, `invalid --log-format "xml" (env SONDE_LOG_FORMAT): want auto, json or console`},

		{"unknown flag", []string{"--snaplength=5"}, nil, nil, `flag provided but not defined: -snaplength`},
		{"empty env is unset", nil, map[string]string{"SONDE_SNAPLEN": ""}, func(c *Config) bool { return c.Snaplen == 262144 }, ""},
		{"every error at once", []string{"--snaplen=1", "--workers=x"}, map[string]string{"SONDE_LISTEN": "nope"}, nil, "invalid --workers \"x\" (flag --workers): want a whole number\ninvalid --listen \"nope\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args, envMap(tc.env))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Load error = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !tc.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	if _, err := Load([]string{"-h"}, nil); err != ErrHelp {
		t.Errorf("Load(-h) error = %v, want ErrHelp", err)
	}
	var b strings.Builder
	Usage(&b)
	for _, s := range settings {
		if !strings.Contains(b.String(), "--"+s.flag) || !strings.Contains(b.String(), s.env[0]) {
			t.Errorf("usage lacks --%s or %s", s.flag, s.env[0])
		}
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sonde.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPrecedence checks flag > env > file > default for each kind of value.
func TestPrecedence(t *testing.T) {
	file := writeFile(t, "snaplen: 1000\nworkers: 2\nfile_max_bytes: 2MiB\nring_max_age: 1h\ninterfaces: [file0]\npromisc: false\n")
	all := map[string]string{"SONDE_CONFIG": file, "SONDE_SNAPLEN": "2000", "SONDE_WORKERS": "3", "SONDE_INTERFACES": "env0"}

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want func(*Config) []any
		vals []any
	}{
		{"default", nil, nil, func(c *Config) []any {
			return []any{c.Snaplen, c.Workers, c.FileMaxBytes, len(c.Interfaces), c.Promisc}
		}, []any{262144, 0, 100 * MiB, 0, true}},
		{"file", []string{"--config", file}, nil, func(c *Config) []any {
			return []any{c.Snaplen, c.Workers, c.FileMaxBytes, c.RingMaxAge, c.Interfaces[0], c.Promisc}
		}, []any{1000, 2, 2 * MiB, time.Hour, "file0", false}},
		{"env over file", nil, all, func(c *Config) []any {
			return []any{c.Snaplen, c.Workers, c.FileMaxBytes, c.Interfaces[0], c.ConfigFile}
		}, []any{2000, 3, 2 * MiB, "env0", file}},
		{"flag over env", []string{"--snaplen=3000", "--interface=flag0", "--promisc"}, all, func(c *Config) []any { return []any{c.Snaplen, c.Workers, c.Interfaces, c.Promisc} }, []any{3000, 3, []string{"flag0"}, true}},
		{"config flag over env", []string{"--config=" + writeFile(t, "snaplen: 1200\n")}, all, func(c *Config) []any { return []any{c.Snaplen, c.Workers, c.RingMaxAge} }, []any{2000, 3, time.Duration(0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args, envMap(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.want(c); !reflect.DeepEqual(got, tc.vals) {
				t.Errorf("got %v, want %v", got, tc.vals)
			}
		})
	}

	c, err := Load([]string{"--snaplen=3000"}, envMap(all))
	if err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{
		"snaplen": "flag --snaplen", "workers": "env SONDE_WORKERS",
		"file-max-bytes": "config file " + file + ":3", "listen": "default",
	} {
		if got := c.Source(flag); got != want {
			t.Errorf("Source(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestConfigFileMissing(t *testing.T) {
	_, err := Load(nil, envMap(map[string]string{"SONDE_CONFIG": "/nonexistent/sonde.yaml"}))
	if err == nil || !strings.Contains(err.Error(), "read config file (env SONDE_CONFIG)") {
		t.Errorf("error = %v", err)
	}
}

func TestGoodFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/good files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load([]string{"--config", f}, nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			assertRoundTrip(t, c)
		})
	}

	c, err := Load([]string{"--config", "testdata/good/full.yaml"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Interfaces: []string{"eth0", "ens5f1"}, DataDir: "/var/lib/sonde", Listen: "127.0.0.1:9750",
		NodeName: "sensor-ams-01", Snaplen: 1514, Workers: 8, Promisc: false,
		User: "65532:65532", Engine: "afpacket", Prefilter: "ebpf", FlowCutoffPackets: 20, FlowCutoffBytes: 64 * KiB, Sample: 4, PrefilterStats: true, Filter: "tcp port 443 or (udp and port 53)",
		CaptureRingBytes: 256 * MiB, CaptureBlockBytes: 4 * MiB, CaptureBlockTimeout: 50 * time.Millisecond,
		FileFormat: "pcapng", FileMaxBytes: 1_000_000_000, FileMaxDuration: 5 * time.Minute,
		RingMaxBytes: 3 * TiB / 2, RingMaxFiles: 10000, RingMaxAge: 72 * time.Hour, MinFreePercent: 5,
		WriteQueueBytes: 64 * MiB, LogLevel: "debug", LogFormat: "json",
		APITokenFile: "/etc/sonde/tokens", APIAuth: true, APIAuthOps: true, APIMaxWindow: 30 * time.Minute, APIMaxBytes: GiB,
		PinMaxBytes: 100 * GiB, TLSCert: "/etc/sonde/tls.crt", TLSKey: "/etc/sonde/tls.key", TLSClientCA: "/etc/sonde/clients.crt",
		Analysis: false, Window: 30 * time.Second, MaxFlows: 100000, Anomaly: "port_scan_targets=50; internal_nets=10.0.0.0/8,198.18.0.0/15", MetricsTopTalkers: 10,
		MaxUploadSizeMB: 20, MaxQueueSize: 4, ReportWorkers: 2, ReportTTLHours: 72,
		SnapshotTTL: 12 * time.Hour,
		S3Endpoint:  "https://minio.storage.svc:9000", S3Bucket: "sonde-captures", S3Prefix: "prod/sonde", S3Region: "eu-west-1",
		S3CAFile: "/etc/sonde/minio-ca.crt", S3PathStyle: true, S3Compress: "zstd", S3UploadWorkers: 4, S3MaxAge: 720 * time.Hour,
		S3AccessKeyFile: "/etc/sonde/s3/access", S3SecretKeyFile: "/etc/sonde/s3/secret",
	}
	if !reflect.DeepEqual(settingsOf(c), *want) || c.ConfigFile != "testdata/good/full.yaml" {
		t.Errorf("full.yaml:\n got %+v\nwant %+v", c, want)
	}

	c, err = Load([]string{"--config", "testdata/good/interfaces_string.yaml"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host, _ := os.Hostname(); c.NodeName != host || !reflect.DeepEqual(c.Interfaces, []string{"eth0", "eth1"}) {
		t.Errorf("interfaces_string.yaml: got %+v", c)
	}
}

// TestBadFiles loads every testdata/bad file; its first line is
// "# error: SUBSTRING" naming what the error must say.
func TestBadFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/bad files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReader(fh).ReadString('\n')
			fh.Close()
			want, ok := strings.CutPrefix(strings.TrimSpace(line), "# error: ")
			if !ok {
				t.Fatalf("%s: first line must be \"# error: SUBSTRING\"", f)
			}
			_, err = Load([]string{"--config", f}, nil)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error = %v\nwant it to contain %q", err, want)
			}
		})
	}
}

// assertRoundTrip checks that the printed configuration loads back to c.
func assertRoundTrip(t *testing.T, c *Config) {
	t.Helper()
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	p := writeFile(t, string(out))
	back, err := Load([]string{"--config", p}, nil)
	if err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(settingsOf(back), settingsOf(c)) {
		t.Errorf("printed config loads differently:\n got %+v\nwant %+v\n%s", back, c, out)
	}
}

func TestYAMLOutput(t *testing.T) {
	c, err := Load([]string{"--snaplen=1500", "--file-max-duration=90s"}, envMap(map[string]string{"SONDE_WORKERS": "4"}))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"snaplen: 1500 # from flag --snaplen\n",
		"workers: 4 # from env SONDE_WORKERS\n",
		"file_max_bytes: 100MiB\n",
		"file_max_duration: 1m30s # from flag --file-max-duration\n",
		"ring_max_age: 0\n",
		"capture_block_timeout: 10ms\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	assertRoundTrip(t, c)
}

func TestDefaultRoute(t *testing.T) {
	for _, tc := range []struct {
		name, v4, v6, want, err string
	}{
		{"v4 lowest metric", "testdata/proc/route", "testdata/proc/ipv6_route", "eth0", ""},
		{"v6 fallback", "testdata/proc/route_nodefault", "testdata/proc/ipv6_route", "ens3", ""},
		{"v6 missing", "testdata/proc/route_nodefault", "testdata/proc/missing", "", "no default route"},
		{"none", "testdata/proc/route_nodefault", "testdata/proc/route_nodefault", "", "no default route: set --interface"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := defaultRouteInterface(tc.v4, tc.v6)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	// The live tables must at least parse.
	if _, err := DefaultRouteInterface(); err != nil && !strings.Contains(err.Error(), "no default route") {
		t.Errorf("DefaultRouteInterface: %v", err)
	}
}

func FuzzLoadYAML(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("interfaces: !!binary aGVsbG8=\nsnaplen: &a 1500\nworkers: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		if err := c.applyYAML("fuzz.yaml", data); err != nil {
			return
		}
		c.normalize()
		if c.Validate() != nil {
			return
		}
		// A valid configuration must print and load back unchanged.
		out, err := c.YAML()
		if err != nil {
			t.Fatalf("YAML: %v", err)
		}
		back := Default()
		if err := back.applyYAML("back.yaml", out); err != nil {
			t.Fatalf("printed config does not load: %v\n%s", err, out)
		}
		back.normalize()
		if !reflect.DeepEqual(settingsOf(back), settingsOf(c)) {
			t.Fatalf("round trip differs:\n got %+v\nwant %+v\n%s", back, c, out)
		}
	})
}

// TestS3FileSize: with offload on, ring files must have a size limit below
// the 5 GiB a single PUT takes.
func TestS3FileSize(t *testing.T) {
	env := map[string]string{"AWS_ACCESS_KEY_ID": "AKIDSONDETEST", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value-x", "SONDE_S3_BUCKET": "sonde"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, c := range []struct {
		size, err string
	}{
		{"", ""}, // the default, 100MiB
		{"5119MiB", ""},
		{"5120MiB", `invalid --file-max-bytes "5120MiB" (flag --file-max-bytes): with --s3-endpoint want 64KiB to 5119MiB: each file is uploaded in one PUT`},
		{"0", `invalid --file-max-bytes "0" (flag --file-max-bytes): with --s3-endpoint want 64KiB to 5119MiB`},
	} {
		args := []string{"--interface", "eth0", "--s3-endpoint", "http://127.0.0.1:9000", "--file-max-duration", "1m", "--ring-max-bytes", "0"}
		if c.size != "" {
			args = append(args, "--file-max-bytes", c.size)
		}
		_, err := Load(args, lookup)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("--file-max-bytes %q: %v", c.size, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("--file-max-bytes %q: error %v, want %q", c.size, err, c.err)
		}
	}
	// Without offload, no size limit is fine.
	if _, err := Load([]string{"--interface", "eth0", "--file-max-bytes", "0", "--file-max-duration", "1m"}, nil); err != nil {
		t.Errorf("--file-max-bytes 0 without offload: %v", err)
	}
}

// TestS3Credentials: the keys come from the environment only and are never
// printed, by config check or by formatting the configuration.
func TestS3Credentials(t *testing.T) {
	env := map[string]string{"AWS_ACCESS_KEY_ID": "AKIDSONDETEST", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value-x", "SONDE_S3_BUCKET": "sonde"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c, err := Load([]string{"--interface", "eth0", "--s3-endpoint", "http://127.0.0.1:9000"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if c.S3AccessKey != "AKIDSONDETEST" || c.S3SecretKey != "s3cr3t-value-x" || !c.Offload() {
		t.Fatalf("credentials not read from the environment: offload %v", c.Offload())
	}
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{string(out), fmt.Sprintf("%v %+v %#v", c, c, c)} {
		if strings.Contains(s, "AKIDSONDETEST") || strings.Contains(s, "s3cr3t") {
			t.Fatalf("a credential is printed: %s", s)
		}
	}
	if _, err := Load([]string{"--s3-secret-key", "x"}, nil); err == nil {
		t.Fatal("--s3-secret-key accepted: secrets must never be flags")
	}
}
