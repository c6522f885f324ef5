"""Is a model's refusal deep or shallow? ``audit_refusal_depth`` on a base / fine-tuned pair, without the host.

Defaults run on the tiny organisms, offline, on a CPU (build them first with ``cbd-organisms``; set
``HF_HUB_CACHE=~/.cache/cbd_plugin/hub HF_HUB_OFFLINE=1`` if they live in the test suite's cache):

    python examples/refusal_depth.py
    python examples/refusal_depth.py --finetuned cbd-plugin/tiny-refusal-null --layer 1   # a control: no_change

For your own models: their hub ids or folders, ``--prompts`` (a jsonl of id, text, tier[, split], or
``wmdp_mmlu_bio`` for the shipped public preset), the audit ``--layer`` and an SAE (``--sae``: any format
``load_dictionary`` reads, e.g. ``Solshine/biorefusalaudit-gemma2-2b-bio-sae-wmdp:sae_weights.pt``); without
``--sae`` a small contrastive TopK SAE is trained on the base model's select split.
"""

import argparse
import json
from pathlib import Path

from huggingface_hub import snapshot_download

from cbd_plugin.capture import load_language_model
from cbd_plugin.refusal import AuditConfig, PromptSource, audit_refusal_depth
from cbd_plugin.refusal.audit import prepare_prompts
from cbd_plugin.refusal.training import TINY_SAE, train_tier_sae
from cbd_plugin.sae import load_dictionary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="cbd-plugin/tiny-base")
    parser.add_argument("--finetuned", default="cbd-plugin/tiny-refusal-shallow")
    parser.add_argument("--prompts", help="jsonl or 'wmdp_mmlu_bio' (default: the organism's own prompt set)")
    parser.add_argument("--sae", help="an SAE on the base model's residual at --layer (default: train one)")
    parser.add_argument("--layer", type=int, default=1, help="decoder layer whose output is audited")
    parser.add_argument("--out", type=Path, default=Path("cbd_examples/refusal_depth"))
    args = parser.parse_args()

    base = load_language_model(args.base)  # an nnsight model; dtype=, device_map= for larger ones
    finetuned = load_language_model(args.finetuned)
    if args.prompts is None:  # the tiny organisms ship their tiered prompts beside the weights (offline hub cache)
        prompts = PromptSource(path=str(Path(snapshot_download(args.finetuned)) / "data" / "prompts.jsonl"))
    elif args.prompts == "wmdp_mmlu_bio":
        prompts = PromptSource(preset="wmdp_mmlu_bio")
    else:
        prompts = PromptSource(path=args.prompts)
    # last_prompt: the tiny organisms decide their reply at the last prompt token; n_boot / n_perm kept small.
    cfg = AuditConfig(positions="last_prompt", max_new_tokens=10, n_boot=200, n_perm=199)
    if args.sae:
        sae = load_dictionary(args.sae, layer=args.layer, d_model=base.config.hidden_size)
    else:  # the contrastive TopK SAE, trained on the base's select split only (the eval split stays held out)
        frame, _, _ = prepare_prompts(prompts, base.tokenizer, cfg)
        sae = train_tier_sae(base, base.tokenizer, frame, args.layer, TINY_SAE, args.out / "sae")

    report = audit_refusal_depth(base, finetuned, base.tokenizer, sae, prompts, args.layer, cfg, args.out / "audit")
    print(f"verdict: {report.verdict.name}\nreason: {report.verdict.reason}")
    # report.json holds every check with its interval; samples.csv, depth_profile.csv and plots sit beside it.
    print(json.dumps({name: str(path) for name, path in report.files.items()}, indent=1))


if __name__ == "__main__":
    main()
