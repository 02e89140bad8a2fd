package peft_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gopeft/gopeft/peft"
)

// FuzzParseConfig checks that no adapter_config.json makes ParseConfig
// panic, and that an accepted config saves and parses again.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}`))
	f.Add([]byte(`{"peft_type": "LORA", "target_modules": ".*", "layers_to_transform": 1, "rank_pattern": {"a": 2}}`))
	f.Add([]byte(`{"peft_type": "LORA", "bias": "all", "modules_to_save": ["lm_head"], "use_dora": true}`))
	f.Add([]byte(`{"peft_type": "lora"}`))
	if files, _ := filepath.Glob(filepath.Join("..", "..", "shared", "golden", "lora_*", "adapter", "adapter_config.json")); len(files) > 0 {
		for _, p := range files[:min(len(files), 8)] {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := peft.ParseConfig(data)
		if err != nil {
			return
		}
		dir := t.TempDir()
		if err := peft.SaveConfig(dir, cfg); err != nil {
			t.Fatalf("SaveConfig of an accepted config: %v", err)
		}
		if _, err := peft.LoadConfig(dir); err != nil {
			t.Fatalf("an accepted config does not load again: %v", err)
		}
	})
}
