package config

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Size is a byte count. In configuration it is written with an optional unit:
// B, KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024).
type Size int64

// Byte multiples.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

var sizeUnits = []struct {
	name string
	mult int64
}{
	// Binary units first: FormatSize prefers them.
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
	{"B", 1},
}

var errSizeSyntax = errors.New("want a size such as 100MiB, 1.5GB or 4096")

// ParseSize parses a byte count such as "100MiB", "1.5GB", "512 KiB" or
// "4096". Units are case-insensitive ("kb" and "kB" are both 1000 bytes).
// A fractional result is truncated to whole bytes.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" || strings.Count(num, ".") > 1 || num == "." {
		return 0, errSizeSyntax
	}
	mult := int64(-1)
	if unit == "" {
		mult = 1
	}
	for _, u := range sizeUnits {
		if strings.EqualFold(unit, u.name) {
			mult = u.mult
			break
		}
	}
	if mult < 0 {
		return 0, errSizeSyntax
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || (n != 0 && mult > math.MaxInt64/n) {
			return 0, errors.New("want a size below 8EiB")
		}
		return Size(n * mult), nil
	}
	// Exact decimal arithmetic, so that "1.1KB" is 1100 and not 1099.
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, errSizeSyntax
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	q := new(big.Int).Quo(r.Num(), r.Denom())
	if !q.IsInt64() {
		return 0, errors.New("want a size below 8EiB")
	}
	return Size(q.Int64()), nil
}

// FormatSize writes n in the largest unit that represents it exactly, so
// that ParseSize(FormatSize(n)) == n: 104857600 is "100MiB", 10000000 is
// "10MB", 1023 is "1023B".
func FormatSize(n Size) string {
	if n == 0 {
		return "0"
	}
	for _, u := range sizeUnits {
		if int64(n)%u.mult == 0 {
			return fmt.Sprintf("%d%s", int64(n)/u.mult, u.name)
		}
	}
	return strconv.FormatInt(int64(n), 10) // unreachable: every n is a multiple of 1B
}

// String implements fmt.Stringer with FormatSize.
func (s Size) String() string { return FormatSize(s) }

// MarshalYAML writes a size as a string with a unit, the way users write it.
func (s Size) MarshalYAML() (any, error) { return FormatSize(s), nil }
