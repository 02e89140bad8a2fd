package tuners

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// MatchResult is the outcome of matching one module path against a config.
type MatchResult int

// The possible outcomes of Matcher.Match.
const (
	// Unmatched: the module is not selected.
	Unmatched MatchResult = iota
	// Matched: the module is adapted.
	Matched
	// Excluded: the module was removed by exclude_modules or is one of
	// modules_to_save (which are never adapted).
	Excluded
)

// String returns "unmatched", "matched" or "excluded".
func (r MatchResult) String() string {
	switch r {
	case Matched:
		return "matched"
	case Excluded:
		return "excluded"
	default:
		return "unmatched"
	}
}

// Matcher decides, with PEFT's check_target_module_exists rules, which
// module paths a TargetConfig selects. Build it with NewMatcher after
// "all-linear" and default targets were resolved.
//
// The rules, in order:
//  1. exclude_modules: a pattern excludes the paths it fully matches; a list
//     excludes a path equal to an entry or ending with "." + entry.
//  2. modules_to_save: a path that is, or lies under, a module named in
//     modules_to_save (regex `(^|.*\.)NAME($|\..*)`) is excluded.
//  3. target_modules as a pattern: full match; layers_to_transform is not
//     consulted.
//  4. target_modules as a list: a path equal to an entry matches outright;
//     a path ending with "." + entry matches if layers_to_transform (when
//     set and non-empty) holds its layer index: the number after
//     "<layers_pattern>." (or, without a pattern, after the first dotted
//     component following the first dot), searched leftmost.
type Matcher struct {
	targets     Targets
	target      *regexp.Regexp
	exclude     Targets
	excludeRe   *regexp.Regexp
	saveRes     []*regexp.Regexp
	layers      LayerIndexes
	layerRes    []*regexp.Regexp
	usingLayers bool
}

// NewMatcher compiles the regular expressions of tc. It returns an error
// naming the field whose expression does not compile, and refuses an
// unresolved "all-linear" (see ResolveAllLinear).
func NewMatcher(tc *TargetConfig) (*Matcher, error) {
	m := &Matcher{targets: tc.TargetModules, exclude: tc.ExcludeModules, layers: tc.LayersToTransform}
	var err error
	if tc.TargetModules.IsAllLinear() {
		return nil, fmt.Errorf("tuners: target_modules %q must be resolved against the model first", AllLinear)
	}
	if tc.TargetModules.IsPattern() {
		if m.target, err = fullMatch(tc.TargetModules.Pattern); err != nil {
			return nil, fmt.Errorf("tuners: target_modules %q: %w", tc.TargetModules.Pattern, err)
		}
	}
	if tc.ExcludeModules.IsPattern() {
		if m.excludeRe, err = fullMatch(tc.ExcludeModules.Pattern); err != nil {
			return nil, fmt.Errorf("tuners: exclude_modules %q: %w", tc.ExcludeModules.Pattern, err)
		}
	}
	for _, name := range tc.ModulesToSave {
		re, err := regexp.Compile(`^(?:^|.*\.)` + name + `(?:$|\..*)`)
		if err != nil {
			return nil, fmt.Errorf("tuners: modules_to_save entry %q: %w", name, err)
		}
		m.saveRes = append(m.saveRes, re)
	}
	m.usingLayers = tc.LayersToTransform != nil && len(tc.LayersToTransform) > 0
	if m.usingLayers {
		if len(tc.LayersPattern) == 0 {
			m.layerRes = []*regexp.Regexp{regexp.MustCompile(`^.*?\.[^.]*\.(\d+)\.`)}
		}
		for _, p := range tc.LayersPattern {
			re, err := regexp.Compile(`^.*?\.` + p + `\.(\d+)\.`)
			if err != nil {
				return nil, fmt.Errorf("tuners: layers_pattern %q: %w", p, err)
			}
			m.layerRes = append(m.layerRes, re)
		}
	}
	return m, nil
}

func fullMatch(expr string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// Match reports whether the module at path is adapted, excluded or not
// selected. path is the module's HF dotted path ("model.layers.0.mlp.up_proj").
func (m *Matcher) Match(path string) MatchResult {
	if m.excludeRe != nil {
		if m.excludeRe.MatchString(path) {
			return Excluded
		}
	} else if matchList(m.exclude.Names, path) {
		return Excluded
	}
	for _, re := range m.saveRes {
		if re.MatchString(path) {
			return Excluded
		}
	}
	if m.target != nil {
		if m.target.MatchString(path) {
			return Matched
		}
		return Unmatched
	}
	for _, n := range m.targets.Names {
		if n == path {
			return Matched
		}
	}
	found := false
	for _, n := range m.targets.Names {
		if strings.HasSuffix(path, "."+n) {
			found = true
			break
		}
	}
	if !found {
		return Unmatched
	}
	if !m.usingLayers {
		return Matched
	}
	idx, ok := m.layerIndex(path)
	if !ok {
		return Unmatched
	}
	for _, want := range m.layers {
		if idx == want {
			return Matched
		}
	}
	return Unmatched
}

// layerIndex extracts the layer number of path (see Matcher).
func (m *Matcher) layerIndex(path string) (int, bool) {
	for _, re := range m.layerRes {
		sub := re.FindStringSubmatch(path)
		if sub == nil {
			continue
		}
		n, err := strconv.Atoi(sub[1])
		if err != nil {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// matchList reports whether path equals a name or ends with "." + name.
func matchList(names []string, path string) bool {
	for _, n := range names {
		if path == n || strings.HasSuffix(path, "."+n) {
			return true
		}
	}
	return false
}

// MatchNames reports whether path is selected by a list-or-pattern value with
// the plain rules of PEFT (full regex match for a pattern; equality or "."
// suffix for a list). Methods use it for secondary selections such as IA3's
// feedforward_modules.
func MatchNames(t Targets, path string) (bool, error) {
	if t.IsPattern() {
		re, err := fullMatch(t.Pattern)
		if err != nil {
			return false, fmt.Errorf("tuners: pattern %q: %w", t.Pattern, err)
		}
		return re.MatchString(path), nil
	}
	return matchList(t.Names, path), nil
}

// DefaultTargetModules returns PEFT's default target_modules of method
// peftType for a base model of the given model_type ("llama", "gpt2", ...),
// and whether there is one.
func DefaultTargetModules(peftType, modelType string) (Targets, bool) {
	t, ok := defaultTargetModules[strings.ToUpper(peftType)][modelType]
	if !ok {
		return Targets{}, false
	}
	// Hand out a copy: the table is shared.
	if t.Names != nil {
		t.Names = append([]string(nil), t.Names...)
	}
	return t, true
}

// DefaultIA3FeedforwardModules returns PEFT's default feedforward_modules of
// IA3 for a model_type, and whether there is one.
func DefaultIA3FeedforwardModules(modelType string) (Targets, bool) {
	t, ok := ia3FeedforwardModules[modelType]
	if t.Names != nil {
		t.Names = append([]string(nil), t.Names...)
	}
	return t, ok
}

// PatternMap is a JSON object whose keys are module-name patterns and whose
// order matters (rank_pattern, alpha_pattern): Lookup returns the value of
// the first key, in file order, that matches. nil and {} are both "empty";
// it is always written as an object.
type PatternMap[V any] struct {
	keys   []string
	values map[string]V
}

// Len returns the number of entries.
func (p PatternMap[V]) Len() int { return len(p.keys) }

// Keys returns the keys in order.
func (p PatternMap[V]) Keys() []string { return append([]string(nil), p.keys...) }

// Get returns the value stored under key.
func (p PatternMap[V]) Get(key string) (V, bool) {
	v, ok := p.values[key]
	return v, ok
}

// Set stores v under key, appending key if it is new.
func (p *PatternMap[V]) Set(key string, v V) {
	if p.values == nil {
		p.values = map[string]V{}
	}
	if _, ok := p.values[key]; !ok {
		p.keys = append(p.keys, key)
	}
	p.values[key] = v
}

// Lookup returns the value of the first key K (in order) such that path
// matches `(.*\.)?(K)$` from its start, which is PEFT's get_pattern_key: K is
// a regular expression matching the path's last components.
func (p PatternMap[V]) Lookup(path string) (v V, key string, ok bool) {
	for _, k := range p.keys {
		re, err := regexp.Compile(`^(?:.*\.)?(?:` + k + `)$`)
		if err != nil {
			continue
		}
		if re.MatchString(path) {
			return p.values[k], k, true
		}
	}
	return v, "", false
}

// MarshalJSON writes the entries as an object in order.
func (p PatternMap[V]) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, k := range p.keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		vb, err := json.Marshal(p.values[k])
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(vb)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// UnmarshalJSON reads null or an object, keeping key order.
func (p *PatternMap[V]) UnmarshalJSON(b []byte) error {
	*p = PatternMap[V]{}
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("want a JSON object, got %v", tok)
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return err
		}
		k, _ := kt.(string)
		var v V
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		p.Set(k, v)
	}
	_, err = dec.Token()
	return err
}
