package trainabletokens

import (
	"fmt"
	"hash/fnv"

	"github.com/gopeft/gopeft/nn"
	"github.com/gopeft/gopeft/tuners"
)

// Prefix is the prefix of trainable tokens' parameter names.
const Prefix = "trainable_tokens_"

// defaultEmbedding is PEFT's fallback name of the input embedding.
const defaultEmbedding = "embed_tokens"

// inputEmbedder is implemented by base models that know the path of their
// input embedding (peft.EmbeddingModel).
type inputEmbedder interface {
	InputEmbeddings() string
}

// Method is trainable tokens as a tuners.Method: it wraps an nn.Embedding
// (or an nn.Linear whose weight rows are tokens). The zero value is ready
// to use and stateless.
type Method struct{}

var (
	_ tuners.Method          = Method{}
	_ tuners.TargetDefaulter = Method{}
)

// Type returns "TRAINABLE_TOKENS".
func (Method) Type() string { return PeftType }

// Prefix returns "trainable_tokens_".
func (Method) Prefix() string { return Prefix }

// NewConfig returns a *Config with PEFT's defaults.
func (Method) NewConfig() tuners.Config { return NewConfig() }

// DefaultTargets returns PEFT's default target_modules: the path of the
// model's input embedding as a pattern (PEFT stores the name as a string,
// which it matches as a regular expression). Models that do not name it
// (see inputEmbedder) get the path of the first module called
// "embed_tokens", or "embed_tokens" itself.
func (Method) DefaultTargets(root nn.Module) (tuners.Targets, error) {
	if e, ok := root.(inputEmbedder); ok && e.InputEmbeddings() != "" {
		return tuners.Pattern(e.InputEmbeddings()), nil
	}
	path := ""
	err := tuners.WalkTargets(root, func(n tuners.Node) error {
		if path == "" && n.Name == defaultEmbedding {
			path = n.Path
		}
		return nil
	})
	if err != nil {
		return tuners.Targets{}, err
	}
	if path == "" {
		path = defaultEmbedding
	}
	return tuners.Pattern(path), nil
}

// Wrap adds adapter t.Adapter over the rows token_indices of the module at
// t.Path: to the trainable-tokens layer there, or to a new one wrapping the
// module. With init_weights the trained rows start as the current rows;
// otherwise they are drawn from N(0, 1) with a Philox stream seeded by the
// adapter name and path (not torch's draws). They require gradients; on a
// new layer the adapter is active.
//
// Weight tying: when a new layer wraps an Embedding, every other Linear or
// Embedding of t.Root that shares its weight tensor (a tied LM head) is
// wrapped too, by a tied layer that applies the same trained rows and saves
// nothing, as PEFT does for models with tie_word_embeddings. A targeted
// module tied to the embedding gets that tied layer.
func (Method) Wrap(t tuners.Target) (tuners.Layer, error) {
	cfg, ok := t.Config.(*Config)
	if !ok {
		return nil, fmt.Errorf("trainabletokens: module %q: config is a %T, not a *trainabletokens.Config", t.Path, t.Config)
	}
	rng := nn.NewRNG(seedFor(t.Adapter, t.Path))
	if l, ok := t.Module.(*Layer); ok {
		if l.tiedTo != nil {
			// It follows the embedding's layer, which gets the adapter.
			return l, nil
		}
		if err := l.addAdapter(t.Adapter, cfg.TokenIndices, cfg.InitWeights, rng, true); err != nil {
			return nil, fmt.Errorf("trainabletokens: module %q: %w", t.Path, err)
		}
		return l, nil
	}
	if tied := tiedLayerAt(t.Root, t.Path); tied != nil {
		return tied, nil
	}
	l, err := newLayer(t.Module)
	if err != nil {
		return nil, fmt.Errorf("trainabletokens: module %q: %w", t.Path, err)
	}
	if err := l.addAdapter(t.Adapter, cfg.TokenIndices, cfg.InitWeights, rng, true); err != nil {
		return nil, fmt.Errorf("trainabletokens: module %q: %w", t.Path, err)
	}
	l.active = []string{t.Adapter}
	if l.embedding && t.Root != nil {
		if err := tie(t.Root, t.Path, l); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// tiedLayerAt returns the tied layer now at path in root (put there by the
// embedding's Wrap earlier in the same injection), or nil.
func tiedLayerAt(root nn.Module, path string) *Layer {
	if root == nil {
		return nil
	}
	var found *Layer
	_ = tuners.WalkTargets(root, func(n tuners.Node) error {
		if l, ok := n.Module.(*Layer); ok && n.Path == path && l.tiedTo != nil {
			found = l
		}
		return nil
	})
	return found
}

// tie wraps every module of root other than the one at path whose weight is
// owner's weight tensor in a tied layer following owner.
func tie(root nn.Module, path string, owner *Layer) error {
	var nodes []tuners.Node
	err := tuners.WalkTargets(root, func(n tuners.Node) error {
		if n.Path == path || n.Parent == nil {
			return nil
		}
		var w *nn.Tensor
		switch m := n.Module.(type) {
		case *nn.Linear:
			w = m.Weight
		case *nn.Embedding:
			w = m.Weight
		}
		if w != nil && w == owner.weight {
			nodes = append(nodes, n)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, n := range nodes {
		l, err := newLayer(n.Module)
		if err != nil {
			return fmt.Errorf("trainabletokens: module %q tied to %q: %w", n.Path, path, err)
		}
		l.tiedTo = owner
		l.active = []string{owner.names[0]}
		if err := n.Parent.SetChild(n.Name, l); err != nil {
			return fmt.Errorf("trainabletokens: module %q tied to %q: %w", n.Path, path, err)
		}
	}
	return nil
}

// seedFor derives a layer's initialisation seed from the adapter name and
// module path (FNV-1a).
func seedFor(adapter, path string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(adapter))
	h.Write([]byte{0})
	h.Write([]byte(path))
	return h.Sum64()
}
