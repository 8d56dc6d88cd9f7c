package offload

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/minio/minio-go/v7"
	"go.uber.org/zap"

	"github.com/sonde-project/sonde/capture"
	"github.com/sonde-project/sonde/internal/pcapio"
	"github.com/sonde-project/sonde/internal/ring"
)

// benchFile writes a 64 MiB pcap like a ring file: Ethernet/IPv4/TCP-looking
// headers that repeat per flow and payloads of random bytes, sizes mixed
// between 64 and 1514 bytes.
func benchFile(b *testing.B, dir string) (string, int64) {
	b.Helper()
	const size = 64 << 20
	rnd := rand.New(rand.NewPCG(1, 2))
	buf := pcapio.AppendFileHeader(nil, pcapio.FormatPcap, capture.LinkTypeEthernet, 262144, "eth0")
	ts := int64(1_795_000_000_000_000_000)
	hdr := make([]byte, 54)
	for i := range hdr {
		hdr[i] = byte(i * 7)
	}
	pkt := make([]byte, 1514)
	for len(buf) < size-1600 {
		n := 64 + rnd.IntN(1451)
		copy(pkt, hdr)
		pkt[30] = byte(rnd.IntN(64)) // one of 64 flows
		for j := 54; j < n; j += 8 {
			v := rnd.Uint64()
			for k := 0; k < 8 && j+k < n; k++ {
				pkt[j+k] = byte(v >> (8 * k))
			}
		}
		ts += 10_000
		buf = pcapio.AppendRecord(buf, pcapio.FormatPcap, ts, uint32(n), pkt[:n])
	}
	p := filepath.Join(dir, "20261124T000000.000000000Z_bench_eth0_0.pcap")
	if err := os.WriteFile(p, buf, 0o640); err != nil {
		b.Fatal(err)
	}
	return p, int64(len(buf))
}

// BenchmarkUpload measures upload throughput of a 64 MiB ring file to a
// local MinIO: sonde's upload (a checksum pass, then a single PUT the store
// verifies, plus the sidecar), with and without zstd, and as the peer
// minio-go's own PutObject of the same bytes with its defaults (multipart,
// parallel parts, its CRC32C checksums).
func BenchmarkUpload(b *testing.B) {
	m := startMinio(b, bucket)
	dir := b.TempDir()
	path, size := benchFile(b, dir)
	fi := ring.FileInfo{Name: filepath.Base(path), Interface: "eth0", Node: "bench", First: 1, Last: 2, Bytes: size}
	for _, compress := range []string{"none", "zstd"} {
		b.Run("sonde/"+compress, func(b *testing.B) {
			o, err := New(Config{Endpoint: "http://" + m.addr, Bucket: bucket, PathStyle: true, AccessKey: m.user, SecretKey: m.pass,
				Node: "bench", DataDir: dir, Compress: compress}, zap.NewNop(), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			var stored int64
			for b.Loop() {
				e, err := o.upload(context.Background(), &task{kind: KindFile, name: fi.Name, key: o.FileKey(fi), path: path, fi: &fi})
				if err != nil {
					b.Fatal(err)
				}
				stored = e.StoredBytes
			}
			b.ReportMetric(float64(stored)/float64(size), "stored/raw")
		})
	}
	b.Run("peer/minio-go-PutObject", func(b *testing.B) {
		c := m.client(b)
		b.SetBytes(size)
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.PutObject(context.Background(), bucket, "peer/"+fi.Name, f, size, minio.PutObjectOptions{}); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
		b.ReportMetric(1, "stored/raw")
	})
}
