"""``cbd-organisms``: build the tiny organisms (or the named ones) and print where they are and how they behave."""

from __future__ import annotations

import argparse
import json

from .build import build
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="cbd-organisms", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"organisms to build (default: all of {', '.join(ORGANISM_NAMES)})")
    parser.add_argument("--force", action="store_true", help="rebuild the named organisms even if cached")
    parser.add_argument("--json", action="store_true", help="print every behaviour figure as JSON")
    args = parser.parse_args(argv)
    organisms = build(args.names or None, force=args.force)
    if args.json:
        print(json.dumps({name: {"path": str(o.path), **o.behaviour} for name, o in organisms.items()}, indent=2))
        return
    for name, o in organisms.items():
        print(f"{o.model_id}\n  path: {o.path}\n  {json.dumps(headline(o.behaviour))}")


if __name__ == "__main__":
    main()
