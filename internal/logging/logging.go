// Package logging builds the daemon's zap logger from the two user-facing
// settings, level and format. It is called once by main; every component then
// receives the logger (or a logger.With child) explicitly.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/term"
)

// Formats accepted by New.
const (
	FormatAuto    = "auto"
	FormatJSON    = "json"
	FormatConsole = "console"
)

// ParseLevel maps debug|info|warn|error (case-insensitive) to a zap level.
func ParseLevel(s string) (zapcore.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return zapcore.DebugLevel, nil
	case "info", "":
		return zapcore.InfoLevel, nil
	case "warn", "warning":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return 0, fmt.Errorf("invalid log level %q: want debug, info, warn or error", s)
}

// New returns a logger writing to out at the given level. format is json,
// console, or auto: console when out is a terminal, JSON otherwise, so that
// a human at a shell gets readable lines and a supervisor gets parseable ones.
func New(level, format string, out io.Writer) (*zap.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	console, err := useConsole(format, out)
	if err != nil {
		return nil, err
	}

	var enc zapcore.Encoder
	if console {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		if isTerminal(out) {
			ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		}
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	}

	ws := zapcore.AddSync(out)
	core := zapcore.NewCore(enc, zapcore.Lock(ws), lvl)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(ws)), zap.AddStacktrace(zapcore.DPanicLevel)), nil
}

func useConsole(format string, out io.Writer) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(format)) {
	case FormatAuto, "":
		return isTerminal(out), nil
	case FormatJSON:
		return false, nil
	case FormatConsole:
		return true, nil
	}
	return false, fmt.Errorf("invalid log format %q: want auto, json or console", format)
}

func isTerminal(out io.Writer) bool {
	f, ok := out.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
