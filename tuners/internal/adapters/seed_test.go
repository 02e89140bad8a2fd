package adapters

import "testing"

func TestSeedFor(t *testing.T) {
	for _, c := range []struct {
		name       string
		a, b, c, d string
		same       bool
	}{
		{"repeatable", "default", "model.q", "default", "model.q", true},
		{"adapter matters", "default", "model.q", "other", "model.q", false},
		{"path matters", "default", "model.q", "default", "model.k", false},
		{"separator keeps the parts apart", "ab", "c", "a", "bc", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := SeedFor(c.a, c.b) == SeedFor(c.c, c.d); got != c.same {
				t.Errorf("SeedFor(%q, %q) == SeedFor(%q, %q) is %v, want %v", c.a, c.b, c.c, c.d, got, c.same)
			}
		})
	}
}
