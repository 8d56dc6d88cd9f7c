package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sonde-project/sonde/internal/api"
)

// Defaults of Client.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultIdleTimeout = 30 * time.Second
)

// Client asks the members, each with its own deadlines.
type Client struct {
	HTTP *http.Client
	// Scheme is http or https.
	Scheme string
	// Token is sent to members as a bearer token ("" sends none: mutual
	// TLS or members with authentication off).
	Token string
	// Timeout bounds the wait for a member's response headers (connect,
	// TLS, the member's own checks); IdleTimeout the wait for each read of
	// its body once it streams.
	Timeout, IdleTimeout time.Duration
}

// ClientTLS is the TLS configuration to reach members: caFile verifies
// their certificates (empty: the system roots), certFile and keyFile
// present a client certificate (mutual TLS).
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("fleet: reading the member CA file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("fleet: member CA file %s holds no PEM certificate", caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("fleet: loading the member client certificate %s and key %s: %w", certFile, keyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// NewHTTPClient is an HTTP client for members with tc (nil: plain HTTP).
// It sets no overall timeout: a window streams for as long as it takes,
// bounded by Client's header and idle timeouts instead.
func NewHTTPClient(tc *tls.Config) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tc,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		// Windows are pcap: compression would cost the members CPU for little.
		DisableCompression: true,
	}
	return &http.Client{Transport: tr}
}

// reply is one member's answer.
type reply struct {
	member Member
	node   string // its Sonde-Node header, or its name
	res    *http.Response
	body   *idleBody
	err    error
	cancel context.CancelFunc
}

func (r *reply) close() {
	if r.res != nil {
		r.res.Body.Close()
	}
	if r.cancel != nil {
		r.cancel()
	}
}

// errTimeout and errIdle are the causes a member's request is cancelled
// with, so its error says which deadline passed.
type deadlineError struct {
	what string
	d    time.Duration
}

func (e *deadlineError) Error() string { return fmt.Sprintf("%s within %s", e.what, e.d) }

// fanout sends method path?query to every member at once and returns
// their answers in members' order: a 200 with its body open, or an error
// (transport, timeout, or the member's own error answer). body, when not
// nil, builds each request's body.
func (c *Client) fanout(ctx context.Context, members []Member, method, pathQuery string) []*reply {
	out := make([]*reply, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = c.ask(ctx, m, method, pathQuery, nil, nil)
		}()
	}
	wg.Wait()
	return out
}

// ask sends one request to m with hdr's headers added. An answer whose
// status pass accepts (nil: 200 only) is returned with its body open;
// any other is the member's error.
func (c *Client) ask(ctx context.Context, m Member, method, pathQuery string, hdr http.Header, pass func(int) bool) *reply {
	rp := &reply{member: m, node: m.Name}
	mctx, cancel := context.WithCancelCause(ctx)
	rp.cancel = func() { cancel(context.Canceled) }
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	timer := time.AfterFunc(timeout, func() { cancel(&deadlineError{"no response headers", timeout}) })
	req, err := http.NewRequestWithContext(mctx, method, c.Scheme+"://"+m.Addr+pathQuery, nil)
	if err != nil {
		timer.Stop()
		rp.err = err
		return rp
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	res, err := c.HTTP.Do(req)
	timer.Stop()
	if err != nil {
		rp.err = cause(mctx, err)
		rp.close()
		return rp
	}
	rp.res = res
	if pass == nil {
		pass = func(code int) bool { return code == http.StatusOK }
	}
	if !pass(res.StatusCode) {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		var e api.ErrorBody
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		rp.err = &StatusError{Status: res.StatusCode, Code: e.Code, Msg: msg}
		rp.close()
		return rp
	}
	if n := res.Header.Get(api.NodeHeader); n != "" {
		rp.node = n
	}
	idle := c.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	rp.body = &idleBody{r: res.Body, ctx: mctx, d: idle,
		timer: time.AfterFunc(idle, func() { cancel(&deadlineError{"no data", idle}) })}
	rp.body.timer.Stop()
	return rp
}

// StatusError is a member's answer other than 200.
type StatusError struct {
	Status int
	Code   string
	Msg    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, http.StatusText(e.Status), e.Msg)
}

// cause turns a cancelled request's error into the deadline that
// cancelled it.
func cause(ctx context.Context, err error) error {
	var de *deadlineError
	if c := context.Cause(ctx); errors.As(c, &de) {
		return de
	}
	return err
}

// idleBody cancels its request when a read waits longer than d. Only the
// time inside Read counts: while the merge waits on another member, this
// one is not idle.
type idleBody struct {
	r     io.Reader
	ctx   context.Context
	d     time.Duration
	timer *time.Timer
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.d)
	n, err := b.r.Read(p)
	b.timer.Stop()
	if err != nil && err != io.EOF {
		err = cause(b.ctx, err)
	}
	return n, err
}
