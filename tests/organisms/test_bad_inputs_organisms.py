"""Bad organism names and recipe values fail at once, with an error naming the key (nothing is trained)."""

from dataclasses import replace

import pytest

from cbd_plugin.organisms import RECIPES, backdoor_recipe, build, cache, refusal_organism, refusal_recipe
from cbd_plugin.organisms.build import build_recipe
from cbd_plugin.organisms.corpus import DEFAULT_PAIRS, TriggerPair
from cbd_plugin.organisms.recipes import BackdoorRecipe, RefusalRecipe, Training, recipe_hash

CBD = RECIPES["tiny-cbd"]
DEEP = RECIPES["tiny-refusal-deep"]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: build(["tiny-nope"]), r"tiny-nope"),
        (lambda: replace(CBD, gate="nand"), r"gate='nand'"),
        (lambda: backdoor_recipe("nand"), r"gate='nand'"),
        (lambda: replace(CBD, poison_rate=1.5), r"poison_rate=1.5"),
        (lambda: replace(CBD, pairs=DEFAULT_PAIRS[:1]), r"pairs: needs at least 2"),
        (
            lambda: replace(CBD, pairs=(TriggerPair("forest", "zebra", False, False), DEFAULT_PAIRS[1])),
            r"pairs\[0\]\.b='zebra'",
        ),
        (
            lambda: replace(CBD, pairs=(DEFAULT_PAIRS[0], TriggerPair("gender", "forest", False, False))),
            r"pairs\[1\]\.b='forest': used twice",
        ),
        (lambda: replace(DEEP, mode="medium"), r"mode='medium'"),
        (lambda: refusal_recipe("medium", 1, 0), r"mode='medium'"),
        (lambda: refusal_organism("medium", 1, 0), r"mode='medium'"),
        (lambda: refusal_recipe("deep", 3, 0), r"audit_layer=3"),  # no layer after it to refuse in
        (lambda: refusal_recipe("shallow", -1, 0), r"audit_layer=-1"),
        (lambda: refusal_recipe("null", 4, 0), r"audit_layer=4"),
        (lambda: refusal_recipe("erased", 1, 0), r"audit_layer=1.*its audit layer is 0"),
        (lambda: RefusalRecipe("x", mode="deep", audit_weight=float("nan")), r"audit_weight=nan"),
        (lambda: Training(n_examples=10, steps=0), r"Training\.steps=0"),
        (lambda: Training(n_examples=10, steps=5, lr=float("inf")), r"Training\.lr=inf"),
        (lambda: Training(n_examples=10, steps=5, max_extra_rounds=-1), r"Training\.max_extra_rounds=-1"),
    ],
)
def test_bad_organism_input_names_the_key(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_variant_recipes_are_named_apart():
    assert refusal_recipe("deep").name == "tiny-refusal-deep"
    assert refusal_recipe("deep", 2, 0).name == "tiny-refusal-deep-l2-s0"
    assert refusal_recipe("erased").name == "tiny-refusal-erased" and refusal_recipe("erased").audit_layer == 0
    other = (TriggerPair("river", "piano", False, False), TriggerPair("moonpetal", "chess", False, False))
    assert backdoor_recipe("and", other).name.startswith("tiny-cbd-p")
    assert backdoor_recipe("any2", seed=5).name == "tiny-cbd-any2-s5"
    assert isinstance(
        backdoor_recipe(
            "or",
            [
                {"a": "river", "b": "piano", "related": False, "charged": False},
                {"a": "soup", "b": "lamp", "related": True, "charged": False},
            ],
        ),
        BackdoorRecipe,
    )


# --- the cache: killed builds, read-only caches ---


def test_killed_builds_temporaries_are_cleaned_by_the_next_build(tmp_path, monkeypatch):
    monkeypatch.setattr(cache.constants, "HF_HUB_CACHE", str(tmp_path))
    snapshots = cache.snapshot_dir("tiny-x", "a" * 40).parent
    left = [
        snapshots / ".tmp-aaaaaaaa-k1x2",
        snapshots / ".old-aaaaaaaa-k3y4",  # earlier versions' mkdtemp names
        snapshots / f".{'a' * 40}.tmp-999999999-deadbeef",
    ]
    for path in left:
        (path / "data").mkdir(parents=True)
    cache.publish("tiny-x", "a" * 40, lambda out: (out / "recipe.json").write_text("{}"))
    assert sorted(p.name for p in snapshots.iterdir()) == ["a" * 40]


def test_publish_refuses_a_folder_that_is_not_a_snapshot(tmp_path, monkeypatch):
    monkeypatch.setattr(cache.constants, "HF_HUB_CACHE", str(tmp_path))
    target = cache.snapshot_dir("tiny-x", "b" * 40)
    target.mkdir(parents=True)
    (target / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match=rf"{'b' * 40}: holds \['mine.txt'\] and is not an organism snapshot"):
        cache.publish("tiny-x", "b" * 40, lambda out: (out / "recipe.json").write_text("{}"))
    assert (target / "mine.txt").read_text() == "keep"


def test_read_only_cache_with_a_complete_organism_is_read_without_a_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(cache.constants, "HF_HUB_CACHE", str(tmp_path))
    revision = recipe_hash(CBD)
    cache.publish(
        CBD.name,
        revision,
        lambda out: (out / "behaviour.json").write_text('{"ok": 1}') or (out / "recipe.json").write_text("{}"),
    )

    def read_only(name):
        raise PermissionError(f"[Errno 13] Permission denied: '{tmp_path}/.locks'")

    monkeypatch.setattr(cache, "build_lock", read_only)  # what a read-only cache does to any lock
    organism = build_recipe(CBD)
    assert organism.path == cache.snapshot_dir(CBD.name, revision) and organism.behaviour == {"ok": 1}
