package api

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// ReadTokenFile reads API bearer tokens, one per line. Blank lines and lines
// starting with '#' are skipped; surrounding whitespace is not part of a
// token. A file without any token is an error, so a mistyped path or an
// empty file cannot leave the API open or silently closed.
func ReadTokenFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("api: reading token file: %w", err)
	}
	var tokens []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if len(t) < 16 {
			return nil, fmt.Errorf("api: token file %s line %d: token of %d characters is too short: use at least 16 (openssl rand -hex 32)", path, line, len(t))
		}
		tokens = append(tokens, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("api: reading token file %s: %w", path, err)
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("api: token file %s holds no token", path)
	}
	return tokens, nil
}

// Fingerprint names a token in logs without revealing it: the first 8 hex
// digits of its SHA-256.
func Fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:4])
}

// authenticator checks requests against the configured tokens. Tokens are
// kept as SHA-256 digests and a presented token is hashed before it is
// compared, so every comparison is of 32 bytes whatever was sent, and every
// token is compared (constant time, no early exit).
type authenticator struct {
	digests [][sha256.Size]byte
	off     bool // --api-auth=false
}

func newAuthenticator(tokens []string, off bool) *authenticator {
	a := &authenticator{off: off}
	for _, t := range tokens {
		a.digests = append(a.digests, sha256.Sum256([]byte(t)))
	}
	return a
}

// who authenticates r and returns who made it, for the audit log: "cert:CN"
// for a verified client certificate, "token:FINGERPRINT" for a bearer token,
// "anonymous" with authentication off. ok is false when r is not allowed.
func (a *authenticator) who(r *http.Request) (who string, ok bool) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		// Only with --tls-client-ca: the TLS layer has verified the chain.
		return "cert:" + r.TLS.VerifiedChains[0][0].Subject.CommonName, true
	}
	if tok, found := bearer(r); found {
		d := sha256.Sum256([]byte(tok))
		match := 0
		for i := range a.digests {
			match |= subtle.ConstantTimeCompare(d[:], a.digests[i][:])
		}
		if match == 1 {
			return "token:" + Fingerprint(tok), true
		}
	}
	if a.off {
		return "anonymous", true
	}
	return "", false
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// unauthorized answers 401 with the challenge RFC 6750 asks for.
func unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="sonde"`)
	msg := "authentication required: send Authorization: Bearer <token> (a token from --api-token-file)"
	if _, found := bearer(r); found {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sonde", error="invalid_token"`)
		msg = "invalid bearer token"
	}
	writeError(w, http.StatusUnauthorized, "unauthorized", msg)
}

// TLSConfig is the server's TLS configuration for certFile and keyFile, and
// with clientCAFile, mutual TLS: a client certificate signed by one of its
// CAs is required and verified on every connection.
func TLSConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("api: loading TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("api: reading client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("api: client CA file %s holds no PEM certificate", clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
