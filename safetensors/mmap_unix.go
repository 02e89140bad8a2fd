//go:build unix

package safetensors

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps size bytes of f privately and copy-on-write: reads come from
// the page cache without a copy, and a write (merging an adapter into a
// mapped weight, say) copies only the touched pages into private memory and
// never reaches the file. It returns the mapping and a function that
// releases it.
func mapFile(f *os.File, size int) ([]byte, func() error, error) {
	b, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, err
	}
	return b, func() error { return unix.Munmap(b) }, nil
}
