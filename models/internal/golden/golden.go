// Package golden finds and reads the shared golden test cases for the
// models packages' tests.
package golden

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// EnvDir is the environment variable that overrides where the golden cases
// are.
const EnvDir = "GOPEFT_GOLDEN_DIR"

// Dir returns the golden folder: $GOPEFT_GOLDEN_DIR, else shared/golden
// beside the repository that contains the working directory (found by
// walking up to go.mod).
func Dir() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			g := filepath.Join(filepath.Dir(d), "shared", "golden")
			if _, err := os.Stat(g); err != nil {
				return "", fmt.Errorf("golden cases not found at %s (set %s): %w", g, EnvDir, err)
			}
			return g, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("golden: no go.mod above the working directory; set " + EnvDir)
		}
	}
}

// Case is the part of a case.json the models tests use.
type Case struct {
	Name      string             `json:"-"`
	Dir       string             `json:"-"`
	Method    string             `json:"method"`
	Model     string             `json:"model"`
	ModelDims map[string]float64 `json:"model_dims"`
	InputKey  string             `json:"input_key"`
	Checks    []string           `json:"checks"`
	Atol      float64            `json:"atol"`
	Rtol      float64            `json:"rtol"`
	Notes     string             `json:"notes"`
}

// Cases reads every case.json under the golden folder, sorted by name.
func Cases() ([]Case, error) {
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*", "case.json"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("golden: no */case.json under %s", dir)
	}
	sort.Strings(paths)
	var out []Case
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var c Case
		if err := json.Unmarshal(data, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		c.Dir = filepath.Dir(p)
		c.Name = filepath.Base(c.Dir)
		out = append(out, c)
	}
	return out, nil
}

// Close reports whether got matches want elementwise within
// |got-want| <= atol + rtol*|want|, and describes the worst element if not.
func Close(got, want []float32, atol, rtol float64) (bool, string) {
	if len(got) != len(want) {
		return false, fmt.Sprintf("%d values, want %d", len(got), len(want))
	}
	worst, at := 0.0, -1
	for i := range got {
		d := float64(got[i]) - float64(want[i])
		if d < 0 {
			d = -d
		}
		lim := atol + rtol*abs(float64(want[i]))
		if !(d <= lim) && (at < 0 || d-lim > worst) {
			worst, at = d-lim, i
		}
	}
	if at < 0 {
		return true, ""
	}
	return false, fmt.Sprintf("element %d: got %v, want %v (atol %g, rtol %g)", at, got[at], want[at], atol, rtol)
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
