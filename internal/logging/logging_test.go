package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNewJSON(t *testing.T) {
	var buf bytes.Buffer
	log, err := New("INFO", "auto", &buf) // a bytes.Buffer is not a terminal
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden")
	log.Info("hello")
	log.Info("started")
	_ = log.Sync()

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines (debug suppressed), got %d: %q", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &rec); err != nil {
		t.Fatalf("not JSON: %v: %s", err, lines[1])
	}
	if rec["msg"] != "started" || rec["level"] != "info" {
		t.Errorf("unexpected record %v", rec)
	}
	ts, _ := rec["ts"].(string)
	if !strings.Contains(ts, "T") {
		t.Errorf("want ISO8601 ts, got %v", rec["ts"])
	}
}

func TestNewConsole(t *testing.T) {
	var buf bytes.Buffer
	log, err := New("debug", "Console", &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("visible")
	if s := buf.String(); !strings.Contains(s, "DEBUG") || !strings.Contains(s, "visible") || strings.HasPrefix(s, "{") {
		t.Errorf("want console line, got %q", s)
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct{ level, format, want string }{
		{"verbose", "json", `invalid log level "verbose"`},
		{"info", "xml", `invalid log format "xml"`},
	} {
		if _, err := New(tc.level, tc.format, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%q,%q) = %v, want error containing %q", tc.level, tc.format, err, tc.want)
		}
	}
}
