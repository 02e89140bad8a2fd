package kernels

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeBackend is a Backend that only knows its name; any kernel call panics
// through the nil embedded interface.
type fakeBackend struct {
	Backend
	name string
}

func (f *fakeBackend) Name() string { return f.name }

// isolate empties the registry for one test and restores it afterwards.
func isolate(t *testing.T) {
	t.Helper()
	regMu.Lock()
	savedRegs, savedMade, savedFallback := regs, made, fallback
	regs, made, fallback = map[string]Registration{}, map[string]Backend{}, nil
	regMu.Unlock()
	t.Setenv(EnvBackend, "")
	t.Cleanup(func() {
		regMu.Lock()
		regs, made, fallback = savedRegs, savedMade, savedFallback
		regMu.Unlock()
	})
}

// fake registers a fake backend and returns how often it was constructed.
func fake(name string, priority int, fail bool) *atomic.Int32 {
	var n atomic.Int32
	Register(Registration{Name: name, Priority: priority, New: func() (Backend, error) {
		n.Add(1)
		if fail {
			return nil, errors.New("no device")
		}
		return &fakeBackend{name: name}, nil
	}})
	return &n
}

func TestNamesPriorityOrder(t *testing.T) {
	isolate(t)
	if got := Names(); len(got) != 0 {
		t.Fatalf("empty registry lists %v", got)
	}
	fake("purego", 0, false)
	fake("cuda", 20, false)
	fake("blas", 10, false)
	fake("alpha", 10, false) // ties break by name
	want := []string{"cuda", "alpha", "blas", "purego"}
	if got := Names(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Names() = %v, want %v", got, want)
	}
}

func TestGet(t *testing.T) {
	isolate(t)
	made := fake("blas", 10, false)
	fake("cuda", 20, true)

	b1, err := Get("blas")
	if err != nil || b1.Name() != "blas" {
		t.Fatalf("Get(blas) = %v, %v", b1, err)
	}
	b2, _ := Get("blas")
	if b1 != b2 || made.Load() != 1 {
		t.Errorf("Get constructed %d times, returned %p and %p; want one shared backend", made.Load(), b1, b2)
	}

	_, err = Get("tpu")
	if err == nil || !strings.Contains(err.Error(), `"tpu"`) || !strings.Contains(err.Error(), "blas") {
		t.Errorf("Get(tpu) error = %v, want one naming the backend and listing the compiled ones", err)
	}
	_, err = Get("cuda")
	if err == nil || !strings.Contains(err.Error(), "no device") || !strings.Contains(err.Error(), "cuda") {
		t.Errorf("Get(cuda) error = %v, want the constructor's error, naming cuda", err)
	}
}

func TestDefault(t *testing.T) {
	tests := []struct {
		name    string
		regs    []Registration
		env     string
		want    string
		wantErr string
	}{
		{name: "highest priority", want: "cuda",
			regs: []Registration{{Name: "purego"}, {Name: "blas", Priority: 10}, {Name: "cuda", Priority: 20}}},
		{name: "skips a backend that fails", want: "blas",
			regs: []Registration{{Name: "purego"}, {Name: "blas", Priority: 10}, {Name: "cuda", Priority: 20, New: failing}}},
		{name: "env selects", env: "purego", want: "purego",
			regs: []Registration{{Name: "purego"}, {Name: "blas", Priority: 10}}},
		{name: "env names a missing backend", env: "cuda", wantErr: "GOPEFT_BACKEND=cuda",
			regs: []Registration{{Name: "purego"}}},
		{name: "env names a failing backend", env: "cuda", wantErr: "no device",
			regs: []Registration{{Name: "purego"}, {Name: "cuda", Priority: 20, New: failing}}},
		{name: "all fail", wantErr: "no backend could start",
			regs: []Registration{{Name: "cuda", New: failing}}},
		{name: "none registered", wantErr: "no backend registered"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			t.Setenv(EnvBackend, tc.env)
			for _, r := range tc.regs {
				if r.New == nil {
					name := r.Name
					r.New = func() (Backend, error) { return &fakeBackend{name: name}, nil }
				}
				Register(r)
			}
			b, err := Default()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Default() error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Default(): %v", err)
			}
			if b.Name() != tc.want {
				t.Errorf("Default() = %s, want %s", b.Name(), tc.want)
			}
			if again := MustDefault(); again != b {
				t.Errorf("MustDefault() returned a different backend")
			}
		})
	}
}

func failing() (Backend, error) { return nil, errors.New("no device") }

func TestRegisterResetsDefault(t *testing.T) {
	isolate(t)
	fake("purego", 0, false)
	if b := MustDefault(); b.Name() != "purego" {
		t.Fatalf("Default() = %s", b.Name())
	}
	fake("blas", 10, false)
	if b := MustDefault(); b.Name() != "blas" {
		t.Errorf("after registering blas, Default() = %s, want blas", b.Name())
	}
	// Registering a name again replaces it and drops the built instance.
	old, _ := Get("blas")
	n := fake("blas", 10, false)
	if b, _ := Get("blas"); b == old || n.Load() != 1 {
		t.Errorf("re-registration kept the old instance")
	}
}

func TestMustDefaultPanics(t *testing.T) {
	isolate(t)
	defer func() {
		if recover() == nil {
			t.Error("MustDefault with no backend did not panic")
		}
	}()
	MustDefault()
}

func TestGetConcurrent(t *testing.T) {
	isolate(t)
	n := fake("purego", 0, false)
	var wg sync.WaitGroup
	got := make([]Backend, 16)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = Get("purego")
		}()
	}
	wg.Wait()
	for _, b := range got {
		if b != got[0] {
			t.Fatal("concurrent Get returned different instances")
		}
	}
	if n.Load() != 1 {
		t.Errorf("constructed %d times, want 1", n.Load())
	}
}
