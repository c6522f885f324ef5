"""Session fixtures shared by every test module.

The tiny model organisms live in a hub cache of their own, ``$CBD_PLUGIN_CACHE/hub`` (default
~/.cache/cbd_plugin/hub): tests never write into the user's Hugging Face cache, and a machine (or a CI cache
keyed on that folder) builds each organism once and reuses it across runs until its recipe changes.
huggingface_hub reads HF_HUB_CACHE once, when first imported, so it is set here, before any test module loads.
"""

import os
from pathlib import Path

CBD_PLUGIN_CACHE = Path(os.environ.get("CBD_PLUGIN_CACHE", Path.home() / ".cache" / "cbd_plugin"))
os.environ["HF_HUB_CACHE"] = str(CBD_PLUGIN_CACHE / "hub")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything the tests load is local
# Under pytest-xdist (README's command runs one worker per core) each worker computes with one thread: torch's
# default of one thread per core would put cores x workers threads on the cores, which mostly wait for each other.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if WORKER:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def seeded_global_rngs():
    """Every test starts from the same global RNG state, whatever ran before it on its worker: an unseeded draw
    otherwise makes a test pass or fail by the order xdist hands out tests."""
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def build_order(items) -> list:
    """Odd-numbered xdist workers build organisms in reverse order: two workers starting on an empty cache then
    build different organisms side by side (a file lock per organism makes the other wait, then find it cached)."""
    items = list(items)
    return items[::-1] if WORKER and int(WORKER.removeprefix("gw")) % 2 else items


@pytest.fixture(scope="session")
def organisms():
    """{name: Organism} for every tiny organism, built on first use (a few minutes) and cached per machine."""
    from huggingface_hub import constants

    from cbd_plugin.organisms import ORGANISM_NAMES, build

    if constants.HF_HUB_CACHE != os.environ["HF_HUB_CACHE"]:
        raise RuntimeError(
            f"huggingface_hub was imported before tests/conftest.py set HF_HUB_CACHE; it uses "
            f"{constants.HF_HUB_CACHE}, not {os.environ['HF_HUB_CACHE']}"
        )
    return build(build_order(ORGANISM_NAMES))


# Refusal organisms off the defaults: another audit layer (2) for each mode, and another seed (0) of the deep one.
REFUSAL_VARIANTS = (("shallow", 2, 2), ("deep", 2, 2), ("null", 2, 2), ("deep", 1, 0))


@pytest.fixture(scope="session")
def refusal_variants(organisms):
    """{(mode, audit_layer, seed): Organism} for ``REFUSAL_VARIANTS``, built (and contract-checked) on first use."""
    from cbd_plugin.organisms import refusal_organism

    return {spec: refusal_organism(*spec) for spec in build_order(REFUSAL_VARIANTS)}
