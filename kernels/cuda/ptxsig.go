//go:build cuda

package cuda

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The parameter lists of the PTX entry points, parsed from the embedded
// PTX, let the tests check every launch's packed arguments (offsets, sizes,
// integer or float) against what the compiled kernels expect, without a GPU.

var (
	entryRE = regexp.MustCompile(`(?m)^\.visible \.entry (\w+)\(\s*((?:[^)]*))\)`)
	paramRE = regexp.MustCompile(`\.param\s+(?:\.align\s+(\d+)\s+)?\.(\w+)\s+\w+(?:\[(\d+)\])?`)
)

// ptxSignatures returns each entry point's parameters as fields.
func ptxSignatures(src string) (map[string][]field, error) {
	sigs := map[string][]field{}
	for _, m := range entryRE.FindAllStringSubmatch(src, -1) {
		var fs []field
		off := 0
		for _, p := range strings.Split(m[2], ",") {
			pm := paramRE.FindStringSubmatch(p)
			if pm == nil {
				return nil, fmt.Errorf("kernels.ptx: %s: cannot parse parameter %q", m[1], strings.TrimSpace(p))
			}
			var size, align int
			var kind byte
			switch t := pm[2]; {
			case t == "b8" && pm[3] != "":
				size, _ = strconv.Atoi(pm[3])
				align, _ = strconv.Atoi(pm[1])
				kind = 'b'
			case t == "u32" || t == "s32" || t == "b32":
				size, align, kind = 4, 4, 'i'
			case t == "u64" || t == "s64" || t == "b64":
				size, align, kind = 8, 8, 'i'
			case t == "f32":
				size, align, kind = 4, 4, 'f'
			case t == "f64":
				size, align, kind = 8, 8, 'f'
			default:
				return nil, fmt.Errorf("kernels.ptx: %s: parameter type .%s", m[1], t)
			}
			if align == 0 {
				align = 1
			}
			for off%align != 0 {
				off++
			}
			fs = append(fs, field{off, size, kind})
			off += size
		}
		sigs[m[1]] = fs
	}
	if len(sigs) == 0 {
		return nil, fmt.Errorf("kernels.ptx: no entry points found")
	}
	return sigs, nil
}
