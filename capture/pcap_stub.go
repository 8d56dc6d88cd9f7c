//go:build !libpcap

package capture

import (
	"errors"
	"time"

	"go.uber.org/zap"
)

// pcapSource exists only in binaries built with -tags libpcap.
type pcapSource struct{}

func (*pcapSource) close() {}

func (c *Capture) openPcap(string) (*iface, error) {
	return nil, errors.New("this sonde binary was built without libpcap: rebuild with -tags libpcap (needs cgo and libpcap) to use the pcap engine")
}

func (w *worker) runPcap(<-chan struct{}, time.Duration, *zap.Logger) {}

// PcapAvailable reports whether this binary includes the pcap engine.
const PcapAvailable = false
