//go:build !unix

package safetensors

import (
	"errors"
	"os"
)

// mapFile is not available on this platform; Open falls back to reading
// the file into memory.
func mapFile(f *os.File, size int) ([]byte, func() error, error) {
	return nil, nil, errors.New("memory mapping not supported on this platform")
}
