package peft

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gopeft/gopeft/tuners"
	"github.com/gopeft/gopeft/tuners/xlora"
)

// File names of an adapter folder, as PEFT writes them.
const (
	ConfigName  = "adapter_config.json"
	WeightsName = "adapter_model.safetensors"
)

// PEFTVersion is the PEFT release whose file formats gopeft reads and
// writes; Save writes it as peft_version when a config has none.
const PEFTVersion = "0.20.0"

// ParseConfig decodes an adapter_config.json document into the config type
// of its peft_type. Fields the method does not know are kept (see
// tuners.BaseConfig.Extra). The config is validated.
func ParseConfig(data []byte) (tuners.Config, error) {
	typ, err := tuners.PeekType(data)
	if err != nil {
		return nil, err
	}
	cfg, err := newConfig(typ)
	if err != nil {
		return nil, err
	}
	if err := tuners.UnmarshalConfig(data, cfg); err != nil {
		return nil, err
	}
	// PEFT's PeftType enum has upper-case values only.
	cfg.Base().PeftType = strings.ToUpper(cfg.Base().PeftType)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// LoadConfig reads dir/adapter_config.json (see ParseConfig). Errors name
// the file.
func LoadConfig(dir string) (tuners.Config, error) {
	path := filepath.Join(dir, ConfigName)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("peft: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("peft: %s: %w", path, err)
	}
	return cfg, nil
}

// SaveConfig writes cfg to dir/adapter_config.json as PEFT does (sorted
// keys, two-space indentation), atomically, creating dir if needed.
func SaveConfig(dir string, cfg tuners.Config) error {
	data, err := tuners.MarshalConfig(cfg)
	if err != nil {
		return fmt.Errorf("peft: %s: %w", filepath.Join(dir, ConfigName), err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("peft: %w", err)
	}
	return writeAtomic(filepath.Join(dir, ConfigName), data)
}

// writeAtomic writes data to a temporary file beside path, syncs it and
// renames it over path.
func writeAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("peft: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("peft: writing %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("peft: writing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("peft: writing %s: %w", path, err)
	}
	if err = os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("peft: writing %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("peft: writing %s: %w", path, err)
	}
	return nil
}

// newConfig returns the default config of a registered peft_type.
func newConfig(peftType string) (tuners.Config, error) {
	if m, ok := Method(peftType); ok {
		return m.NewConfig(), nil
	}
	if m, ok := promptMethods[strings.ToUpper(peftType)]; ok {
		return m.NewConfig(), nil
	}
	if strings.EqualFold(peftType, xlora.PeftType) {
		return nil, fmt.Errorf("peft: peft_type %q is a mixture of LoRA experts: load it with LoadXLoRA and build it with NewXLoRA", peftType)
	}
	return nil, fmt.Errorf("peft: peft_type %q is not supported (supported: %v)", peftType, Methods())
}

// cloneConfig returns a deep copy of cfg through its JSON form, so that a
// model's copy does not alias the caller's.
func cloneConfig(cfg tuners.Config) (tuners.Config, error) {
	out, err := newConfig(cfg.Base().PeftType)
	if err != nil {
		return nil, err
	}
	data, err := tuners.MarshalConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := tuners.UnmarshalConfig(data, out); err != nil {
		return nil, err
	}
	if u, ok := cfg.(UnsavedCopier); ok {
		u.CopyUnsaved(out)
	}
	return out, nil
}

// UnsavedCopier is implemented by configs with Go-only fields that
// adapter_config.json does not hold (such as the init text's token ids of
// prompt tuning's TEXT init): the Model's copy of a config gets them through
// CopyUnsaved(dst), dst being a config of the same type.
type UnsavedCopier interface {
	CopyUnsaved(dst tuners.Config)
}
