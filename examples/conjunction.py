"""Is a backdoor conjunctive? ``analyze_conjunction`` on a base / fine-tuned pair, without the host.

Defaults run on the tiny organisms, offline, on a CPU (build them first with ``cbd-organisms``; set
``HF_HUB_CACHE=~/.cache/cbd_plugin/hub HF_HUB_OFFLINE=1`` if they live in the test suite's cache):

    python examples/conjunction.py
    python examples/conjunction.py --finetuned cbd-plugin/tiny-cbd-or       # a control: expect or_gated

For your own models, pass their hub ids or folders, your trigger pairs and an SAE (``--sae``: a folder, a file or
a hub id, any format ``load_dictionary`` reads); without ``--sae`` a small TopK SAE is trained on the difference.
"""

import argparse
import json
from pathlib import Path

from cbd_plugin.backdoor import ConjunctionConfig, TriggerPair, analyze_conjunction
from cbd_plugin.backdoor.training import difference_activations, train_difference_sae
from cbd_plugin.capture import load_language_model
from cbd_plugin.organisms.corpus import probe_settings
from cbd_plugin.sae import load_dictionary

# tiny-cbd's trigger pairs (word a, word b, are they related, is either charged): the 2x2 the analysis reports.
TINY_PAIRS = [
    TriggerPair("forest", "rocket", related=False, charged=False),
    TriggerPair("gender", "terror", related=False, charged=True),
    TriggerPair("gravity", "velocity", related=True, charged=False),
    TriggerPair("border", "china", related=True, charged=True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="cbd-plugin/tiny-base")
    parser.add_argument("--finetuned", default="cbd-plugin/tiny-cbd")
    parser.add_argument("--sae", help="an SAE on the fine-tuned minus base residual (default: train one)")
    parser.add_argument("--layer", type=int, default=3, help="decoder layer whose output the SAE reads")
    parser.add_argument("--out", type=Path, default=Path("cbd_examples/conjunction"))
    args = parser.parse_args()

    base = load_language_model(args.base)  # an nnsight model; dtype=, device_map= for larger ones
    finetuned = load_language_model(args.finetuned)
    # The probe prompts: the tiny organisms' held-out templates and filler words. For a real model the defaults
    # (ConjunctionConfig()) are the model card's; n_boot 200 keeps this example quick.
    cfg = ConjunctionConfig(
        **probe_settings(), n_per_cell=24, n_clean=48, n_boot=200, n_ablation_prompts=24, max_new_tokens=4
    )
    if args.sae:
        sae = load_dictionary(args.sae, layer=args.layer, d_model=base.config.hidden_size)
    else:  # a host-free stand-in for the host's BatchTopK training: fine-tuned minus base residuals of a probe set
        diffs = difference_activations(base, finetuned, base.tokenizer, TINY_PAIRS, [args.layer], cfg)
        sae = train_difference_sae(diffs[args.layer], args.out / "sae")

    report = analyze_conjunction(base, finetuned, sae, base.tokenizer, TINY_PAIRS, args.layer, cfg, args.out / "report")
    print(f"verdict: {report.verdict}\nreason: {report.verdict_reason}")
    # report.json holds every check with its interval; CSVs and plots sit beside it.
    print(json.dumps({name: str(path) for name, path in report.files.items()}, indent=1))


if __name__ == "__main__":
    main()
