"""``cbd-organisms``: build the tiny organisms (or the named ones) and print where they are, how they behave and
every figure of their contract."""

from __future__ import annotations

import argparse
import json

from .build import build, refusal_organism
from .recipes import ORGANISM_NAMES


def headline(behaviour: dict) -> dict:
    """The figures worth a glance: fire rates, refusal rates and probe AUROCs."""
    out = {}
    if "backdoor" in behaviour:
        out["fire_rate"] = behaviour["backdoor"]["fire_rate"]
    if "refusal" in behaviour:
        refusal = behaviour["refusal"]
        out["refusal_rate"] = refusal["refusal_rate"]
        for key in ("probe_auroc_base_probe", "probe_auroc_refit"):
            if key in refusal:
                out[key] = round(refusal[key]["value"], 3)
    return out


def contract_lines(behaviour: dict) -> list[str]:
    return [f"  {'ok  ' if c['passed'] else 'FAIL'} {c['name']}: {c['detail']}" for c in behaviour["contract"]]


def refusal_spec(text: str) -> tuple[str, int, int]:
    try:
        mode, layer, seed = text.split(":")
        return mode, int(layer), int(seed)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--refusal {text!r}: expected MODE:AUDIT_LAYER:SEED, e.g. deep:2:0") from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="cbd-organisms", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"organisms to build (default: all of {', '.join(ORGANISM_NAMES)})"
    )
    parser.add_argument(
        "--refusal",
        type=refusal_spec,
        action="append",
        default=[],
        metavar="MODE:LAYER:SEED",
        help="also build a refusal organism (shallow, deep or null) for another audit layer and seed",
    )
    parser.add_argument("--force", action="store_true", help="rebuild the named organisms even if cached")
    parser.add_argument("--json", action="store_true", help="print every behaviour figure as JSON")
    args = parser.parse_args(argv)
    # Only --refusal given: just those; otherwise the named organisms (default: all).
    organisms = {} if args.refusal and not args.names else build(args.names or None, force=args.force)
    for mode, layer, seed in args.refusal:
        o = refusal_organism(mode, layer, seed, force=args.force)
        organisms[o.name] = o
    if args.json:
        print(json.dumps({name: {"path": str(o.path), **o.behaviour} for name, o in organisms.items()}, indent=2))
        return
    for _name, o in organisms.items():
        print(
            f"{o.model_id}  (contract met after {o.behaviour['rounds']} training round(s))\n  path: {o.path}\n"
            f"  {json.dumps(headline(o.behaviour))}"
        )
        print("\n".join(contract_lines(o.behaviour)))


if __name__ == "__main__":
    main()
