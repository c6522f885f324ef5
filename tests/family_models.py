"""Random-weight tiny models of each decoder-only family, built locally from its transformers config class."""

import torch
import transformers as tf

VOCAB = 64
N_LAYERS = 3
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=N_LAYERS,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=64,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    initializer_range=0.2,
)


def _gemma3_multimodal():
    text = tf.Gemma3TextConfig(**COMMON, head_dim=16)
    vision = tf.SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14
    )
    return tf.Gemma3Config(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        mm_tokens_per_image=4,
        boi_token_index=3,
        eoi_token_index=4,
        image_token_index=5,
    )


# family -> (config factory, model class, where its decoder blocks live)
FAMILIES = {
    "gpt2": (
        lambda: tf.GPT2Config(
            vocab_size=VOCAB,
            n_embd=32,
            n_layer=N_LAYERS,
            n_head=2,
            n_positions=64,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
            initializer_range=0.2,
        ),
        tf.GPT2LMHeadModel,
        "transformer.h",
    ),
    "gpt_neox": (
        lambda: tf.GPTNeoXConfig(**{k: v for k, v in COMMON.items() if k != "num_key_value_heads"}),
        tf.GPTNeoXForCausalLM,
        "gpt_neox.layers",
    ),
    "llama": (lambda: tf.LlamaConfig(**COMMON), tf.LlamaForCausalLM, "model.layers"),
    "qwen2": (lambda: tf.Qwen2Config(**COMMON), tf.Qwen2ForCausalLM, "model.layers"),
    "qwen3": (lambda: tf.Qwen3Config(**COMMON, head_dim=16), tf.Qwen3ForCausalLM, "model.layers"),
    "mistral": (lambda: tf.MistralConfig(**COMMON), tf.MistralForCausalLM, "model.layers"),
    "gemma2": (lambda: tf.Gemma2Config(**COMMON, head_dim=16), tf.Gemma2ForCausalLM, "model.layers"),
    "gemma3": (lambda: tf.Gemma3TextConfig(**COMMON, head_dim=16), tf.Gemma3ForCausalLM, "model.layers"),
    "gemma3_multimodal": (_gemma3_multimodal, tf.Gemma3ForConditionalGeneration, "model.language_model.layers"),
    "phi3": (lambda: tf.Phi3Config(**COMMON), tf.Phi3ForCausalLM, "model.layers"),
    "olmo2": (lambda: tf.Olmo2Config(**COMMON), tf.Olmo2ForCausalLM, "model.layers"),
}


def build_family(family: str, seed: int = 0) -> torch.nn.Module:
    """A float32 random-weight model in eval mode, eager attention (padded and unpadded prompts agree)."""
    make_config, model_class, _ = FAMILIES[family]
    config = make_config()
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return model_class(config).eval()


def blocks(model: torch.nn.Module, family: str) -> torch.nn.ModuleList:
    """The decoder blocks by the path this file states, independent of the plugin's own lookup."""
    module = model
    for part in FAMILIES[family][2].split("."):
        module = getattr(module, part)
    return module
