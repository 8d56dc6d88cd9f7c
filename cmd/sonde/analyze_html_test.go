package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestAnalyzeHTML writes the offline HTML report: one page with the
// sections of the API's report and nothing fetched from elsewhere.
func TestAnalyzeHTML(t *testing.T) {
	status, out, errOut := runAnalyze("--format", "html", "--window", "1s", filepath.Join(analyzeData, "resp_1_benchmark.pcap"))
	if status != exitOK {
		t.Fatalf("status %d: %s", status, errOut)
	}
	for _, want := range []string{"<!DOCTYPE html>", "health score", "<svg", "Top talkers", "TCP quality", "tcpdump <code>tcp port 6379</code>", "</html>"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "<script") || strings.Contains(out, "https://") {
		t.Error("the page refers outside itself")
	}
}
