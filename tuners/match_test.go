package tuners

import (
	"encoding/json"
	"testing"
)

func TestMatcher(t *testing.T) {
	llama := []string{
		"model.embed_tokens",
		"model.layers.0.self_attn.q_proj",
		"model.layers.0.self_attn.v_proj",
		"model.layers.1.self_attn.q_proj",
		"model.layers.1.mlp.up_proj",
		"model.layers.1.experts.0.q_proj",
		"lm_head",
	}
	tests := []struct {
		name string
		cfg  TargetConfig
		want map[string]MatchResult // paths not listed must be Unmatched
	}{
		{
			name: "suffix list",
			cfg:  TargetConfig{TargetModules: Names("q_proj")},
			want: map[string]MatchResult{
				"model.layers.0.self_attn.q_proj": Matched,
				"model.layers.1.self_attn.q_proj": Matched,
				"model.layers.1.experts.0.q_proj": Matched,
			},
		},
		{
			name: "suffix needs a dot boundary",
			cfg:  TargetConfig{TargetModules: Names("proj", "head")},
			want: map[string]MatchResult{},
		},
		{
			name: "exact path",
			cfg:  TargetConfig{TargetModules: Names("lm_head", "model.layers.1.mlp.up_proj")},
			want: map[string]MatchResult{"lm_head": Matched, "model.layers.1.mlp.up_proj": Matched},
		},
		{
			name: "regex is a full match",
			cfg:  TargetConfig{TargetModules: Pattern(`.*\.(q|v)_proj`)},
			want: map[string]MatchResult{
				"model.layers.0.self_attn.q_proj": Matched,
				"model.layers.0.self_attn.v_proj": Matched,
				"model.layers.1.self_attn.q_proj": Matched,
				"model.layers.1.experts.0.q_proj": Matched,
			},
		},
		{
			name: "regex partial does not match",
			cfg:  TargetConfig{TargetModules: Pattern(`q_proj`)},
			want: map[string]MatchResult{},
		},
		{
			name: "layers_to_transform with pattern",
			cfg:  TargetConfig{TargetModules: Names("q_proj", "up_proj"), LayersToTransform: LayerIndexes{1}, LayersPattern: StringOrList{"layers"}},
			want: map[string]MatchResult{
				"model.layers.1.self_attn.q_proj": Matched,
				"model.layers.1.mlp.up_proj":      Matched,
				"model.layers.1.experts.0.q_proj": Matched,
			},
		},
		{
			name: "layers_to_transform without pattern takes the first index",
			cfg:  TargetConfig{TargetModules: Names("q_proj"), LayersToTransform: LayerIndexes{0}},
			want: map[string]MatchResult{"model.layers.0.self_attn.q_proj": Matched},
		},
		{
			name: "empty layers_to_transform is ignored",
			cfg:  TargetConfig{TargetModules: Names("v_proj"), LayersToTransform: LayerIndexes{}},
			want: map[string]MatchResult{"model.layers.0.self_attn.v_proj": Matched},
		},
		{
			name: "exclude list and modules_to_save",
			cfg: TargetConfig{TargetModules: Pattern(`.*`), ExcludeModules: Names("q_proj"),
				ModulesToSave: []string{"lm_head"}},
			want: map[string]MatchResult{
				"model.embed_tokens":              Matched,
				"model.layers.0.self_attn.q_proj": Excluded,
				"model.layers.0.self_attn.v_proj": Matched,
				"model.layers.1.self_attn.q_proj": Excluded,
				"model.layers.1.mlp.up_proj":      Matched,
				"model.layers.1.experts.0.q_proj": Excluded,
				"lm_head":                         Excluded,
			},
		},
		{
			name: "exclude regex",
			cfg:  TargetConfig{TargetModules: Names("q_proj", "v_proj"), ExcludeModules: Pattern(`.*layers\.0.*`)},
			want: map[string]MatchResult{
				"model.layers.0.self_attn.q_proj": Excluded,
				"model.layers.0.self_attn.v_proj": Excluded,
				"model.layers.1.self_attn.q_proj": Matched,
				"model.layers.1.experts.0.q_proj": Matched,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMatcher(&tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range llama {
				got := m.Match(p)
				want, ok := tt.want[p]
				if !ok {
					want = Unmatched
				}
				if got != want {
					t.Errorf("Match(%q) = %v, want %v", p, got, want)
				}
			}
		})
	}
}

func TestNewMatcherErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  TargetConfig
	}{
		{"bad target regex", TargetConfig{TargetModules: Pattern(`(`)}},
		{"bad exclude regex", TargetConfig{TargetModules: Names("a"), ExcludeModules: Pattern(`[`)}},
		{"unresolved all-linear", TargetConfig{TargetModules: Pattern("ALL-LINEAR")}},
		{"bad layers pattern", TargetConfig{TargetModules: Names("a"), LayersToTransform: LayerIndexes{0}, LayersPattern: StringOrList{"("}}},
	}
	for _, tt := range tests {
		if _, err := NewMatcher(&tt.cfg); err == nil {
			t.Errorf("%s: NewMatcher succeeded, want an error", tt.name)
		}
	}
}

func TestAdapterNames(t *testing.T) {
	tests := []struct{ live, saved, prefix string }{
		{"lin0.lora_A.default.weight", "lin0.lora_A.weight", "lora_"},
		{"lin0.lora_B.default.bias", "lin0.lora_B.bias", "lora_"},
		{"model.embed_tokens.lora_embedding_A.default", "model.embed_tokens.lora_embedding_A", "lora_"},
		{"lin0.hada_w1_a.default", "lin0.hada_w1_a", "hada_"},
		{"default.lora_A.default.weight", "default.lora_A.weight", "lora_"},
	}
	for _, tt := range tests {
		if got := RemoveAdapterName(tt.live, "default"); got != tt.saved {
			t.Errorf("RemoveAdapterName(%q) = %q, want %q", tt.live, got, tt.saved)
		}
		if got := InsertAdapterName(tt.saved, tt.prefix, "default"); got != tt.live {
			t.Errorf("InsertAdapterName(%q) = %q, want %q", tt.saved, got, tt.live)
		}
	}
	if got := InsertAdapterName("lin2.weight", "lora_", "x"); got != "lin2.weight" {
		t.Errorf("InsertAdapterName without prefix changed the key: %q", got)
	}
}

func TestPatternMapOrder(t *testing.T) {
	var p PatternMap[int]
	if err := json.Unmarshal([]byte(`{"lin.*": 1, "lin1": 2, "^x": 3}`), &p); err != nil {
		t.Fatal(err)
	}
	if got := p.Keys(); len(got) != 3 || got[0] != "lin.*" || got[1] != "lin1" {
		t.Fatalf("keys = %q, want file order", got)
	}
	if v, k, ok := p.Lookup("model.lin1"); !ok || v != 1 || k != "lin.*" {
		t.Errorf("Lookup(model.lin1) = %v %q %v, want the first key in order", v, k, ok)
	}
	if _, _, ok := p.Lookup("xlin1"); ok {
		t.Errorf("Lookup(xlin1) matched; keys match whole trailing components")
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"lin.*":1,"lin1":2,"^x":3}` {
		t.Errorf("Marshal = %s", b)
	}
}

func TestDefaultTargetModules(t *testing.T) {
	got, ok := DefaultTargetModules("LORA", "llama")
	if !ok || got.IsPattern() || len(got.Names) != 2 {
		t.Fatalf("LORA llama default = %v %v", got, ok)
	}
	got.Names[0] = "changed"
	again, _ := DefaultTargetModules("lora", "llama")
	if again.Names[0] == "changed" {
		t.Error("DefaultTargetModules hands out the shared table")
	}
	if _, ok := DefaultTargetModules("LORA", "no-such-model"); ok {
		t.Error("default for an unknown model type")
	}
	for _, typ := range []string{"LORA", "IA3", "LN_TUNING", "VERA", "BOFT", "ADALORA", "LOHA", "LOKR", "VBLORA", "WAVEFT"} {
		if _, ok := defaultTargetModules[typ]; !ok {
			t.Errorf("no default table for %s", typ)
		}
	}
}
