// Package testcorpus finds the shared tcpdump capture corpus for tests: 830
// real, often malformed captures kept outside the repository, in
// ../shared/testdata/tcpdump-corpus relative to the module root (where CI
// places it), or wherever SONDE_CORPUS_DIR points.
package testcorpus

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the corpus directory. When it cannot be found the test is
// skipped, or failed when CI=true, since CI always has the corpus.
func Dir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("SONDE_CORPUS_DIR"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			c := filepath.Join(filepath.Dir(d), "shared", "testdata", "tcpdump-corpus")
			if _, err := os.Stat(c); err == nil {
				return c
			}
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("tcpdump corpus not found beside the repository (../shared/testdata/tcpdump-corpus) and SONDE_CORPUS_DIR is unset")
	}
	t.Skip("tcpdump corpus not found: set SONDE_CORPUS_DIR")
	return ""
}
