"""Greedy generation with the KV cache against the full re-run each step (the ``make_edit`` protocol, what every
generation did before the cache), plain and with the ablation's lockstep base-model edit, on a random Gemma2.

Both sides produce the same tokens (checked before timing); the ratio is the cached time over the re-run time,
paired within interleaved rounds.

    OMP_NUM_THREADS=1 python benchmarks/generation.py [--prompts 16] [--prompt-len 32] [--new 32] [--hidden 256]
"""

import copy

import nnsight
import torch
from harness import interleaved, options, print_ratios, start
from transformers import Gemma2Config, Gemma2ForCausalLM

from cbd_plugin.capture import LayerEdit, generate_tokens, trace_residuals
from cbd_plugin.capture.generation import _generate, _Plan, stop_token_ids


def random_pair(args) -> tuple[nnsight.LanguageModel, nnsight.LanguageModel]:
    torch.manual_seed(0)
    config = Gemma2Config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=4 * (args.prompt_len + args.new),
        attn_implementation="eager",
        eos_token_id=None,
    )
    base = Gemma2ForCausalLM(config).eval()
    finetuned = copy.deepcopy(base)
    with torch.no_grad():
        for p in finetuned.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return nnsight.LanguageModel(base), nnsight.LanguageModel(finetuned)


def main() -> None:
    parser = options(__doc__.splitlines()[0], rounds=3)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--prompt-len", type=int, default=32, help="longest prompt; the others are shorter (padding)")
    parser.add_argument("--new", type=int, default=32, help="new tokens per prompt (no stop token: all run to the end)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=1024)
    args = parser.parse_args()
    start(args)
    base, finetuned = random_pair(args)
    generator = torch.Generator().manual_seed(0)
    prompts = [
        torch.randint(1, args.vocab, (args.prompt_len - i % 8,), generator=generator).tolist()
        for i in range(args.prompts)
    ]
    layer = args.layers // 2
    fn = lambda resid, base_resid: resid - 0.5 * (resid - base_resid)  # noqa: E731  position-wise, as the ablation's

    def full_rerun(make_edit):
        plan = _Plan(args.new, stop_token_ids(finetuned), make_edit=(layer, make_edit))
        return lambda: _generate(finetuned, prompts, args.new, args.prompts, plan)

    def base_patch(input_ids, attention_mask):  # the ablation's make_edit: the base model re-run on every step
        base_resid = trace_residuals(base, input_ids, attention_mask, [layer])[layer]
        return lambda resid: fn(resid, base_resid)

    variants = {
        "greedy, KV cache": lambda: generate_tokens(finetuned, prompts, args.new, batch_size=args.prompts),
        "greedy, full re-run": full_rerun(lambda ids, mask: lambda resid: resid),
        "base edit, KV cache lockstep": lambda: generate_tokens(
            finetuned, prompts, args.new, batch_size=args.prompts, edit=LayerEdit(layer, fn, reference=base)
        ),
        "base edit, full re-run": full_rerun(base_patch),
    }
    outputs = {name: run() for name, run in variants.items()}
    assert outputs["greedy, KV cache"] == outputs["greedy, full re-run"], "cached and re-run greedy tokens differ"
    assert outputs["base edit, KV cache lockstep"] == outputs["base edit, full re-run"], "edited tokens differ"
    timings = interleaved(variants, args.rounds, args.warmup, args.device)
    print_ratios(
        f"generation: {args.prompts} prompts of <= {args.prompt_len} tokens + {args.new} new, "
        f"d {args.hidden}, {args.layers} layers, edit at layer {layer}",
        timings,
        [("greedy, KV cache", "greedy, full re-run"), ("base edit, KV cache lockstep", "base edit, full re-run")],
        tokens=args.prompts * args.new,
    )


if __name__ == "__main__":
    main()
