package kernels

import (
	"fmt"
	"os"
	"sort"
	"sync"
)

// EnvBackend is the environment variable that picks a backend by name.
const EnvBackend = "GOPEFT_BACKEND"

// Registration is one compiled backend: its name, how eagerly it should be
// picked by default, and a constructor that runs on first use.
type Registration struct {
	Name string
	// Priority orders the default choice: the highest wins
	// (purego 0, blas 10, cuda 20).
	Priority int
	// New builds the backend. It may fail (no GPU present, say); the default
	// choice then falls back to the next one.
	New func() (Backend, error)
}

var (
	regMu    sync.Mutex
	regs     = map[string]Registration{}
	made     = map[string]Backend{}
	fallback Backend
)

// Register adds a backend. The backend packages call it from the registration
// file that their build tag selects (kernels/purego/register.go and the like);
// importing gopeft/kernels/all links every compiled backend in.
// Registering a name twice replaces the earlier registration.
func Register(r Registration) {
	regMu.Lock()
	defer regMu.Unlock()
	regs[r.Name] = r
	delete(made, r.Name)
	fallback = nil
}

// Names lists the registered backends, highest priority first.
func Names() []string {
	regMu.Lock()
	defer regMu.Unlock()
	return sortedNames()
}

func sortedNames() []string {
	names := make([]string, 0, len(regs))
	for n := range regs {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		a, b := regs[names[i]], regs[names[j]]
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		return a.Name < b.Name
	})
	return names
}

// Get returns the backend registered under name, constructing it on first
// use. The same Backend value is returned on every later call.
func Get(name string) (Backend, error) {
	regMu.Lock()
	defer regMu.Unlock()
	return getLocked(name)
}

func getLocked(name string) (Backend, error) {
	if b, ok := made[name]; ok {
		return b, nil
	}
	r, ok := regs[name]
	if !ok {
		return nil, fmt.Errorf("kernels: backend %q is not compiled in (have %v; build tags select blas and cuda)", name, sortedNames())
	}
	b, err := r.New()
	if err != nil {
		return nil, fmt.Errorf("kernels: backend %q: %w", name, err)
	}
	made[name] = b
	return b, nil
}

// Default returns the backend named by GOPEFT_BACKEND when it is set, else
// the compiled backend with the highest priority that constructs without
// error. It fails only when GOPEFT_BACKEND names a backend that is missing or
// broken, or when no backend is registered.
func Default() (Backend, error) {
	regMu.Lock()
	defer regMu.Unlock()
	if fallback != nil {
		return fallback, nil
	}
	if name := os.Getenv(EnvBackend); name != "" {
		b, err := getLocked(name)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %w", EnvBackend, name, err)
		}
		fallback = b
		return b, nil
	}
	var errs []error
	for _, n := range sortedNames() {
		b, err := getLocked(n)
		if err == nil {
			fallback = b
			return b, nil
		}
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("kernels: no backend could start: %v", errs)
	}
	return nil, fmt.Errorf("kernels: no backend registered (import gopeft/kernels/all)")
}

// MustDefault is Default for programs and tests that cannot go on without a
// backend; it panics with Default's error.
func MustDefault() Backend {
	b, err := Default()
	if err != nil {
		panic(err)
	}
	return b
}
