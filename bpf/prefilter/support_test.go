package prefilter

import "testing"

func TestSupported(t *testing.T) {
	if err := Supported(); err != nil {
		t.Fatal(err)
	}
}
