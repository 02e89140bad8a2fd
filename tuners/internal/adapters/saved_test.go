package adapters

import (
	"slices"
	"testing"

	"github.com/gopeft/gopeft/nn"
)

type pair struct{ x, y *nn.Tensor }

func TestSaved(t *testing.T) {
	v := Saved[*pair]{Names: []string{"m_x", "m_y"}, Tensors: func(p *pair) []*nn.Tensor { return []*nn.Tensor{p.x, p.y} }}
	s := NewSet[*pair](1)
	one := &pair{nn.Full(nil, 1, 2), nn.Full(nil, 2, 2)}
	two := &pair{nn.Full(nil, 3, 2), nn.Full(nil, 4, 2)}
	if err := s.Add("one", one); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("two", two); err != nil {
		t.Fatal(err)
	}
	if got := v.Params(&s, "missing"); got != nil {
		t.Errorf("Params of a missing adapter: %v", got)
	}
	ps := v.Params(&s, "two")
	if len(ps) != 2 || ps[0].Name != "m_x" || ps[0].T != two.x || ps[1].Name != "m_y" || ps[1].T != two.y {
		t.Errorf("Params(two) = %v", ps)
	}
	v.SetTrainable(&s, "one", true)
	if !one.x.RequiresGrad() || !one.y.RequiresGrad() || two.x.RequiresGrad() {
		t.Error("SetTrainable(one, true) did not reach exactly one's tensors")
	}
	v.SetTrainable(&s, "missing", true)
	base := &ParamDict{}
	cs := v.Children(&s, base)
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"base_layer", "m_x", "m_y"}) || cs[0].Module != nn.Module(base) {
		t.Fatalf("children %v", names)
	}
	y := cs[2].Module.Params()
	if len(y) != 2 || y[0].Name != "one" || y[0].T != one.y || y[1].Name != "two" || y[1].T != two.y {
		t.Errorf("m_y entries %v", y)
	}
}
