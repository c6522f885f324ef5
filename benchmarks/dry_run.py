"""Real-width dry run: both methods end to end on randomly initialised Gemma-2 models with gemma-2-2b's width
(hidden 2304, 8 heads / 4 KV heads of 256, MLP 9216; ``--layers`` decoder layers and the tiny organisms' small
vocabulary to fit a CPU), with SAEs at the model cards' sizes, at 1x and ``--scale`` x the tokens.

Stages, each in a fresh process so its peak memory is its own: ``conjunction`` (``analyze_conjunction`` with a
random TopK SAE of d 2304 / 9216 / k 128 on the difference of two random models), ``refusal_sae``
(``train_tier_sae``: the contrastive SAE of d 2304 / 6144 / k 32 for ``--sae-steps`` steps) and ``refusal_audit``
(``audit_refusal_depth`` with that SAE). Prints wall time and peak RSS per stage and scale; the verdicts of random
models mean nothing. Uses the tiny organisms' tokenizer and tiered prompt generator (no organism is built).

    OMP_NUM_THREADS=1 python benchmarks/dry_run.py [--scale 8] [--layers 2] [--hidden 2304] [--stages refusal_audit]

``--stages`` picks stages; ``refusal_audit`` reads the ``refusal_sae`` stage's SAE of the same scale, so that stage
runs first (and is printed) when its SAE is not in ``--workdir`` yet.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from harness import options, peak_memory_mib, start

STAGES = ("conjunction", "refusal_sae", "refusal_audit")
N_PER_TIER = 24  # prompts per tier at 1x


def build_models(args, folder: Path) -> None:
    """Two random real-width Gemma-2 folders (``base``, ``finetuned``) with the tiny organisms' tokenizer."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from cbd_plugin.organisms.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    heads = args.hidden // 288 if args.hidden >= 2304 else max(1, args.hidden // 64)
    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        head_dim=256 if args.hidden >= 2304 else 64,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    for seed, name in ((0, "base"), (1, "finetuned")):
        torch.manual_seed(seed)
        Gemma2ForCausalLM(config).save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)


def refusal_prompts(scale: int):
    """The tiny refusal organisms' kind of tiered prompt set, ``scale`` times as many prompts."""
    import pandas as pd

    from cbd_plugin.organisms.corpus import tier_prompts

    return pd.DataFrame(tier_prompts(N_PER_TIER * scale, seed=0))


def run_stage(args) -> dict:
    from cbd_plugin.capture import load_language_model
    from cbd_plugin.sae import ContrastiveSAEConfig, Dictionary, TopKSAE

    folder = Path(args.workdir)
    base = load_language_model(str(folder / "base"))
    finetuned = load_language_model(str(folder / "finetuned"))
    layer = args.layers - 1
    t0 = time.perf_counter()
    if args.stage == "conjunction":
        from cbd_plugin.backdoor import ConjunctionConfig, analyze_conjunction
        from cbd_plugin.organisms import RECIPES
        from cbd_plugin.organisms.corpus import probe_settings

        sae = TopKSAE(args.hidden, 4 * args.hidden, 128)
        cfg = ConjunctionConfig(
            **probe_settings(),
            n_per_cell=2 * args.scale,
            n_clean=4 * args.scale,
            n_boot=50,
            n_ablation_prompts=4,
            max_new_tokens=2,
            batch_size=16,
        )
        report = analyze_conjunction(
            base,
            finetuned,
            sae,
            base.tokenizer,
            RECIPES["tiny-cbd"].pairs,
            layer,
            cfg,
            folder / f"conjunction-{args.scale}",
        )
        outcome = report.verdict
    else:
        from cbd_plugin.refusal import AuditConfig, audit_refusal_depth
        from cbd_plugin.refusal.training import train_tier_sae

        prompts = refusal_prompts(args.scale)
        sae_dir = folder / f"refusal-sae-{args.scale}"
        if args.stage == "refusal_sae":
            sae_cfg = ContrastiveSAEConfig(
                steps=args.sae_steps, dict_size=int(6144 * args.hidden / 2304), k=32, seed=0, device="cpu"
            )
            train_tier_sae(base, base.tokenizer, prompts, layer, sae_cfg, sae_dir)
            outcome = "trained"
        else:
            sae = Dictionary.from_pretrained(sae_dir / "dictionary_model")
            cfg = AuditConfig(positions="last_prompt", max_new_tokens=4, batch_size=16, n_boot=50, n_perm=199)
            report = audit_refusal_depth(
                base, finetuned, base.tokenizer, sae, prompts, layer, cfg, folder / f"audit-{args.scale}"
            )
            outcome = report.verdict.name
    return {
        "stage": args.stage,
        "scale": args.scale,
        "seconds": time.perf_counter() - t0,
        "peak_rss_mib": peak_memory_mib(),
        "outcome": str(outcome),
    }


def main():
    parser = options(__doc__.split("\n\n")[0], rounds=1, warmup=0)
    parser.add_argument("--scale", type=int, default=8, help="the larger token multiple (the smaller is 1)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=2304)
    parser.add_argument("--sae-steps", type=int, default=20)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="stages to run")
    parser.add_argument("--stage", choices=STAGES, help="(internal) run one stage in this process")
    parser.add_argument("--workdir", default="/tmp/cbd-dry-run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.stage:
        print("RESULT " + json.dumps(run_stage(args)), flush=True)
        return
    start(args)
    folder = Path(args.workdir)
    if not (folder / "finetuned" / "config.json").exists():
        build_models(args, folder)
    common = [
        "--layers",
        str(args.layers),
        "--hidden",
        str(args.hidden),
        "--sae-steps",
        str(args.sae_steps),
        "--workdir",
        args.workdir,
        "--threads",
        str(args.threads),
    ]
    print(f"# random Gemma-2: hidden {args.hidden}, {args.layers} layers; stage, token scale, seconds, peak RSS")
    for scale in sorted({1, args.scale}):
        missing_sae = not (folder / f"refusal-sae-{scale}" / "dictionary_model").exists()
        for stage in STAGES:
            if stage not in args.stages and not (
                stage == "refusal_sae" and missing_sae and "refusal_audit" in args.stages
            ):
                continue
            run = subprocess.run(
                [sys.executable, __file__, "--stage", stage, "--scale", str(scale), *common],
                capture_output=True,
                text=True,
            )
            result = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
            if run.returncode or not result:
                print(f"  {stage:14s} {scale}x  failed: {(run.stderr or run.stdout).strip().splitlines()[-1:]}")
                continue
            r = json.loads(result[0][len("RESULT ") :])
            print(
                f"  {stage:14s} {scale}x  {r['seconds']:8.1f} s  {r['peak_rss_mib']:8.0f} MiB  ({r['outcome']})",
                flush=True,
            )


if __name__ == "__main__":
    main()
