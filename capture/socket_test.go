package capture

import (
	"strings"
	"testing"
	"time"

	"github.com/sonde-project/sonde/internal/netnstest"
)

// TestOpenSocketErrors: a socket that cannot be set up is an error naming
// the step, whichever step failed (it used to panic closing a
// nil socket, found running the arm64 build under qemu-user).
func TestOpenSocketErrors(t *testing.T) {
	netnstest.Root(t)
	p := netnstest.New(t)
	ok := Config{Snaplen: 65535, RingBytes: 4 << 20, BlockBytes: 1 << 20, BlockTimeout: time.Millisecond}
	huge := ok
	huge.BlockBytes, huge.RingBytes = 1<<30, 1<<46 // far more than the kernel allows
	for _, c := range []struct {
		name  string
		iface func() int // ifindex to bind
		cfg   Config
		want  string
	}{
		{"no such interface", func() int { return 1 << 30 }, ok, "bind"},
		{"ring too large", func() int { idx, _ := interfaceIndex(p.B.Iface); return idx }, huge, "allocate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := netnstest.Do(p.B.NS, func() error {
				s, err := openSocket(c.iface(), &c.cfg)
				if s != nil {
					s.close()
				}
				return err
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("openSocket: %v, want an error naming %q", err, c.want)
			}
		})
	}
}
