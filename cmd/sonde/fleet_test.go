package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFleetCLI: every bad fleet setting stops with status 2 and a line
// naming the setting (and the variable when it came from the environment);
// a flag overrides a bad environment value.
func TestFleetCLI(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("tooshort\n"), 0o600)
	cases := []struct {
		name   string
		args   []string
		env    map[string]string
		status int
		out    string
	}{
		{"help", []string{"--help"}, nil, exitOK, "--members-k8s"},
		{"no members", nil, nil, exitUsage, "exactly one of --members"},
		{"two sources", []string{"--members", "a:1", "--members-dns", "b:2"}, nil, exitUsage, "exactly one of --members"},
		{"member without port", []string{"--members", "a:1,b"}, nil, exitUsage, `invalid --members entry "b"`},
		{"dns without port", []string{"--members-dns", "sonde"}, nil, exitUsage, `invalid --members-dns "sonde"`},
		{"k8s without selector", []string{"--members-k8s", "monitoring"}, nil, exitUsage, `invalid --members-k8s "monitoring"`},
		{"k8s outside a cluster", []string{"--members-k8s", "monitoring/app=sonde"}, map[string]string{"KUBERNETES_SERVICE_HOST": ""}, exitUsage, "not in a Kubernetes pod"},
		{"bad env timeout", []string{"--members", "a:1"}, map[string]string{"SONDE_FLEET_MEMBER_TIMEOUT": "soon"}, exitUsage, `invalid --member-timeout "soon" (env SONDE_FLEET_MEMBER_TIMEOUT)`},
		{"flag overrides bad env", []string{"--members", "a:1", "--member-timeout", "1s", "--listen", "nonsense"}, map[string]string{"SONDE_FLEET_MEMBER_TIMEOUT": "soon"}, exitUsage, `invalid --listen "nonsense"`},
		{"short token", []string{"--members", "a:1", "--api-token-file", short}, nil, exitUsage, "--api-token-file"},
		{"cert without key", []string{"--members", "a:1", "--member-cert-file", short}, nil, exitUsage, "--member-cert-file and --member-key-file"},
		{"bad poll interval", []string{"--members", "a:1", "--member-poll-interval", "0s"}, nil, exitUsage, "member-poll-interval"},
		{"bad env auth-ops", []string{"--members", "a:1"}, map[string]string{"SONDE_FLEET_API_AUTH_OPS": "maybe"}, exitUsage, `invalid --api-auth-ops "maybe" (env SONDE_FLEET_API_AUTH_OPS)`},
		{"tls key missing", []string{"--members", "a:1", "--tls-cert", short}, nil, exitUsage, "--tls-cert and --tls-key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			status := run(append([]string{"fleet", "--data-dir", dir}, c.args...), &stdout, &stderr)
			if status != c.status || !strings.Contains(stdout.String()+stderr.String(), c.out) {
				t.Fatalf("status %d, want %d; output %q does not hold %q", status, c.status, stdout.String()+stderr.String(), c.out)
			}
		})
	}
}
