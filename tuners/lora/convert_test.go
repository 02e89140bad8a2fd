package lora

import (
	"math/rand/v2"
	"testing"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// TestMutatedToLoRA trains nothing but changes a PiSSA adapter's factors,
// converts it, and checks that the converted plain LoRA adapter on the
// ORIGINAL weight gives the same output as the PiSSA adapter on the
// residual weight.
func TestMutatedToLoRA(t *testing.T) {
	for _, rslora := range []bool{false, true} {
		r := rand.New(rand.NewPCG(31, 32))
		w := randTensor(r, 0.5, 7, 6)
		orig := w.Clone()
		cfg := initConfig(InitPiSSA, 3, 6)
		cfg.UseRSLoRA = rslora
		l := wrap(t, &nn.Linear{Weight: w}, cfg, "default")
		initial := map[string]*nn.Tensor{}
		for _, p := range l.AdapterParams("default") {
			initial["x."+p.Name] = p.T.Clone()
		}
		// "Training": perturb both factors.
		a := l.coreOf().adapters["default"]
		a.a.CopyFrom(nn.Add(a.a, randTensor(r, 0.1, a.a.Shape()...)))
		a.b.CopyFrom(nn.Add(a.b, randTensor(r, 0.1, a.b.Shape()...)))
		trained := map[string]*nn.Tensor{}
		for _, p := range l.AdapterParams("default") {
			trained["x."+p.Name] = p.T
		}
		x := randTensor(r, 1, 4, 6)
		want := run(l, x, nil).Data()

		nc, tensors, err := MutatedToLoRA(cfg, trained, initial)
		if err != nil {
			t.Fatal(err)
		}
		if nc.R != 6 || nc.InitLoRAWeights != InitDefault {
			t.Fatalf("converted config r %d init %q", nc.R, nc.InitLoRAWeights)
		}
		plain := NewConfig()
		plain.R, plain.Alpha, plain.UseRSLoRA = nc.R, nc.Alpha, nc.UseRSLoRA
		l2, err := Method{}.Wrap(tuners.Target{Path: "p", Module: &nn.Linear{Weight: orig}, Config: plain, Adapter: "default"})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range l2.AdapterParams("default") {
			p.T.CopyFrom(tensors["x."+p.Name])
		}
		closeTo(t, "converted output", run(l2, x, nil).Data(), to64(want), 1e-5, 1e-4)
	}
}
