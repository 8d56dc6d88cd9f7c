package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// healthCmd is `sonde healthcheck`: the container HEALTHCHECK, with no curl
// or shell in the image. It asks the running daemon's /api/health (or
// /api/ready with --ready) and exits 0 only on a 200 answer.
func healthCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := ":9750"
	if v := os.Getenv("SONDE_LISTEN"); v != "" {
		listen = v
	}
	fs.StringVar(&listen, "listen", listen, "the daemon's --listen address (env SONDE_LISTEN)")
	ready := fs.Bool("ready", false, "check readiness (/api/ready) instead of liveness (/api/health)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		fmt.Fprintf(stderr, "sonde healthcheck: invalid --listen %q: %v\n", listen, err)
		return exitUsage
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1" // the daemon listens on every address; ask it locally
	}
	path := "/api/health"
	if *ready {
		path = "/api/ready"
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "sonde healthcheck: %v\n", err)
		return exitFailed
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "sonde healthcheck: %v\n", err)
		return exitFailed
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "sonde healthcheck: %s answered %s: %s\n", url, resp.Status, body)
		return exitFailed
	}
	fmt.Fprintf(stdout, "%s\n", body)
	return exitOK
}
