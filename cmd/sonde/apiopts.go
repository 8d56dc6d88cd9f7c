package main

import (
	"github.com/sonde-project/sonde/internal/api"
	"github.com/sonde-project/sonde/internal/config"
)

// apiOptions fills the /api/v1 part of the API's options from the
// configuration: tokens read from --api-token-file and the TLS setup, both
// checked now so a bad file stops the start instead of the first request.
func apiOptions(cfg *config.Config, opts api.Options) (api.Options, error) {
	if cfg.APITokenFile != "" {
		tokens, err := api.ReadTokenFile(cfg.APITokenFile)
		if err != nil {
			return opts, usageError{err}
		}
		opts.Tokens = tokens
	}
	if cfg.TLSCert != "" {
		tc, err := api.TLSConfig(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA)
		if err != nil {
			return opts, usageError{err}
		}
		opts.TLS = tc
	}
	opts.Node = cfg.NodeName
	opts.AuthDisabled = !cfg.APIAuth
	opts.AuthOps = cfg.APIAuthOps
	opts.MaxWindow = cfg.APIMaxWindow
	opts.MaxBytes = int64(cfg.APIMaxBytes)
	return opts, nil
}
