package peft

import (
	"sort"
	"strings"

	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/adalora"
	"github.com/gopeft/gopeft/tuners/adamss"
	"github.com/gopeft/gopeft/tuners/beft"
	"github.com/gopeft/gopeft/tuners/boft"
	"github.com/gopeft/gopeft/tuners/c3a"
	"github.com/gopeft/gopeft/tuners/deft"
	"github.com/gopeft/gopeft/tuners/delora"
	"github.com/gopeft/gopeft/tuners/fourierft"
	"github.com/gopeft/gopeft/tuners/frod"
	"github.com/gopeft/gopeft/tuners/glora"
	"github.com/gopeft/gopeft/tuners/gralora"
	"github.com/gopeft/gopeft/tuners/hira"
	"github.com/gopeft/gopeft/tuners/hra"
	"github.com/gopeft/gopeft/tuners/ia3"
	"github.com/gopeft/gopeft/tuners/lily"
	"github.com/gopeft/gopeft/tuners/lntuning"
	"github.com/gopeft/gopeft/tuners/loha"
	"github.com/gopeft/gopeft/tuners/lokr"
	"github.com/gopeft/gopeft/tuners/lora"
	"github.com/gopeft/gopeft/tuners/miss"
	"github.com/gopeft/gopeft/tuners/oft"
	"github.com/gopeft/gopeft/tuners/osf"
	"github.com/gopeft/gopeft/tuners/peanut"
	"github.com/gopeft/gopeft/tuners/poly"
	"github.com/gopeft/gopeft/tuners/psoft"
	"github.com/gopeft/gopeft/tuners/pvera"
	"github.com/gopeft/gopeft/tuners/randlora"
	"github.com/gopeft/gopeft/tuners/road"
	"github.com/gopeft/gopeft/tuners/shira"
	"github.com/gopeft/gopeft/tuners/supertuning"
	"github.com/gopeft/gopeft/tuners/tinylora"
	"github.com/gopeft/gopeft/tuners/trainabletokens"
	"github.com/gopeft/gopeft/tuners/unilora"
	"github.com/gopeft/gopeft/tuners/vblora"
	"github.com/gopeft/gopeft/tuners/vera"
	"github.com/gopeft/gopeft/tuners/waveft"
)

// methods maps each peft_type gopeft implements to its method. It is a plain
// map, filled here and nowhere else: adding a method is one import and one
// line.
var methods = map[string]tuners.Method{
	beft.PeftType:            beft.Method{},
	adalora.PeftType:         adalora.Method{},
	adamss.PeftType:          adamss.Method{},
	delora.PeftType:          delora.Method{},
	gralora.PeftType:         gralora.Method{},
	c3a.PeftType:             c3a.Method{},
	deft.PeftType:            deft.Method{},
	glora.PeftType:           glora.Method{},
	boft.PeftType:            boft.Method{},
	fourierft.PeftType:       fourierft.Method{},
	poly.PeftType:            poly.Method{},
	frod.PeftType:            frod.Method{},
	hira.PeftType:            hira.Method{},
	hra.PeftType:             hra.Method{},
	ia3.PeftType:             ia3.Method{},
	lily.PeftType:            lily.Method{},
	lntuning.PeftType:        lntuning.Method{},
	loha.PeftType:            loha.Method{},
	lokr.PeftType:            lokr.Method{},
	lora.PeftType:            lora.Method{},
	miss.PeftType:            miss.Method{},
	oft.PeftType:             oft.Method{},
	osf.PeftType:             osf.Method{},
	peanut.PeftType:          peanut.Method{},
	psoft.PeftType:           psoft.Method{},
	pvera.PeftType:           pvera.Method{},
	randlora.PeftType:        randlora.Method{},
	road.PeftType:            road.Method{},
	shira.PeftType:           shira.Method{},
	supertuning.PeftType:     supertuning.Method{},
	tinylora.PeftType:        tinylora.Method{},
	trainabletokens.PeftType: trainabletokens.Method{},
	unilora.PeftType:         unilora.Method{},
	vblora.PeftType:          vblora.Method{},
	vera.PeftType:            vera.Method{},
	waveft.PeftType:          waveft.Method{},
}

// Method returns the method registered for peftType ("LORA"; the lookup
// ignores case) and whether there is one.
func Method(peftType string) (tuners.Method, bool) {
	m, ok := methods[strings.ToUpper(peftType)]
	return m, ok
}

// Methods returns the registered peft_type names, sorted.
func Methods() []string {
	out := make([]string, 0, len(methods)+len(promptMethods))
	for k := range methods {
		out = append(out, k)
	}
	for k := range promptMethods {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
