package tuners

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// AllLinear is the target_modules shorthand that selects every linear layer
// (compared case-insensitively, as PEFT does).
const AllLinear = "all-linear"

// Targets is PEFT's polymorphic target_modules / exclude_modules value: JSON
// null, a list of module names, or a string holding a regular expression
// (or the shorthand "all-linear").
//
// The zero value is "none" (null). A list is held in Names (non-nil, maybe
// empty); a string in Pattern.
type Targets struct {
	// Names is the list form: a module matches when its path equals a name
	// or ends with "." + name. PEFT keeps it as a set, so order carries no
	// meaning.
	Names []string
	// Pattern is the string form: a regular expression that must match the
	// whole module path (Go RE2 syntax, which covers the expressions PEFT
	// configs use in practice).
	Pattern string
}

// Names returns list-form Targets.
func Names(names ...string) Targets {
	if names == nil {
		names = []string{}
	}
	return Targets{Names: names}
}

// Pattern returns string-form Targets holding a regular expression.
func Pattern(expr string) Targets { return Targets{Pattern: expr} }

// IsZero reports whether t is null (neither a list nor a pattern).
func (t Targets) IsZero() bool { return t.Names == nil && t.Pattern == "" }

// IsPattern reports whether t is the string form.
func (t Targets) IsPattern() bool { return t.Pattern != "" }

// IsAllLinear reports whether t is the "all-linear" shorthand.
func (t Targets) IsAllLinear() bool { return strings.EqualFold(t.Pattern, AllLinear) }

// String renders t for error messages, close to how PEFT prints it.
func (t Targets) String() string {
	switch {
	case t.IsPattern():
		return fmt.Sprintf("%q", t.Pattern)
	case t.Names != nil:
		return fmt.Sprintf("%q", t.Names)
	default:
		return "null"
	}
}

// MarshalJSON writes null, the list, or the pattern string.
func (t Targets) MarshalJSON() ([]byte, error) {
	switch {
	case t.IsPattern():
		return json.Marshal(t.Pattern)
	case t.Names != nil:
		return json.Marshal(t.Names)
	default:
		return []byte("null"), nil
	}
}

// UnmarshalJSON accepts null, a string, or a list of strings.
func (t *Targets) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*t = Targets{}
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			// An empty string matches nothing as a regex; keep it as an
			// empty list so that it round-trips as "no targets".
			t.Names = []string{}
			return nil
		}
		t.Pattern = s
		return nil
	default:
		var names []string
		if err := json.Unmarshal(b, &names); err != nil {
			return fmt.Errorf("want null, a string or a list of strings: %w", err)
		}
		if names == nil {
			names = []string{}
		}
		t.Names = names
		return nil
	}
}

// LayerIndexes is PEFT's layers_to_transform: JSON null, an int, or a list of
// ints. nil means "every layer". It is written back as a list (PEFT treats an
// int and a one-element list alike).
type LayerIndexes []int

// MarshalJSON writes null or a list.
func (l LayerIndexes) MarshalJSON() ([]byte, error) {
	if l == nil {
		return []byte("null"), nil
	}
	return json.Marshal([]int(l))
}

// UnmarshalJSON accepts null, an int or a list of ints.
func (l *LayerIndexes) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*l = nil
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		var v []int
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		if v == nil {
			v = []int{}
		}
		*l = v
		return nil
	}
	var v int
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("want null, an int or a list of ints: %w", err)
	}
	*l = LayerIndexes{v}
	return nil
}

// StringOrList is a JSON value that PEFT accepts as a string or a list of
// strings (layers_pattern). nil is null; one non-empty element is written
// as a string.
type StringOrList []string

// MarshalJSON writes null, a string (one element) or a list.
func (s StringOrList) MarshalJSON() ([]byte, error) {
	switch {
	case s == nil:
		return []byte("null"), nil
	case len(s) == 1 && s[0] != "":
		return json.Marshal(s[0])
	default:
		return json.Marshal([]string(s))
	}
}

// UnmarshalJSON accepts null, a string or a list of strings.
func (s *StringOrList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*s = nil
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		if v == "" {
			*s = StringOrList{}
			return nil
		}
		*s = StringOrList{v}
		return nil
	default:
		var v []string
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("want null, a string or a list of strings: %w", err)
		}
		if v == nil {
			v = []string{}
		}
		*s = v
		return nil
	}
}
