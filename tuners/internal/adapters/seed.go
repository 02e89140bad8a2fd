package adapters

import "hash/fnv"

// SeedFor derives a deterministic seed from an adapter name and a module
// path (or any other label): the FNV-1a hash of adapter, a zero byte and
// path. Methods seed their random initial values and dropout streams with
// it, so that the same adapter on the same module always starts the same.
func SeedFor(adapter, path string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(adapter))
	h.Write([]byte{0})
	h.Write([]byte(path))
	return h.Sum64()
}
