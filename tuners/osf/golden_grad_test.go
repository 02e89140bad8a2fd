package osf_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gopeft/gopeft/models/fixtures"
	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/peft"
	"github.com/gopeft/gopeft/safetensors"
	"github.com/gopeft/gopeft/tuners/internal/layertest"
)

// TestGoldenHookedGradients checks gopeft's OSF gradients against the
// grad.* tensors PEFT recorded in the osf_mlp golden case. The suite does
// not check them (they are PEFT's hook-projected gradients, not plain
// autograd ones); gopeft projects inside autograd and must reproduce them.
// The case folder is $GOPEFT_GOLDEN_DIR/osf_mlp or shared/golden beside the
// repository.
func TestGoldenHookedGradients(t *testing.T) {
	dir := os.Getenv("GOPEFT_GOLDEN_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "golden")
	}
	dir = filepath.Join(dir, "osf_mlp")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("no golden case at %s (set GOPEFT_GOLDEN_DIR): %v", dir, err)
	}
	be := nn.DefaultBackend()
	base, err := fixtures.Load(be, dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := peft.Load(base, filepath.Join(dir, "adapter"), peft.Trainable(true))
	if err != nil {
		t.Fatal(err)
	}
	in, err := fixtures.ReadInput(be, dir)
	if err != nil {
		t.Fatal(err)
	}
	io, err := safetensors.Open(filepath.Join(dir, "io.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer io.Close()
	out, err := base.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	probe, err := io.Float32("probe")
	if err != nil {
		t.Fatal(err)
	}
	nn.SumAll(nn.Mul(out, nn.New(be, probe, out.Shape()...))).Backward()
	sd, err := m.StateDict("default")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for key, p := range sd {
		want, err := io.Float32("grad." + key)
		if err != nil {
			t.Errorf("%s: no recorded gradient: %v", key, err)
			continue
		}
		if err := layertest.Close(p.Grad().Data(), layertest.To64(want), 1e-5, 1e-4); err != nil {
			t.Errorf("%s: %v", key, err)
		}
		checked++
	}
	if checked != 6 {
		t.Errorf("checked %d gradients, want 6", checked)
	}
}
