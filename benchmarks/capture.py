"""Overhead of nnsight capture (cbd_plugin.capture) over a plain transformers forward with torch forward hooks.

Both sides get the same token-id batch, left-padded the same way, and return the same per-token float32
residuals with padding removed; repetitions alternate between them so machine noise hits both alike.

    OMP_NUM_THREADS=1 python benchmarks/capture.py [--layers 4] [--hidden 256] [--seq 128] [--batch 16]
"""

import argparse
import statistics
import time

import nnsight
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM

from cbd_plugin.capture import capture_residuals, pad_left


def random_gemma(n_layers: int, hidden: int, vocab: int) -> Gemma2ForCausalLM:
    torch.manual_seed(0)
    config = Gemma2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=n_layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=1024,
        attn_implementation="eager",
    )
    return Gemma2ForCausalLM(config).eval()


class _Stop(Exception):
    pass


def hooked_capture(
    hf: Gemma2ForCausalLM, token_lists: list[list[int]], layers: list[int], stop_early: bool
) -> dict[int, torch.Tensor]:
    """The baseline: forward hooks on the decoder layers, padding dropped with the attention mask. With
    ``stop_early`` the last hook aborts the forward pass, as capture's ``tracer.stop()`` does."""
    input_ids, attention_mask = pad_left(token_lists)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    outs = {}

    def record(layer, output):
        outs[layer] = output[0] if isinstance(output, tuple) else output
        if stop_early and layer == layers[-1]:
            raise _Stop

    hooks = [hf.model.layers[l].register_forward_hook(lambda m, i, o, l=l: record(l, o)) for l in layers]
    try:
        with torch.no_grad():
            hf(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
    except _Stop:
        pass
    finally:
        for h in hooks:
            h.remove()
    keep = attention_mask.bool()
    return {l: outs[l][keep].float().cpu() for l in layers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()

    hf = random_gemma(args.layers, args.hidden, args.vocab)
    model = nnsight.LanguageModel(hf)
    generator = torch.Generator().manual_seed(0)
    # Lengths between seq/2 and seq, so the batch carries real padding.
    lengths = torch.randint(args.seq // 2, args.seq + 1, (args.batch,), generator=generator).tolist()
    token_lists = [torch.randint(3, args.vocab, (n,), generator=generator).tolist() for n in lengths]
    layers = list(range(args.layers))

    runs = {
        "hooks, full forward": lambda: hooked_capture(hf, token_lists, layers, stop_early=False),
        "hooks, stop after last layer": lambda: hooked_capture(hf, token_lists, layers, stop_early=True),
        "nnsight capture": lambda: capture_residuals(model, token_lists, layers, batch_size=args.batch).acts,
    }
    reference = runs["hooks, full forward"]()
    for name, run in runs.items():  # same numbers, else the timing means nothing
        for layer, acts in run().items():
            torch.testing.assert_close(acts, reference[layer], atol=1e-4, rtol=0, msg=f"{name}, layer {layer}")
    times = {name: [] for name in runs}
    for rep in range(args.warmup + args.reps):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            if rep >= args.warmup:
                times[name].append(time.perf_counter() - start)

    median = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"Gemma2 random: {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}, batch {args.batch}, "
        f"{sum(lengths)} tokens (padded to {max(lengths)}), capturing layers {layers}, "
        f"torch threads {torch.get_num_threads()}, {args.reps} reps after {args.warmup} warm-up"
    )
    for name, t in times.items():
        print(f"  {name:30s} median {median[name] * 1e3:8.1f} ms   (min {min(t) * 1e3:.1f}, max {max(t) * 1e3:.1f})")
    for baseline in ("hooks, stop after last layer", "hooks, full forward"):
        print(f"  ratio nnsight / ({baseline}): {median['nnsight capture'] / median[baseline]:.3f}x")


if __name__ == "__main__":
    main()
