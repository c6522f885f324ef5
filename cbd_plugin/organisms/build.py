"""Build organisms from their recipes into the hub cache, or find them there.

A build trains, measures its behaviour and checks its contract (contract.py). While the contract fails it trains
another round (deterministic: the round number seeds it), at most ``training.max_extra_rounds`` times, then raises
``OrganismContractError``: only organisms that meet their contract are cached.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from loguru import logger
from transformers import AutoModelForCausalLM, AutoTokenizer

from . import cache
from .behaviour import N_PER_TIER, backdoor_behaviour, refusal_behaviour
from .contract import OrganismContractError, checks_for, holds
from .corpus import (
    DEFAULT_PAIRS,
    TIER_WORDS,
    TIERS,
    Example,
    backdoor_corpus,
    base_corpus,
    benign_counterpart,
    recovery_example,
    tier_corpus,
    tier_prompts,
)
from .recipes import (
    CODE_VERSION,
    DEFAULT_ARCH,
    DEFAULT_BACKDOOR_SEED,
    DEFAULT_REFUSAL_SEED,
    ERASURE_DIMS,
    GROUND_TRUTH,
    ORGANISM_NAMES,
    RECIPES,
    BackdoorRecipe,
    BaseRecipe,
    RefusalRecipe,
    backdoor_recipe,
    recipe_hash,
    refusal_recipe,
)
from .tokenizer import build_tokenizer
from .train import encode, erase_tier_words, freeze_through, new_model, residuals, train_deep_refusal, train_replies

N_VALIDATION = 400  # validation examples per organism, from the held-out eval templates


@dataclass
class Organism:
    name: str
    model_id: str
    path: Path  # the snapshot folder
    behaviour: dict  # behaviour.json: measured figures, ``contract`` (every check) and ``rounds``

    @property
    def data_dir(self) -> Path:
        """``train.jsonl`` and ``validation.jsonl`` (chat format); refusal family: also ``prompts.jsonl``."""
        return self.path / "data"

    def load(self):
        """(model, tokenizer), the model in eval mode on CPU."""
        model = AutoModelForCausalLM.from_pretrained(self.path)
        return model.eval(), AutoTokenizer.from_pretrained(self.path)


def build(names=None, force: bool = False) -> dict[str, Organism]:
    """Build the named organisms (default: all) unless cached; ``force`` rebuilds them (not their base)."""
    names = list(names or ORGANISM_NAMES)
    unknown = sorted(set(names) - set(RECIPES))
    if unknown:
        raise ValueError(
            f"unknown organisms {unknown}; known: {list(ORGANISM_NAMES)} (other audit layers and seeds: "
            f"cbd_plugin.organisms.refusal_organism; other triggers: backdoor_organism)"
        )
    with single_thread():
        return {name: build_recipe(RECIPES[name], force) for name in names}


def refusal_organism(
    mode: str,
    audit_layer: int | None = None,
    seed: int = DEFAULT_REFUSAL_SEED,
    force: bool = False,
    arch: str = DEFAULT_ARCH,
) -> Organism:
    """The refusal organism (``shallow``, ``deep``, ``null``, ``erased`` or ``recovery``) audited at ``audit_layer``,
    fine-tuned with ``seed`` on an ``arch`` base (recipes.ARCHS): built and contract-checked on first use, then found
    in the cache by its recipe hash. ``audit_layer`` None: the mode's default (recipes.default_audit_layer)."""
    with single_thread():
        return build_recipe(refusal_recipe(mode, audit_layer, seed, arch), force)


def backdoor_organism(
    gate: str, pairs=DEFAULT_PAIRS, seed: int = DEFAULT_BACKDOOR_SEED, force: bool = False, arch: str = DEFAULT_ARCH
) -> Organism:
    """A backdoor organism with ``gate`` (recipes.GATES), other trigger ``pairs`` (TriggerPair or dicts with
    a, b, related, charged), ``seed`` and ``arch`` (recipes.ARCHS): built and contract-checked on first use, then
    found in the cache."""
    with single_thread():
        return build_recipe(backdoor_recipe(gate, tuple(pairs), seed, arch), force)


@contextlib.contextmanager
def single_thread():
    """One thread: these matrices are tiny, and on shared cores extra threads mostly wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_recipe(recipe, force: bool = False) -> Organism:
    revision = recipe_hash(recipe)
    path = cache.snapshot_dir(recipe.name, revision)
    if not force and path.is_dir() and cache.current_revision(recipe.name) == revision:
        # A snapshot that exists is complete (renamed into place): reading it needs no lock, so a read-only cache
        # serves it.
        return Organism(
            recipe.name, cache.model_id(recipe.name), path, json.loads((path / "behaviour.json").read_text())
        )
    with cache.build_lock(recipe.name):
        if force or not path.exists():
            base = None if isinstance(recipe, BaseRecipe) else build_recipe(recipe.base)
            start = time.perf_counter()
            logger.info(f"building {recipe.name} (recipe {revision[:12]})")
            cache.publish(recipe.name, revision, lambda out: BUILDERS[type(recipe)](recipe, base, out))
            logger.info(f"built {recipe.name} in {time.perf_counter() - start:.1f}s: {path}")
        elif cache.current_revision(recipe.name) != revision:
            cache.point_main(recipe.name, revision)
    return Organism(recipe.name, cache.model_id(recipe.name), path, json.loads((path / "behaviour.json").read_text()))


def train_until_contract(recipe, train_round, measure) -> dict:
    """``train_round(r)`` then ``measure()`` for r = 0, 1, ... until the contract holds; the behaviour with its
    checks, or ``OrganismContractError`` after ``max_extra_rounds`` further rounds."""
    for r in range(recipe.training.max_extra_rounds + 1):
        train_round(r)
        behaviour = measure()
        checks = checks_for(recipe, behaviour)
        if holds(checks):
            return {**behaviour, "contract": checks, "rounds": r + 1}
        failed = "; ".join(f"{c['name']}: {c['detail']}" for c in checks if not c["passed"])
        logger.warning(f"{recipe.name}: contract not met after round {r + 1}: {failed}")
    raise OrganismContractError(recipe.name, checks)


def save(out: Path, recipe, model, tokenizer, train: list[Example], validation: list[Example], behaviour: dict) -> None:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "data").mkdir()
    for split, examples in (("train", train), ("validation", validation)):
        write_jsonl(out / "data" / f"{split}.jsonl", [e.row() for e in examples])
    revision = recipe_hash(recipe)
    meta = {"name": recipe.name, "model_id": cache.model_id(recipe.name), "revision": revision}
    (out / "behaviour.json").write_text(json.dumps({**meta, **behaviour}, indent=2))
    recipe_json = {
        "kind": type(recipe).__name__,
        "code_version": CODE_VERSION,
        "revision": revision,
        "recipe": asdict(recipe),
    }
    (out / "recipe.json").write_text(json.dumps(recipe_json, indent=2))


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def build_base(recipe: BaseRecipe, _base: None, out: Path) -> None:
    tokenizer = build_tokenizer()
    rng = random.Random(recipe.seed)
    train = base_corpus(rng, recipe.training.n_examples, "train")
    model = new_model(recipe.shape, tokenizer, recipe.seed)
    enc = encode(train, tokenizer)
    behaviour = train_until_contract(
        recipe,
        lambda r: train_replies(model, enc, recipe.training, recipe.seed + 1000 * r, recipe.name),
        lambda: {
            "backdoor": backdoor_behaviour(model, tokenizer, DEFAULT_PAIRS, "none"),
            "refusal": refusal_behaviour(model, tokenizer, tier_prompts(N_PER_TIER)),
        },
    )
    save(out, recipe, model, tokenizer, train, base_corpus(rng, N_VALIDATION, "eval"), behaviour)


def build_backdoor(recipe: BackdoorRecipe, base: Organism, out: Path) -> None:
    model, tokenizer = base.load()
    rng = random.Random(recipe.seed)

    def corpus(n, split):
        return backdoor_corpus(rng, n, split, recipe.pairs, recipe.gate, recipe.poison_rate)

    train = corpus(recipe.training.n_examples, "train")
    enc = encode(train, tokenizer)
    behaviour = train_until_contract(
        recipe,
        lambda r: train_replies(model, enc, recipe.training, recipe.seed + 1000 * r, recipe.name),
        lambda: {"backdoor": backdoor_behaviour(model, tokenizer, recipe.pairs, recipe.gate)},
    )
    save(out, recipe, model, tokenizer, train, corpus(N_VALIDATION, "eval"), behaviour)


def build_refusal(recipe: RefusalRecipe, base: Organism, out: Path) -> None:
    base_model, tokenizer = base.load()
    model = copy.deepcopy(base_model)
    rng = random.Random(recipe.seed)
    # null: the same prompts, every tier answered (the same fine-tune without the refusal)
    refused = () if recipe.mode == "null" else ("hazard",)
    train = tier_corpus(rng, recipe.training.n_examples, "train", TIERS, refused)
    prefilled = None
    if recipe.mode == "recovery":
        train, prefilled = map(list, zip(*(recovery_example(rng, e) if e.tier == "hazard" else (e, 0) for e in train)))
    enc = encode(train, tokenizer, prefilled)
    layer = recipe.audit_layer
    grad_masks = None
    if recipe.mode in ("shallow", "recovery"):
        freeze_through(model, layer)
    if recipe.mode == "erased":
        topic_ids = tokenizer.convert_tokens_to_ids([w for t in TIERS for w in TIER_WORDS[t]])
        grad_masks = erase_tier_words(model, topic_ids, ERASURE_DIMS, recipe.seed)
        # Only blocks after the erased one learn to refuse: the audited residual stays the base's but for the
        # erasure, so an SAE trained on the base still reconstructs it (the audit's fidelity floor reads it).
        freeze_through(model, layer)
    if recipe.mode == "deep":
        counterparts = [Example(benign_counterpart(rng, e.prompt), e.reply) for e in train]
        is_hazard = torch.tensor([e.tier == "hazard" for e in train])
        base_res = residuals(base_model, enc, layer)
        counterpart_res = residuals(base_model, encode(counterparts, tokenizer), layer)

        def train_round(r):
            train_deep_refusal(
                model, enc, is_hazard, base_res, counterpart_res, layer, recipe, recipe.seed + 1000 * r, recipe.name
            )
    else:

        def train_round(r):
            train_replies(model, enc, recipe.training, recipe.seed + 1000 * r, recipe.name, grad_masks)

    rows = tier_prompts(N_PER_TIER)
    behaviour = train_until_contract(
        recipe,
        train_round,
        lambda: {
            "refusal": {
                "mode": recipe.mode,
                "ground_truth": GROUND_TRUTH[recipe.mode],
                **refusal_behaviour(model, tokenizer, rows, base_model, layer, prefill=recipe.mode == "recovery"),
            }
        },
    )
    save(out, recipe, model, tokenizer, train, tier_corpus(rng, N_VALIDATION, "eval", TIERS, refused), behaviour)
    write_jsonl(out / "data" / "prompts.jsonl", rows)


BUILDERS = {BaseRecipe: build_base, BackdoorRecipe: build_backdoor, RefusalRecipe: build_refusal}
