package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sonde-project/sonde/capture"
)

type cliCase struct {
	name           string
	args           []string
	env            map[string]string
	status         int
	stdout, stderr string // substrings expected
}

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("snaplen: 10\nno_such_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		args   []string
		env    map[string]string
		status int
		stdout string // substring expected on stdout
		stderr string // substring expected on stderr
	}{
		{name: "no command", args: nil, status: exitUsage, stderr: "Usage:"},
		{name: "unknown command", args: []string{"frobnicate"}, status: exitUsage, stderr: `unknown command "frobnicate"`},
		{name: "version", args: []string{"version"}, status: exitOK, stdout: "sonde "},
		{name: "help", args: []string{"help"}, status: exitOK, stdout: "sonde run"},
		{name: "run help lists settings", args: []string{"run", "--help"}, status: exitOK, stdout: "file-max-bytes"},
		{name: "config check ok", args: []string{"config", "check", "--interface", "lo", "--data-dir", dir},
			status: exitOK, stdout: "configuration is valid"},
		{name: "config check prints effective values", args: []string{"config", "check", "--interface", "lo", "--file-max-bytes", "50MiB"},
			status: exitOK, stdout: "file_max_bytes: 50MiB"},
		{name: "bad size names setting, value and what is allowed", args: []string{"run", "--interface", "lo", "--file-max-bytes", "12XB"},
			status: exitUsage, stderr: `invalid --file-max-bytes "12XB"`},
		{name: "bad env value names the variable", args: []string{"config", "check", "--interface", "lo"},
			env: map[string]string{"SONDE_SNAPLEN": "huge"}, status: exitUsage, stderr: "SONDE_SNAPLEN"},
		{name: "bad duration", args: []string{"config", "check", "--interface", "lo", "--file-max-duration", "soon"},
			status: exitUsage, stderr: "--file-max-duration"},
		{name: "unknown yaml key", args: []string{"config", "check", "--interface", "lo", "--config", badYAML},
			status: exitUsage, stderr: "no_such_key"},
		{name: "unknown flag", args: []string{"run", "--no-such-flag"}, status: exitUsage, stderr: "no-such-flag"},
		{name: "bad config subcommand", args: []string{"config", "lint"}, status: exitUsage, stderr: "sonde config check"},
		{name: "bad log level", args: []string{"config", "check", "--interface", "lo"},
			env: map[string]string{"LOG_LEVEL": "loud"}, status: exitUsage, stderr: "LOG_LEVEL"},
	}
	if capture.PcapAvailable {
		cases = append(cases, cliCase{name: "pcap engine takes libpcap's syntax", args: []string{"config", "check", "--interface", "lo", "--engine", "pcap", "--filter", "udp and not igmp"},
			status: exitOK, stdout: "engine: pcap"})
	} else {
		cases = append(cases, cliCase{name: "pcap engine needs a libpcap build", args: []string{"config", "check", "--interface", "lo", "--engine", "pcap"},
			status: exitUsage, stderr: "built without libpcap"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			status := run(tc.args, &out, &errb)
			if status != tc.status {
				t.Errorf("exit status %d, want %d\nstdout: %s\nstderr: %s", status, tc.status, out.String(), errb.String())
			}
			if tc.stdout != "" && !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, out.String())
			}
			if tc.stderr != "" && !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errb.String())
			}
		})
	}
}
