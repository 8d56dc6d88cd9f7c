package ring

import (
	"fmt"
	"time"

	"github.com/sonde-project/sonde/internal/pcapio"
)

// Config configures a Ring. Zero values of the optional fields take the
// defaults Validate fills in.
type Config struct {
	Dir             string        // data directory (created if missing, 0o750)
	Node            string        // node name, part of file names
	Format          pcapio.Format // pcap (default) or pcapng
	FileMaxBytes    int64         // rotate before a file would exceed this (0 = no size limit)
	FileMaxDuration time.Duration // rotate at wall-clock-aligned boundaries of this length (0 = none); at least one of the two must be set
	MaxBytes        int64         // retention: total bytes of published files (0 = unlimited)
	MaxFiles        int           // retention: number of published files (0 = unlimited)
	MaxAge          time.Duration // retention: by last packet time (0 = unlimited)
	MinFreePercent  float64       // retention: keep this much of the volume free (0 = off)
	// PinMaxBytes bounds the bytes snapshots may pin (see Pin); 0 is a
	// tenth of MaxBytes, or no bound when MaxBytes is 0 too.
	PinMaxBytes   int64
	BufferBytes   int           // size of one write buffer, default 1 MiB
	QueueBytes    int64         // per stream bound on buffered bytes waiting for the writer, default 32 MiB
	FlushInterval time.Duration // longest a packet waits in a partial buffer, default 200ms
	// Now is the clock retention by age is judged against; nil is
	// time.Now. Tests set it to judge age deterministically.
	Now func() time.Time
	// Offload, when set, holds files that are not yet uploaded out of the
	// count and age limits and is told of every publish and eviction (see
	// Offload).
	Offload Offload
}

// Defaults and floors. A buffer must hold at least one full-size record,
// or a maximum-snaplen packet could never be written.
const (
	defaultBufferBytes   = 1 << 20
	defaultQueueBytes    = 32 << 20
	defaultFlushInterval = 200 * time.Millisecond
	minBufferBytes       = 4 << 10
	minFileMaxBytes      = 1 << 10
)

// Validate fills in defaults and checks every setting. Its errors name the
// field, the value and what is allowed.
func (c *Config) Validate() error {
	if c.Format == "" {
		c.Format = pcapio.FormatPcap
	}
	if c.BufferBytes == 0 {
		c.BufferBytes = defaultBufferBytes
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = defaultQueueBytes
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = defaultFlushInterval
	}
	switch {
	case c.Dir == "":
		return fmt.Errorf("ring: Dir is empty: a data directory is required")
	case !c.Format.Valid():
		return fmt.Errorf("ring: Format %q is not supported: use %q or %q", c.Format, pcapio.FormatPcap, pcapio.FormatPcapng)
	case c.FileMaxBytes < 0 || (c.FileMaxBytes > 0 && c.FileMaxBytes < minFileMaxBytes):
		return fmt.Errorf("ring: FileMaxBytes %d is invalid: use 0 (no limit) or at least %d", c.FileMaxBytes, minFileMaxBytes)
	case c.FileMaxDuration < 0 || (c.FileMaxDuration > 0 && c.FileMaxDuration < time.Second):
		return fmt.Errorf("ring: FileMaxDuration %s is invalid: use 0 (no limit) or at least 1s", c.FileMaxDuration)
	case c.FileMaxBytes == 0 && c.FileMaxDuration == 0:
		return fmt.Errorf("ring: FileMaxBytes and FileMaxDuration are both 0: set at least one so files rotate")
	case c.MaxBytes < 0:
		return fmt.Errorf("ring: MaxBytes %d is negative: use 0 (unlimited) or a byte count", c.MaxBytes)
	case c.PinMaxBytes < 0:
		return fmt.Errorf("ring: PinMaxBytes %d is negative: use 0 (a tenth of MaxBytes) or a byte count", c.PinMaxBytes)
	case c.MaxFiles < 0:
		return fmt.Errorf("ring: MaxFiles %d is negative: use 0 (unlimited) or a file count", c.MaxFiles)
	case c.MaxAge < 0:
		return fmt.Errorf("ring: MaxAge %s is negative: use 0 (unlimited) or a duration", c.MaxAge)
	case c.MinFreePercent < 0 || c.MinFreePercent >= 100:
		return fmt.Errorf("ring: MinFreePercent %g is out of range: use 0 (off) up to below 100", c.MinFreePercent)
	case c.BufferBytes < minBufferBytes:
		return fmt.Errorf("ring: BufferBytes %d is too small: use at least %d", c.BufferBytes, minBufferBytes)
	case c.QueueBytes < int64(c.BufferBytes):
		return fmt.Errorf("ring: QueueBytes %d is below BufferBytes %d: the queue must hold at least one buffer", c.QueueBytes, c.BufferBytes)
	case c.FlushInterval < 0:
		return fmt.Errorf("ring: FlushInterval %s is negative: use a positive duration", c.FlushInterval)
	}
	return nil
}
